"""Object proposals for weakly supervised detection: Selective Search, a sliding-window fallback, a cache.

wetectron never computes proposals: it reads Selective Search (VOC) or MCG (COCO) boxes from
files. Offline we compute them: Selective Search through OpenCV's contrib module
(``pip install opencv-contrib-python-headless``, imported only when used), or, when that is not
installed, a dense grid of sliding windows (lower recall per box: check with proposal_recall).
``ProposalCache`` computes each image's boxes once and stores them as ``.npy`` files, which load
without pickle. Boxes here are continuous xyxy pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from imaginate.data.proposal_files import first_unique_rows
from imaginate.metrics.detection import box_iou

logger = logging.getLogger(__name__)

PROPOSAL_METHODS = ("auto", "selective_search", "sliding_window")
SELECTIVE_SEARCH_MODES = ("fast", "quality", "single")
OPENCV_CONTRIB_HINT = "pip install opencv-contrib-python-headless"
# sliding-window defaults: about 1,800 windows, recall@0.5 ~0.94 on random boxes of 10-60% of the image
DEFAULT_SCALES = (0.15, 0.25, 0.35, 0.5, 0.7, 0.9)
DEFAULT_ASPECT_RATIOS = (0.5, 0.75, 1.0, 1.5, 2.0)
# OpenCV ranks Selective Search's regions by level x std::rand(), so its boxes (their order, and which
# duplicates survive) depend on every rand() call the process made before. Seeding the C library's
# generator right before each search makes the boxes a function of the image alone.
RANKING_SEED = 0
_ranking_lock = threading.Lock()


@functools.cache
def _c_srand():
    """The C library's ``srand`` (the generator OpenCV's ranking draws from), or None where not found."""
    import ctypes
    import ctypes.util

    for name in (None, ctypes.util.find_library("c"), "msvcrt"):
        try:
            return ctypes.CDLL(name).srand
        except (OSError, AttributeError, TypeError):
            continue
    logger.warning("proposals: the C library's srand was not found: Selective Search boxes are not reproducible")
    return None


def _as_hwc_uint8(image: np.ndarray | Tensor) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {array.dtype} {list(array.shape)}")
    return array


@functools.cache
def opencv_contrib_available() -> bool:
    """Whether ``cv2.ximgproc.segmentation`` (OpenCV contrib) can be imported."""
    try:
        import cv2
    except ImportError:
        return False
    return hasattr(cv2, "ximgproc") and hasattr(cv2.ximgproc, "segmentation")


def selective_search(image: np.ndarray | Tensor, mode: str = "fast", max_proposals: int = 2000) -> Tensor:
    """Selective Search proposals through ``cv2.ximgproc.segmentation``.

    Args:
        image: [H, W, 3] uint8 RGB.
        mode: "fast" or "quality" (the strategies of Uijlings et al.) or "single" (one strategy).
        max_proposals: keep the first boxes in OpenCV's ranking.

    The ranking's random draws are seeded (``RANKING_SEED``) before each search, so the same image
    gives the same boxes in the same order whatever ran before it in the process.

    Returns:
        [P, 4] float32 xyxy, P <= max_proposals.

    Raises:
        ImportError: OpenCV with the contrib modules is not installed.
    """
    if mode not in SELECTIVE_SEARCH_MODES:
        raise ValueError(f"mode must be one of {', '.join(SELECTIVE_SEARCH_MODES)}, got {mode!r}")
    pixels = _as_hwc_uint8(image)
    try:
        import cv2

        create = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation
    except (ImportError, AttributeError) as e:
        raise ImportError(f"selective_search needs OpenCV's contrib modules: {OPENCV_CONTRIB_HINT}") from e
    search = create()
    search.setBaseImage(np.ascontiguousarray(pixels[:, :, ::-1]))  # OpenCV wants BGR
    {
        "fast": search.switchToSelectiveSearchFast,
        "quality": search.switchToSelectiveSearchQuality,
        "single": search.switchToSingleStrategy,
    }[mode]()
    srand = _c_srand()
    with _ranking_lock:
        if srand is not None:
            srand(RANKING_SEED)
        found = search.process()
    rects = np.asarray(found, dtype=np.float32).reshape(-1, 4)[:max_proposals]  # [P, 4] x, y, w, h
    boxes = torch.from_numpy(rects.copy())
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def sliding_window_proposals(
    height: int,
    width: int,
    scales: Sequence[float] = DEFAULT_SCALES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    stride_fraction: float = 0.5,
) -> Tensor:
    """A dense grid of windows over the image, plus the whole image (the fallback proposals).

    A window of scale s and aspect ratio a (height / width) has area (s * min(H, W))^2, clipped to
    the image; windows step by ``stride_fraction`` of their size, and the last one in each row and
    column touches the image border, so every scale covers every pixel.

    Args:
        height: image height in pixels.
        width: image width in pixels.
        scales: window sides as fractions of the shorter image side, in (0, 1].
        aspect_ratios: window height / width ratios, > 0.
        stride_fraction: the step between windows as a fraction of the window size, in (0, 1].

    Returns:
        [P, 4] float32 xyxy inside [0, W] x [0, H], without duplicates.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise ValueError(f"scales must be non-empty and in (0, 1], got {list(scales)}")
    if not aspect_ratios or any(a <= 0 for a in aspect_ratios):
        raise ValueError(f"aspect_ratios must be non-empty and positive, got {list(aspect_ratios)}")
    if not 0 < stride_fraction <= 1:
        raise ValueError(f"stride_fraction must be in (0, 1], got {stride_fraction}")

    def starts(extent: float, size: float) -> list[float]:
        step = max(stride_fraction * size, 1.0)
        count = math.floor((extent - size) / step + 1e-9)
        return sorted({k * step for k in range(count + 1)} | {extent - size})

    boxes = [[0.0, 0.0, float(width), float(height)]]
    for scale in scales:
        side = scale * min(height, width)
        for ratio in aspect_ratios:
            w, h = min(side / math.sqrt(ratio), width), min(side * math.sqrt(ratio), height)
            boxes += [[x, y, x + w, y + h] for y in starts(height, h) for x in starts(width, w)]
    grid = torch.tensor(boxes, dtype=torch.float32)  # [P, 4]
    return grid[first_unique_rows(grid)]


