"""The coco_funit system: tiny preset steps (COCO-FUNIT and FUNIT), the reconstruction loss falls,
K-shot averaging, pure-function batches, few-shot evaluation keys and helper nets, the sample grid,
the paper preset's exact sizes, and the translate command (PNG written, one-line errors)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
from PIL import Image

import imaginate.systems.coco_funit  # noqa: F401  (registers the system)
from imaginate.cli import UserError
from imaginate.config import ConfigError, build_config
from imaginate.data import SPLIT, DataError, SpeciesContent, SpeciesDataset, render_species
from imaginate.engine import DistEnv, RunContext, run_training, unwrap
from imaginate.engine.checkpoint import checkpoint_path
from imaginate.registry import get_system
from imaginate.systems.coco_funit import evaluation, helpers
from imaginate.systems.coco_funit.evaluation import POSE_BINS, mask_iou, species_eval_data
from imaginate.systems.coco_funit.helpers import (
    SpeciesClassifier,
    cached_helper,
    train_mask_net,
    train_species_classifier,
)
from imaginate.systems.coco_funit.model import build_networks
from imaginate.systems.coco_funit.system import COCOFUNITConfig, COCOFUNITSystem
from imaginate.systems.coco_funit.translate import add_translate_parser

TINY = ["data.images_per_species=4", "train.batch_size=4"]
TINY_EVAL = ["eval.shots=[1,2]", "eval.translations_per_class=3", "eval.real_per_class=3",
             "eval.helper_images_per_class=2", "eval.classifier_steps=2", "eval.mask_net_steps=2"]


def make_system(overrides: list[str] = ()) -> COCOFUNITSystem:
    cfg = build_config(COCOFUNITConfig, preset="tiny", system="coco_funit", overrides=[*TINY, *overrides])
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), False, 1, cfg.train.seed, cfg.train.batch_size)
    torch.manual_seed(cfg.train.seed)
    return COCOFUNITSystem(cfg, ctx)


@pytest.mark.parametrize("conditioned", [True, False], ids=["coco_funit", "funit"])
def test_tiny_preset_one_step_finite_and_updates_every_network(conditioned: bool) -> None:
    system = make_system([f"model.content_conditioned={str(conditioned).lower()}"])
    g, d = unwrap(system.generator), unwrap(system.discriminator)
    assert hasattr(g, "constant_style_bias") == conditioned
    before = {name: [p.detach().clone() for p in net.parameters()]
              for name, net in (("g", g), ("d", d), ("ema", system.eval_generator))}
    logs = system.train_step(system.train_batch(0))
    expected = {"discriminator_loss", "d_real", "d_fake", "generator_loss", "g_gan", "feature_matching",
                "reconstruction"}
    assert expected <= set(logs) and all(math.isfinite(v) for v in logs.values())
    for name, net in (("g", g), ("d", d), ("ema", system.eval_generator)):
        assert any(not torch.equal(p0, p1) for p0, p1 in zip(before[name], net.parameters())), name
    assert set(system.modules) == {"generator", "discriminator", "generator_ema"}


def test_reconstruction_loss_falls_on_a_fixed_batch() -> None:
    """The L1 reconstruction term alone (x_aa = G(x_a, x_a) -> x_a) must drive the loss down quickly.
    (With the full objective it falls too, but about as much without the term: the GAN terms alone
    move the initial grey output towards image colours, so that would not test the term.)"""
    system = make_system(["loss.gan=0", "loss.feature_matching=0", "loss.reconstruction=1"])
    batch = system.train_batch(0)
    recon = [system.train_step(batch)["reconstruction"] for _ in range(30)]
    assert sum(recon[-5:]) / 5 < 0.5 * recon[0], recon  # measured: 0.45 -> 0.15


def test_adversarial_warmup_ramps_the_gan_terms_from_zero() -> None:
    """In the first half of a warm-up the G loss is the reconstruction term alone; three quarters in the
    GAN and feature-matching terms count half; after it they count fully (the weights of the config)."""
    system = make_system(["loss.adversarial_warmup=10", "loss.reconstruction=2"])
    w = system.cfg.loss
    for step, scale in ((0, 0.0), (4, 0.0), (6, 0.2), (10, 1.0), (40, 1.0)):
        batch = system.train_batch(step)
        torch.manual_seed(0)
        loss, logs = system.generator_loss(batch)
        expected = scale * (w.gan * logs["g_gan"] + w.feature_matching * logs["feature_matching"]) \
            + w.reconstruction * logs["reconstruction"]
        assert logs["adversarial_scale"] == pytest.approx(scale)
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-5), step
    assert abs(logs["g_gan"]) > 0.01  # the ramp scales a term that is there
    with pytest.raises(ConfigError, match="loss.adversarial_warmup"):
        build_config(COCOFUNITConfig, preset="tiny", system="coco_funit", overrides=["loss.adversarial_warmup=-1"])


def test_batches_are_a_pure_function_of_seed_and_step_with_k_same_class_styles() -> None:
    a, b = make_system(["style_shots=3"]), make_system(["style_shots=3"])
    batch_a, batch_b = a.train_batch(5), b.train_batch(5)
    for key in batch_a:
        assert torch.equal(batch_a[key], batch_b[key]), key
    assert not torch.equal(a.train_batch(6)["style"], batch_a["style"])
    assert batch_a["style"].shape == (4, 3, 3, 32, 32) and batch_a["content"].shape == (4, 3, 32, 32)
    rows = a.style_indices(5)  # [B, K]: every row one class, the label of the batch
    labels = a.data.labels[rows]
    assert torch.equal(labels, labels[:, :1].expand_as(labels))
    assert torch.equal(labels[:, 0], batch_a["style_label"])
    assert batch_a["content"].min() >= -1 and batch_a["content"].max() <= 1


@pytest.mark.parametrize("conditioned", [True, False], ids=["coco_funit", "funit"])
def test_k_shot_translation_averages_the_raw_style_codes(conditioned: bool) -> None:
    system = make_system(["ema_beta=0", f"model.content_conditioned={str(conditioned).lower()}"])
    net = system.eval_generator.eval()
    content = torch.rand(2, 3, 32, 32)
    styles = torch.rand(2, 3, 3, 32, 32)  # K = 3
    out = system.translate(content, styles)
    with torch.no_grad():
        code = net.encode_content(content * 2 - 1)
        raw = net.encode_style((styles * 2 - 1).flatten(0, 1)).view(2, 3, -1).mean(1)  # [2, S]
        expected = (net.decode(code, net.style_code(code, raw)) + 1) / 2
        one_shot = system.translate(content, styles[:, 0])
    torch.testing.assert_close(out, expected.clamp(0, 1), atol=1e-5, rtol=1e-5)
    # the other examples matter (at initialisation COCO-FUNIT's code is dominated by the CSB: tiny effect)
    assert not torch.equal(out, one_shot)


def test_sample_grid_has_content_rows_and_style_columns() -> None:
    grids = make_system().sample()
    grid = grids["content_by_style"]
    assert grid.shape == (3, 5 * 34 + 2, 6 * 34 + 2)  # (4 contents + style row) x (5 styles + content column)
    assert torch.all(grid[:, 2:34, 2:34] == 1.0)  # the blank corner
    assert grids["reconstruction"].shape == (3, 2 * 34 + 2, 4 * 34 + 2)  # contents over their reconstructions


def test_evaluation_returns_the_few_shot_metrics(monkeypatch) -> None:
    monkeypatch.setattr(helpers, "_HELPERS", {})  # train the helper nets here, under no_grad as the engine does
    system = make_system(TINY_EVAL)
    with torch.no_grad():
        metrics = system.evaluate()
    for k in (1, 2):
        for name in ("pacc", "iou_content", "iou_target", "l1_gt", "psnr_gt", "style_leak", "style_leak_ideal",
                     "style_sensitivity", "style_sensitivity_ideal"):
            assert math.isfinite(metrics[f"{name}_k{k}"]), f"{name}_k{k}"
        assert f"mfid_k{k}" not in metrics  # off in the tiny preset (unstable at these sample counts)
        counts = [metrics[f"count_k{k}_pose_{label}"] for label, _, _ in POSE_BINS]
        assert sum(counts) == 3 * 5  # translations per class x unseen species
        for label, _, _ in POSE_BINS:
            for name in ("pacc", "iou_content", "iou_target"):
                assert f"{name}_k{k}_pose_{label}" in metrics
        assert 0 <= metrics[f"pacc_k{k}"] <= 1
    assert 0 <= metrics["pacc_real"] <= 1 and 0 <= metrics["iou_real"] <= 1
    assert 0 <= metrics["dead_style_code"] <= 1 and metrics["collapsed"] in (0.0, 1.0)
    with_fid = make_system([*TINY_EVAL, "eval.mfid=true"])
    with torch.no_grad():
        assert with_fid.evaluate()["mfid_k1"] >= 0
    assert system.evaluate() == pytest.approx(metrics, nan_ok=True)  # deterministic (cached helpers)


def test_style_sensitivity_is_zero_when_the_style_is_ignored() -> None:
    data = species_eval_data(32, 0, 4, 4, 4)
    classifier = SpeciesClassifier(data.num_classes)
    ignore = evaluation.few_shot_metrics(lambda c, s: c, data, classifier, [1], 3)
    assert ignore["style_sensitivity_k1"] == 0.0
    copy = evaluation.few_shot_metrics(lambda c, s: s[:, 0], data, classifier, [1], 3)
    assert copy["style_sensitivity_k1"] > 0.01  # the unseen species' example images differ


def test_helper_networks_are_deterministic_learn_and_cache_on_disk(tmp_path) -> None:
    data = species_eval_data(32, 0, 4, 2, 4)
    assert data.helper_masks is not None and data.num_classes == 24
    first = train_species_classifier(data.helper_images, data.helper_labels, 24, steps=3, batch_size=8)
    second = train_species_classifier(data.helper_images, data.helper_labels, 24, steps=3, batch_size=8)
    for p, q in zip(first.parameters(), second.parameters()):
        assert torch.equal(p, q)
    mask_net = train_mask_net(data.helper_images, data.helper_masks, steps=60, batch_size=16)
    with torch.no_grad():
        predicted = mask_net(data.helper_images)[:, 0] > 0
    assert float(mask_iou(predicted, data.helper_masks).mean()) > 0.5  # far above an empty prediction's 0
    calls = []

    def train() -> torch.nn.Module:
        calls.append(1)
        return torch.nn.Linear(2, 2)

    net = cached_helper("unit_test", {"x": 1}, train, lambda: torch.nn.Linear(2, 2), str(tmp_path))
    assert len(list(tmp_path.glob("unit_test-*.pt"))) == 1
    assert cached_helper("unit_test", {"x": 1}, train, lambda: torch.nn.Linear(2, 2), "") is net
    assert len(calls) == 1


class LookupNet(torch.nn.Module):
    """A stand-in helper net that knows the answer for images of a bank (logits or mask logits)."""

    def __init__(self, bank: torch.Tensor, answers: torch.Tensor, default: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))  # gives the metrics a device
        self.bank, self.answers, self.default = bank, answers, default

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rows = []
        for image in images:
            hit = torch.nonzero((self.bank == image).flatten(1).all(1)).flatten()
            rows.append(self.answers[hit[0]] if hit.numel() else self.default)
        return torch.stack(rows)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images)


def test_few_shot_metrics_bookkeeping_with_lookup_helpers() -> None:
    """Copying the style image reads as the target class; copying the content keeps its mask exactly."""
    data = species_eval_data(32, 0, 6, 5, 2)
    one_hot = torch.eye(24)
    classifier = LookupNet(data.style_images, one_hot[data.style_labels], one_hot[0])
    mask_net = LookupNet(data.content_images, data.content_masks[:, None].float() * 2 - 1,
                         -torch.ones(1, 32, 32))
    copy_style = evaluation.few_shot_metrics(lambda c, s: s[:, 0], data, classifier, [1, 3], 6, mask_net=mask_net)
    assert copy_style["pacc_real"] == 1 and copy_style["pacc_k1"] == 1 and copy_style["pacc_k3"] == 1
    assert copy_style["iou_content_k1"] == 0  # the mask net sees no known content image: empty masks
    copy_content = evaluation.few_shot_metrics(lambda c, s: c, data, classifier, [1], 6, mask_net=mask_net)
    assert copy_content["pacc_k1"] == 0 and copy_content["iou_real"] == 1 and copy_content["iou_content_k1"] == 1
    ideal = [render_species(u, SpeciesContent.from_tensor(data.content_poses[i], int(data.content_backgrounds[i])),
                            32)[1] for u in data.unseen for i in range(6)]
    expected = mask_iou(data.content_masks.repeat(len(data.unseen), 1, 1), torch.stack(ideal)).mean()
    assert copy_content["iou_target_k1"] == pytest.approx(float(expected))
    assert 0 < copy_content["iou_target_k1"] < 1  # other species have other shapes


def test_mask_iou() -> None:
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2], b[0, 1:3] = True, True  # 4 shared of 12 in the union
    torch.testing.assert_close(mask_iou(a, b), torch.tensor([1 / 3, 1.0], dtype=torch.float64))


def test_paper_preset_builds_the_reference_networks() -> None:
    overrides = ["data.root=/nonexistent", "data.split_file=/nonexistent.txt"]
    cfg = build_config(COCOFUNITConfig, preset="paper", system="coco_funit", overrides=overrides)
    assert (cfg.model.image_size, cfg.train.batch_size, cfg.optim.lr_g, cfg.optim.lr_d) == (256, 8, 1e-4, 1e-4)
    assert (cfg.train.steps, cfg.optim.lr_decay_every, cfg.optim.beta1) == (150_000, 100_000, 0.0)
    with torch.device("meta"):
        generator, discriminator = build_networks(cfg.model)
    assert sum(p.numel() for p in generator.parameters()) == 121_562_307
    assert sum(p.numel() for p in discriminator.parameters()) == 92_038_977
    with pytest.raises(ConfigError, match="data.root"):
        build_config(COCOFUNITConfig, preset="paper", system="coco_funit")


def test_too_few_class_embeddings_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.num_classes"):
        make_system(["model.num_classes=5"])


def test_image_folder_data_trains_evaluates_and_samples(tmp_path) -> None:
    classes = {"cat": 0, "dog": 1, "fox": 2, "owl": 3}  # folder class -> species drawn in it
    for name, species in classes.items():
        (tmp_path / name).mkdir()
        for i in range(3):
            _png(tmp_path / name / f"{i}.png", species, angle=20.0 * i, size=40)  # resized to 32
    split = tmp_path / "split.txt"
    split.write_text("[seen]\ncat\ndog\nfox\n[unseen]\nowl\n")
    system = make_system([*TINY_EVAL, "data.name=image_folder", f"data.root={tmp_path}",
                          f"data.split_file={split}", "model.num_classes=3"])
    assert system.data.class_names == ["cat", "dog", "fox"]
    logs = system.train_step(system.train_batch(0))
    assert all(math.isfinite(v) for v in logs.values())
    with torch.no_grad():
        metrics = system.evaluate()
    # no masks, no poses; one unseen class: no pair for the style sensitivity
    assert {"pacc_real", "pacc_k1", "pacc_k2", "style_sensitivity_k1", "style_sensitivity_k2", "dead_style_code",
            "collapsed"} == set(metrics)
    assert metrics["collapsed"] == 0.0  # no style sensitivity to judge (NaN): not called collapsed
    assert math.isnan(metrics["style_sensitivity_k1"])
    grid = system.sample()["content_by_style"]
    assert grid.shape == (3, 4 * 34 + 2, 2 * 34 + 2)  # 3 seen contents + style row, 1 unseen style + column


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path) -> None:
    spec = get_system("coco_funit")
    common = [*TINY, *TINY_EVAL, "train.ckpt_every=2", "train.sample_every=0", "train.num_threads=1",
              "ema_beta=0.5", "style_shots=2"]

    def config(steps: int):
        return build_config(spec.config_cls, preset="tiny", system="coco_funit",
                            overrides=[*common, f"train.steps={steps}"])

    run_training(spec, config(4), tmp_path / "straight", progress=False)
    run_training(spec, config(2), tmp_path / "resumed", progress=False)
    run_training(spec, config(4), tmp_path / "resumed", resume=True, progress=False)
    straight, resumed = (torch.load(checkpoint_path(tmp_path / name, 4), weights_only=True)
                         for name in ("straight", "resumed"))
    for module in ("generator", "discriminator", "generator_ema"):
        for key, value in straight["modules"][module].items():
            assert torch.equal(value, resumed["modules"][module][key]), f"{module}.{key}"


# ------------------------------------------------------------------ translate


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "coco_funit"
    spec = get_system("coco_funit")
    cfg = build_config(spec.config_cls, preset="tiny", system="coco_funit",
                       overrides=[*TINY, *TINY_EVAL, "train.steps=2", "train.ckpt_every=2", "train.sample_every=0",
                                  "train.log_every=1"])
    run_training(spec, cfg, run_dir, progress=False)
    return run_dir


def _png(path, species: int, angle: float = 0.0, size: int = 32) -> str:
    image, _ = render_species(species, SpeciesContent(angle=angle), size)
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    return str(path)


def _translate(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="imaginate")
    add_translate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["translate", *argv])
    return args.func(args)


def test_translate_writes_content_styles_output_and_an_interpolation_strip(tiny_run, tmp_path) -> None:
    content = _png(tmp_path / "content.png", 0, angle=30.0)
    styles = [_png(tmp_path / "s1.png", 3), _png(tmp_path / "s2.png", 3, size=48)]  # 48 px: resized
    out = tmp_path / "out.png"
    assert _translate("--checkpoint", str(tiny_run), "--content", content, "--style", *styles,
                      "--out", str(out)) == 0
    assert Image.open(out).size == (4 * 34 + 2, 34 + 2)  # content | 2 styles | output, 32 px tiles, pad 2
    strip = tmp_path / "strip.png"
    assert _translate("--checkpoint", str(tiny_run), "--content", content, "--style", styles[0], "--out",
                      str(strip), "--interpolate", _png(tmp_path / "other.png", 6), "--steps", "4") == 0
    assert Image.open(strip).size == (5 * 34 + 2, 2 * 34 + 2)  # second row: other style | 4 steps


def test_translate_errors_are_one_line_and_name_the_file(tiny_run, tmp_path) -> None:
    good = _png(tmp_path / "good.png", 0)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    wide = tmp_path / "wide.png"
    Image.new("RGB", (100, 20)).save(wide)
    base = ["--checkpoint", str(tiny_run), "--out", str(tmp_path / "o.png")]
    cases = [
        (["--content", str(tmp_path / "missing.png"), "--style", good], DataError, "missing.png"),
        (["--content", good, "--style", str(text)], DataError, "notes.png"),
        (["--content", good, "--style", str(wide)], DataError, "wide.png"),
    ]
    for argv, error, name in cases:
        with pytest.raises(error) as info:
            _translate(*base, *argv)
        message = str(info.value)
        assert name in message and "\n" not in message, message
    with pytest.raises(UserError, match="no such run folder"):
        _translate("--checkpoint", str(tmp_path / "nowhere"), "--content", good, "--style", good,
                   "--out", str(tmp_path / "o.png"))
    assert not (tmp_path / "o.png").exists()


def test_seen_targets_are_held_out_images_of_seen_species() -> None:
    """eval.targets=seen: the style examples are seen species' images that training never drew."""
    seen = species_eval_data(32, 0, 6, 4, 2, True, "simple", "seen")
    unseen = species_eval_data(32, 0, 6, 4, 2, True, "simple")
    assert seen.unseen == list(evaluation.SEEN_TARGETS) and set(seen.unseen) <= set(SPLIT.seen)
    assert set(seen.style_labels.tolist()) == set(evaluation.SEEN_TARGETS)
    assert unseen.unseen == list(SPLIT.unseen)
    assert seen.name == unseen.name  # the helper networks (trained on all species) are shared
    assert torch.equal(seen.content_images, unseen.content_images)
    training = SpeciesDataset(evaluation.SEEN_TARGETS, 100, 32, 0, True, "simple").prerender().images
    same = (seen.style_images[:, None] == training[None]).flatten(2).all(2)  # [styles, training]
    assert not same.any()


