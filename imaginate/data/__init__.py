"""Data sets: embedded defaults that work offline, and loaders for formats users bring."""

from imaginate.data.arrays import ArrayDataset
from imaginate.data.class_split import ClassSubset, few_shot_folder, load_class_split
from imaginate.data.digits import DIGIT_CLASS_NAMES, load_digits
from imaginate.data.errors import DataError
from imaginate.data.fashion_mnist import (
    DEFAULT_FASHION_MNIST,
    FASHION_MNIST_CLASS_NAMES,
    load_fashion_mnist,
    read_idx,
)
from imaginate.data.heads import (
    EXPRESSION_NAMES,
    IDENTITY_SPLIT,
    HeadClip,
    HeadIdentity,
    cached_head_clip,
    head_clip,
    render_head,
    render_heads,
)
from imaginate.data.image_folder import ImageFolderDataset, ImageFolderSubset, load_image_folder
from imaginate.data.species import (
    MAX_SPECIES,
    NUM_SPECIES,
    SpeciesContent,
    facing_difference,
    render_species,
    render_species_batch,
    sample_content,
)
from imaginate.data.species_sets import SPLIT, SpeciesArrays, SpeciesDataset, SpeciesSplit, load_species
from imaginate.data.text import CharCorpus, load_char_corpus
from imaginate.data.video_folder import VideoClip, VideoFolder, read_crop_boxes

__all__ = [
    "DEFAULT_FASHION_MNIST",
    "DIGIT_CLASS_NAMES",
    "FASHION_MNIST_CLASS_NAMES",
    "ArrayDataset",
    "CharCorpus",
    "DataError",
    "EXPRESSION_NAMES",
    "IDENTITY_SPLIT",
    "HeadClip",
    "HeadIdentity",
    "cached_head_clip",
    "head_clip",
    "render_head",
    "render_heads",
    "VideoClip",
    "VideoFolder",
    "read_crop_boxes",
    "ImageFolderDataset",
    "ImageFolderSubset",
    "load_char_corpus",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "read_idx",
    "MAX_SPECIES",
    "NUM_SPECIES",
    "SPLIT",
    "ClassSubset",
    "SpeciesArrays",
    "SpeciesContent",
    "SpeciesDataset",
    "SpeciesSplit",
    "facing_difference",
    "few_shot_folder",
    "load_class_split",
    "load_species",
    "render_species",
    "render_species_batch",
    "sample_content",
]
