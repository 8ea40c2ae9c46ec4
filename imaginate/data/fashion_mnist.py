"""Fashion-MNIST from local IDX files (Debian's dataset-fashion-mnist); never downloads anything."""

from __future__ import annotations

import functools
import gzip
import os
import zlib

import numpy as np
import torch
from torch import Tensor

from imaginate.data.arrays import ArrayDataset
from imaginate.data.errors import DataError

DEFAULT_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "IMAGINATE_FASHION_MNIST"
FASHION_MNIST_CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IDX_UBYTE = 0x08  # the IDX type code for unsigned bytes, the only one Fashion-MNIST uses


def read_idx(path: str, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped when the name ends in .gz) as a uint8 array.

    Args:
        path: the file.
        ndim: the number of dimensions the file must declare (3 for images, 1 for labels).

    Returns:
        uint8 array with the file's shape, e.g. [N, 28, 28] or [N].

    Raises:
        DataError: the file cannot be read, is not an unsigned-byte IDX file with ``ndim``
            dimensions, or is shorter or longer than its header says.
    """
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE or raw[3] != ndim:
        raise DataError(
            f"corrupt IDX file {path}: magic number {raw[:4].hex()} is not 000008{ndim:02x} "
            f"(unsigned bytes, {ndim} dimensions)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"corrupt IDX file {path}: {len(raw)} bytes, shorter than its {header}-byte header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(
            f"corrupt IDX file {path}: header says shape {shape} ({expected} bytes of data), "
            f"file holds {len(raw) - header} (truncated or wrong file?)"
        )
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(shape)  # writable


def resolve_fashion_mnist_root(root: str | None = None) -> str:
    """The folder to read: ``root``, else $IMAGINATE_FASHION_MNIST, else DEFAULT_FASHION_MNIST."""
    chosen = root or os.environ.get(FASHION_MNIST_ENV) or DEFAULT_FASHION_MNIST
    return os.path.realpath(os.path.expanduser(chosen))


def _find_file(root: str, name: str) -> str | None:
    for candidate in (os.path.join(root, name), os.path.join(root, name + ".gz")):
        if os.path.isfile(candidate):
            return candidate
    return None


@functools.lru_cache(maxsize=4)
def _read_fashion_mnist(root: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Decoded uint8 (train images, train labels, test images, test labels) of a resolved root, cached.

    The cached tensors never leave this module: callers get float/int64 copies.
    """
    paths = {name: _find_file(root, name) for name in FASHION_MNIST_FILES}
    if all(p is None for p in paths.values()):
        raise DataError(
            f"Fashion-MNIST not found in {root}: install Debian's dataset-fashion-mnist (`make fashion-mnist`) "
            f"or pass data.root=PATH to a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped or not)"
        )
    missing = [name for name, p in paths.items() if p is None]
    if missing:
        raise DataError(
            f"Fashion-MNIST in {root} is incomplete: missing {', '.join(n + '[.gz]' for n in missing)}; "
            f"pass data.root=PATH to a folder holding all four IDX files"
        )
    arrays: list[Tensor] = []
    for split in ("train", "t10k"):
        images_path = paths[f"{split}-images-idx3-ubyte"]
        labels_path = paths[f"{split}-labels-idx1-ubyte"]
        assert images_path is not None and labels_path is not None
        images = read_idx(images_path, ndim=3)  # [N, 28, 28] uint8
        labels = read_idx(labels_path, ndim=1)  # [N] uint8
        if images.shape[1:] != (28, 28):
            raise DataError(
                f"corrupt Fashion-MNIST file {images_path}: images are {images.shape[1:]}, not 28x28"
            )
        if labels.shape[0] != images.shape[0]:
            raise DataError(
                f"Fashion-MNIST files disagree: {labels_path} has {labels.shape[0]} labels, "
                f"{images_path} has {images.shape[0]} images"
            )
        if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASS_NAMES):
            raise DataError(
                f"corrupt Fashion-MNIST file {labels_path}: label {int(labels.max())} is not in 0..9"
            )
        arrays += [torch.from_numpy(images), torch.from_numpy(labels)]
    return arrays[0], arrays[1], arrays[2], arrays[3]


def _to_dataset(images: Tensor, labels: Tensor, limit: int | None, field: str) -> ArrayDataset:
    if limit is not None:
        if limit < 0:
            raise ValueError(f"{field} must be >= 0 or None, got {limit}")
        images, labels = images[:limit], labels[:limit]
    return ArrayDataset(
        images=images.unsqueeze(1).to(torch.float32).div_(255.0),  # [N, 1, 28, 28] in [0, 1]
        labels=labels.to(torch.int64),  # [N]
        class_names=list(FASHION_MNIST_CLASS_NAMES),
    )


def load_fashion_mnist(
    root: str | None = None, limit_train: int | None = None, limit_test: int | None = None
) -> tuple[ArrayDataset, ArrayDataset]:
    """Fashion-MNIST's train (60000) and test (10000) sets from local IDX files.

    The decoded files are cached per resolved root, so loading again in one process is cheap.

    Args:
        root: folder holding the four IDX files (gzipped or not); None reads $IMAGINATE_FASHION_MNIST,
            else DEFAULT_FASHION_MNIST.
        limit_train: keep only the first this many training images (None: all).
        limit_test: keep only the first this many test images (None: all).

    Returns:
        (train, test): images [N, 1, 28, 28] float32 in [0, 1], labels [N] int64, 10 class names.

    Raises:
        DataError: the files are missing, unreadable or corrupt (the message names the folder or file).
    """
    train_images, train_labels, test_images, test_labels = _read_fashion_mnist(
        resolve_fashion_mnist_root(root)
    )
    return (
        _to_dataset(train_images, train_labels, limit_train, "limit_train"),
        _to_dataset(test_images, test_labels, limit_test, "limit_test"),
    )
