"""Guidance images for world-consistent vid2vid: a 3D memory of the colours already generated.

Geometry (batched, any device). Depth is the z-depth along the camera's optical axis (OpenCV
camera axes, ``camera.py``), 0 where a pixel sees nothing (sky). Pixel ``(i, j)`` is the point
``(u, v) = (j + 0.5, i + 0.5)``. ``cam_to_world`` is the inverse of a camera's ``world_to_camera``.

- ``unproject(depth, K, cam_to_world)``: each pixel's 3D world point; ``project`` the inverse.
- ``snap_to_voxel_faces``: on block worlds a visible point lies on a block face; snapping moves it
  to the centre of the ``1 / n`` block cell just behind that face, so every view that sees a face
  texel gets the same cell, exactly (plain quantisation would flip between the two cells on either
  side of the face plane with rounding noise).
"""

from __future__ import annotations

import torch
from torch import Tensor


def invert_rigid(transform: Tensor) -> Tensor:
    """``[..., 4, 4]`` inverse of rigid transforms ``[R t; 0 1]``: ``[R^T  -R^T t; 0 1]``."""
    rotation, translation = transform[..., :3, :3], transform[..., :3, 3:]
    inverse = torch.zeros_like(transform)
    inverse[..., :3, :3] = rotation.transpose(-1, -2)
    inverse[..., :3, 3:] = -rotation.transpose(-1, -2) @ translation
    inverse[..., 3, 3] = 1.0
    return inverse


def pixel_grid(height: int, width: int, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """``[H, W, 3]`` homogeneous pixel centres ``(j + 0.5, i + 0.5, 1)``."""
    rows = torch.arange(height, device=device, dtype=dtype) + 0.5
    cols = torch.arange(width, device=device, dtype=dtype) + 0.5
    v, u = torch.meshgrid(rows, cols, indexing="ij")  # [H, W]
    return torch.stack([u, v, torch.ones_like(u)], dim=-1)


def unproject(depth: Tensor, intrinsics: Tensor, cam_to_world: Tensor) -> Tensor:
    """World points seen by each pixel.

    Args:
        depth: ``[B, H, W]`` z-depth (<= 0 where the pixel sees nothing; those points are
            meaningless and callers mask them).
        intrinsics: ``[B, 3, 3]`` ``K``.
        cam_to_world: ``[B, 4, 4]`` camera-to-world transforms.

    Returns:
        ``[B, H, W, 3]`` world coordinates, in ``depth``'s dtype.
    """
    batch, height, width = depth.shape
    dtype = depth.dtype
    pixels = pixel_grid(height, width, depth.device, dtype).reshape(1, -1, 3)  # [1, HW, 3]
    rays = pixels @ torch.linalg.inv(intrinsics.to(dtype)).transpose(-1, -2)  # [B, HW, 3] z = 1
    camera = rays * depth.reshape(batch, -1, 1)  # [B, HW, 3]
    c2w = cam_to_world.to(dtype)
    world = camera @ c2w[:, :3, :3].transpose(-1, -2) + c2w[:, None, :3, 3]  # [B, HW, 3]
    return world.reshape(batch, height, width, 3)


def project(points: Tensor, intrinsics: Tensor, cam_to_world: Tensor) -> tuple[Tensor, Tensor]:
    """World points to continuous pixels of each batch element's camera.

    Args:
        points: ``[B, ..., 3]`` world coordinates.
        intrinsics: ``[B, 3, 3]``.
        cam_to_world: ``[B, 4, 4]``.

    Returns:
        ``pixels [B, ..., 2]`` ``(u, v)`` and ``depth [B, ...]`` z-depth (<= 0 behind the camera,
        where ``pixels`` are meaningless).
    """
    batch = points.shape[0]
    flat = points.reshape(batch, -1, 3)  # [B, N, 3]
    w2c = invert_rigid(cam_to_world.to(points.dtype))
    camera = flat @ w2c[:, :3, :3].transpose(-1, -2) + w2c[:, None, :3, 3]  # [B, N, 3]
    z = camera[..., 2]
    image = camera @ intrinsics.to(points.dtype).transpose(-1, -2)  # [B, N, 3]
    safe = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    pixels = image[..., :2] / safe[..., None]
    return pixels.reshape(*points.shape[:-1], 2), z.reshape(points.shape[:-1])


def camera_centres(cam_to_world: Tensor) -> Tensor:
    """``[B, 3]`` camera centres in world coordinates."""
    return cam_to_world[:, :3, 3]


def snap_to_voxel_faces(points: Tensor, cam_to_world: Tensor, cells_per_block: int) -> Tensor:
    """Move block-face points to the centre of the face cell behind them.

    A point seen on a block world lies on a face plane (one integer coordinate). The face's axis is
    the coordinate nearest an integer; the block lies beyond the face along the viewing ray, so the
    snapped point is half a cell past the plane on that axis and the centre of its ``1 / n`` cell
    on the other two.

    Args:
        points: ``[B, H, W, 3]`` (or ``[B, N, 3]``) unprojected points on block faces.
        cam_to_world: ``[B, 4, 4]`` the cameras that saw them.
        cells_per_block: ``n``, face cells per block edge.

    Returns:
        the snapped points, same shape.
    """
    n = float(cells_per_block)
    batch = points.shape[0]
    flat = points.reshape(batch, -1, 3)  # [B, N, 3]
    view = flat - camera_centres(cam_to_world).to(points.dtype)[:, None, :]  # [B, N, 3] camera -> point
    nearest = torch.round(flat)
    axis = (flat - nearest).abs().argmin(dim=-1, keepdim=True)  # [B, N, 1] the face plane's axis
    inward = torch.where(view.gather(-1, axis) < 0, -1.0, 1.0).to(points.dtype)  # [B, N, 1]
    cells = (torch.floor(flat * n) + 0.5) / n  # [B, N, 3] cell centres in the face's plane
    plane = nearest.gather(-1, axis) + inward * (0.5 / n)  # [B, N, 1]
    snapped = cells.scatter(-1, axis, plane)
    return snapped.reshape(points.shape)