def test_eval_targets_is_checked() -> None:
    with pytest.raises(ConfigError, match="eval.targets"):
        build_config(COCOFUNITConfig, preset="tiny", system="coco_funit", overrides=["eval.targets=train"])
    with pytest.raises(ConfigError, match="eval.targets"):
        build_config(COCOFUNITConfig, preset="paper", system="coco_funit",
                     overrides=["data.root=/nowhere", "data.split_file=/nowhere.txt", "eval.targets=seen"])


def test_extra_species_join_training_and_the_unseen_stay_unseen() -> None:
    system = make_system(["data.extra_species=6", "model.num_classes=25", "data.variant=simple"])
    data = system.data
    assert len(data.class_names) == 19 + 6 and len(data) == 25 * 4
    ids = set(data.species.species.tolist())
    assert ids == set(SPLIT.seen) | set(range(24, 30)) and not ids & set(SPLIT.unseen)
    extra = data.images(torch.nonzero(data.labels >= 19).flatten())  # rendered, distinct species
    assert extra.std() > 0.05 and not torch.equal(extra[:4], extra[4:8])
    logs = system.train_step(system.train_batch(0))  # the projection D has a row for every training species
    assert all(math.isfinite(v) for v in logs.values())
    with pytest.raises(ConfigError, match="model.num_classes"):
        _ = make_system(["data.extra_species=6"]).data  # 19 + 6 species, 19 class rows
    with pytest.raises(ConfigError, match="data.extra_species"):
        build_config(COCOFUNITConfig, preset="tiny", system="coco_funit", overrides=["data.extra_species=-1"])
