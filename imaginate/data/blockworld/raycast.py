"""Ray-voxel intersection: the first N non-air blocks along each ray.

``ray_voxel_intersections`` is a vectorised Amanatides-Woo traversal (DDA) in PyTorch: every ray
advances by a window of its next plane crossings (8 voxels) per iteration, all rays at once, so the
Python loop runs over DDA steps (at most (X + Y + Z) / 8 + 2 of them), never over rays; rays that are
done drop out of the working set. It runs on any
device. ``ray_voxel_intersections_reference`` is the slow, obviously-correct version the tests
compare it to: a slab test of every non-air voxel against each ray, sorted by depth.

Conventions (both functions). Block ``(i, j, k)`` is the cube ``[i, i+1) x [j, j+1) x [k, k+1)``.
Depths are ray parameters ``t`` (the point is ``origin + t * direction``; with unit directions, as
cameras make them, ``t`` is the distance in blocks). A ray hits a block when its segment inside the
cube is longer than a tolerance of a few ulps (``_tolerance``): a ray through a voxel edge or
corner does not hit the blocks it only touches, and a ray lying in a face plane belongs to the
blocks on the plane's positive side. A ray that starts inside a solid block hits it at depth
``near`` with a zero normal. The normal of a hit is the outward normal of the face the ray enters
through. The reference CUDA kernel (imaginaire's voxlib) instead skips the block that holds the
origin and reports NaN for misses; here misses are id -1, voxel -1 and depth +inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

TOLERANCE_ULPS = 64.0
WINDOW = 8  # plane crossings per loop step of ray_voxel_intersections


@dataclass
class RayHits:
    """The first ``N`` hits of each ray, nearest first; ``...`` is the rays' batch shape.

    Attributes:
        block_ids: ``[..., N]`` int64 block ids, -1 where there is no ``n``-th hit.
        voxels: ``[..., N, 3]`` int64 ``(x, y, z)`` indices of the hit blocks, -1 where none.
        entry_depth: ``[..., N]`` depth where the ray enters the block, +inf where none.
        exit_depth: ``[..., N]`` depth where it leaves the block, +inf where none.
        normals: ``[..., N, 3]`` outward normal of the entry face (0 when the ray starts inside
            the block or there is no hit).
    """

    block_ids: Tensor
    voxels: Tensor
    entry_depth: Tensor
    exit_depth: Tensor
    normals: Tensor

    @property
    def hit(self) -> Tensor:
        """``[..., N]`` bool: whether the ``n``-th hit exists."""
        return self.block_ids >= 0

    def first(self) -> RayHits:
        """Only the nearest hit (``N`` = 1)."""
        return RayHits(
            self.block_ids[..., :1], self.voxels[..., :1, :], self.entry_depth[..., :1],
            self.exit_depth[..., :1], self.normals[..., :1, :],
        )

    def to(self, device: torch.device | str) -> RayHits:
        """The same hits on ``device``."""
        return RayHits(*(t.to(device) for t in (
            self.block_ids, self.voxels, self.entry_depth, self.exit_depth, self.normals)))

    def reshape(self, *shape: int) -> RayHits:
        """The same hits with batch shape ``shape`` (e.g. ``(H, W)``)."""
        n = self.block_ids.shape[-1]
        return RayHits(
            self.block_ids.reshape(*shape, n), self.voxels.reshape(*shape, n, 3),
            self.entry_depth.reshape(*shape, n), self.exit_depth.reshape(*shape, n),
            self.normals.reshape(*shape, n, 3),
        )


def _tolerance(t: Tensor) -> Tensor:
    """The length below which a ray segment counts as a touch, not a hit: a few ulps of ``t``."""
    return TOLERANCE_ULPS * torch.finfo(t.dtype).eps * t.abs().clamp(min=1.0)


def _flatten_rays(
    blocks: Tensor, origins: Tensor, directions: Tensor
) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    if blocks.ndim != 3:
        raise ValueError(f"blocks must be [X, Y, Z], got shape {tuple(blocks.shape)}")
    if origins.shape[-1] != 3 or directions.shape[-1] != 3:
        shapes = f"{tuple(origins.shape)}, {tuple(directions.shape)}"
        raise ValueError(f"origins and directions must be [..., 3], got {shapes}")
    origins, directions = torch.broadcast_tensors(origins, directions)
    dtype = directions.dtype if directions.dtype.is_floating_point else torch.get_default_dtype()
    batch = tuple(origins.shape[:-1])
    o = origins.reshape(-1, 3).to(device=blocks.device, dtype=dtype)  # [R, 3]
    d = directions.reshape(-1, 3).to(device=blocks.device, dtype=dtype)  # [R, 3]
    if not bool(torch.isfinite(o).all() and torch.isfinite(d).all()):
        raise ValueError("origins and directions must be finite")
    if bool((d == 0).all(dim=-1).any()):
        raise ValueError("every direction must be non-zero")
    return o, d, batch


def _empty_hits(num_rays: int, max_hits: int, dtype: torch.dtype, device: torch.device) -> RayHits:
    return RayHits(
        torch.full((num_rays, max_hits), -1, dtype=torch.long, device=device),
        torch.full((num_rays, max_hits, 3), -1, dtype=torch.long, device=device),
        torch.full((num_rays, max_hits), math.inf, dtype=dtype, device=device),
        torch.full((num_rays, max_hits), math.inf, dtype=dtype, device=device),
        torch.zeros((num_rays, max_hits, 3), dtype=dtype, device=device),
    )


def _slabs(lower: Tensor, upper: Tensor, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit ``t`` of rays against axis-aligned slabs ``lower <= p < upper``, per axis.

    Shapes broadcast: ``lower``/``upper`` ``[..., 3]``, ``o``/``d`` ``[..., 3]``. A ray parallel to
    a slab (``d = 0``) is inside it for all ``t`` when ``lower <= o < upper``, never otherwise.
    """
    parallel = d == 0
    safe_d = torch.where(parallel, torch.ones_like(d), d)
    t_lower = (lower - o) / safe_d
    t_upper = (upper - o) / safe_d
    entry = torch.minimum(t_lower, t_upper)
    leave = torch.maximum(t_lower, t_upper)
    inside = (o >= lower) & (o < upper)
    inf = torch.full_like(entry, math.inf)
    entry = torch.where(parallel, torch.where(inside, -inf, inf), entry)
    leave = torch.where(parallel, torch.where(inside, inf, -inf), leave)
    return entry, leave


