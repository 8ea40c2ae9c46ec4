"""Data sets: embedded defaults that work offline, and loaders for formats users bring."""

from imaginate.data.arrays import ArrayDataset
from imaginate.data.digits import DIGIT_CLASS_NAMES, load_digits
from imaginate.data.errors import DataError
from imaginate.data.fashion_mnist import (
    DEFAULT_FASHION_MNIST,
    FASHION_MNIST_CLASS_NAMES,
    load_fashion_mnist,
    read_idx,
)
from imaginate.data.image_folder import ImageFolderDataset, ImageFolderSubset, load_image_folder
from imaginate.data.text import CharCorpus, load_char_corpus

__all__ = [
    "DEFAULT_FASHION_MNIST",
    "DIGIT_CLASS_NAMES",
    "FASHION_MNIST_CLASS_NAMES",
    "ArrayDataset",
    "CharCorpus",
    "DataError",
    "ImageFolderDataset",
    "ImageFolderSubset",
    "load_char_corpus",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "read_idx",
]
