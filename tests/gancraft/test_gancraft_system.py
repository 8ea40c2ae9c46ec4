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


def test_tiny_preset_trains_8_steps_on_fresh_views_with_finite_losses(tmp_path):
    metrics = train(tmp_path / "run", 8)
    rows = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert len(rows) == 8
    for key in ("discriminator_loss", "generator_loss", "l2", "perceptual", "g_gan", "kl", "d_real", "d_fake",
                "render_sky_fraction", "view_sky_fraction"):
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
                 "--samples", "8",
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


def test_render_keyframes_to_png_frames_at_any_size(tiny_run, tmp_path, capsys):
    keys = tmp_path / "cams.json"
    keys.write_text(json.dumps({"fov": 60, "keyframes": [
        {"position": [2, 14, 2], "target": [12, 4, 12]},
        {"position": [20, 14, 4], "target": [12, 4, 12], "fov": 40},
        {"position": [20, 12, 20], "target": [10, 5, 10]}]}))
    frames = tmp_path / "frames"
    assert main(["render", "--checkpoint", str(tiny_run), "--keyframes", str(keys), "--frames", "5", "--width", "24",
                 "--height", "16", "--samples", "6", "--tile", "16", "--png-dir", str(frames)]) == 0
    from PIL import Image

    pngs = sorted(frames.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(5)]
    images = [np.asarray(Image.open(p)) for p in pngs]
    assert images[0].shape == (16, 24, 3)
    assert not np.array_equal(images[0], images[2])  # the camera moved


def test_keyframe_path_passes_through_the_keyframes():
    from imaginate.systems.gancraft.render import keyframe_path

    keys = [([0.0, 10.0, 0.0], [5.0, 0.0, 5.0], 60.0), ([10.0, 10.0, 0.0], [5.0, 0.0, 5.0], 40.0)]
    cameras = keyframe_path(keys, 3, 16, 16)
    torch.testing.assert_close(cameras[0].position, torch.tensor([0.0, 10.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(cameras[1].position, torch.tensor([5.0, 10.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(cameras[2].position, torch.tensor([10.0, 10.0, 0.0], dtype=torch.float64))
    focal = [float(c.intrinsics[0, 0]) for c in cameras]
    assert focal[0] < focal[1] < focal[2]  # the field of view narrows 60 -> 50 -> 40 degrees


def test_a_world_in_the_reference_layout_is_the_training_world_with_layout_yzx(tiny_run, tmp_path, capsys):
    from imaginate.data.blockworld.world import to_layout

    world = generate_world((24, 16, 24), seed=1)  # SMALL's training world
    # the reference's sch2vox: a schematic's Blocks (index (y * Length + z) * Width + x) reshaped to
    # (Height, Length, Width) = [Y, Z, X]
    schematic_blocks = world.blocks.numpy().transpose(1, 2, 0).reshape(-1)
    reference = tmp_path / "reference.npy"
    np.save(reference, schematic_blocks.reshape(16, 24, 24).astype(np.int16))
    np.testing.assert_array_equal(np.load(reference), to_layout(world.blocks.numpy(), "yzx"))
    args = ["render", "--checkpoint", str(tiny_run), "--world", str(reference), "--frames", "2", "--size", "8",
            "--samples", "2", "--out", str(tmp_path / "v.mp4")]
    assert main(args + ["--layout", "yzx"]) == 0
    assert "not the run's training world" not in capsys.readouterr().out
    assert main(args + ["--layout", "yxz"]) == 0  # the mirror image: X and Z swapped
    assert "not the run's training world" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--path", "spiral"], "--path"),
    (["--world", "missing.npy"], "does not exist"),
    (["--layout", "abc"], "--layout"),
    (["--keyframes", "missing.json"], "--keyframes"),
    (["--samples", "0"], "--samples"),
])
def test_render_errors_are_one_line(tiny_run, tmp_path, capsys, args, message):
    if args[0] == "--keyframes":
        args = ["--keyframes", str(tmp_path / args[1])]
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


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable JSON"),
    ('[{"position": [0, 1, 2], "target": [3, 4, 5]}]', "at least 2"),
    ('[{"position": [0, 1], "target": [3, 4, 5]}, {"position": [0, 1, 2], "target": [3, 4, 5]}]', "keyframe 0 position"),
    ('[{"position": [0, 1, 2], "target": [3, 4, 5], "fov": 200}, {"position": [0, 1, 2], "target": [3, 4, 5]}]',
     "keyframe 0 fov"),
])
def test_malformed_keyframe_files_are_one_line_errors(tiny_run, tmp_path, capsys, content, message):
    keys = tmp_path / "cams.json"
    keys.write_text(content)
    code = main(["render", "--checkpoint", str(tiny_run), "--keyframes", str(keys), "--out", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err and "cams.json" in err


def test_vgg19_perceptual_uses_the_reference_layers_and_weights(monkeypatch):
    from torch import nn

    import imaginate.nn.perceptual as perceptual
    from imaginate.engine import RunContext
    from imaginate.engine.distributed import DistEnv

    built = {}

    class FakeVGG(nn.Module):  # stands in for the weights file this box does not have
        def __init__(self, weights_path=None, layers=()):
            super().__init__()
            built["layers"] = tuple(layers)

        def forward(self, x):
            return [x] * len(built["layers"])

    monkeypatch.setattr(perceptual, "VGG19Features", FakeVGG)
    spec = get_system("gancraft")
    cfg = build_config(spec.config_cls, preset="tiny", system="gancraft",
                       overrides=["loss.perceptual_net=vgg19", "train.device=cpu"])
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0, global_batch=4)
    system = spec.system_cls(cfg, ctx)
    assert built["layers"] == ("relu3_1", "relu4_1", "relu5_1")
    assert [float(w) for w in system.perceptual.layer_weights] == [0.125, 0.25, 1.0]


def test_fpse_discriminator_is_quarter_resolution():
    from imaginate.systems.gancraft.discriminator import FPSEDiscriminator, downsample_labels, fpse_losses

    net = FPSEDiscriminator(10, channels=4)
    logits = net(torch.randn(2, 3, 64, 32))
    assert logits.shape == (2, 11, 16, 8)
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :4, :4] = 3
    labels[0, 0, 0] = 5  # a minority pixel loses the vote in its 4x4 area
    small = downsample_labels(labels, (2, 2), 10)
    assert small.tolist() == [[[3, 0], [0, 0]]]
    perfect = torch.full((1, 11, 2, 2), -20.0)
    perfect.scatter_(1, small[:, None], 20.0)
    assert float(fpse_losses(perfect, labels, True)) < 1e-6 and float(fpse_losses(perfect, labels, False)) > 10
    with pytest.raises(Exception, match="multiple of 32"):
        build_config(get_system("gancraft").config_cls, preset="tiny", system="gancraft",
                     overrides=["disc_type=fpse", "data.image_size=48"])


@pytest.mark.slow  # ~3 min on the loaded 2-core box (translator + 2 steps at 32 px)
def test_fpse_discriminator_trains(tmp_path):
    spec = get_system("gancraft")
    cfg = build_config(spec.config_cls, preset="tiny", system="gancraft",
                       overrides=SMALL + ["data.image_size=32", "disc_type=fpse", "disc_channels=4", "train.steps=2"])
    run_training(spec, cfg, tmp_path / "run", progress=False)
    rows = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert len(rows) == 2 and all(math.isfinite(r["d_real"]) and math.isfinite(r["g_gan"]) for r in rows)
