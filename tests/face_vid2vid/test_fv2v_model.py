"""face-vid2vid model: rotation from 66-bin angles, keypoint transform, identity warp, equivariance, repose."""

import math

import pytest
import torch

from imaginate.systems.face_vid2vid.losses import RandomTPS, equivariance_loss, keypoint_prior_loss
from imaginate.systems.face_vid2vid.model import (
    NUM_BINS,
    FaceModelConfig,
    FaceVid2Vid,
    Keypoints2DModel,
    bins_to_degrees,
    repose,
    transform_keypoints,
)
from imaginate.systems.face_vid2vid.motion import Motion, rotation_matrix
from imaginate.systems.face_vid2vid.networks import coordinate_grid, soft_argmax, warp

TINY = dict(image_size=32, num_keypoints=4, feature_channels=8, volume_channels=8, volume_depth=2, kp_scale=0.5,
            kp_channels=4, kp_depth=2, kp_blocks=2, pose_channels=8, pose_stages=2, motion_channels=4,
            motion_blocks=2, generator_channels=8, generator_res_blocks=1)


def explicit_rotation(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    """The grid-frame rotation (x right, y down, z away) written out entry by entry: in the renderer's frame
    (y up, z toward the camera) R = Rz(roll) Ry(yaw) Rx(pitch); flipping y and z negates the entries that mix
    x with y or z."""
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    world = [[cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp],
             [sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp],
             [-sy, cy * sp, cy * cp]]
    sign = [1, -1, -1]
    return torch.tensor([[sign[i] * sign[j] * world[i][j] for j in range(3)] for i in range(3)])


@pytest.mark.parametrize("bins", [(33, 33, 33), (40, 30, 35), (20, 38, 28), (3, 60, 45)])
def test_one_hot_bins_give_the_bin_angle_and_its_rotation(bins):
    logits = torch.full((3, NUM_BINS), -1e4)
    for row, b in enumerate(bins):
        logits[row, b] = 0.0
    angles = bins_to_degrees(logits)  # yaw, pitch, roll
    expected = [3.0 * b - 99.0 for b in bins]
    assert torch.allclose(angles, torch.tensor(expected), atol=1e-4)
    rot = rotation_matrix(angles[0:1], angles[1:2], angles[2:3])[0]
    assert torch.allclose(rot, explicit_rotation(*expected), atol=1e-5)


def test_expected_angle_of_uniform_bins_is_the_mean_bin():
    assert torch.allclose(bins_to_degrees(torch.zeros(2, NUM_BINS)), torch.full((2,), 32.5 * 3 - 99))


def test_positive_yaw_moves_the_nose_right():
    nose = torch.tensor([[0.0, 0.0, -1.0]])  # toward the camera in the grid frame
    rot = rotation_matrix(torch.tensor([30.0]), torch.tensor([0.0]), torch.tensor([0.0]))[0]
    assert (rot @ nose[0])[0] > 0.4


def test_identity_pose_and_zero_deformation_leave_keypoints_unchanged():
    canonical = torch.rand(2, 5, 3) * 2 - 1
    zero = torch.zeros(2)
    motion = Motion(zero, zero, zero, torch.zeros(2, 3), torch.zeros(2, 5, 3))
    assert torch.allclose(transform_keypoints(canonical, motion), canonical, atol=1e-6)
    moved = Motion(zero + 10, zero + 20, zero - 5, torch.ones(2, 3), torch.zeros(2, 5, 3))
    expected = canonical @ explicit_rotation(10, 20, -5).T + 1  # x_k = R x_c,k + t
    assert torch.allclose(transform_keypoints(canonical, moved), expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (2, 3, 4, 9, 11)])
def test_identity_flow_warp_returns_the_input(shape):
    x = torch.rand(shape, dtype=torch.float64)
    grid = coordinate_grid(tuple(shape[2:])).to(torch.float64).expand(shape[0], *shape[2:], len(shape) - 2)
    assert torch.allclose(warp(x, grid), x, atol=1e-6)
    shifted = grid + 2.0 / (shape[-1] - 1) * torch.eye(len(shape) - 2, dtype=torch.float64)[0]  # one pixel in x
    assert torch.allclose(warp(x, shifted)[..., :-1], x[..., 1:], atol=1e-6)