def _entry_normal(entry_per_axis: Tensor, d: Tensor, near: Tensor) -> Tensor:
    """``[R, 3]`` outward normal of the face a ray enters through: the axis whose slab it enters
    last, or 0 when ``near`` is at least every axis's entry (the ray starts inside)."""
    last = entry_per_axis.amax(dim=-1)  # [R]
    axis = ((entry_per_axis == last[:, None]).long().cumsum(dim=-1) == 0).sum(dim=-1)  # [R] the first max (x, y, z)
    normal = torch.zeros_like(d)
    sign = -torch.sign(d.gather(-1, axis[:, None]))  # [R, 1]
    normal.scatter_(-1, axis[:, None], sign)
    return torch.where((last > near)[:, None], normal, torch.zeros_like(normal))


@dataclass
class _March:
    """The rays that cross the grid, clipped to it and packed for marching (both DDAs start from this).

    ``state_f`` [A, 8] floats: origin, direction, t_cur (entry depth of the current voxel), t_end;
    ``state_i`` [A, 9] ints: ray id, voxel (x, y, z), hits so far, entry face axis (-1 = started inside),
    step (-1, 0, +1 per axis). ``out`` holds every ray's (empty) hits; ``batch`` the rays' batch shape.
    """

    out: RayHits
    batch: tuple[int, ...]
    state_f: Tensor
    state_i: Tensor
    size: Tensor  # [3] int64 grid size
    blocks_flat: Tensor
    strides: Tensor  # [3] int64


