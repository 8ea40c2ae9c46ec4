"""face_vid2vid system: short training runs at a cut tiny preset, metrics, config errors."""

import math

import pytest
import torch

from imaginate.cli import main
from imaginate.config import build_config
from imaginate.engine import run_training
from imaginate.metrics.image_quality import psnr, ssim
from imaginate.registry import get_system

SMALL = ["data.train_clips=4", "data.clip_frames=4", "data.eval_clips=2", "data.eval_frames=3", "train.log_every=5",
         "train.ckpt_every=0", "train.sample_every=0", "train.eval_every=0", "train.device=cpu", "train.num_threads=1"]


def small_config(overrides):
    spec = get_system("face_vid2vid")
    return spec, build_config(spec.config_cls, preset="tiny", system="face_vid2vid", overrides=SMALL + overrides)


@pytest.mark.parametrize("kind", ["fv2v", "keypoints2d"])
def test_tiny_preset_trains_20_steps_with_finite_losses(tmp_path, kind):
    spec, cfg = small_config(["train.steps=20", f"model.kind={kind}"])
    metrics = run_training(spec, cfg, tmp_path / "run", progress=False)
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert {"l1", "psnr", "ssim", "copy_l1", "motion_region_l1", "motion_region_copy_l1", "motion_region_to_source_l1"} <= set(metrics)
    if kind == "fv2v":
        assert {"pose_err_deg", "freeview_l1", "freeview_source_l1", "freeview_region_l1"} <= set(metrics)
    rows = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(rows) == 4 and '"kp_spread"' in rows[-1] and '"d_acc"' in rows[-1]


def test_motion_region_l1_rewards_following_the_motion_not_copying_or_blurring():
    from imaginate.systems.face_vid2vid.system import region_l1

    source = torch.zeros(2, 3, 16, 16)
    source[:, :, 4:8, 4:8] = 1.0  # a square "head"
    truth = torch.roll(source, shifts=3, dims=3)  # the head moved right
    follow = region_l1(truth, truth, source)
    assert follow[0] == 0.0 and follow[1] > 0.5 and follow[2] == follow[1]  # exact motion: 0 to truth, far from source
    copied = region_l1(source, truth, source)
    assert copied[0] == copied[1] == follow[1] and copied[2] == 0.0  # copying: as far from truth as the source
    blur = region_l1(0.5 * (source + truth), truth, source)
    assert 0.0 < blur[0] < copied[0] and blur[0] == blur[2]  # a blend halfway: equally far from truth and source
    # only the moved pixels count: an error outside the region leaves the score unchanged
    noisy = truth.clone()
    noisy[:, :, 12:, 12:] = 0.7
    assert region_l1(noisy, truth, source)[0] == 0.0


@pytest.mark.slow
def test_generator_loss_falls_on_one_batch():
    from imaginate.engine.distributed import DistEnv
    from imaginate.engine.system import RunContext
    from imaginate.systems.face_vid2vid.system import FaceVid2VidSystem

    torch.manual_seed(0)
    _, cfg = small_config(["loss.gan=0", "loss.feature_matching=0", "optim.lr_g=1e-3"])
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0, global_batch=4)
    system = FaceVid2VidSystem(cfg, ctx)
    batch = system.train_batch(0)
    first = system.train_step(dict(batch))["perceptual"]
    for _ in range(15):
        last = system.train_step(dict(batch))["perceptual"]
    assert last < 0.8 * first


def test_psnr_and_ssim_match_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=gen)
    y = (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    ref = [metrics.structural_similarity(x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(),
                                         channel_axis=2, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0) for i in range(2)]
    assert torch.allclose(ssim(x, y), torch.tensor(ref), atol=1e-4)
    ref_psnr = [metrics.peak_signal_noise_ratio(x[i].numpy(), y[i].numpy(), data_range=1.0) for i in range(2)]
    assert torch.allclose(psnr(x, y), torch.tensor(ref_psnr, dtype=torch.float32), atol=1e-3)


@pytest.mark.parametrize("override,key", [("data.image_size=48", "data.image_size"), ("model.kind=fomm", "model.kind"),
                                          ("loss.pose=-1", "loss.pose"), ("model.kp_temperature=0", "model.kp_temperature")])
def test_bad_config_is_one_line_naming_the_key(tmp_path, capsys, override, key):
    code = main(["train", "face_vid2vid", "--out", str(tmp_path / "run"), override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and key in err


def test_trains_on_a_user_video_folder_and_a_missing_folder_is_one_line(tmp_path, capsys):
    from imaginate.data.heads import head_clip
    from imaginate.engine.video import write_mp4

    for i in range(2):
        (tmp_path / "videos" / f"id{i}").mkdir(parents=True)
        write_mp4(head_clip(10 + i, i, num_frames=4, size=64).frames, tmp_path / "videos" / f"id{i}" / "a.mp4")
    spec, cfg = small_config(["train.steps=3", f"data.video_folder={tmp_path / 'videos'}", "data.eval_clips=1",
                              "data.eval_frames=2"])
    metrics = run_training(spec, cfg, tmp_path / "run", progress=False)
    assert all(math.isfinite(v) for v in metrics.values())
    code = main(["train", "face_vid2vid", "--no-progress", "--out", str(tmp_path / "run2"), "train.steps=1",
                 f"data.video_folder={tmp_path / 'nothing'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nothing" in err


@pytest.mark.slow
def test_paper_preset_builds_at_the_notes_sizes():
    from imaginate.systems.face_vid2vid.model import FaceVid2Vid

    spec = get_system("face_vid2vid")
    cfg = build_config(spec.config_cls, preset="paper", system="face_vid2vid")
    assert cfg.model.image_size == 256 and cfg.model.num_keypoints == 20
    assert (cfg.loss.perceptual, cfg.loss.gan, cfg.loss.feature_matching, cfg.loss.equivariance,
            cfg.loss.keypoint_prior, cfg.loss.pose, cfg.loss.deformation) == (10, 1, 10, 20, 10, 20, 5)
    model = FaceVid2Vid(cfg.model)
    with torch.no_grad():
        volume = model.appearance(torch.rand(1, 3, 64, 64))  # fully convolutional: 256 px gives 64 x 64
    assert volume.shape == (1, 32, 16, 16, 16)  # F's [32, 16, H/4, W/4] volume
