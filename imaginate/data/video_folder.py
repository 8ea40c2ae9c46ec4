"""A user's talking-head videos: a folder of MP4 clips (VoxCeleb / TalkingHead-1KH layout).

Layout: any nesting of ``.mp4`` files under ``root``, e.g. VoxCeleb's ``root/<person id>/<video
id>/<clip>.mp4`` or TalkingHead-1KH's ``root/<clip>.mp4``. Clips are listed recursively in sorted
order (hidden entries skipped); a clip's identity is its first folder below ``root`` (or the file's
stem when it sits directly in ``root``).

Crop boxes (optional): a file ``crops.json`` or ``crops.csv`` in ``root`` (or the path given as
``crops``) gives one box per clip, in pixels of the stored frames, as left, top, right, bottom
(right and bottom exclusive), keyed by the clip's path relative to ``root`` with ``/`` separators::

    crops.json   {"id10001/1zcIwhmdeo4/00001.mp4": [80, 20, 304, 244], ...}
    crops.csv    path,left,top,right,bottom
                 id10001/1zcIwhmdeo4/00001.mp4,80,20,304,244

A clip without a box is centre-cropped to the largest square. The cropped frames are resized to
``size`` x ``size`` (bilinear with anti-aliasing). A missing, unreadable or corrupt file, or a bad
box, raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from imaginate.data.errors import DataError

VIDEO_EXTENSIONS = (".mp4",)
CROP_FILES = ("crops.json", "crops.csv")
Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels; right and bottom exclusive


@dataclass
class VideoClip:
    """One decoded clip: ``frames [T, 3, size, size]`` in [0, 1], its file, identity and frame rate."""

    frames: Tensor
    path: Path
    identity: str
    fps: float


def list_clips(root: str | os.PathLike) -> list[Path]:
    """The ``.mp4`` files under ``root`` (recursive, sorted, hidden entries skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / name for name in sorted(filenames)
                     if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS))
    return found


def _check_box(box: object, where: str) -> Box:
    if (not isinstance(box, (list, tuple)) or len(box) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) and float(v) == int(v) for v in box)):
        raise DataError(f"{where}: a crop box is 4 integers [left, top, right, bottom], got {box!r}")
    left, top, right, bottom = (int(v) for v in box)
    if left < 0 or top < 0 or right <= left or bottom <= top:
        raise DataError(f"{where}: crop box {[left, top, right, bottom]} is empty or negative")
    return left, top, right, bottom