def _start_march(blocks: Tensor, origins: Tensor, directions: Tensor, max_hits: int, near: float,
                 far: float) -> _March:
    if max_hits < 1:
        raise ValueError(f"max_hits must be at least 1, got {max_hits}")
    if not math.isfinite(near) or far <= near:
        raise ValueError(f"need a finite near < far, got near={near}, far={far}")
    o, d, batch = _flatten_rays(blocks, origins, directions)  # [R, 3] each
    num_rays, dtype, device = o.shape[0], d.dtype, blocks.device
    out = _empty_hits(num_rays, max_hits, dtype, device)
    size = torch.tensor(blocks.shape, device=device)  # [3] int64
    strides = torch.tensor([blocks.shape[1] * blocks.shape[2], blocks.shape[2], 1], device=device)  # [3]

    # Clip every ray to the grid's box; its traversal starts where it enters (or at ``near``).
    box_entry, box_exit = _slabs(torch.zeros_like(o), size.to(dtype).expand_as(o), o, d)  # [R, 3] each
    near_t = torch.full((num_rays,), float(near), dtype=dtype, device=device)
    t_cur = torch.maximum(box_entry.amax(dim=-1), near_t)  # [R] depth where the current voxel is entered
    t_end = torch.minimum(box_exit.amin(dim=-1), torch.full_like(t_cur, float(far)))  # [R]
    start = t_end - t_cur > _tolerance(t_cur)  # [R] rays that cross the box at all

    # The voxel holding the start point: a point on a face plane belongs to the voxel the ray moves
    # into. Rounding at the box can put it one voxel outside; clamping fixes that (a wrong guess
    # next to a face costs a zero-length step, never a hit).
    point = o + t_cur.clamp(max=torch.finfo(dtype).max)[:, None] * d  # [R, 3]
    voxel = torch.where(d < 0, torch.ceil(point) - 1, torch.floor(point))
    voxel = torch.minimum(voxel.clamp(min=0), (size - 1).to(dtype)).long()  # [R, 3]
    _, entry_axis = box_entry.max(dim=-1)  # [R]
    axis = torch.where(box_entry.amax(dim=-1) > near_t, entry_axis, -1)  # [R] entry face axis, -1 = none

    # Packed so that dropping finished rays is two gathers.
    state_f = torch.cat([o, d, t_cur[:, None], t_end[:, None]], dim=-1)[start]
    state_i = torch.cat([torch.arange(num_rays, device=device)[:, None], voxel, torch.zeros_like(axis)[:, None],
                         axis[:, None], torch.sign(d).long()], dim=-1)[start]
    return _March(out, batch, state_f, state_i, size, blocks.reshape(-1), strides)


