"""Precomputed proposal files (wetectron / Fast R-CNN pickles): safe loading and preprocessing.

A proposal pickle is read with an unpickler that may only rebuild numpy arrays, plain containers and
numbers, so a file can never run code. Every malformed file raises a one-line ``DataError`` naming it.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import functools
import pickle
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from imaginate.data.errors import DataError

ImageId = int | str


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], object]:
    """The only globals a proposal pickle may name: numpy array/scalar rebuilders and plain types."""
    try:  # numpy >= 2 (numpy 1.x pickles name numpy.core, numpy 2.x pickles numpy._core)
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles store bytes this way
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("detectron2.structures.boxes", "BoxMode"): int,  # the enum member becomes its value
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    for name in ("list", "dict", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
                 "bytearray", "bool", "slice", "range"):  # fmt: skip
        allowed[("builtins", name)] = allowed[("__builtin__", name)] = getattr(builtins, name)  # py2 name
    return allowed


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allowed list."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler that refuses every global outside ``_allowed_globals`` (no code execution)."""

    def find_class(self, module: str, name: str) -> object:
        allowed = _allowed_globals().get((module, name))
        if allowed is None:
            raise _RefusedGlobal(f"global {module}.{name} is not allowed")
        return allowed


def _plain_id(value: object) -> ImageId:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("latin1")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"image id {value!r} is neither an integer nor a string")
    return value