def read_crop_boxes(path: str | os.PathLike) -> dict[str, Box]:
    """Crop boxes from a ``.json`` (``{clip: [l, t, r, b]}``) or ``.csv`` (``path,left,top,right,bottom``) file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"crop box file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"crop box file {path} cannot be read: {error}") from error
    boxes: dict[str, Box] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"crop box file {path} is not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise DataError(f"crop box file {path} must hold one JSON object {{clip path: [l, t, r, b]}}")
        for key, box in data.items():
            boxes[str(key).replace(os.sep, "/")] = _check_box(box, f"crop box file {path} entry {key!r}")
    elif path.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        header = [cell.strip().lower() for cell in rows[0]] if rows else []
        if header != ["path", "left", "top", "right", "bottom"]:
            raise DataError(f"crop box file {path} must start with the header path,left,top,right,bottom")
        for number, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != 5:
                raise DataError(f"crop box file {path} line {number}: expected 5 columns, got {len(row)}")
            try:
                values = [int(cell) for cell in row[1:]]
            except ValueError as error:
                raise DataError(f"crop box file {path} line {number}: {error}") from error
            boxes[row[0].strip().replace(os.sep, "/")] = _check_box(values, f"crop box file {path} line {number}")
    else:
        raise DataError(f"crop box file {path} must be .json or .csv")
    return boxes


def crop_and_resize(frames: Tensor, box: Box | None, size: int, where: str = "clip") -> Tensor:
    """``[T, 3, H, W]`` -> ``[T, 3, size, size]``: the box (default: the centred square), resized."""
    height, width = frames.shape[-2:]
    if box is None:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        box = (left, top, left + side, top + side)
    left, top, right, bottom = box
    if right > width or bottom > height:
        raise DataError(f"{where}: crop box {list(box)} lies outside the {width}x{height} frames")
    crop = frames[..., top:bottom, left:right]
    if crop.shape[-2:] == (size, size):
        return crop.contiguous()
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def read_clip(path: str | os.PathLike, size: int, box: Box | None = None, max_frames: int | None = None) -> Tensor:
    """Decode, crop and resize one clip: ``[T, 3, size, size]`` float in [0, 1]; DataError names a bad file."""
    from imaginate.engine.video import read_mp4

    path = Path(path)
    if not path.is_file():
        raise DataError(f"video file {path} does not exist")
    try:
        frames = read_mp4(path, max_frames=max_frames)
    except ImportError:
        raise
    except Exception as error:  # PyAV raises many types for corrupt input (InvalidDataError, EOFError, ...)
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"video file {path} cannot be decoded: {message}") from error
    return crop_and_resize(frames, box, size, where=f"video file {path}")


class VideoFolder(Dataset):
    """Talking-head clips under ``root``; item i is a (source, driving) pair of frames of one clip.

    Args:
        root: the folder of ``.mp4`` clips (any nesting).
        size: frames are cropped and resized to ``size`` x ``size``.
        crops: a crop box file; default: ``root/crops.json`` or ``root/crops.csv`` when present.
        max_frames: decode at most this many frames per clip (None: all).
        pairs_per_clip: items per clip and epoch (each a random frame pair).
        seed: the seed of the frame pairs (item i always gives the same pair).
        cache_clips: keep decoded clips in memory as uint8 (fine for small folders / sizes).
    """

    def __init__(self, root: str | os.PathLike, size: int, crops: str | os.PathLike | None = None,
                 max_frames: int | None = None, pairs_per_clip: int = 1, seed: int = 0,
                 cache_clips: bool = True) -> None:
        if size < 8:
            raise ValueError(f"size must be >= 8, got {size}")
        if pairs_per_clip < 1:
            raise ValueError(f"pairs_per_clip must be >= 1, got {pairs_per_clip}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"video folder {self.root} does not exist: pass a folder of .mp4 clips")
        self.clips = list_clips(self.root)
        if not self.clips:
            raise DataError(f"video folder {self.root} holds no .mp4 clips")
        if crops is None:
            crops = next((self.root / name for name in CROP_FILES if (self.root / name).is_file()), None)
        self.crops_file = None if crops is None else Path(crops)
        self.boxes = {} if crops is None else read_crop_boxes(crops)
        known = {self.key(path) for path in self.clips}
        unknown = sorted(set(self.boxes) - known)
        if unknown:
            raise DataError(f"crop box file {self.crops_file} names {unknown[0]!r}, which is not a clip under {self.root}")
        self.size, self.max_frames = size, max_frames
        self.pairs_per_clip, self.seed = pairs_per_clip, seed
        self._cache: dict[int, tuple[Tensor, float]] | None = {} if cache_clips else None

    def key(self, path: Path) -> str:
        """A clip's key in the crop box file: its path relative to root, with ``/``."""
        return path.relative_to(self.root).as_posix()

    def identity(self, index: int) -> str:
        parts = self.clips[index].relative_to(self.root).parts
        return parts[0] if len(parts) > 1 else Path(parts[0]).stem

    def clip(self, index: int) -> VideoClip:
        """Clip ``index`` decoded, cropped and resized (cached as uint8 when ``cache_clips``)."""
        from imaginate.engine.video import mp4_fps

        path = self.clips[index]
        if self._cache is not None and index in self._cache:
            stored, fps = self._cache[index]
            frames = stored.float() / 255
        else:
            box = self.boxes.get(self.key(path))
            try:
                frames = read_clip(path, self.size, box, self.max_frames)
            except DataError as error:
                if box is None or "crop box" not in str(error):
                    raise
                raise DataError(f"{error} (the box comes from crop box file {self.crops_file})") from None
            fps = mp4_fps(path)
            if self._cache is not None:
                self._cache[index] = ((frames * 255).round().to(torch.uint8), fps)
                frames = self._cache[index][0].float() / 255
        return VideoClip(frames=frames, path=path, identity=self.identity(index), fps=fps)

    def __len__(self) -> int:
        return len(self.clips) * self.pairs_per_clip

    def __getitem__(self, item: int) -> dict[str, Tensor]:
        """``{"source": [3, S, S], "driving": [3, S, S], "clip": []}``: two frames of one clip."""
        index = item // self.pairs_per_clip
        frames = self.clip(index).frames
        rng = np.random.default_rng([self.seed, item])
        source, driving = rng.integers(0, frames.shape[0], 2)
        return {"source": frames[source], "driving": frames[driving], "clip": torch.tensor(index)}
