"""Image classification data from a folder with one sub-folder of images per class."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from imaginate.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _list_images(folder: str) -> list[str]:
    """Image files under ``folder`` (recursively), sorted, hidden entries skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(dirpath, name))
    return found


class ImageFolderDataset(Dataset):
    """``root/<class name>/<image>``: classes are the sorted sub-folder names; images load lazily.

    Args:
        root: the folder holding one sub-folder per class.
        image_size: every image is resized to image_size x image_size.
        channels: 3 converts to RGB, 1 to grey-scale (PIL mode "L").

    Raises:
        DataError: ``root`` is missing, has no class folders, or a class folder has no images;
            at ``__getitem__`` time, an image that cannot be decoded.
    """

    def __init__(self, root: str, image_size: int, channels: int = 3) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if not os.path.isdir(root):
            raise DataError(
                f"image folder {root} does not exist: pass data.root=PATH to a folder of class sub-folders"
            )
        class_names = sorted(
            d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d))
        )
        if not class_names:
            raise DataError(
                f"image folder {root} has no class sub-folders: expected {root}/<class name>/<image>"
            )
        self.root = root
        self.image_size = image_size
        self.channels = channels
        self.class_names: list[str] = class_names
        self.samples: list[tuple[str, int]] = []  # (image path, class index)
        for label, name in enumerate(class_names):
            paths = _list_images(os.path.join(root, name))
            if not paths:
                raise DataError(
                    f"class folder {os.path.join(root, name)} has no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            self.samples += [(path, label) for path in paths]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.channels, self.image_size, self.image_size)

    @property
    def labels(self) -> Tensor:
        """[N] int64 class index of every image, without loading any image."""
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        from PIL import Image

        path, label = self.samples[index]
        try:
            with Image.open(path) as stored:
                converted = stored.convert("RGB" if self.channels == 3 else "L")
            resized = converted.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
            pixels = np.asarray(resized, dtype=np.uint8)  # [H, W, 3] or [H, W]
        # PIL reports some broken PNG chunks as SyntaxError
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {path}: {e}") from e
        tensor = torch.from_numpy(pixels.astype(np.float32) / 255.0)
        tensor = tensor.permute(2, 0, 1) if tensor.dim() == 3 else tensor.unsqueeze(0)  # [C, H, W] in [0, 1]
        return tensor.contiguous(), torch.tensor(label, dtype=torch.int64)


class ImageFolderSubset(Subset):
    """A Subset of an ImageFolderDataset that keeps its class names and image shape."""

    dataset: ImageFolderDataset

    def __init__(self, dataset: ImageFolderDataset, indices: list[int]) -> None:
        super().__init__(dataset, indices)

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.dataset.image_shape

    @property
    def labels(self) -> Tensor:
        return self.dataset.labels[torch.as_tensor(self.indices, dtype=torch.int64)]


def load_image_folder(
    root: str, image_size: int, channels: int = 3, test_fraction: float = 0.2, seed: int = 0
) -> tuple[ImageFolderDataset | ImageFolderSubset, ImageFolderDataset | ImageFolderSubset]:
    """Train and test sets from an image folder.

    If ``root/train`` and ``root/test`` both exist they are the two sets (with the same class
    folders); otherwise ``root`` itself is split, per class, with ``test_fraction`` of each class
    (at least one image of every class with two or more) going to the test set.

    Args:
        root: the image folder (see ImageFolderDataset).
        image_size: every image is resized to image_size x image_size.
        channels: 3 for RGB, 1 for grey-scale.
        test_fraction: share of each class held out when ``root`` is split, in (0, 1).
        seed: the split's random seed; the same seed gives the same split.

    Returns:
        (train, test), each with ``class_names``; items are ([C, H, W] float32 in [0, 1], label).
    """
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        train = ImageFolderDataset(train_dir, image_size, channels)
        test = ImageFolderDataset(test_dir, image_size, channels)
        if train.class_names != test.class_names:
            raise DataError(
                f"class folders of {train_dir} ({len(train.class_names)}) and {test_dir} "
                f"({len(test.class_names)}) differ: both need the same class sub-folders"
            )
        return train, test
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    full = ImageFolderDataset(root, image_size, channels)
    labels = full.labels  # [N]
    generator = torch.Generator().manual_seed(seed)
    train_index: list[int] = []
    test_index: list[int] = []
    for label in range(full.num_classes):
        members = torch.nonzero(labels == label).flatten()  # [n_c]
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = min(max(1, round(len(members) * test_fraction)), len(members) - 1) if len(members) > 1 else 0
        test_index += members[:n_test].tolist()
        train_index += members[n_test:].tolist()
    return ImageFolderSubset(full, sorted(train_index)), ImageFolderSubset(full, sorted(test_index))