def _as_boxes(value: object, path: str, image_id: ImageId, xywh: bool) -> Tensor:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: boxes for image id {image_id!r} are not numbers: {e}") from None
    if array.size == 0:
        array = array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise DataError(
            f"{path}: boxes for image id {image_id!r} have shape {list(array.shape)}, expected [P, 4]"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{path}: boxes for image id {image_id!r} hold NaN or inf")
    boxes = torch.from_numpy(array.copy())  # [P, 4]
    if xywh:
        boxes[:, 2:] += boxes[:, :2]
    return boxes


def _match_key(image_id: ImageId) -> ImageId:
    """VOC ids "000005" and pickle ids 5 name the same image; so do VOC2012 ids "2008_000002" and
    2008000002 (wetectron's VOC2012 pickles key an image by its id without the underscore, as an
    integer)."""
    if isinstance(image_id, str):
        year, _, number = image_id.partition("_")
        if image_id.isdigit() or (year.isdigit() and number.isdigit() and len(year) == 4):
            return int(year + number)
    return image_id


def load_proposals(path: str, image_ids: Iterable[ImageId] | None = None) -> dict[ImageId, Tensor]:
    """Read a proposal pickle as detectron, detectron2 and wetectron write them.

    Two layouts are read. (1) Parallel lists, the detectron/wetectron layout: a dict with
    ``"boxes"``, a list (or object array) of [P_i, 4] arrays, and ``"indexes"`` or ``"ids"``, the
    image id of each entry; ``"scores"`` / ``"objectness_logits"`` may be present and are ignored
    (wetectron ignores them too); detectron2's optional ``"bbox_mode"`` may be 0 (XYXY_ABS, the
    default) or 1 (XYWH_ABS, converted). (2) A dict form: ``{image_id: [P, 4] array}``. Boxes are
    xyxy in the image's pixels; integer and string ids are kept as they are.

    Unpickling can execute code, so a restricted Unpickler is used: it accepts only numpy's array,
    dtype and scalar rebuilders, ``collections.OrderedDict``, plain builtin containers and numbers
    (and maps detectron2's ``BoxMode`` to its integer); anything else (e.g. ``os.system``) is
    refused with a DataError. Python 2 pickles load with ``encoding="latin1"``.

    Args:
        path: the ``.pkl`` file.
        image_ids: the data set's ids; when given, every file id must be one of them (a digit
            string like VOC's "000005" also matches the integer 5, and a VOC2012 id "2008_000002"
            the integer 2008000002), every data set id must have proposals, and the result is keyed
            by the data set's ids.

    Returns:
        ``{image_id: [P, 4] float32 xyxy}``, unprocessed (see preprocess_proposals).

    Raises:
        DataError: an unreadable or refused pickle, an unknown layout, mismatched list lengths,
            boxes not shaped [P, 4], duplicate ids, or ids that do not match ``image_ids``.
    """
    try:
        with open(path, "rb") as f:
            data = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as e:
        raise DataError(
            f"{path}: refusing to unpickle proposals: {e} (only numpy arrays, lists, dicts, numbers)"
        ) from e
    except (
        pickle.UnpicklingError,
        OSError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        LookupError,
    ) as e:
        raise DataError(f"cannot read proposal file {path}: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict of proposals, got {type(data).__name__}")
    proposals: dict[ImageId, Tensor] = {}
    if "boxes" in data:
        id_key = "indexes" if "indexes" in data else "ids" if "ids" in data else None
        if id_key is None:
            raise DataError(f"{path}: has 'boxes' but neither 'indexes' nor 'ids'")
        mode = data.get("bbox_mode", 0)
        if mode not in (0, 1):
            raise DataError(f"{path}: bbox_mode {mode!r} is not 0 (XYXY_ABS) or 1 (XYWH_ABS)")
        try:
            boxes, ids = list(data["boxes"]), list(data[id_key])
        except TypeError as e:
            raise DataError(f"{path}: 'boxes' and {id_key!r} must be sequences: {e}") from None
        if len(boxes) != len(ids):
            raise DataError(f"{path}: {len(boxes)} entries in 'boxes' but {len(ids)} in {id_key!r}")
        pairs = list(zip(ids, boxes))
    else:
        mode, id_key, pairs = 0, "key", list(data.items())
    for raw_id, raw_boxes in pairs:
        try:
            image_id = _plain_id(raw_id)
        except TypeError as e:
            raise DataError(f"{path}: {id_key}: {e}") from None
        if image_id in proposals:
            raise DataError(f"{path}: image id {image_id!r} appears twice")
        proposals[image_id] = _as_boxes(raw_boxes, path, image_id, xywh=mode == 1)
    if image_ids is None:
        return proposals
    by_key: dict[ImageId, ImageId] = {}
    for image_id in image_ids:
        if _match_key(image_id) in by_key:
            raise DataError(f"{path}: data set ids {by_key[_match_key(image_id)]!r} and {image_id!r} "
                            "name the same proposal key")
        by_key[_match_key(image_id)] = image_id
    matched: dict[ImageId, Tensor] = {}
    for file_id, boxes in proposals.items():
        if _match_key(file_id) not in by_key:
            raise DataError(f"{path}: proposals for image id {file_id!r}, which is not in the data set")
        matched[by_key[_match_key(file_id)]] = boxes
    missing = [image_id for image_id in by_key.values() if image_id not in matched]
    if missing:
        raise DataError(
            f"{path}: no proposals for image id {missing[0]!r} ({len(missing)} data set images have none)"
        )
    return matched


def first_unique_rows(rows: Tensor) -> Tensor:
    """[K] sorted indices of the first occurrence of each distinct row of a [P, D] tensor."""
    if rows.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    _, inverse = torch.unique(rows, dim=0, return_inverse=True)  # [P] group of each row
    first = torch.full((int(inverse.max()) + 1,), rows.shape[0], dtype=torch.int64)
    first = first.scatter_reduce(0, inverse, torch.arange(rows.shape[0]), reduce="amin")
    return first.sort().values


def preprocess_proposals(
    boxes: Tensor, width: int, height: int, min_size: float = 2.0, pixel_inclusive: bool = False
) -> Tensor:
    """Clip proposals to the image, drop duplicates and boxes under ``min_size`` pixels (wetectron's steps).

    Boxes equal after rounding to whole pixels are duplicates (the first is kept; order is kept).
    De-duplication runs after clipping, so boxes that clip to the same box count once.

    Args:
        boxes: [P, 4] xyxy.
        width: image width in pixels.
        height: image height in pixels.
        min_size: the smallest width and height kept, in pixels.
        pixel_inclusive: coordinates are inclusive pixel indices (VOC: clip to W - 1, width
            x2 - x1 + 1); False: continuous (clip to W, width x2 - x1).

    Returns:
        [P', 4] float32, P' <= P.
    """
    one = 1.0 if pixel_inclusive else 0.0
    clipped = boxes.reshape(-1, 4).float().clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width - one)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height - one)
    unique = clipped[first_unique_rows(clipped.round())]
    sizes = unique[:, 2:] - unique[:, :2] + one  # [P', 2] width, height
    return unique[(sizes >= min_size).all(dim=1)]