@dataclass(frozen=True)
class ProposalParams:
    """How proposals are computed (part of the cache key).

    Args:
        max_proposals: the most boxes per image (Selective Search keeps its first boxes; the
            sliding-window grid is subsampled evenly).
        mode: the Selective Search strategy, "fast", "quality" or "single".
        scales: sliding-window sides as fractions of the shorter image side.
        aspect_ratios: sliding-window height / width ratios.
        stride_fraction: sliding-window step as a fraction of the window size.
    """

    max_proposals: int = 2000
    mode: str = "fast"
    scales: tuple[float, ...] = DEFAULT_SCALES
    aspect_ratios: tuple[float, ...] = DEFAULT_ASPECT_RATIOS
    stride_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.max_proposals <= 0:
            raise ValueError(f"max_proposals must be positive, got {self.max_proposals}")
        if self.mode not in SELECTIVE_SEARCH_MODES:
            raise ValueError(f"mode must be one of {', '.join(SELECTIVE_SEARCH_MODES)}, got {self.mode!r}")


_announced: set[str] = set()  # the "auto" choice is logged once per process


def resolve_proposal_method(method: str = "auto") -> str:
    """``"auto"`` becomes "selective_search" when OpenCV contrib imports, else "sliding_window".

    The choice for "auto" is logged (logger ``imaginate.systems.wsod.proposals``, INFO) once.
    """
    if method not in PROPOSAL_METHODS:
        raise ValueError(f"proposal method must be one of {', '.join(PROPOSAL_METHODS)}, got {method!r}")
    if method != "auto":
        return method
    resolved = "selective_search" if opencv_contrib_available() else "sliding_window"
    if resolved not in _announced:
        _announced.add(resolved)
        reason = (
            "OpenCV contrib found"
            if resolved == "selective_search"
            else f"no OpenCV contrib: {OPENCV_CONTRIB_HINT}"
        )
        logger.info("proposals: %s (%s)", resolved, reason)
    return resolved


def compute_proposals(
    image: np.ndarray | Tensor, method: str = "auto", params: ProposalParams | None = None
) -> Tensor:
    """Proposals for one image by the named method ("auto" picks as resolve_proposal_method says).

    Args:
        image: [H, W, 3] uint8 RGB.
        method: "auto", "selective_search" or "sliding_window".
        params: the methods' settings (defaults: ProposalParams()).

    Returns:
        [P, 4] float32 xyxy, P <= params.max_proposals.
    """
    params = params or ProposalParams()
    pixels = _as_hwc_uint8(image)
    if resolve_proposal_method(method) == "selective_search":
        return selective_search(pixels, params.mode, params.max_proposals)
    boxes = sliding_window_proposals(
        pixels.shape[0], pixels.shape[1], params.scales, params.aspect_ratios, params.stride_fraction
    )
    if boxes.shape[0] > params.max_proposals:
        boxes = boxes[torch.linspace(0, boxes.shape[0] - 1, params.max_proposals).round().long()]
    return boxes