@torch.no_grad()
def ray_voxel_intersections(
    blocks: Tensor,
    origins: Tensor,
    directions: Tensor,
    max_hits: int = 6,
    near: float = 0.0,
    far: float = math.inf,
    window: int = WINDOW,
) -> RayHits:
    """The first ``max_hits`` non-air blocks along each ray (vectorised windowed DDA).

    Each loop step advances every marching ray by its next ``window`` plane crossings at once: the next
    ``window`` crossing depths on each axis (``(plane - origin) / direction``, the same expression the
    brute-force reference evaluates for each voxel's faces) are merged by one sort, giving ``window``
    voxels and their entry / exit depths; their block ids are gathered together and the solid ones with
    a segment longer than the tolerance are recorded in order. Planes are crossed one at a time (of tied
    planes z first and x last, so the entry face is the reference's first maximum; the voxels between
    tied planes get zero-length segments), so every voxel's segment is
    ``[max of its entry planes, min of its exit planes]`` exactly as the reference computes it and the two
    agree on every segment, even those within an ulp of the tolerance (rays ~1e-13 off edges).

    Args:
        blocks: ``[X, Y, Z]`` integer block ids, 0 = air (a ``BlockWorld.blocks``); rays run on
            its device.
        origins: ``[..., 3]`` ray origins in world (= voxel) coordinates; may lie outside the grid.
        directions: ``[..., 3]`` non-zero ray directions (broadcast against ``origins``); their
            floating dtype is the dtype of the depths.
        max_hits: ``N``, the number of hits to return per ray.
        near: hits start at this depth.
        far: hits end at this depth.
        window: plane crossings per loop step (1 = the classic one-voxel step).

    Returns:
        ``RayHits`` with batch shape ``...``.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    march = _start_march(blocks, origins, directions, max_hits, near, far)
    out, size, blocks_flat, strides = march.out, march.size, march.blocks_flat, march.strides
    state_f, state_i = march.state_f, march.state_i
    dtype, device = state_f.dtype, blocks.device
    k = window
    n = torch.arange(k, device=device, dtype=dtype)  # [K] (integers, exact in float)
    axes = torch.arange(3, device=device)  # [3]
    strides32 = strides.to(torch.int32)
    inf = torch.tensor(math.inf, dtype=dtype, device=device)

    for _ in range(int(size.sum()) // k + 2):  # each step crosses k planes, each plane moves one index
        if state_i.shape[0] == 0:
            break
        o, d, t_cur, t_end = state_f[:, 0:3], state_f[:, 3:6], state_f[:, 6], state_f[:, 7]
        ray, voxel, count = state_i[:, 0], state_i[:, 1:4], state_i[:, 4]
        axis, step = state_i[:, 5], state_i[:, 6:9]
        marching = ray.shape[0]
        # The next k planes on each axis: [A, 3, K]; axes the ray is parallel to never cross.
        first = (voxel + (step > 0).long()).to(dtype)  # [A, 3] the far face of the current voxel
        planes = first[:, :, None] + step.to(dtype)[:, :, None] * n  # [A, 3, K] integer plane coordinates
        moving = step != 0  # [A, 3]
        t_planes = (planes - o[:, :, None]) / torch.where(moving, d, 1.0)[:, :, None]
        t_planes = torch.where(moving[:, :, None], t_planes, inf).flip(1)  # axes z, y, x: ties cross x last
        crossing, order = t_planes.reshape(marching, 3 * k).sort(dim=-1, stable=True)
        crossing = crossing[:, :k]  # [A, K] the next k crossings
        crossed_axis = 2 - (order[:, :k] >= k).long() - (order[:, :k] >= 2 * k).long()  # [A, K] 0, 1, 2 = x, y, z
        # Segment j (0..K-1): the voxel after j crossings, from crossing j-1 (t_cur for j = 0) to crossing j.
        step32 = step.to(torch.int32)
        moves = (crossed_axis[:, :, None] == axes).to(torch.int32) * step32[:, None, :]  # [A, K, 3] crossing j's move
        voxels = voxel.to(torch.int32)[:, None, :] + moves.cumsum(dim=1, dtype=torch.int32) - moves  # [A, K, 3]
        entry = torch.cat([t_cur[:, None], crossing[:, :-1]], dim=1)  # [A, K]
        tol = _tolerance(entry)  # [A, K]
        leave = torch.minimum(crossing, t_end[:, None])  # [A, K]
        entry_axis = torch.cat([axis[:, None], crossed_axis[:, :-1]], dim=1)  # [A, K] -1 = started inside
        inside = ((voxels >= 0) & (voxels < size)).all(dim=-1)  # [A, K]
        live = inside & (t_end[:, None] - entry > tol)  # [A, K] still before the ray's end
        live = live.cumprod(dim=1, dtype=torch.uint8).bool()  # a segment after a dead one is dead
        index = (voxels.clamp(min=0) * strides32).sum(dim=-1).clamp(max=blocks_flat.numel() - 1)  # [A, K] int64
        block = blocks_flat[index].long()  # [A, K]
        record = live & (block != 0) & (leave - entry > tol)  # [A, K]
        slot = count[:, None] + record.long().cumsum(dim=1) - 1  # [A, K] hit number of each record
        record &= slot < max_hits
        sel_ray, sel_seg = torch.nonzero(record, as_tuple=True)  # [P]
        if sel_ray.numel() > 0:
            r, h = ray[sel_ray], slot[sel_ray, sel_seg]
            a = entry_axis[sel_ray, sel_seg]  # [P] entry face axis, -1 = started inside (zero normal)
            sign = -step[sel_ray].gather(-1, a.clamp(min=0)[:, None])[:, 0] * (a >= 0)  # [P]
            out.block_ids[r, h] = block[sel_ray, sel_seg]
            out.voxels[r, h] = voxels[sel_ray, sel_seg].long()
            out.entry_depth[r, h] = entry[sel_ray, sel_seg]
            out.exit_depth[r, h] = leave[sel_ray, sel_seg]
            out.normals[r, h, a.clamp(min=0)] = sign.to(dtype)
        count += record.long().sum(dim=1)
        # Advance past all k crossings.
        voxel += moves.sum(dim=1)
        state_f[:, 6] = crossing[:, -1]
        axis.copy_(crossed_axis[:, -1])
        t_new = crossing[:, -1]
        keep = live[:, -1] & ((voxel >= 0) & (voxel < size)).all(dim=-1) & (count < max_hits) \
            & (t_end - t_new > _tolerance(t_new))  # [A]
        if not bool(keep.all()):
            kept = torch.nonzero(keep).squeeze(1)
            state_f, state_i = state_f.index_select(0, kept), state_i.index_select(0, kept)
    return out.reshape(*march.batch)


@torch.no_grad()
def ray_voxel_intersections_stepwise(
    blocks: Tensor,
    origins: Tensor,
    directions: Tensor,
    max_hits: int = 6,
    near: float = 0.0,
    far: float = math.inf,
) -> RayHits:
    """The previous DDA, one voxel per loop step, crossing planes closer than the tolerance together; kept
    for ``benchmarks/raycast_speed.py``. It can skip a segment within an ulp of the tolerance that the
    reference counts (rays ~1e-13 off voxel edges); ``ray_voxel_intersections`` does not.

    Args:
        blocks: ``[X, Y, Z]`` integer block ids, 0 = air (a ``BlockWorld.blocks``); rays run on
            its device.
        origins: ``[..., 3]`` ray origins in world (= voxel) coordinates; may lie outside the grid.
        directions: ``[..., 3]`` non-zero ray directions (broadcast against ``origins``); their
            floating dtype is the dtype of the depths.
        max_hits: ``N``, the number of hits to return per ray.
        near: hits start at this depth.
        far: hits end at this depth.

    Returns:
        ``RayHits`` with batch shape ``...``.
    """
    march = _start_march(blocks, origins, directions, max_hits, near, far)
    out, size, blocks_flat, strides = march.out, march.size, march.blocks_flat, march.strides
    state_f, state_i = march.state_f, march.state_i
    dtype, device = state_f.dtype, blocks.device
    inf = torch.tensor(math.inf, dtype=dtype, device=device)

    for _ in range(int(size.sum()) + 1):  # each step moves at least one index by one
        if state_i.shape[0] == 0:
            break
        o, d, t_cur, t_end = state_f[:, 0:3], state_f[:, 3:6], state_f[:, 6], state_f[:, 7]
        ray, voxel, count = state_i[:, 0], state_i[:, 1:4], state_i[:, 4]
        axis, step = state_i[:, 5], state_i[:, 6:9]
        # t of the next plane crossing on each axis: the far face of the current voxel.
        plane = (voxel + (step > 0).long()).to(dtype)  # [A, 3]
        t_next = torch.where(step == 0, inf, (plane - o) / torch.where(step == 0, 1.0, d))  # [A, 3]
        t_leave = t_next.amin(dim=-1)  # [A] where the ray leaves the current voxel
        t_exit = torch.minimum(t_leave, t_end)  # [A]

        # Record a hit when the voxel is solid and the ray spends more than a touch in it.
        block = blocks_flat[(voxel * strides).sum(dim=-1)].long()  # [A]
        record = (block != 0) & (t_exit - t_cur > _tolerance(t_cur))  # [A]
        sel = torch.nonzero(record).squeeze(1)  # [K] marching rays that record a hit now
        if sel.numel() > 0:
            r, n = ray[sel], count[sel]
            a = axis[sel]  # [K] entry face axis, -1 = started inside (zero normal)
            sign = -step[sel].gather(-1, a.clamp(min=0)[:, None])[:, 0] * (a >= 0)  # [K]
            out.block_ids[r, n] = block[sel]
            out.voxels[r, n] = voxel[sel]
            out.entry_depth[r, n] = t_cur[sel]
            out.exit_depth[r, n] = t_exit[sel]
            out.normals[r, n, a.clamp(min=0)] = sign.to(dtype)
            count += record.long()

        # Cross every plane within a tolerance of the nearest (edges and corners in one step); the
        # new voxel is entered through the last plane crossed.
        crossed = t_next <= (t_leave + _tolerance(t_leave))[:, None]  # [A, 3]
        voxel += torch.where(crossed, step, 0)
        t_new, axis_new = torch.where(crossed, t_next, -inf).max(dim=-1)  # [A]
        state_f[:, 6] = t_new
        axis.copy_(axis_new)

        inside = ((voxel >= 0) & (voxel < size)).all(dim=-1)
        keep = inside & (count < max_hits) & (t_end - t_new > _tolerance(t_new))  # [A]
        if not bool(keep.all()):
            kept = torch.nonzero(keep).squeeze(1)
            state_f, state_i = state_f.index_select(0, kept), state_i.index_select(0, kept)
    return out.reshape(*march.batch)


@torch.no_grad()
def ray_voxel_intersections_reference(
    blocks: Tensor,
    origins: Tensor,
    directions: Tensor,
    max_hits: int = 6,
    near: float = 0.0,
    far: float = math.inf,
) -> RayHits:
    """The same result as ``ray_voxel_intersections``, by brute force: one ray at a time, a slab
    test against every non-air voxel, hits sorted by entry depth. Slow; for tests."""
    o_all, d_all, batch = _flatten_rays(blocks, origins, directions)  # [R, 3]
    num_rays, dtype, device = o_all.shape[0], d_all.dtype, blocks.device
    out = _empty_hits(num_rays, max_hits, dtype, device)
    solid = torch.nonzero(blocks != 0)  # [V, 3] voxel indices
    ids = blocks[solid[:, 0], solid[:, 1], solid[:, 2]].long()  # [V]
    corner = solid.to(dtype)  # [V, 3]
    for r in range(num_rays):
        o, d = o_all[r].expand_as(corner), d_all[r].expand_as(corner)  # [V, 3]
        entry_axes, leave_axes = _slabs(corner, corner + 1, o, d)  # [V, 3] each
        near_t = torch.full((len(solid),), float(near), dtype=dtype, device=device)
        entry = torch.maximum(entry_axes.amax(dim=-1), near_t)  # [V]
        leave = torch.minimum(leave_axes.amin(dim=-1), torch.full_like(entry, float(far)))  # [V]
        hit = leave - entry > _tolerance(entry)
        order = torch.argsort(entry[hit])[:max_hits]
        k = len(order)
        out.block_ids[r, :k] = ids[hit][order]
        out.voxels[r, :k] = solid[hit][order]
        out.entry_depth[r, :k] = entry[hit][order]
        out.exit_depth[r, :k] = leave[hit][order]
        out.normals[r, :k] = _entry_normal(entry_axes[hit][order], d[hit][order], near_t[hit][order])
    return out.reshape(*batch)
