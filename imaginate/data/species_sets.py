"""Species data sets: the seen / unseen split, pre-rendered arrays, ``SpeciesDataset`` and ``load_species``
(the appearance and the renderer are in ``species.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from imaginate.data.arrays import ArrayDataset
from imaginate.data.species import (
    MAX_SPECIES,
    NUM_SPECIES,
    VARIANTS,
    SpeciesContent,
    render_species_batch,
    sample_contents,
    species_name,
)

# ---------------------------------------------------------------- data sets


@dataclass(frozen=True)
class SpeciesSplit:
    """Which species a few-shot model trains on (seen) and which it meets only at test time (unseen)."""

    seen: tuple[int, ...]
    unseen: tuple[int, ...]


# 19 seen, 5 unseen; the unseen species mix ear, tail, limb and texture types that all occur in seen ones
SPLIT = SpeciesSplit(
    seen=tuple(s for s in range(NUM_SPECIES) if s not in (3, 6, 10, 17, 20)), unseen=(3, 6, 10, 17, 20)
)


@dataclass(eq=False)
class SpeciesArrays(ArrayDataset):
    """Pre-rendered species images in memory: an ArrayDataset plus each image's mask and content.

    Args:
        images: [N, 3, H, W] float32 in [0, 1].
        labels: [N] int64 indices into ``class_names``.
        class_names: one name per species of the set.
        masks: [N, H, W] bool creature masks.
        poses: [N, 5] float32 pose parameters (CONTENT_FIELDS order).
        background_seeds: [N] int64.
        species: [N] int64 global species ids.
    """

    masks: Tensor  # [N, H, W] bool
    poses: Tensor  # [N, 5] float32
    background_seeds: Tensor  # [N] int64
    species: Tensor  # [N] int64

    def __post_init__(self) -> None:
        super().__post_init__()
        n, _, h, w = self.images.shape
        for name, value, shape in (
            ("masks", self.masks, (n, h, w)),
            ("poses", self.poses, (n, 5)),
            ("background_seeds", self.background_seeds, (n,)),
            ("species", self.species, (n,)),
        ):
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")


class SpeciesDataset(Dataset):
    """Images of some species, each with a known content; rendered on demand (or all at once).

    The contents of species ``s`` depend only on (``seed``, ``s``), so the same species gets the same
    images in every data set built with the same seed (the "seen" set is a part of the "all" set).

    Args:
        species_ids: the species of the set, distinct, each in [0, MAX_SPECIES) (ids >= NUM_SPECIES are
            extra training species); labels index this list.
        images_per_species: images drawn for each species.
        size: image height and width in pixels (e.g. 32, 64, 128).
        seed: the seed of the contents.
        plain_background: draw every image on a uniform grey (``PLAIN_BACKGROUND``).
        variant: the appearance set (``VARIANTS``).
    """

    def __init__(
        self, species_ids: Sequence[int], images_per_species: int, size: int = 64, seed: int = 0,
        plain_background: bool = False, variant: str = "full",
    ) -> None:
        ids = [int(s) for s in species_ids]
        if not ids or len(set(ids)) != len(ids) or not all(0 <= s < MAX_SPECIES for s in ids):
            raise ValueError(f"species_ids must be distinct ids in [0, {MAX_SPECIES}), got {ids}")
        if images_per_species < 1:
            raise ValueError(f"images_per_species must be at least 1, got {images_per_species}")
        if size < 8:
            raise ValueError(f"size must be at least 8, got {size}")
        self.species_ids, self.size, self.seed = ids, size, seed
        if variant not in VARIANTS:
            raise ValueError(f"species variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.plain_background, self.variant = plain_background, variant
        self.class_names = [species_name(s) for s in ids]
        poses, seeds = [], []
        for s in ids:
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([seed, s]).generate_state(1)[0])
            )
            species_poses, species_seeds = sample_contents(images_per_species, generator)
            poses.append(species_poses)
            seeds.append(species_seeds)
        self.poses = torch.cat(poses)  # [N, 5]
        self.background_seeds = torch.cat(seeds)  # [N]
        self.labels = torch.arange(len(ids)).repeat_interleave(images_per_species)  # [N]
        self.species = torch.tensor(ids, dtype=torch.int64).repeat_interleave(images_per_species)  # [N]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def content(self, index: int) -> SpeciesContent:
        """The content of image ``index``."""
        return SpeciesContent.from_tensor(self.poses[index], int(self.background_seeds[index]))

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        image, mask = self.render(int(self.species[index]), self.content(index))
        return {
            "image": image,  # [3, H, W] float32 in [0, 1]
            "label": int(self.labels[index]),
            "species": int(self.species[index]),
            "mask": mask,  # [H, W] bool
            "content": self.poses[index].clone(),  # [5] CONTENT_FIELDS
            "background_seed": int(self.background_seeds[index]),
        }

    def render(self, species: int, content: SpeciesContent) -> tuple[Tensor, Tensor]:
        """Any species with any content at this set's size: (image [3, H, W], mask [H, W] bool)."""
        seeds = torch.tensor([content.background_seed], dtype=torch.int64)
        images, masks = render_species_batch([species], content.to_tensor()[None], seeds, self.size,
                                             self.plain_background, self.variant)
        return images[0], masks[0]

    def prerender(self, batch_size: int = 512) -> SpeciesArrays:
        """Every image of the set rendered into memory (N x 3 x H x W float32: 4800 images at 64 px take
        236 MB), for training without a rendering step per batch."""
        images, masks = [], []
        for start in range(0, len(self), batch_size):
            rows = slice(start, start + batch_size)
            image, mask = render_species_batch(
                self.species[rows], self.poses[rows], self.background_seeds[rows], self.size, self.plain_background,
                self.variant,
            )
            images.append(image)
            masks.append(mask)
        return SpeciesArrays(
            images=torch.cat(images), labels=self.labels.clone(), class_names=list(self.class_names),
            masks=torch.cat(masks), poses=self.poses.clone(), background_seeds=self.background_seeds.clone(),
            species=self.species.clone(),
        )  # fmt: skip


def load_species(
    split: str = "seen", images_per_species: int = 100, size: int = 64, seed: int = 0,
    plain_background: bool = False, variant: str = "full",
) -> SpeciesDataset:
    """The species data set of one part of the default split ``SPLIT``.

    Args:
        split: "seen" (training species), "unseen" (held-out species) or "all" (labels = species ids).
        images_per_species: images drawn for each species.
        size: image height and width in pixels (e.g. 32, 64, 128).
        seed: the seed of the contents; the same seed gives the same images.
        plain_background: a uniform grey background instead of the seeded ones.
        variant: the appearance set (``VARIANTS``): "full" or the few-part "simple" one.

    Returns:
        a SpeciesDataset (call ``prerender()`` for in-memory tensors).
    """
    parts = {"seen": SPLIT.seen, "unseen": SPLIT.unseen, "all": tuple(range(NUM_SPECIES))}
    if split not in parts:
        raise ValueError(f"split must be one of seen, unseen, all, got {split!r}")
    return SpeciesDataset(parts[split], images_per_species, size, seed, plain_background, variant)
