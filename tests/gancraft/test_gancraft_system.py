"""GANcraft as a system: the tiny preset trains with finite losses, the OASIS N+1 loss against a hand
computation, the view-consistency metric, world-file errors through the CLI, and ``imaginate render``."""

import json
import math

import numpy as np
import pytest
import torch

from imaginate.cli import main
from imaginate.config import build_config
from imaginate.data.blockworld import generate_world, orbit, save_world
from imaginate.engine import run_training
from imaginate.engine.logging import read_metrics
from imaginate.engine.video import read_mp4
from imaginate.registry import get_system
from imaginate.systems.gancraft.discriminator import (
    SegmentationDiscriminator,
    class_balance_weights,
    discriminator_loss,
    oasis_fake_loss,
    oasis_real_loss,
)
from imaginate.systems.gancraft.evaluation import cross_view_std, surface_keys
from imaginate.systems.gancraft.views import cast_views, hits_of

# the tiny preset shrunk further so that a test trains in seconds on one thread
SMALL = ["data.world_size=[24,16,24]", "data.num_views=6", "data.image_size=16", "data.photo_worlds=1",
         "data.photos_per_world=6", "data.translator_steps=3", "data.translator_worlds=1",
         "data.translator_views_per_world=4", "train.batch_size=2", "eval_views=4", "eval_path_frames=3",
         "train.device=cpu", "train.log_every=1", "train.ckpt_every=0", "train.sample_every=0"]


