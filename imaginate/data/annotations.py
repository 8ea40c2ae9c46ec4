"""Simulated annotator input drawn from instance masks: a click inside an object, a scribble along it.

``skeleton_scribble`` imitates a person who strokes along an object's middle: the visible mask is
thinned to its skeleton (``skimage.morphology.skeletonize``), the longest path on the skeleton's
8-connected pixel graph is found (two breadth-first searches: the farthest pixel from any pixel,
then the farthest from that one), a contiguous piece of it covering ``coverage`` of its length at a
random offset is kept (the path first prolonged at both ends along its direction while it stays
in the mask: a medial axis stops short of an elongated object's ends, a stroke does not), and every ``spacing``-th pixel becomes a vertex, placed at the pixel centre
with a small jitter that keeps it inside the pixel (so every vertex lies in the mask). All draws come
from the caller's numpy Generator (seeded, no global state).
"""

from __future__ import annotations

from collections import deque

import numpy as np

_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _farthest(start: tuple[int, int], pixels: set[tuple[int, int]]) -> tuple[tuple[int, int], dict]:
    """Breadth-first search over 8-connected ``pixels`` from ``start``: (the last pixel reached, parents)."""
    parents: dict[tuple[int, int], tuple[int, int] | None] = {start: None}
    queue, last = deque([start]), start
    while queue:
        last = queue.popleft()
        for dy, dx in _NEIGHBOURS:
            nxt = (last[0] + dy, last[1] + dx)
            if nxt in pixels and nxt not in parents:
                parents[nxt] = last
                queue.append(nxt)
    return last, parents


def skeleton_path(mask: np.ndarray) -> np.ndarray:
    """[L, 2] (row, col) pixels of the longest path on the skeleton of a non-empty [H, W] bool mask
    (of its largest skeleton piece reached from the first skeleton pixel; L >= 1)."""
    from skimage.morphology import skeletonize

    skeleton = skeletonize(mask)
    rows, cols = np.nonzero(skeleton)
    if rows.size == 0:  # a mask too thin to thin: its own pixels
        rows, cols = np.nonzero(mask)
    pixels = set(zip(rows.tolist(), cols.tolist()))
    end_a, _ = _farthest((int(rows[0]), int(cols[0])), pixels)
    end_b, parents = _farthest(end_a, pixels)
    path, node = [], end_b
    while node is not None:
        path.append(node)
        node = parents[node]
    path = _extend(_extend(path, mask)[::-1], mask)  # both ends, as far as the mask goes
    return np.asarray(path, dtype=np.int64)


def _extend(path: list[tuple[int, int]], mask: np.ndarray, lookback: int = 4) -> list[tuple[int, int]]:
    """Prolong a pixel path beyond its last pixel in the direction of its last ``lookback`` steps while
    the pixels stay in the mask (a medial axis stops short of the object's ends; a stroke does not)."""
    if len(path) < 2:
        return list(path)
    (y0, x0), (y1, x1) = path[-1 - min(lookback, len(path) - 1)], path[-1]
    norm = max(float(np.hypot(y1 - y0, x1 - x0)), 1e-6)
    dy, dx = (y1 - y0) / norm, (x1 - x0) / norm
    out, step = list(path), 1
    while True:
        y, x = int(round(y1 + step * dy)), int(round(x1 + step * dx))
        if not (0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]) or not mask[y, x]:
            return out
        if (y, x) != out[-1]:
            out.append((y, x))
        step += 1


def skeleton_scribble(
    rng: np.random.Generator,
    mask: np.ndarray,
    coverage: tuple[float, float] = (0.7, 0.95),
    spacing: int = 3,
) -> np.ndarray:
    """[M, 2] float32 (x, y) vertices (M >= 2) of a scribble along the skeleton of a [H, W] bool mask.

    Args:
        rng: the source of every draw.
        mask: the object's visible mask (non-empty).
        coverage: (low, high) share of the skeleton's longest path the stroke covers, drawn uniformly.
        spacing: pixels of the path between vertices.
    """
    if not mask.any():
        raise ValueError("skeleton_scribble needs a non-empty mask")
    path = skeleton_path(mask)  # [L, 2] (row, col)
    length = path.shape[0]
    if length >= 2:
        take = max(2, int(round(rng.uniform(*coverage) * length)))
        start = int(rng.integers(0, length - take + 1))
        piece = path[start:start + take]
        chosen = piece[::spacing]
        if (chosen[-1] != piece[-1]).any():
            chosen = np.vstack([chosen, piece[-1:]])
    else:  # a single skeleton pixel: two clicks in the mask instead
        rows, cols = np.nonzero(mask)
        picks = rng.choice(rows.size, size=2, replace=rows.size < 2)
        chosen = np.stack([rows[picks], cols[picks]], axis=1)
    jitter = rng.uniform(0.25, 0.75, size=chosen.shape)  # inside the pixel
    xy = np.stack([chosen[:, 1] + jitter[:, 1], chosen[:, 0] + jitter[:, 0]], axis=1)
    return xy.astype(np.float32)
