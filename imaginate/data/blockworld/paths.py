"""Camera paths that go out and come back, for measuring long-term consistency.

Every path is built from a list of *distinct* poses and then revisits some of them: the frames on
the way back reuse the very same ``PinholeCamera`` objects as the frames on the way out, so their
poses are identical bit for bit. ``revisit_pairs(cameras)`` lists the ``(t_out, t_back)`` frame
pairs that share a pose.

- ``out_and_back``: fly along a gently curving line, then retrace it in reverse (the camera backs
  up, keeping its orientation); frame ``t`` and frame ``T - 1 - t`` share a pose.
- ``loop``: circle around a small closed loop, looking roughly one way (a sway of the heading), and
  go round again for the last quarter of the frames.
- ``revisit``: fly a straight segment, detour sideways while turning to look at something else,
  come back to the segment's start and fly the segment again.

The camera flies ``clearance`` blocks above the highest ground within two columns, climbing
smoothly before obstacles, looking along its heading and ``pitch`` (rise over run) downwards.
A path is drawn at random (by ``seed``) until every distinct pose passes ``is_valid_view`` at a
small test size; after ``max_tries`` draws the draw with the most valid views is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from imaginate.data.blockworld.camera import (
    DEFAULT_FOV,
    PinholeCamera,
    _envelope,
    _ground,
    _local_max,
    is_valid_view,
    view_statistics,
)
from imaginate.data.blockworld.raycast import ray_voxel_intersections
from imaginate.data.blockworld.world import BlockWorld

# (xs [P], zs [P], headings [P]) of the distinct poses, from a generator and the world's size
_Layout = tuple[np.ndarray, np.ndarray, np.ndarray]


def _cameras(world: BlockWorld, xs: np.ndarray, zs: np.ndarray, headings: np.ndarray, width: int,
             height: int, fov_deg: float, clearance: float, pitch: float, closed: bool) -> list[PinholeCamera]:
    """One camera per ``(x, z, heading)``, flying above the ground and looking along its heading."""
    size_x, _, size_z = world.shape
    xs, zs = np.clip(xs, 1.0, size_x - 1.0), np.clip(zs, 1.0, size_z - 1.0)
    altitude = _envelope(_local_max(_ground(world), xs, zs, 2) + clearance, slope=0.5, closed=closed)
    cameras = []
    for x, z, a, h in zip(xs, zs, altitude, headings):
        target = (x + math.cos(h), a + pitch, z + math.sin(h))
        cameras.append(PinholeCamera.from_look_at((x, a, z), target, width, height, fov_deg))
    return cameras


def _count_valid(world: BlockWorld, cameras: list[PinholeCamera], check_size: int) -> int:
    valid = 0
    for camera in cameras:
        check_height = max(1, round(check_size * camera.height / camera.width))
        origins, directions = camera.resized(check_size, check_height).rays(device=world.device)
        hits = ray_voxel_intersections(world.blocks, origins, directions, max_hits=1)
        valid += is_valid_view(view_statistics(hits))
    return valid


def _draw(world: BlockWorld, layout: Callable[[np.random.Generator], _Layout], width: int, height: int,
          seed: int, fov_deg: float, clearance: float, pitch: float, closed: bool, max_tries: int,
          check_size: int = 24) -> list[PinholeCamera]:
    """Draw layouts until every pose is a valid view; the best draw after ``max_tries``."""
    rng = np.random.default_rng(seed)
    best: tuple[int, list[PinholeCamera]] = (-1, [])
    for _ in range(max_tries):
        cameras = _cameras(world, *layout(rng), width, height, fov_deg, clearance, pitch, closed)
        valid = _count_valid(world, cameras, check_size)
        if valid == len(cameras):
            return cameras
        if valid > best[0]:
            best = (valid, cameras)
    return best[1]


def _start(rng: np.random.Generator, world: BlockWorld, margin: float) -> tuple[float, float, float]:
    """A random position at least ``margin`` (a fraction) inside the border, and a random heading."""
    size_x, _, size_z = world.shape
    x = rng.uniform(margin * size_x, (1 - margin) * size_x)
    z = rng.uniform(margin * size_z, (1 - margin) * size_z)
    return x, z, rng.uniform(0, 2 * math.pi)


def _check(num_frames: int, least: int) -> None:
    if num_frames < least:
        raise ValueError(f"num_frames must be at least {least}, got {num_frames}")


def out_and_back(world: BlockWorld, num_frames: int, width: int, height: int, seed: int = 0,
                 fov_deg: float = DEFAULT_FOV, step: float = 0.6, clearance: float = 3.0,
                 pitch: float = -0.3, max_tries: int = 20) -> list[PinholeCamera]:
    """Out along a gently curving line and back along it in reverse: frames ``t`` and
    ``num_frames - 1 - t`` share a pose (for even ``num_frames`` the turning pose is shown twice).

    Args:
        world: the world.
        num_frames: ``T`` >= 2.
        width: image width.
        height: image height.
        seed: picks the start, heading and curvature.
        fov_deg: horizontal field of view.
        step: distance between consecutive poses, in blocks.
        clearance: height above the highest ground within two columns.
        pitch: downward slope of the viewing direction (rise over run).
        max_tries: path draws before keeping the one with the most valid views.
    """
    _check(num_frames, 2)
    distinct = (num_frames + 1) // 2

    def layout(rng: np.random.Generator) -> _Layout:
        x, z, heading = _start(rng, world, 0.2)
        headings = heading + rng.uniform(-0.04, 0.04) * np.arange(distinct)  # [P] gentle curve
        xs = x + step * np.concatenate([[0.0], np.cumsum(np.cos(headings[:-1]))])
        zs = z + step * np.concatenate([[0.0], np.cumsum(np.sin(headings[:-1]))])
        return xs, zs, headings

    poses = _draw(world, layout, width, height, seed, fov_deg, clearance, pitch, False, max_tries)
    back = poses[::-1] if num_frames % 2 == 0 else poses[-2::-1]
    return poses + back


def loop(world: BlockWorld, num_frames: int, width: int, height: int, seed: int = 0,
         fov_deg: float = DEFAULT_FOV, step: float = 0.6, sway: float = 0.35, clearance: float = 3.0,
         pitch: float = -0.3, max_tries: int = 20) -> list[PinholeCamera]:
    """Round a small closed loop once, looking roughly one way (heading sways by ``sway`` radians),
    then round it again for the last ``max(1, T // 4)`` frames: frame ``t`` and ``t + P`` share a
    pose, where ``P = T - max(1, T // 4)`` is the loop's length in frames.

    Args:
        world: the world.
        num_frames: ``T`` >= 3.
        width, height: image size.
        seed: picks the loop's centre, direction of travel and heading.
        fov_deg: horizontal field of view.
        step: distance between consecutive poses, in blocks (sets the loop's radius).
        sway: amplitude of the heading's swing around the loop, radians.
        clearance, pitch, max_tries: as in ``out_and_back``.
    """
    _check(num_frames, 3)
    repeat = max(1, num_frames // 4)
    distinct = num_frames - repeat
    radius = step * distinct / (2 * math.pi)

    def layout(rng: np.random.Generator) -> _Layout:
        x, z, heading = _start(rng, world, 0.2)
        direction = rng.choice([-1.0, 1.0])
        angle = rng.uniform(0, 2 * math.pi) + direction * 2 * math.pi * np.arange(distinct) / distinct
        xs, zs = x + radius * np.cos(angle), z + radius * np.sin(angle)
        headings = heading + sway * np.sin(2 * math.pi * np.arange(distinct) / distinct)
        return xs, zs, headings

    poses = _draw(world, layout, width, height, seed, fov_deg, clearance, pitch, True, max_tries)
    return poses + poses[:repeat]


def revisit(world: BlockWorld, num_frames: int, width: int, height: int, seed: int = 0,
            fov_deg: float = DEFAULT_FOV, step: float = 0.6, turn: float = 1.2, offset: float = 3.0,
            clearance: float = 3.0, pitch: float = -0.3, max_tries: int = 20) -> list[PinholeCamera]:
    """Revisit after a detour: a straight segment of ``A = max(2, T // 4)`` frames, a detour that
    swings ``offset`` blocks sideways while the heading turns up to ``turn`` radians away and back,
    returning to the segment's start, then the segment again: frame ``t < A`` and ``T - A + t``
    share a pose.

    Args:
        world: the world.
        num_frames: ``T`` >= 6.
        width, height: image size.
        seed: picks the segment, the side of the detour and the direction of the turn.
        fov_deg: horizontal field of view.
        step: distance between consecutive poses on the segment, in blocks.
        turn: the largest heading change during the detour, radians.
        offset: how far the detour swings sideways, in blocks.
        clearance, pitch, max_tries: as in ``out_and_back``.
    """
    _check(num_frames, 6)
    segment = max(2, num_frames // 4)
    detour = num_frames - 2 * segment

    def layout(rng: np.random.Generator) -> _Layout:
        x, z, heading = _start(rng, world, 0.25)
        forward = np.array([math.cos(heading), math.sin(heading)])
        side = np.array([-forward[1], forward[0]]) * rng.choice([-1.0, 1.0])
        s = np.arange(segment) * step
        seg = np.array([x, z]) + s[:, None] * forward  # [A, 2]
        # detour: from one step past the segment's end back to its start, bulging sideways
        u = (np.arange(detour) + 1) / (detour + 1)  # (0, 1)
        along = (segment * step) * (1 - u)  # runs back from the end (one step past it) to the start
        bulge = offset * np.sin(math.pi * u)
        path = np.array([x, z]) + along[:, None] * forward + bulge[:, None] * side  # [D, 2]
        headings = np.concatenate([np.full(segment, heading),
                                   heading + rng.choice([-1.0, 1.0]) * turn * np.sin(math.pi * u)])
        points = np.concatenate([seg, path])
        return points[:, 0], points[:, 1], headings

    poses = _draw(world, layout, width, height, seed, fov_deg, clearance, pitch, True, max_tries)
    return poses + poses[:segment]


CAMERA_PATHS: dict[str, Callable[..., list[PinholeCamera]]] = {
    "out_and_back": out_and_back, "loop": loop, "revisit": revisit,
}


def camera_path(name: str, world: BlockWorld, num_frames: int, width: int, height: int,
                seed: int = 0) -> list[PinholeCamera]:
    """The path ``name`` (one of ``CAMERA_PATHS``) with default shape parameters."""
    if name not in CAMERA_PATHS:
        raise ValueError(f"unknown camera path {name!r}; choose one of {', '.join(CAMERA_PATHS)}")
    return CAMERA_PATHS[name](world, num_frames, width, height, seed)


def revisit_pairs(cameras: list[PinholeCamera]) -> list[tuple[int, int]]:
    """``(t_out, t_back)`` pairs, ``t_out < t_back``, of frames at identical poses (same intrinsics
    and the same ``world_to_camera``), in order of ``t_back``."""
    pairs = []
    for t_back, back in enumerate(cameras):
        for t_out in range(t_back):
            out = cameras[t_out]
            if out is back or (out.width == back.width and out.height == back.height
                               and bool((out.world_to_camera == back.world_to_camera).all())
                               and bool((out.intrinsics == back.intrinsics).all())):
                pairs.append((t_out, t_back))
                break  # the first earlier frame at that pose
    return pairs