def train(run_dir, steps):
    spec = get_system("gancraft")
    cfg = build_config(spec.config_cls, preset="tiny", system="gancraft", overrides=SMALL + [f"train.steps={steps}"])
    return run_training(spec, cfg, run_dir, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gancraft") / "run"
    train(run_dir, 2)
    return run_dir


def test_tiny_preset_trains_20_steps_with_finite_losses(tmp_path):
    metrics = train(tmp_path / "run", 20)
    rows = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert len(rows) == 20
    for key in ("discriminator_loss", "generator_loss", "l2", "perceptual", "g_gan", "kl", "d_real", "d_fake"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert metrics["view_cells"] > 0 and math.isfinite(metrics["view_std_spade"])
    assert (tmp_path / "run" / "samples").is_dir() and any((tmp_path / "run" / "samples").iterdir())


def test_oasis_losses_match_a_hand_computation():
    # 3 pixels, labels (0, 0, 1) of N = 2, logits over N + 1 = 3 classes (class 2 = fake)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T.reshape(1, 3, 1, 3)
    labels = torch.tensor([[[0, 0, 1]]])
    # class weights: 3 pixels / (2 labels present * count) -> 0.75, 0.75, 1.5
    assert torch.allclose(class_balance_weights(labels, 2), torch.tensor([[[0.75, 0.75, 1.5]]]))
    e = math.e
    ce = [math.log(e**2 + 2) - 2, math.log(3), math.log(2 + e) - 1]
    expected_real = (0.75 * ce[0] + 0.75 * ce[1] + 1.5 * ce[2]) / 3
    assert oasis_real_loss(logits, labels).item() == pytest.approx(expected_real, rel=1e-6)
    fake_ce = [math.log(e**2 + 2), math.log(3), math.log(2 + e)]  # target class 2 has logit 0 everywhere
    assert oasis_fake_loss(logits).item() == pytest.approx(sum(fake_ce) / 3, rel=1e-6)
    total, logs = discriminator_loss([logits, logits], [labels, labels], [0.5, 0.5], logits)
    assert total.item() == pytest.approx(expected_real + sum(fake_ce) / 3, rel=1e-6)
    assert logs["d_real"] == pytest.approx(expected_real, rel=1e-6)


def test_segmentation_discriminator_outputs_n_plus_1_logits_per_pixel():
    net = SegmentationDiscriminator(num_labels=5, channels=4, depth=2)
    assert net(torch.zeros(2, 3, 16, 12)).shape == (2, 6, 16, 12)


def test_cross_view_std_is_zero_for_consistent_colours_and_positive_for_flicker():
    world = generate_world((24, 16, 24), seed=3)
    views = cast_views(world, orbit(world, 4, 24, 24), max_hits=1)
    keys = surface_keys(hits_of(views), views["origins"], views["directions"])
    assert bool((keys >= 0).any())
    # a colour that is a function of the surface cell: identical in every frame
    colour = torch.stack([(keys % 7) / 6, (keys % 11) / 10, (keys % 13) / 12], dim=1).float().clamp(min=0)
    std, contrast, cells = cross_view_std(colour, keys)
    assert cells > 0 and std == pytest.approx(0.0, abs=1e-9) and contrast > 0.1
    flicker = (colour + 0.2 * torch.arange(4).view(4, 1, 1, 1)).clamp(0, 1)  # a per-frame brightness change
    assert cross_view_std(flicker, keys)[0] > 0.05


def test_malformed_world_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "world.npy"
    bad.write_bytes(b"not an npy file")
    code = main(["train", "gancraft", "--out", str(tmp_path / "run"), f"data.world_file={bad}", *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(bad) in err and "npy" in err
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((4, 4), dtype=np.int32))
    code = main(["train", "gancraft", "--out", str(tmp_path / "run2"), f"data.world_file={flat}", *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "3-D" in err


def test_render_writes_an_mp4_of_the_requested_frames(tiny_run, tmp_path, capsys):
    out = tmp_path / "orbit.mp4"
    assert main(["render", "--checkpoint", str(tiny_run), "--path", "orbit", "--frames", "4", "--size", "32",
                 "--out", str(out)]) == 0
    video = read_mp4(out)
    assert video.shape == (4, 3, 32, 32)
    # another world: rendered with random corner features (and said so), along a fly-through
    other = tmp_path / "other.npy"
    save_world(generate_world((24, 16, 24), seed=5), other)
    assert main(["render", "--checkpoint", str(tiny_run), "--world", str(other), "--path", "fly", "--frames", "4",
                 "--size", "16", "--seed", "1", "--out", str(tmp_path / "fly.mp4")]) == 0
    assert "not the run's training world" in capsys.readouterr().out
    assert read_mp4(tmp_path / "fly.mp4").shape[0] == 4


@pytest.mark.parametrize("args, message", [
    (["--path", "spiral"], "--path"),
    (["--world", "missing.npy"], "does not exist"),
])
def test_render_errors_are_one_line(tiny_run, tmp_path, capsys, args, message):
    code = main(["render", "--checkpoint", str(tiny_run), "--out", str(tmp_path / "v.mp4"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err


def test_render_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["render", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "v.mp4")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_run_config_is_saved_with_the_run(tiny_run):
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["system"] == "gancraft"


def test_presets_use_the_model_factories_and_the_papers_optimisation():
    from imaginate.engine import RunContext
    from imaginate.engine.distributed import DistEnv
    from imaginate.systems.gancraft.model import GANcraftModelConfig

    spec = get_system("gancraft")
    tiny = build_config(spec.config_cls, preset="tiny", system="gancraft")
    assert tiny.model == GANcraftModelConfig.tiny()
    paper = build_config(spec.config_cls, preset="paper", system="gancraft", overrides=["train.device=cpu"])
    assert paper.model == GANcraftModelConfig.paper()
    assert (paper.optim.lr_g, paper.optim.lr_d, paper.optim.beta1, paper.optim.beta2) == (1e-4, 4e-4, 0.0, 0.999)
    w = paper.loss
    assert (w.l2, w.perceptual, w.gan_photo, w.gan_pseudo_gt, w.kl) == (10.0, 10.0, 0.5, 0.5, 0.05)
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0, global_batch=8)
    system = spec.system_cls(paper, ctx)  # builds without touching data (translator training is lazy)
    assert system.modules["discriminator"].head.out_channels == paper.model.num_labels + 1


@pytest.mark.parametrize("override, field", [
    ("data.world_seed=900000", "data.world_seed"),
    ("data.image_size=20", "data.image_size"),
    ("loss.perceptual_net=lpips", "loss.perceptual_net"),
    ("optim.beta1=1.0", "optim.beta1"),
])
def test_bad_config_values_name_the_field(override, field):
    from imaginate.config import ConfigError

    spec = get_system("gancraft")
    with pytest.raises(ConfigError, match=field):
        build_config(spec.config_cls, preset="tiny", system="gancraft", overrides=[override])
