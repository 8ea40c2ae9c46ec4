"""Seen / unseen class splits for few-shot data in the Animal-Faces layout (a folder per class).

A split file names the classes a few-shot model trains on (seen) and the classes it meets only at
test time (unseen), in one of two formats, told apart by the first non-blank character:

Text (``split.txt``): one class name per line under a ``[seen]`` or ``[unseen]`` header; blank
lines and lines starting with ``#`` are ignored; names are stripped of surrounding spaces::

    # animal faces, 3 seen and 2 unseen
    [seen]
    n02085620
    n02085782
    n02085936
    [unseen]
    n02086079
    n02086240

JSON (``split.json``): ``{"seen": ["n02085620", ...], "unseen": ["n02086079", ...]}``.

Both lists must be non-empty, without repeats and disjoint. Folder classes named in neither list
are left out of both data sets. The order in the file is the order of the class labels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from imaginate.data.errors import DataError
from imaginate.data.image_folder import ImageFolderDataset

SPLIT_PARTS = ("seen", "unseen")


def _parse_text(text: str, path: str) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {part: [] for part in SPLIT_PARTS}
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip().lower()
            if current not in parts:
                raise DataError(
                    f"class split {path}, line {number}: unknown header {line} (use [seen] or [unseen])"
                )
            continue
        if current is None:
            raise DataError(
                f"class split {path}, line {number}: class {line!r} comes before a [seen] or [unseen] header"
            )
        parts[current].append(line)
    return parts


def _parse_json(text: str, path: str) -> dict[str, list[str]]:
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"class split {path} is not valid JSON: {e}") from e
    if not isinstance(loaded, dict) or set(loaded) != set(SPLIT_PARTS):
        keys = sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__
        raise DataError(f'class split {path} must be a JSON object with keys "seen" and "unseen", got {keys}')
    for part in SPLIT_PARTS:
        names = loaded[part]
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise DataError(f'class split {path}: "{part}" must be a list of class names (non-empty strings)')
    return {part: [n.strip() for n in loaded[part]] for part in SPLIT_PARTS}


def load_class_split(path: str, class_names: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Read a seen / unseen class split file (text or JSON, see the module docstring).

    Args:
        path: the split file.
        class_names: the classes that exist (e.g. an image folder's ``class_names``); when given,
            every class named in the file must be one of them.

    Returns:
        (seen, unseen) class names in file order.

    Raises:
        DataError: the file is missing or malformed, a list is empty or repeats a class, a class
            is in both lists, or a class is not among ``class_names``; the message names the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read class split {path}: {e}") from e
    parts = _parse_json(text, path) if text.lstrip().startswith("{") else _parse_text(text, path)
    for part in SPLIT_PARTS:
        if not parts[part]:
            raise DataError(f"class split {path} lists no {part} classes")
        repeated = sorted({n for n in parts[part] if parts[part].count(n) > 1})
        if repeated:
            raise DataError(f"class split {path} lists {part} class {repeated[0]!r} more than once")
    both = [n for n in parts["seen"] if n in set(parts["unseen"])]
    if both:
        raise DataError(f"class split {path}: class {both[0]!r} is both seen and unseen")
    if class_names is not None:
        known = set(class_names)
        for part in SPLIT_PARTS:
            unknown = [n for n in parts[part] if n not in known]
            if unknown:
                raise DataError(
                    f"class split {path}: {part} class {unknown[0]!r} is not a class folder "
                    f"({len(known)} classes exist)"
                )
    return parts["seen"], parts["unseen"]


class ClassSubset(Dataset):
    """The images of some classes of an ImageFolderDataset, relabelled 0..len(class_names) - 1.

    Args:
        dataset: the full image folder.
        class_names: the classes to keep, each one of ``dataset.class_names``; labels index this list.
    """

    def __init__(self, dataset: ImageFolderDataset, class_names: Sequence[str]) -> None:
        position = {name: i for i, name in enumerate(dataset.class_names)}
        missing = [n for n in class_names if n not in position]
        if missing:
            raise DataError(f"image folder {dataset.root} has no class folder {missing[0]!r}")
        self.class_names: list[str] = list(class_names)
        # new label of each source label, -1 for classes left out
        self._relabel = torch.full((len(dataset.class_names),), -1, dtype=torch.int64)
        for new, name in enumerate(self.class_names):
            self._relabel[position[name]] = new
        self.dataset = dataset
        # positions in ``dataset`` of the kept images, in the folder's order
        self.indices: list[int] = torch.nonzero(self._relabel[dataset.labels] >= 0).flatten().tolist()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.dataset.image_shape

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> Tensor:
        """[N] int64 label (index into ``class_names``) of every image, without loading any image."""
        return self._relabel[self.dataset.labels[torch.as_tensor(self.indices, dtype=torch.int64)]]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, source_label = self.dataset[self.indices[index]]
        return image, self._relabel[source_label]  # [C, H, W], []


def few_shot_folder(
    root: str, split_file: str, image_size: int, channels: int = 3
) -> tuple[ClassSubset, ClassSubset]:
    """Seen and unseen data sets from an image folder per class and a class split file.

    Args:
        root: the folder holding one sub-folder of images per class (see ImageFolderDataset).
        split_file: a seen / unseen split file (text or JSON, see the module docstring).
        image_size: every image is resized to image_size x image_size.
        channels: 3 for RGB, 1 for grey-scale.

    Returns:
        (seen, unseen): each a ClassSubset with its own ``class_names`` in split-file order and items
        ([C, H, W] float32 in [0, 1], label into those names).
    """
    full = ImageFolderDataset(root, image_size, channels)
    seen, unseen = load_class_split(split_file, full.class_names)
    return ClassSubset(full, seen), ClassSubset(full, unseen)
