"""The motion of a talking-head frame, as the model and the keypoint codec exchange it.

``Motion`` is the per-frame part of face-vid2vid's keypoints ``x_k = R x_c,k + t + delta_k``: head
pose angles in degrees, translation and the expression deformations. The codec transmits exactly
these fields; the model estimates them (``estimate_motion``) and synthesises from them (``animate``).

Angle convention (shared with :mod:`imaginate.data.heads`, whose renders carry the true angles):
seen by the camera, positive yaw turns the face toward the image's right (the nose moves right),
positive pitch nods it down (the nose moves down) and positive roll tilts it counter-clockwise on
screen (the top of the head moves left). ``rotation_matrix`` builds R in the image-grid frame of
``grid_sample`` (x right, y down, z away from the camera).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from imaginate.data.head_render import rotation_matrix_world

NUM_POSE_VALUES = 6  # yaw, pitch, roll, translation x, y, z


class Motion(NamedTuple):
    """Per-frame motion of B frames (K keypoints).

    Fields:
        yaw: ``[B]`` degrees.
        pitch: ``[B]`` degrees.
        roll: ``[B]`` degrees.
        translation: ``[B, 3]`` in the keypoints' coordinates.
        expression: ``[B, K, 3]`` expression deformations delta_k.
    """

    yaw: Tensor
    pitch: Tensor
    roll: Tensor
    translation: Tensor
    expression: Tensor

    @property
    def num_keypoints(self) -> int:
        return int(self.expression.shape[-2])

    @property
    def batch_size(self) -> int:
        return int(self.yaw.shape[0])

    def index(self, rows: slice | Tensor | list[int]) -> Motion:
        """The motion of the selected frames (every field indexed along dim 0)."""
        return Motion(*(field[rows] for field in self))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Motion:
        return Motion(*(field.to(device=device, dtype=dtype) for field in self))


def motion_to_vector(motion: Motion) -> Tensor:
    """``[B, 6 + 3K]``: yaw, pitch, roll, translation (3), expression flattened (k-major: x, y, z of k=0, ...)."""
    batch = motion.yaw.shape[0]
    return torch.cat([motion.yaw.reshape(batch, 1), motion.pitch.reshape(batch, 1), motion.roll.reshape(batch, 1),
                      motion.translation.reshape(batch, 3), motion.expression.reshape(batch, -1)], dim=1)


def motion_from_vector(vector: Tensor, num_keypoints: int) -> Motion:
    """The inverse of :func:`motion_to_vector`: ``[B, 6 + 3K]`` -> Motion."""
    if vector.ndim != 2 or vector.shape[1] != NUM_POSE_VALUES + 3 * num_keypoints:
        raise ValueError(f"expected [B, {NUM_POSE_VALUES + 3 * num_keypoints}] motion vectors for K={num_keypoints}, "
                         f"got {list(vector.shape)}")
    return Motion(vector[:, 0], vector[:, 1], vector[:, 2], vector[:, 3:6],
                  vector[:, 6:].reshape(-1, num_keypoints, 3))


def rotation_matrix(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """``[B, 3, 3]`` the same rotation in the image-grid frame (x right, y down, z away from the camera).

    With S = diag(1, -1, -1): R_grid = S R_world S (S is its own inverse and has det +1).
    """
    flip = torch.tensor([1.0, -1.0, -1.0])
    world = rotation_matrix_world(yaw, pitch, roll)
    flip = flip.to(world)
    return flip[:, None] * world * flip[None, :]
