"""Procedural talking heads: determinism, the pose convention seen in the image, expression, caching."""

from __future__ import annotations

import dataclasses

import torch

from imaginate.data.heads import (
    EXPRESSION_DIM,
    IDENTITY_SPLIT,
    POSE_LIMITS,
    HeadIdentity,
    cached_head_clip,
    head_clip,
    head_motion,
    render_head,
    render_heads,
)
from imaginate.systems.face_vid2vid.motion import (
    Motion,
    motion_from_vector,
    motion_to_vector,
    rotation_matrix,
    rotation_matrix_world,
)

SIZE = 48


def _nose_centroid(identity: HeadIdentity, **pose: float) -> tuple[float, float]:
    """(x, y) pixel centroid of what a bigger nose changes: where the nose is in the image."""
    bigger = dataclasses.replace(identity, nose_width=identity.nose_width * 1.6, nose_length=identity.nose_length * 1.3)
    base = render_head(identity, size=SIZE, **pose)
    changed = (render_head(bigger, size=SIZE, **pose) - base).abs().sum(0)  # [H, W]
    weight = changed / changed.sum()
    rows, cols = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                                indexing="ij")
    return float((weight * cols).sum()), float((weight * rows).sum())


def test_heads_are_deterministic_by_seed_and_differ_between_seeds() -> None:
    first, again = head_clip(3, 7, num_frames=3, size=32), head_clip(3, 7, num_frames=3, size=32)
    assert torch.equal(first.frames, again.frames) and torch.equal(first.expression, again.expression)
    assert first.frames.shape == (3, 3, 32, 32) and first.expression.shape == (3, EXPRESSION_DIM)
    assert 0.0 <= float(first.frames.min()) and float(first.frames.max()) <= 1.0
    other_identity, other_motion = head_clip(4, 7, 3, 32), head_clip(3, 8, 3, 32)
    assert (first.frames - other_identity.frames).abs().mean() > 0.02
    assert (first.yaw - other_motion.yaw).abs().max() > 1.0
    assert HeadIdentity.random(11) == HeadIdentity.random(11) != HeadIdentity.random(12)


def test_identity_split_is_disjoint() -> None:
    assert not set(IDENTITY_SPLIT.train) & set(IDENTITY_SPLIT.test)
    assert len(IDENTITY_SPLIT.test) >= 100


def test_yaw_moves_the_nose_right_and_pitch_moves_it_down() -> None:
    identity = HeadIdentity.random(2)
    x0, y0 = _nose_centroid(identity)
    x_right, _ = _nose_centroid(identity, yaw=30.0)
    x_left, _ = _nose_centroid(identity, yaw=-30.0)
    _, y_down = _nose_centroid(identity, pitch=20.0)
    _, y_up = _nose_centroid(identity, pitch=-20.0)
    assert x_right > x0 + 2 and x_left < x0 - 2, (x_left, x0, x_right)
    assert y_down > y0 + 1 and y_up < y0 - 1, (y_up, y0, y_down)


def test_grid_rotation_agrees_with_the_render_convention() -> None:
    yaw, pitch, roll = torch.tensor([30.0, 0.0, 0.0]), torch.tensor([0.0, 20.0, 0.0]), torch.tensor([0.0, 0.0, 25.0])
    grid = rotation_matrix(yaw, pitch, roll)
    assert torch.allclose(grid @ grid.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
    nose = grid @ torch.tensor([0.0, 0.0, -1.0])  # the nose points at the camera: -z in the grid frame
    assert nose[0, 0] > 0.4 and nose[1, 1] > 0.3  # yaw: right (+x); pitch: down (+y in the grid frame)
    top = rotation_matrix_world(yaw, pitch, roll) @ torch.tensor([0.0, 1.0, 0.0])
    assert top[2, 0] < -0.4  # positive roll moves the top of the head left (counter-clockwise)
    vector = torch.randn(4, 6 + 3 * 5)
    assert torch.equal(motion_to_vector(motion_from_vector(vector, 5)), vector)
    assert isinstance(motion_from_vector(vector, 5), Motion)


def test_expression_changes_the_right_region() -> None:
    identity = dataclasses.replace(HeadIdentity.random(5), glasses=False)
    neutral = render_head(identity, size=64)
    blinked = render_head(identity, expression=[0, 1, 1, 0, 0, 0], size=64)
    talking = render_head(identity, expression=[1, 0, 0, 0, 0, 0], size=64)
    blink_rows = (blinked - neutral).abs().sum((0, 2))  # [H]
    jaw_rows = (talking - neutral).abs().sum((0, 2))
    rows = torch.arange(64, dtype=torch.float32)
    blink_y = float((blink_rows * rows).sum() / blink_rows.sum())
    jaw_y = float((jaw_rows * rows).sum() / jaw_rows.sum())
    assert blink_rows.sum() > 1.0 and jaw_rows.sum() > 1.0
    assert blink_y + 6 < jaw_y, (blink_y, jaw_y)  # the eyes sit well above the mouth
    # the open mouth is a dark hole: more dark pixels than with the mouth closed
    assert (talking.mean(0) < 0.25).sum() > (neutral.mean(0) < 0.25).sum() + 3


def test_batched_render_equals_single_renders() -> None:
    identities = [HeadIdentity.random(1), HeadIdentity.random(9)]
    yaw, pitch, roll = torch.tensor([10.0, -25.0]), torch.tensor([5.0, -3.0]), torch.tensor([0.0, 12.0])
    translation = torch.tensor([[0.05, 0.0, 0.1], [-0.05, 0.02, -0.1]])
    expression = torch.tensor([[0.5, 0, 0.3, 0.2, 0.1, 0.4], [0.0, 1, 1, -0.5, 0, -0.2]])
    batch = render_heads(identities, yaw, pitch, roll, translation, expression, size=32)
    for i, identity in enumerate(identities):
        single = render_head(identity, float(yaw[i]), float(pitch[i]), float(roll[i]), translation[i],
                             expression[i], size=32)
        assert torch.allclose(batch[i], single, atol=1e-5)


def test_motion_is_smooth_and_inside_the_limits() -> None:
    motion = head_motion(clip_seed=21, num_frames=300)
    for name, limit in POSE_LIMITS.items():
        assert float(motion[name].abs().max()) <= limit
        assert float(motion[name].diff().abs().max()) < 3.0  # degrees per frame at 30 fps
    assert float(motion["yaw"].max() - motion["yaw"].min()) > 5.0  # it does move
    jaw, blinks = motion["expression"][:, 0], motion["expression"][:, 1]
    assert float(jaw.max()) > 0.3 and float(blinks.max()) == 1.0  # talks and blinks within 10 s


def test_cached_clip_equals_rendered_clip(tmp_path) -> None:
    rendered = head_clip(6, 2, num_frames=2, size=24)
    first = cached_head_clip(6, 2, num_frames=2, size=24, cache_dir=tmp_path)
    again = cached_head_clip(6, 2, num_frames=2, size=24, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    for clip in (first, again):
        assert torch.equal(clip.frames, rendered.frames) and torch.equal(clip.yaw, rendered.yaw)
