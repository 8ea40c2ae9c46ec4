"""Pinhole cameras over block worlds: intrinsics, look-at poses, rays, projection and trajectories.

Conventions. World coordinates are the block grid's (``world.py``: Y up, one unit per block).
Camera coordinates are OpenCV's: x right, y down, z forward (the viewing direction). Pixel
coordinates are continuous ``(u, v)`` = (column, row) with pixel ``(row i, column j)`` covering
``[j, j+1) x [i, i+1)``, so its centre is ``(j + 0.5, i + 0.5)``. Intrinsics ``K`` map camera
coordinates to pixels; ``world_to_camera`` is a rigid ``[4, 4]`` transform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from imaginate.data.blockworld.raycast import RayHits, ray_voxel_intersections
from imaginate.data.blockworld.world import BlockWorld

DEFAULT_FOV = 73.0  # horizontal field of view in degrees, the reference's "about 24 mm"


def intrinsics_from_fov(fov_deg: float, width: int, height: int) -> Tensor:
    """``[3, 3]`` float64 ``K`` with square pixels, the principal point at the image centre and
    horizontal field of view ``fov_deg`` (0 < fov < 180)."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must lie in (0, 180), got {fov_deg}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    rows = [[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]]
    return torch.tensor(rows, dtype=torch.float64)


def look_at(position: Sequence[float] | Tensor, target: Sequence[float] | Tensor,
            up: Sequence[float] | Tensor = (0.0, 1.0, 0.0)) -> Tensor:
    """``[4, 4]`` float64 world-to-camera transform of a camera at ``position`` looking at ``target``.

    Args:
        position: ``[3]`` camera centre in world coordinates.
        target: ``[3]`` a point on the optical axis.
        up: ``[3]`` the world direction that appears upwards in the image; must not be parallel to
            the viewing direction.
    """
    position, target, up = (torch.as_tensor(v, dtype=torch.float64).reshape(3) for v in (position, target, up))
    forward = target - position
    if float(forward.norm()) < 1e-12:
        raise ValueError("position and target coincide")
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    if float(right.norm()) < 1e-9:
        raise ValueError("up is parallel to the viewing direction")
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)  # completes x right, y down, z forward
    rotation = torch.stack([right, down, forward])  # [3, 3] rows: camera axes in world coordinates
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] = rotation
    transform[:3, 3] = -rotation @ position
    return transform


