"""GANcraft's sparse voxel feature field: corner features, trilinear interpolation, ray sampling and
volume rendering.

Corners. Block ``(i, j, k)`` fills ``[i, i+1) x [j, j+1) x [k, k+1)`` (``imaginate.data.blockworld``),
so its 8 corners are the integer points ``(i + dx, j + dy, k + dz)``, ``dx, dy, dz`` in {0, 1}. The 8
corners of a voxel are ordered ``c = 4 dx + 2 dy + dz`` everywhere in this module. Every corner that
touches a solid (non-air) block owns one row of a learnable ``[K, D]`` table (the reference
``McVoxel.corner_t`` / ``blk_feats``); the feature at a point inside a solid block is the trilinear
interpolation of its block's 8 corner features, so neighbouring blocks share features on their common
face and the field is continuous across blocks.

Fast path and reference. ``VoxelCornerFeatures`` gathers 8 rows per point and blends them with
``trilinear_interpolate``. The reference, ``trilinear_reference``, builds the dense corner grid
(``VoxelCornerFeatures.dense_grid``: zeros at corners that touch no solid block) and samples it with
``torch.nn.functional.grid_sample(align_corners=True)``; the two agree wherever the point's block is
solid (tests compare them in float64).

Sampling (reference ``mc_utils.sample_depth_batched``). Per ray, the hit blocks from
``ray_voxel_intersections`` are laid end to end, skipping the air between them; the resulting
"inside distance" is truncated at ``truncate`` world units (voxel lengths) from the first entry, split
into ``S`` equal strata and sampled once per stratum (uniformly when training, at the stratum centre
when deterministic). Every sample therefore lies inside a hit block; each carries the stratum length as
its ``delta``. Rays that hit nothing get no valid samples.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.data.blockworld import AIR, BlockWorld, RayHits

# [8, 3] (dx, dy, dz) of corner c = 4 dx + 2 dy + dz.
CORNER_OFFSETS = torch.tensor(list(itertools.product((0, 1), repeat=3)), dtype=torch.long)


# --------------------------------------------------------------------------------------------
# Corner features
# --------------------------------------------------------------------------------------------


def corner_occupancy(blocks: Tensor) -> Tensor:
    """``[X+1, Y+1, Z+1]`` bool: the corners that touch at least one solid block of ``blocks [X, Y, Z]``."""
    solid = blocks != AIR
    x, y, z = solid.shape
    occupied = torch.zeros((x + 1, y + 1, z + 1), dtype=torch.bool, device=blocks.device)
    for dx, dy, dz in CORNER_OFFSETS.tolist():
        occupied[dx:dx + x, dy:dy + y, dz:dz + z] |= solid
    return occupied


def trilinear_interpolate(corner_features: Tensor, local: Tensor) -> Tensor:
    """Trilinear blend of 8 corner values.

    Args:
        corner_features: ``[N, 8, D]`` values at corners ``c = 4 dx + 2 dy + dz``.
        local: ``[N, 3]`` position inside the unit cube, each coordinate in [0, 1].

    Returns:
        ``[N, D]``; at corner ``(dx, dy, dz)`` exactly that corner's value.
    """
    x, y, z = local.unbind(dim=-1)  # [N] each
    wx = torch.stack([1 - x, x], dim=-1)  # [N, 2] weight of dx = 0, 1
    wy = torch.stack([1 - y, y], dim=-1)
    wz = torch.stack([1 - z, z], dim=-1)
    weights = (wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]).reshape(-1, 8)  # [N, 8]
    return torch.einsum("nc,ncd->nd", weights, corner_features)


def trilinear_reference(grid: Tensor, points: Tensor) -> Tensor:
    """Plain reference: sample a dense corner grid with ``grid_sample(align_corners=True)``.

    Args:
        grid: ``[D, X+1, Y+1, Z+1]`` values at the integer points ``0..X`` x ``0..Y`` x ``0..Z``.
        points: ``[N, 3]`` world coordinates inside the grid's box ``[0, X] x [0, Y] x [0, Z]``.

    Returns:
        ``[N, D]`` trilinearly interpolated values.
    """
    extent = torch.tensor(grid.shape[1:], dtype=points.dtype, device=points.device) - 1  # [3] X, Y, Z
    normalised = 2 * points / extent - 1  # [N, 3] in [-1, 1]; -1 = index 0, +1 = last index
    # grid_sample's last grid axis is (W, H, D) = our (Z, Y, X).
    sample_at = normalised[:, [2, 1, 0]].reshape(1, 1, 1, -1, 3)
    values = F.grid_sample(grid[None], sample_at, mode="bilinear", align_corners=True)  # [1, D, 1, 1, N]
    return values.reshape(grid.shape[0], -1).T


class VoxelCornerFeatures(nn.Module):
    """A learnable feature on every voxel corner that touches a solid block.

    Attributes:
        corner_index: ``[X+1, Y+1, Z+1]`` int32 buffer (not saved: it is rebuilt from the world), the row
            of ``features`` of each corner, -1 for corners that touch no solid block.
        features: ``[K, D]`` parameter, initialised U(-1, 1) as in the reference.

    Args:
        world: a ``BlockWorld`` or its ``[X, Y, Z]`` integer block grid (0 = air).
        dims: ``D``, the feature length (64 in the paper).
    """

    def __init__(self, world: BlockWorld | Tensor, dims: int) -> None:
        super().__init__()
        if dims < 1:
            raise ValueError(f"dims must be positive, got {dims}")
        blocks = world.blocks if isinstance(world, BlockWorld) else torch.as_tensor(world)
        if blocks.ndim != 3:
            raise ValueError(f"blocks must be [X, Y, Z], got shape {tuple(blocks.shape)}")
        occupied = corner_occupancy(blocks)
        count = int(occupied.sum())
        index = torch.full(occupied.shape, -1, dtype=torch.int32, device=blocks.device)
        index[occupied] = torch.arange(count, dtype=torch.int32, device=blocks.device)  # C order
        self.register_buffer("corner_index", index, persistent=False)
        self.features = nn.Parameter(torch.empty(count, dims, device=blocks.device).uniform_(-1.0, 1.0))

    @property
    def num_corners(self) -> int:
        """``K``, the number of corners with a feature."""
        return int(self.features.shape[0])

    @property
    def dims(self) -> int:
        return int(self.features.shape[1])

    def corner_rows(self, voxels: Tensor) -> Tensor:
        """``voxels [N, 3]`` int64 block indices -> ``[N, 8]`` int64 feature rows, -1 where the corner
        has no feature (it touches no solid block, or lies outside the grid)."""
        size = torch.tensor(self.corner_index.shape, device=voxels.device)  # [3] X+1, Y+1, Z+1
        corners = voxels[:, None, :] + CORNER_OFFSETS.to(voxels.device)  # [N, 8, 3]
        inside = ((corners >= 0) & (corners < size)).all(dim=-1)  # [N, 8]
        corners = torch.minimum(corners.clamp(min=0), size - 1)
        flat = (corners[..., 0] * size[1] + corners[..., 1]) * size[2] + corners[..., 2]  # [N, 8]
        rows = self.corner_index.reshape(-1)[flat].long()
        return torch.where(inside, rows, -1)

    def corner_features(self, voxels: Tensor) -> Tensor:
        """``voxels [N, 3]`` int64 -> ``[N, 8, D]`` corner features (zeros where a corner has none)."""
        rows = self.corner_rows(voxels)  # [N, 8]
        gathered = self.features[rows.clamp(min=0)]  # [N, 8, D]
        return gathered * (rows >= 0)[..., None].to(gathered.dtype)

    def forward(self, points: Tensor, voxels: Tensor) -> Tensor:
        """Features at ``points [N, 3]`` (world coordinates) inside blocks ``voxels [N, 3]`` -> ``[N, D]``.

        The local coordinate ``points - voxels`` is clamped to [0, 1] (it leaves the cube only by
        rounding); gradients flow to ``features``, not to the points.
        """
        local = (points - voxels.to(points.dtype)).clamp(0.0, 1.0)  # [N, 3]
        return trilinear_interpolate(self.corner_features(voxels), local.to(self.features.dtype))

    def dense_grid(self) -> Tensor:
        """``[D, X+1, Y+1, Z+1]``: the features on the full corner grid, zeros where a corner has
        none (differentiable; the input of ``trilinear_reference``)."""
        occupied = self.corner_index.reshape(-1) >= 0  # [P]
        flat = self.features.new_zeros(occupied.numel(), self.dims)  # [P, D]
        flat = flat.index_put((torch.nonzero(occupied).squeeze(1),), self.features)
        return flat.T.reshape(self.dims, *self.corner_index.shape)


# --------------------------------------------------------------------------------------------
# Positional encoding
# --------------------------------------------------------------------------------------------


def positional_encoding(x: Tensor, num_freqs: int, include_input: bool = False) -> Tensor:
    """NeRF's encoding ``[sin(pi 2^0 x), cos(pi 2^0 x), ..., sin(pi 2^(F-1) x), cos(...)]`` (+ ``x``).

    Args:
        x: ``[..., C]``.
        num_freqs: ``F`` octaves.
        include_input: append ``x`` itself.

    Returns:
        ``[..., 2 F C]`` (``[..., (2 F + 1) C]`` with the input), grouped by frequency then sin/cos.
    """
    freqs = math.pi * 2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)  # [F]
    angles = x[..., None, :] * freqs[:, None]  # [..., F, C]
    encoded = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)  # [..., 2FC]
    return torch.cat([encoded, x], dim=-1) if include_input else encoded


# --------------------------------------------------------------------------------------------
# Sampling along the hits, and volume rendering
# --------------------------------------------------------------------------------------------


@dataclass
class RaySamples:
    """Samples along ``R`` rays, ``S`` per ray.

    Attributes:
        depth: ``[R, S]`` ray parameter ``t`` of each sample (the point is ``origin + t * direction``),
            0 where invalid.
        delta: ``[R, S]`` length in world units that each sample stands for (its stratum), 0 where
            invalid; the valid deltas of a ray sum to ``min(inside length of its hits, truncate)``.
        hit_index: ``[R, S]`` int64 which of the ray's hits holds the sample (0 where invalid).
        valid: ``[R, S]`` bool, False on rays that hit nothing.
    """

    depth: Tensor
    delta: Tensor
    hit_index: Tensor
    valid: Tensor


def sample_in_hits(
    hits: RayHits,
    directions: Tensor,
    num_samples: int,
    truncate: float,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> RaySamples:
    """Stratified samples inside the hit blocks of each ray, truncated at ``truncate`` world units of
    travel inside blocks (counted from the first entry, air gaps skipped). No gradient.

    Args:
        hits: ``RayHits`` with batch shape ``[R]`` (entry/exit ``[R, N]``).
        directions: ``[R, 3]`` ray directions (any length; distances are measured in world units).
        num_samples: ``S``.
        truncate: the maximum inside length to sample, in voxel lengths (> 0; 3 in the paper).
        deterministic: stratum centres instead of uniform samples in each stratum.
        generator: random generator of the stratified offsets.
    """
    with torch.no_grad():
        hit = hits.hit  # [R, N]
        dtype = directions.dtype
        entry = hits.entry_depth.to(dtype)
        speed = directions.norm(dim=-1, keepdim=True)  # [R, 1] world units per unit t
        length = torch.where(hit, (hits.exit_depth.to(dtype) - entry).clamp(min=0) * speed, 0.0)  # [R, N]
        end = length.cumsum(dim=-1)  # [R, N] inside distance at each hit's exit
        start = end - length  # [R, N] inside distance at each hit's entry
        total = end[:, -1:].clamp(max=truncate)  # [R, 1]
        rays = entry.shape[0]
        strata = torch.arange(num_samples, dtype=dtype, device=entry.device)  # [S]
        if deterministic:
            offsets = torch.full((rays, num_samples), 0.5, dtype=dtype, device=entry.device)
        else:
            offsets = torch.rand((rays, num_samples), generator=generator, dtype=dtype, device=entry.device)
        inside = (strata + offsets) / num_samples * total  # [R, S] inside distance of each sample
        last_hit = (hit.sum(dim=-1, keepdim=True) - 1).clamp(min=0)  # [R, 1]
        index = torch.searchsorted(end.contiguous(), inside.contiguous(), right=True)
        index = torch.minimum(index, last_hit)  # [R, S] rounding at the very end stays in the last hit
        valid = (total > 0).expand(-1, num_samples)  # [R, S]
        depth = entry.gather(1, index) + (inside - start.gather(1, index)) / speed
        depth = torch.minimum(depth, hits.exit_depth.to(dtype).gather(1, index))  # rounding
        zero = torch.zeros_like(depth)
        return RaySamples(
            depth=torch.where(valid, depth, zero),
            delta=torch.where(valid, (total / num_samples).expand(-1, num_samples), zero),
            hit_index=torch.where(valid, index, 0),
            valid=valid,
        )


def volume_render_weights(sigma: Tensor, delta: Tensor) -> Tensor:
    """Compositing weights ``w_s = T_s (1 - exp(-sigma_s delta_s))``, ``T_s = exp(-sum_{r<s} sigma_r delta_r)``.

    Args:
        sigma: ``[..., S]`` non-negative densities, nearest sample first.
        delta: ``[..., S]`` non-negative lengths (0 for masked samples).

    Returns:
        ``[..., S]`` weights in [0, 1] with ``sum = 1 - exp(-sum sigma delta) <= 1``.
    """
    tau = sigma * delta  # [..., S] optical thickness of each sample
    alpha = 1 - torch.exp(-tau)
    before = torch.cat([torch.zeros_like(tau[..., :1]), tau[..., :-1]], dim=-1).cumsum(dim=-1)  # exclusive
    return alpha * torch.exp(-before)


def volume_render_weights_reference(sigma: Tensor, delta: Tensor) -> Tensor:
    """Plain reference of ``volume_render_weights``: a loop with ``T <- T (1 - alpha)``."""
    alpha = 1 - torch.exp(-sigma * delta)
    transmittance = torch.ones_like(alpha[..., 0])
    weights = []
    for s in range(alpha.shape[-1]):
        weights.append(transmittance * alpha[..., s])
        transmittance = transmittance * (1 - alpha[..., s])
    return torch.stack(weights, dim=-1)


def hits_from_depths(block_ids: Tensor, depths: Tensor, origins: Tensor, directions: Tensor) -> RayHits:
    """``RayHits`` from the reference's ray-caster layout (block ids and entry/exit depths only).

    Args:
        block_ids: ``[..., N]`` block ids, 0 or negative where there is no hit (the reference uses 0).
        depths: ``[..., N, 2]`` entry and exit depths, NaN or inf where there is no hit.
        origins: ``[..., 3]`` ray origins.
        directions: ``[..., 3]`` ray directions (the depths are ray parameters ``t``).

    Returns:
        ``RayHits`` with the same batch shape; each hit's voxel is the block holding the midpoint of its
        entry and exit, normals are zero.
    """
    entry, leave = depths[..., 0], depths[..., 1]
    hit = (block_ids > 0) & torch.isfinite(entry) & torch.isfinite(leave)  # [..., N]
    inf = torch.full_like(entry, math.inf)
    middle = torch.where(hit, (entry + leave) / 2, 0.0)  # [..., N]
    points = origins[..., None, :] + middle[..., None] * directions[..., None, :]  # [..., N, 3]
    voxels = torch.where(hit[..., None], torch.floor(points).long(), -1)
    return RayHits(
        block_ids=torch.where(hit, block_ids.long(), -1),
        voxels=voxels,
        entry_depth=torch.where(hit, entry, inf),
        exit_depth=torch.where(hit, leave, inf),
        normals=torch.zeros_like(points),
    )
