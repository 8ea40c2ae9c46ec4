"""An in-memory image classification data set held as two tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset


@dataclass(eq=False)
class ArrayDataset(Dataset):
    """Images and labels that fit in memory (compared by identity, not by value).

    Args:
        images: [N, C, H, W] float32 in [0, 1].
        labels: [N] int64 class indices into ``class_names``.
        class_names: one name per class.
    """

    images: Tensor  # [N, C, H, W] float32 in [0, 1]
    labels: Tensor  # [N] int64
    class_names: list[str]

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.labels.dim() != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"labels must be [N] with N = {self.images.shape[0]}, got shape {tuple(self.labels.shape)}"
            )
        if self.images.dtype != torch.float32:
            raise ValueError(f"images must be float32, got {self.images.dtype}")
        if self.labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64, got {self.labels.dtype}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return (c, h, w)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]  # [C, H, W], []

    def take(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """A batch by direct tensor indexing (no per-item Python calls).

        Args:
            indices: [B] int64 positions in the data set.

        Returns:
            images [B, C, H, W] and labels [B].
        """
        return self.images[indices], self.labels[indices]
