"""face-vid2vid objectives besides the GAN / perceptual terms (which come from ``imaginate.nn``).

- equivariance: keypoints must move with a random affine + thin-plate-spline warp ``T`` of the image:
  ``|x(I) - T(x(I o T))|`` on (x, y) (``RandomTPS``, ``equivariance_loss``);
- keypoint prior: ``sum_{i != j} max(0, D - |x_i - x_j|^2) + |mean_k z_k - z_t|`` (D = 0.1, z_t = 0.33);
- head pose: ``|angle - true angle|`` (radians) for yaw, pitch and roll;
- deformation prior: ``mean |delta|``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from imaginate.systems.face_vid2vid.motion import Motion
from imaginate.systems.face_vid2vid.networks import coordinate_grid


class RandomTPS:
    """A random warp ``T: [-1, 1]^2 -> R^2``: affine ``theta = I + N(0, sigma_affine)`` plus a thin-plate
    spline over a ``points x points`` control grid with N(0, sigma_tps) weights (FOMM's equivariance warp).

    ``warp_image(I)(p) = I(T(p))``, so a point ``p`` of the warped image shows what ``T(p)`` showed in ``I``.

    Args:
        batch: B; sigma_affine / sigma_tps / points: the warp's strength and control grid;
        generator: the random stream; device: where the warp lives.
    """

    def __init__(self, batch: int, sigma_affine: float = 0.05, sigma_tps: float = 0.005, points: int = 5,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> None:
        eye = torch.eye(2, 3).expand(batch, 2, 3)
        noise = torch.randn(batch, 2, 3, generator=generator) * sigma_affine
        self.theta = (eye + noise).to(device)  # [B, 2, 3]
        self.control_points = coordinate_grid((points, points), device).view(-1, 2)  # [P, 2]
        self.control_params = (torch.randn(batch, points * points, 2, generator=generator) * sigma_tps).to(device)

    def warp_coordinates(self, coords: Tensor) -> Tensor:
        """``[B, N, 2]`` points (x, y) -> ``[B, N, 2]`` their images under T."""
        theta = self.theta.to(coords.dtype)
        out = coords @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)
        dist = (coords.unsqueeze(2) - self.control_points.to(coords.dtype)).abs().sum(-1)  # [B, N, P] (L1, as FOMM)
        radial = dist.square() * torch.log(dist + 1e-6)
        return out + radial @ self.control_params.to(coords.dtype)

    def warp_image(self, image: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]`` sampled at ``T(p)`` (border padding)."""
        b, _, h, w = image.shape
        grid = self.warp_coordinates(coordinate_grid((h, w), image.device).view(1, -1, 2).expand(b, -1, -1))
        return F.grid_sample(image, grid.view(b, h, w, 2), mode="bilinear", padding_mode="border",
                             align_corners=True)


def equivariance_loss(keypoints: Tensor, keypoints_of_warped: Tensor, warp: RandomTPS) -> Tensor:
    """``mean |x - T(x_w)|`` over (x, y): keypoints of the image ``[B, K, >=2]`` and of the warped image."""
    return (keypoints[..., :2] - warp.warp_coordinates(keypoints_of_warped[..., :2])).abs().mean()


def keypoint_prior_loss(keypoints: Tensor, min_distance: float = 0.1, depth_target: float | None = 0.33) -> Tensor:
    """``mean_B [sum_{i != j} max(0, D - |x_i - x_j|^2)] + |mean_k z_k - z_t|`` for keypoints ``[B, K, 2|3]``
    (the depth term only for 3D keypoints with a ``depth_target``)."""
    dist2 = (keypoints.unsqueeze(1) - keypoints.unsqueeze(2)).square().sum(-1)  # [B, K, K]
    off_diagonal = 1 - torch.eye(keypoints.shape[1], device=keypoints.device, dtype=keypoints.dtype)
    loss = (F.relu(min_distance - dist2) * off_diagonal).sum((1, 2)).mean()
    if depth_target is not None and keypoints.shape[-1] == 3:
        loss = loss + (keypoints[..., 2].mean(1) - depth_target).abs().mean()
    return loss


def pose_loss(motion: Motion, yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """Mean absolute angle error in radians over yaw, pitch and roll (true angles in degrees, ``[B]``)."""
    error = ((motion.yaw - yaw).abs() + (motion.pitch - pitch).abs() + (motion.roll - roll).abs()) / 3
    return error.mean() * (math.pi / 180)


def pose_error_degrees(motion: Motion, yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """``[B]`` mean absolute error in degrees over the three angles."""
    return ((motion.yaw - yaw).abs() + (motion.pitch - pitch).abs() + (motion.roll - roll).abs()) / 3


def deformation_prior_loss(expression: Tensor) -> Tensor:
    """``mean |delta|`` of expression deformations ``[B, K, 3]``."""
    return expression.abs().mean()


def keypoint_spread(keypoints: Tensor) -> Tensor:
    """Mean pairwise distance of keypoints ``[B, K, d]`` (a collapse to one point drives it to 0)."""
    k = keypoints.shape[1]
    dist = (keypoints.unsqueeze(1) - keypoints.unsqueeze(2)).square().sum(-1).clamp_min(1e-12).sqrt()
    return dist.sum((1, 2)).mean() / max(k * (k - 1), 1)


__all__ = ["RandomTPS", "deformation_prior_loss", "equivariance_loss", "keypoint_prior_loss", "keypoint_spread",
           "pose_error_degrees", "pose_loss"]