class ProposalCache:
    """Computes each image's proposals once and keeps them in ``folder`` as ``.npy`` files.

    A file is named by the image id, the resolved method and a hash of (image id, image size,
    method, params, the image's content fingerprint), so changing any of them computes afresh. The
    fingerprint is a hash of the decoded pixels plus a ``source`` string (the data set's folder):
    two folders holding different images under the same ids (VOC's ``000005`` in a copy, an edited
    image) never share proposals. Files are written atomically
    (temporary file, then rename) and read with ``np.load(allow_pickle=False)``; an unreadable
    file is recomputed. ``method`` holds the resolved method; ``hits`` and ``misses`` count lookups.

    Args:
        folder: where the files go (created if missing).
        method: "auto", "selective_search" or "sliding_window" ("auto" is resolved here, once).
        params: the methods' settings.
    """

    def __init__(self, folder: str, method: str = "auto", params: ProposalParams | None = None) -> None:
        self.folder = folder
        self.method = resolve_proposal_method(method)
        self.params = params or ProposalParams()
        self.hits = 0
        self.misses = 0
        os.makedirs(folder, exist_ok=True)

    @staticmethod
    def fingerprint(image: np.ndarray | Tensor, source: str = "") -> str:
        """The content part of the key: ``source`` and a SHA-256 of the [H, W, 3] uint8 pixels."""
        pixels = np.ascontiguousarray(_as_hwc_uint8(image))
        return f"{source}|{hashlib.sha256(pixels.tobytes()).hexdigest()[:32]}"

    def path(self, image_id: int | str, height: int, width: int, fingerprint: str = "") -> str:
        key = json.dumps(
            {
                "id": str(image_id),
                "size": [height, width],
                "method": self.method,
                "content": fingerprint,
                "ranking_seed": RANKING_SEED,  # files from before the seeded ranking are recomputed
                **dataclasses.asdict(self.params),
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", str(image_id))[:64]
        return os.path.join(self.folder, f"{safe_id}-{self.method}-{digest}.npy")

    def get(self, image_id: int | str, image: np.ndarray | Tensor, source: str = "") -> Tensor:
        """The proposals of one image: [P, 4] float32 xyxy, from the folder or computed and stored.

        Args:
            image_id: the image's id in its data set.
            image: [H, W, 3] uint8 RGB (its size and a hash of its pixels are part of the key).
            source: where the image comes from (e.g. the data set's folder), part of the key.
        """
        pixels = _as_hwc_uint8(image)
        path = self.path(image_id, pixels.shape[0], pixels.shape[1], self.fingerprint(pixels, source))
        if os.path.exists(path):
            try:
                stored = np.load(path, allow_pickle=False)
                self.hits += 1
                return torch.from_numpy(stored.astype(np.float32).reshape(-1, 4))
            except (OSError, ValueError) as e:
                logger.warning("proposal cache %s unreadable (%s): recomputing", path, e)
        self.misses += 1
        boxes = compute_proposals(pixels, self.method, self.params)
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".npy.tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                np.save(f, boxes.numpy().astype(np.float32))
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return boxes


def proposal_recall(
    proposals: Tensor | Sequence[Tensor], gt_boxes: Tensor | Sequence[Tensor], iou: float = 0.5
) -> float:
    """The fraction of ground-truth boxes that some proposal overlaps with IoU >= ``iou``.

    Args:
        proposals: [P, 4] boxes of one image, or one such tensor per image.
        gt_boxes: [M, 4] boxes of the same image, or one such tensor per image.
        iou: the overlap a proposal needs to recall a box.

    Returns:
        recall over all ground-truth boxes of all images (nan when there are none).
    """
    if isinstance(proposals, Tensor) != isinstance(gt_boxes, Tensor):
        raise ValueError("pass one image's proposals and boxes, or a sequence of both")
    pairs = [(proposals, gt_boxes)] if isinstance(proposals, Tensor) else list(zip(proposals, gt_boxes))
    if not isinstance(proposals, Tensor) and len(proposals) != len(gt_boxes):
        raise ValueError(f"{len(proposals)} images of proposals but {len(gt_boxes)} of boxes")
    found = total = 0
    for boxes, truth in pairs:
        truth = truth.reshape(-1, 4)
        total += truth.shape[0]
        if truth.shape[0] and boxes.numel():
            found += int(
                (box_iou(boxes.reshape(-1, 4).double(), truth.double()).max(dim=0).values >= iou).sum()
            )
    return found / total if total else math.nan
