"""How GANcraft is measured: view consistency along a camera path and offline realism statistics.

- ``surface_keys``: for each pixel, the world surface point it sees, as an integer key: the first-hit
  voxel, the face it enters through and a ``cells x cells`` cell on that face (-1 for sky).
- ``cross_view_std``: for surface cells seen in at least two frames, the standard deviation across
  frames of the cell's mean colour in each frame, averaged over cells (in [0, 1] colour units; lower is
  more view-consistent). Colour variation *within* a cell in one frame (texture) is not counted.
- ``ColourStatistics``: a fixed, untrained feature map (per-channel mean and standard deviation at two
  scales, mean absolute gradients, a coarse brightness CDF, a saturation proxy): 19 numbers per image. No
  pretrained network for landscapes is available offline, so "FID" and "KID" here are Fréchet / kernel
  distances in this small statistics space, labelled as such; they are NOT comparable with Inception FIDs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.data.blockworld import RayHits

COLOUR_FEATURES_NAME = "colour statistics, not Inception"


def surface_keys(hits: RayHits, origins: Tensor, directions: Tensor, cells: int = 4) -> Tensor:
    """``[..., H, W]`` int64 key of the surface cell each pixel sees (-1 where the ray misses or starts
    inside a block).

    Args:
        hits: first hits with batch ``[..., H, W]`` (only hit 0 is used).
        origins / directions: ``[..., H, W, 3]`` the rays of ``hits``.
        cells: each block face is split into ``cells x cells`` cells.
    """
    ids = hits.block_ids[..., 0]  # [..., H, W]
    voxels = hits.voxels[..., 0, :]  # [..., H, W, 3]
    normals = hits.normals[..., 0, :].round().long()  # [..., H, W, 3]
    depth = hits.entry_depth[..., 0].to(origins.dtype)
    valid = (ids >= 0) & (normals.abs().sum(-1) == 1)
    points = origins + torch.where(valid, depth, torch.zeros_like(depth))[..., None] * directions
    local = (points - voxels.to(points.dtype)).clamp(0, 1 - 1e-6)  # [..., 3] position inside the block
    axis = normals.abs().argmax(-1)  # [...] 0, 1, 2
    face = axis * 2 + (normals.sum(-1) > 0).long()  # [...] 0..5
    # the two in-face coordinates: the axes other than the normal's
    other = torch.stack([(axis + 1) % 3, (axis + 2) % 3], dim=-1)  # [..., 2]
    uv = (torch.gather(local, -1, other) * cells).long()  # [..., 2]
    big = 1 << 12  # voxel coordinates below 4096
    key = ((voxels[..., 0] * big + voxels[..., 1]) * big + voxels[..., 2]) * 6 + face
    key = (key * cells + uv[..., 0]) * cells + uv[..., 1]
    return torch.where(valid, key, torch.full_like(key, -1))


def cross_view_std(images: Tensor, keys: Tensor, min_views: int = 2) -> tuple[float, float, int]:
    """Mean over surface cells of the standard deviation of the cell's colour across frames.

    Args:
        images: ``[T, 3, H, W]`` frames in [0, 1].
        keys: ``[T, H, W]`` surface keys (``surface_keys``); -1 pixels are ignored.
        min_views: cells seen in fewer frames are ignored.

    Returns:
        ``(mean std, contrast, number of cells used)``; the std is the root of the mean over RGB channels
        of the (population) variance of the per-frame cell means; ``contrast`` is the same statistic
        across cells of their all-frame means (how much the surface colours differ at all: a constant
        image is perfectly "consistent", so report ``std / contrast`` beside ``std``).
    """
    frames = images.shape[0]
    colours = images.permute(0, 2, 3, 1).reshape(-1, 3).double()  # [T*H*W, 3]
    flat = keys.reshape(-1)
    frame = torch.arange(frames).repeat_interleave(keys[0].numel())
    keep = flat >= 0
    cell_ids, cell = torch.unique(flat[keep], return_inverse=True)  # [K], [P]
    pairs = cell * frames + frame[keep]  # [P] (cell, frame) index
    count = torch.bincount(pairs, minlength=len(cell_ids) * frames).double()  # [K*T]
    sums = torch.zeros(len(cell_ids) * frames, 3, dtype=torch.float64).index_add_(0, pairs, colours[keep])
    seen = (count > 0).view(-1, frames)  # [K, T]
    means = (sums / count.clamp(min=1)[:, None]).view(-1, frames, 3)  # [K, T, 3]
    views = seen.sum(1)  # [K]
    used = views >= min_views
    if not bool(used.any()):
        return float("nan"), float("nan"), 0
    w = seen[used].double()[..., None]  # [K', T, 1]
    m = means[used]
    centre = (m * w).sum(1) / w.sum(1)  # [K', 3]
    variance = ((m - centre[:, None]) ** 2 * w).sum(1) / w.sum(1)  # [K', 3]
    spread = ((centre - centre.mean(0)) ** 2).mean(0).mean().sqrt()  # across cells
    return float(variance.mean(-1).sqrt().mean()), float(spread), int(used.sum())


class ColourStatistics(nn.Module):
    """Images ``[N, 3, H, W]`` in [0, 1] -> ``[N, 19]`` fixed colour / texture statistics (no weights)."""

    name = COLOUR_FEATURES_NAME

    def forward(self, images: Tensor) -> Tensor:
        x = images.float()
        small = F.avg_pool2d(x, 4) if min(x.shape[-2:]) >= 8 else x
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(2, 3))  # [N, 3]
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(2, 3))
        brightness = x.mean(1).flatten(1)  # [N, P]
        edges = torch.linspace(0, 1, 5, device=x.device)[1:-1]
        histogram = torch.stack([(brightness < e).float().mean(1) for e in edges], dim=1)  # [N, 3] CDF
        parts = [x.mean(dim=(2, 3)), x.std(dim=(2, 3)), small.std(dim=(2, 3)), dx, dy, histogram,
                 (x.max(1).values - x.min(1).values).mean(dim=(1, 2))[:, None]]  # saturation proxy
        return torch.cat(parts, dim=1)