@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera.

    Args:
        intrinsics: ``[3, 3]`` ``K`` in pixels.
        world_to_camera: ``[4, 4]`` rigid transform, OpenCV camera axes.
        width: image width in pixels.
        height: image height in pixels.
    """

    intrinsics: Tensor
    world_to_camera: Tensor
    width: int
    height: int

    @classmethod
    def from_look_at(cls, position: Sequence[float] | Tensor, target: Sequence[float] | Tensor,
                     width: int, height: int, fov_deg: float = DEFAULT_FOV,
                     up: Sequence[float] | Tensor = (0.0, 1.0, 0.0)) -> PinholeCamera:
        """A camera at ``position`` looking at ``target`` with horizontal field of view ``fov_deg``."""
        return cls(intrinsics_from_fov(fov_deg, width, height), look_at(position, target, up), width, height)

    @property
    def position(self) -> Tensor:
        """``[3]`` camera centre in world coordinates."""
        rotation, translation = self.world_to_camera[:3, :3], self.world_to_camera[:3, 3]
        return -rotation.T @ translation

    @property
    def forward(self) -> Tensor:
        """``[3]`` unit viewing direction in world coordinates."""
        return self.world_to_camera[2, :3]

    def resized(self, width: int, height: int) -> PinholeCamera:
        """The same view (same field of view) at another image size."""
        scale = torch.tensor([[width / self.width], [height / self.height], [1.0]], dtype=self.intrinsics.dtype)
        return PinholeCamera(self.intrinsics * scale, self.world_to_camera, width, height)

    def rays(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
             window: tuple[int, int, int, int] | None = None) -> tuple[Tensor, Tensor]:
        """Rays through the pixel centres.

        Args:
            device / dtype: of the returned tensors.
            window: ``(top, left, rows, cols)``: only the rays of that pixel block (a tile); default
                the whole image. The same pixel gets the same ray either way.

        Returns:
            ``origins [H, W, 3]`` (all the camera centre) and unit ``directions [H, W, 3]``, in world
            coordinates, on ``device`` in ``dtype`` (``H, W`` = the window's ``rows, cols``).
        """
        top, left, num_rows, num_cols = window or (0, 0, self.height, self.width)
        if top < 0 or left < 0 or num_rows < 1 or num_cols < 1 or top + num_rows > self.height \
                or left + num_cols > self.width:
            raise ValueError(f"window {window} is not inside the {self.width}x{self.height} image")
        rows = torch.arange(top, top + num_rows, dtype=torch.float64) + 0.5  # [H] v
        cols = torch.arange(left, left + num_cols, dtype=torch.float64) + 0.5  # [W] u
        v, u = torch.meshgrid(rows, cols, indexing="ij")  # [H, W] each
        pixels = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # [H, W, 3] homogeneous
        camera_dirs = pixels @ torch.linalg.inv(self.intrinsics).T  # [H, W, 3]
        directions = camera_dirs @ self.world_to_camera[:3, :3]  # [H, W, 3] = R^T applied per pixel
        directions = directions / directions.norm(dim=-1, keepdim=True)
        origins = self.position.expand_as(directions)
        return origins.to(device=device, dtype=dtype), directions.to(device=device, dtype=dtype)

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """World points to pixels.

        Args:
            points: ``[..., 3]`` world coordinates.

        Returns:
            ``pixels [..., 2]`` continuous ``(u, v)`` and ``depth [...]`` along the optical axis
            (points behind the camera have depth <= 0 and meaningless pixels).
        """
        transform = self.world_to_camera.to(points.device, points.dtype)
        camera = points @ transform[:3, :3].T + transform[:3, 3]  # [..., 3]
        projected = camera @ self.intrinsics.to(points.device, points.dtype).T  # [..., 3]
        depth = camera[..., 2]
        return projected[..., :2] / depth[..., None], depth


# --------------------------------------------------------------------------------------------
# Trajectories
# --------------------------------------------------------------------------------------------


def _ground(world: BlockWorld) -> np.ndarray:
    """``[X, Z]`` float: the height of the top face of each column (0 where empty)."""
    return (world.heightmap().cpu().numpy() + 1).astype(np.float64)


def _local_max(ground: np.ndarray, x: np.ndarray, z: np.ndarray, radius: int) -> np.ndarray:
    """``[P]`` highest ground within ``radius`` columns of each point ``(x[p], z[p])``."""
    size_x, size_z = ground.shape
    xs = np.clip(np.floor(x).astype(int)[:, None] + np.arange(-radius, radius + 1)[None, :], 0, size_x - 1)
    zs = np.clip(np.floor(z).astype(int)[:, None] + np.arange(-radius, radius + 1)[None, :], 0, size_z - 1)
    return ground[xs[:, :, None], zs[:, None, :]].max(axis=(1, 2))


def _envelope(heights: np.ndarray, slope: float, closed: bool) -> np.ndarray:
    """The lowest curve above ``heights`` that changes by at most ``slope`` per frame (smooth climbs
    before obstacles instead of jumps); ``closed`` treats the sequence as a loop."""
    n = len(heights)
    index = np.arange(n)
    gap = np.abs(index[:, None] - index[None, :]).astype(np.float64)
    if closed:
        gap = np.minimum(gap, n - gap)
    return (heights[None, :] - slope * gap).max(axis=1)


def orbit(world: BlockWorld, num_frames: int, width: int, height: int, fov_deg: float = DEFAULT_FOV,
          radius: float | None = None, clearance: float = 6.0) -> list[PinholeCamera]:
    """Cameras on a horizontal circle around the world's centre, looking at the centre's surface.

    Args:
        world: the world.
        num_frames: the number of cameras (one full turn, the last frame before the first).
        width: image width.
        height: image height.
        fov_deg: horizontal field of view.
        radius: circle radius in blocks (default 0.45 of the smaller horizontal size).
        clearance: height of the circle above the highest ground under it.
    """
    size_x, size_y, size_z = world.shape
    ground = _ground(world)
    radius = 0.45 * min(size_x, size_z) if radius is None else radius
    angles = np.arange(num_frames) * 2 * np.pi / max(num_frames, 1)
    cx, cz = size_x / 2, size_z / 2
    xs, zs = cx + radius * np.cos(angles), cz + radius * np.sin(angles)
    altitude = float(_local_max(ground, xs, zs, 2).max()) + clearance
    target_y = float(_local_max(ground, np.array([cx]), np.array([cz]), 2)[0])
    return [PinholeCamera.from_look_at((x, altitude, z), (cx, target_y, cz), width, height, fov_deg)
            for x, z in zip(xs, zs)]


def fly_through(world: BlockWorld, num_frames: int, width: int, height: int, seed: int = 0,
                fov_deg: float = DEFAULT_FOV, clearance: float = 3.0, look_ahead: int = 6,
                pitch: float = -0.25) -> list[PinholeCamera]:
    """A smooth closed path above the terrain (a randomly shaped loop), looking ahead along it.

    Args:
        world: the world.
        num_frames: the number of cameras along the loop.
        width: image width.
        height: image height.
        seed: picks the loop's shape.
        fov_deg: horizontal field of view.
        clearance: the least height above the ground within two columns of the camera.
        look_ahead: the camera looks at the path point this many frames ahead.
        pitch: extra downward slope of the viewing direction (rise over run).
    """
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    size_x, size_y, size_z = world.shape
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) * 2 * np.pi / num_frames
    phase = rng.uniform(0, 2 * np.pi, size=4)
    wobble = rng.uniform(0.1, 0.25, size=2)
    xs = size_x * (0.5 + 0.3 * np.cos(t + phase[0]) + wobble[0] * 0.5 * np.cos(2 * t + phase[1]))
    zs = size_z * (0.5 + 0.3 * np.sin(t + phase[0]) + wobble[1] * 0.5 * np.sin(3 * t + phase[2]))
    xs, zs = np.clip(xs, 1, size_x - 1), np.clip(zs, 1, size_z - 1)
    ground = _local_max(_ground(world), xs, zs, 2) + clearance  # [F] lowest allowed altitude
    altitude = _envelope(ground, slope=0.5, closed=True)  # [F]
    step = np.hypot(np.roll(xs, -look_ahead) - xs, np.roll(zs, -look_ahead) - zs)  # [F] run to the look-at
    cameras = []
    for i in range(num_frames):
        j = (i + look_ahead) % num_frames
        target = (xs[j], altitude[j] + pitch * max(step[i], 1.0), zs[j])
        if step[i] < 1e-6:  # degenerate loop: look along +x
            target = (xs[i] + 1.0, altitude[i] + pitch, zs[i])
        cameras.append(PinholeCamera.from_look_at((xs[i], altitude[i], zs[i]), target, width, height, fov_deg))
    return cameras


def view_statistics(hits: RayHits) -> dict[str, float]:
    """Label entropy (natural log, misses counted as sky), sky fraction and mean depth of the first
    hits of a view (``hits`` of any batch shape; only ``[..., 0]`` is used)."""
    first = hits.block_ids[..., 0].flatten()  # [P] -1 = sky
    counts = torch.bincount(first + 1).double()
    p = counts[counts > 0] / first.numel()
    depth = hits.entry_depth[..., 0].flatten()
    finite = torch.isfinite(depth)
    return {
        "entropy": float(-(p * p.log()).sum()),
        "sky_fraction": float((first < 0).double().mean()),
        "mean_depth": float(depth[finite].double().mean()) if bool(finite.any()) else math.inf,
    }


def is_valid_view(stats: dict[str, float], min_entropy: float = 0.75, min_mean_depth: float = 2.0,
                  max_sky_fraction: float = 0.7) -> bool:
    """The rejection test of GANcraft's camera sampler, plus a cap on sky: enough label variety
    (entropy), not pressed against a wall (mean depth), not mostly sky."""
    return (stats["entropy"] >= min_entropy and stats["mean_depth"] >= min_mean_depth
            and stats["sky_fraction"] <= max_sky_fraction)


def random_valid_poses(world: BlockWorld, num_poses: int, width: int, height: int, seed: int = 0,
                       fov_range: tuple[float, float] = (36.5, 73.0), min_entropy: float = 0.75,
                       min_mean_depth: float = 2.0, max_sky_fraction: float = 0.7, check_size: int = 32,
                       max_tries: int = 200) -> list[PinholeCamera]:
    """Random third-person views, rejected until each passes ``is_valid_view``.

    A camera is placed above a random column (2 to ``Y/3`` blocks above the highest ground within
    two columns), looks at the surface of another random column, with a slightly tilted up vector
    and a random field of view; the view is ray cast at ``check_size`` pixels wide and rejected when
    it fails the entropy, depth or sky test.

    Args:
        world: the world.
        num_poses: how many cameras to return.
        width: image width of the returned cameras.
        height: image height of the returned cameras.
        seed: the random seed.
        fov_range: horizontal field of view range in degrees.
        min_entropy: least label entropy of the first-hit segmentation (sky is a label).
        min_mean_depth: least mean depth of the first hits, in blocks.
        max_sky_fraction: most fraction of pixels that see sky.
        check_size: width of the image the test ray casts.
        max_tries: give up after this many rejected samples in a row.

    Raises:
        RuntimeError: no valid view within ``max_tries`` samples.
    """
    size_x, size_y, size_z = world.shape
    ground = _ground(world)
    rng = np.random.default_rng(seed)
    border_x, border_z = 0.1 * size_x, 0.1 * size_z
    check_height = max(1, round(check_size * height / width))
    cameras: list[PinholeCamera] = []
    for _ in range(num_poses):
        for _ in range(max_tries):
            xs = rng.uniform(border_x, size_x - border_x, size=2)
            zs = rng.uniform(border_z, size_z - border_z, size=2)
            lift = rng.uniform(2.0, max(size_y / 3, 3.0))
            position = (xs[0], _local_max(ground, xs[:1], zs[:1], 2)[0] + lift, zs[0])
            target = (xs[1], ground[int(xs[1]), int(zs[1])] - rng.uniform(0, 2), zs[1])
            if math.hypot(position[0] - target[0], position[2] - target[2]) < 1.0:
                continue
            up = np.array([0.0, 1.0, 0.0]) + 0.02 * rng.standard_normal(3)
            fov = rng.uniform(*fov_range)
            up = up / np.linalg.norm(up)
            camera = PinholeCamera.from_look_at(position, target, width, height, fov, up=up)
            origins, directions = camera.resized(check_size, check_height).rays(device=world.device)
            hits = ray_voxel_intersections(world.blocks, origins, directions, max_hits=1)
            if is_valid_view(view_statistics(hits), min_entropy, min_mean_depth, max_sky_fraction):
                cameras.append(camera)
                break
        else:
            raise RuntimeError(
                f"no valid view in {max_tries} tries (min_entropy={min_entropy}, "
                f"min_mean_depth={min_mean_depth}, "
                f"max_sky_fraction={max_sky_fraction}): the world may be too flat or too small"
            )
    return cameras