def blob_images(keypoints: torch.Tensor, size: int, sigma: float = 0.06) -> torch.Tensor:
    """One Gaussian blob per keypoint channel: ``[B, K, 2]`` -> ``[B, K, size, size]``."""
    grid = coordinate_grid((size, size))  # [H, W, 2]
    d2 = (grid[None, None] - keypoints[:, :, None, None]).square().sum(-1)
    return torch.exp(-d2 / (2 * sigma**2))


def test_equivariance_loss_is_zero_for_an_equivariant_detector():
    gen = torch.Generator().manual_seed(0)
    keypoints = torch.rand(3, 4, 2, generator=gen) * 1.0 - 0.5
    images = blob_images(keypoints, 96)

    def centroid_detector(x: torch.Tensor) -> torch.Tensor:  # equivariant: finds each blob's centre
        return soft_argmax(torch.log(x.clamp_min(1e-30)), temperature=0.05)[0]

    tps = RandomTPS(3, sigma_affine=0.1, sigma_tps=0.005, generator=gen)
    good = equivariance_loss(centroid_detector(images), centroid_detector(tps.warp_image(images)), tps)
    constant = torch.zeros(3, 4, 2)
    bad = equivariance_loss(constant, constant, tps)  # ignores the image: not equivariant
    assert good < 3e-3 < 0.02 < bad
    assert torch.allclose(centroid_detector(images), keypoints, atol=2e-3)


def test_keypoint_prior_penalises_collapse_and_wrong_depth():
    spread = torch.tensor([[[-0.5, -0.5, 0.33], [0.5, -0.5, 0.33], [-0.5, 0.5, 0.33], [0.5, 0.5, 0.33]]])
    assert keypoint_prior_loss(spread) == 0
    assert keypoint_prior_loss(torch.full((1, 4, 3), 0.33)) > 1.0  # all on one point: 12 pairs * 0.1
    assert torch.isclose(keypoint_prior_loss(spread - torch.tensor([0, 0, 0.33])), torch.tensor(0.33))


def test_models_run_and_repose_changes_the_output():
    torch.manual_seed(0)
    model = FaceVid2Vid(FaceModelConfig(**TINY)).eval()
    source, driving = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert model.canonical_keypoints(source).shape == (2, 4, 3)
        motion_s, motion_d = model.estimate_motion(source), model.estimate_motion(driving)
        out = model.animate(source, motion_s, motion_d)
        turned = repose(motion_d, d_yaw=30.0)
        out_turned = model.animate(source, motion_s, turned)
    assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert torch.allclose(turned.yaw, motion_d.yaw + 30) and torch.equal(turned.pitch, motion_d.pitch)
    assert torch.equal(repose(motion_d, yaw=5.0).yaw, torch.full((2,), 5.0))
    assert (out - out_turned).abs().max() > 1e-4
    ablation = Keypoints2DModel(FaceModelConfig(kind="keypoints2d", **TINY))
    result = ablation.reconstruct(source, driving)
    assert result["image"].shape == (2, 3, 32, 32) and result["kp_driving"].shape == (2, 4, 2)


@pytest.mark.parametrize("kind", ["fv2v", "keypoints2d"])
def test_batch_norm_option_replaces_every_group_norm_and_keeps_the_parameters(kind):
    from imaginate.systems.face_vid2vid.model import build_model, count_parameters
    from imaginate.systems.face_vid2vid.networks import BatchNormND

    group = build_model(FaceModelConfig(kind=kind, norm="group", **TINY))
    batch = build_model(FaceModelConfig(kind=kind, norm="batch", **TINY))
    kinds = {type(m) for m in batch.modules()}
    assert torch.nn.GroupNorm not in kinds and BatchNormND in kinds
    assert count_parameters(batch) == count_parameters(group)  # same affine weights, statistics are buffers
    with pytest.raises(Exception, match="model.norm"):
        FaceModelConfig(norm="layer")
