"""Style-code collapse made visible (the training monitor, the evaluation's verdict), the options that
avoid it (defaults = the reference), the G step's single content encoding, and the ground-truth
metrics (oracle translator ideal, style copier worst)."""

from __future__ import annotations

import copy

import pytest
import torch

import imaginate.systems.coco_funit  # noqa: F401  (registers the system)
from imaginate.config import build_config
from imaginate.data import load_species, render_species_batch
from imaginate.data.species import PLAIN_BACKGROUND
from imaginate.engine import DistEnv, RunContext, unwrap
from imaginate.systems.coco_funit import evaluation
from imaginate.systems.coco_funit.evaluation import eval_dead_share, is_collapsed, species_eval_data
from imaginate.systems.coco_funit.helpers import SpeciesClassifier
from imaginate.systems.coco_funit.model import (
    COCOFUNITGenerator,
    COCOFUNITModelConfig,
    build_networks,
    dead_share,
    small_model_config,
)
from imaginate.systems.coco_funit.system import COCOFUNITConfig, COCOFUNITSystem

TINY = ["data.images_per_species=4", "train.batch_size=4"]


def make_system(overrides: list[str] = ()) -> COCOFUNITSystem:
    cfg = build_config(COCOFUNITConfig, preset="tiny", system="coco_funit", overrides=[*TINY, *overrides])
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), False, 1, cfg.train.seed, cfg.train.batch_size)
    torch.manual_seed(cfg.train.seed)
    return COCOFUNITSystem(cfg, ctx)


def kill_style_code(system: COCOFUNITSystem) -> None:
    """Make every style-code dimension zero for every input (the collapse seen in the tiny preset)."""
    for net in (unwrap(system.generator), system.eval_generator):
        last = net.style_mlp[-2]  # the last Linear (a ReLU follows)
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(-1.0)


def test_dead_share_counts_dimensions_zero_for_every_row() -> None:
    codes = torch.rand(8, 10) + 0.1
    assert dead_share(codes) == 0.0
    codes[:, :4] = 0
    codes[0, 5] = 0  # zero for one row only: alive
    assert dead_share(codes) == pytest.approx(0.4)
    assert dead_share(torch.zeros(3, 5)) == 1.0
    with pytest.raises(ValueError):
        dead_share(torch.zeros(1, 5))


def test_training_monitor_flags_a_dead_code_and_not_a_healthy_one() -> None:
    healthy = make_system(["model.style_bias_init=0.03", "model.code_last_relu=false"])
    logs = healthy.train_step(healthy.train_batch(0))
    assert logs["dead_style_code"] < 0.5 and logs["style_sensitivity"] > 0.0  # small at init, never exactly 0
    dead = make_system()
    kill_style_code(dead)
    logs = dead.train_step(dead.train_batch(0))
    assert logs["dead_style_code"] == 1.0 and logs["style_sensitivity"] == 0.0


def test_evaluation_calls_a_dead_run_collapsed() -> None:
    data = species_eval_data(32, 0, 8, 4, 2)
    dead = make_system()
    kill_style_code(dead)
    assert eval_dead_share(dead, data) == 1.0
    healthy = make_system(["model.style_bias_init=0.03", "model.code_last_relu=false"])
    assert eval_dead_share(healthy, data) < 0.5
    assert is_collapsed({"dead_style_code": 1.0, "style_sensitivity_k1": 0.2})
    assert is_collapsed({"dead_style_code": 0.0, "style_sensitivity_k1": 0.001, "style_sensitivity_ideal_k1": 0.1})
    assert not is_collapsed({"dead_style_code": 0.5, "style_sensitivity_k1": 0.05, "style_sensitivity_ideal_k1": 0.1})
    healthy_metrics = {"dead_style_code": 0.0, "style_sensitivity_k1": 0.05, "style_sensitivity_ideal_k1": 0.1}
    assert not is_collapsed(healthy_metrics | {"foreground_ratio_k1": 0.9})
    assert is_collapsed(healthy_metrics | {"foreground_ratio_k1": 0.1})  # draws almost no creature


def test_default_options_keep_the_reference_sizes_and_initialisation() -> None:
    paper = COCOFUNITModelConfig()
    assert paper.style_bias_init == 1.0 and paper.code_last_relu
    with torch.device("meta"):
        generator, discriminator = build_networks(paper)
    assert sum(p.numel() for p in generator.parameters()) == 121_562_307
    assert sum(p.numel() for p in discriminator.parameters()) == 92_038_977
    # the CSB is N(0, 1) by default and the option only scales the same draw; the MLPs end in ReLU
    torch.manual_seed(3)
    default = COCOFUNITGenerator.from_config(small_model_config(usb_dims=4096))
    torch.manual_seed(3)
    scaled = COCOFUNITGenerator.from_config(small_model_config(usb_dims=4096, style_bias_init=0.03))
    torch.testing.assert_close(scaled.constant_style_bias, 0.03 * default.constant_style_bias)
    assert abs(float(default.constant_style_bias.detach().std()) - 1.0) < 0.05
    assert isinstance(default.style_mlp[-1], torch.nn.ReLU) and isinstance(default.content_mlp[-1], torch.nn.ReLU)
    for a, b in zip(default.state_dict().items(), scaled.state_dict().items()):
        if a[0] != "constant_style_bias":
            assert torch.equal(a[1], b[1]), a[0]
    no_relu = COCOFUNITGenerator.from_config(small_model_config(code_last_relu=False))
    assert isinstance(no_relu.style_mlp[-1], torch.nn.Linear)
    same_sizes = COCOFUNITGenerator.from_config(small_model_config())
    assert sum(p.numel() for p in no_relu.parameters()) == sum(p.numel() for p in same_sizes.parameters())
    with pytest.raises(ValueError, match="style_bias_init"):
        small_model_config(style_bias_init=-1.0)


@pytest.mark.parametrize("conditioned", [True, False], ids=["coco_funit", "funit"])
def test_generator_step_encodes_the_content_once_and_matches_two_calls(conditioned: bool) -> None:
    system = make_system([f"model.content_conditioned={str(conditioned).lower()}", "style_shots=2"])
    g = unwrap(system.generator)
    batch = system.train_batch(0)
    content, style = batch["content"], batch["style"]
    seen = []
    handle = g.content_encoder.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    system.generator_loss(batch)
    handle.remove()
    assert seen == [content.shape[0]]  # once, B images (the old step encoded 2B)
    with torch.no_grad():
        images, codes = g(content, style, reconstruct=True)
        as_style = content[:, None].expand(-1, style.shape[1], -1, -1, -1)
        two_calls = torch.cat([g(content, style), g(content, as_style)])
    torch.testing.assert_close(images, two_calls, atol=1e-5, rtol=1e-5)
    assert codes.shape == (2 * content.shape[0], g.style_dims)


def test_plain_background_is_uniform_grey_outside_the_mask() -> None:
    data = load_species("seen", 2, 32, 0, plain_background=True).prerender()
    outside = data.images.permute(0, 2, 3, 1)[~data.masks]  # [P, 3]
    assert torch.all(outside == torch.tensor(PLAIN_BACKGROUND))
    busy = load_species("seen", 2, 32, 0).prerender()
    assert torch.equal(busy.masks, data.masks)  # the same contents, only the background differs


class LookupMaskNet(torch.nn.Module):
    """Knows the true mask of every image of a bank; other images get an empty mask."""

    def __init__(self, bank: torch.Tensor, masks: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.bank, self.masks = bank, masks[:, None].float() * 2 - 1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rows = []
        for image in images:
            hit = torch.nonzero((self.bank == image).flatten(1).all(1)).flatten()
            rows.append(self.masks[hit[0]] if hit.numel() else -torch.ones_like(self.masks[0]))
        return torch.stack(rows)


def test_ground_truth_metrics_are_ideal_for_an_oracle_and_worst_for_a_style_copier() -> None:
    data = species_eval_data(32, 0, 6, 4, 2, True)
    n = 6
    ideal = {u: render_species_batch([u] * n, data.content_poses[:n], data.content_backgrounds[:n], 32, True)
             for u in data.unseen}
    bank = torch.cat([data.style_images] + [ideal[u][0] for u in data.unseen])
    masks = torch.cat([data.style_masks] + [ideal[u][1] for u in data.unseen])
    mask_net = LookupMaskNet(bank, masks)
    classifier = SpeciesClassifier(data.num_classes)

    def oracle(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        rows = [torch.nonzero((data.content_images == c).flatten(1).all(1)).flatten()[0] for c in content]
        u = int(data.style_labels[torch.nonzero((data.style_images == style[0, 0]).flatten(1).all(1))[0, 0]])
        return ideal[u][0][torch.stack(rows)]

    good = evaluation.few_shot_metrics(oracle, data, classifier, [1, 2], n, mask_net=mask_net, mfid=False)
    copier = evaluation.few_shot_metrics(lambda c, s: s[:, 0], data, classifier, [1, 2], n, mask_net=mask_net,
                                         mfid=False)
    for k in (1, 2):
        assert good[f"l1_gt_k{k}"] == 0 and good[f"l1_fg_k{k}"] == 0
        assert good[f"psnr_gt_k{k}"] == pytest.approx(100.0)
        assert good[f"iou_target_k{k}"] == 1.0
        assert good[f"style_leak_k{k}"] == pytest.approx(good[f"style_leak_ideal_k{k}"])
        assert good[f"style_sensitivity_k{k}"] == pytest.approx(good[f"style_sensitivity_ideal_k{k}"])
        assert copier[f"l1_gt_k{k}"] > 0.02 and copier[f"psnr_gt_k{k}"] < 40
        assert copier[f"l1_fg_k{k}"] > 3 * copier[f"l1_gt_k{k}"]  # the errors sit on the creatures
        assert copier[f"style_leak_k{k}"] > good[f"style_leak_k{k}"]
    assert copier["style_leak_k1"] == 1.0  # K = 1: the output is the style example, its mask exactly
    assert good["foreground_ratio_k1"] == 1.0 and good["foreground_ratio_k2"] == 1.0
    assert copier["foreground_ratio_k1"] > 0.3  # the example's creature: about as large as the truth's
    blank = evaluation.few_shot_metrics(lambda c, s: torch.full_like(c, 0.5), data, classifier, [1], n,
                                        mask_net=mask_net, mfid=False)
    assert blank["foreground_ratio_k1"] == 0.0 and is_collapsed(blank)  # background only: a failed run
    assert "mfid_k1" not in good
    for label in ("lt30", "30to90", "gt90"):
        assert f"l1_gt_k1_pose_{label}" in good and f"style_leak_k1_pose_{label}" in good


def test_r1_adds_the_real_images_gradient_penalty_to_the_d_loss() -> None:
    plain, penalised = make_system(), make_system(["loss.r1=10"])
    penalised.discriminator.load_state_dict(plain.discriminator.state_dict())
    penalised.generator.load_state_dict(plain.generator.state_dict())
    batch = plain.train_batch(0)
    before = copy.deepcopy(plain.discriminator.state_dict())  # spectral norm's power iteration moves u, v
    base, _ = plain.discriminator_loss(batch)
    loss, logs = penalised.discriminator_loss(batch)
    real = batch["style"].flatten(0, 1)
    labels = batch["style_label"].repeat_interleave(batch["style"].shape[1])
    plain.discriminator.load_state_dict(before)
    want = evaluation_free_r1(plain.discriminator, real, labels, 10.0)
    assert logs["r1"] == pytest.approx(float(want), rel=1e-4) and float(want) > 0
    assert float(loss.detach()) == pytest.approx(float(base.detach()) + float(want), rel=1e-4)
    d = penalised.discriminator
    grads = torch.autograd.grad(loss - base.detach(), [p for p in d.parameters() if p.requires_grad], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # the penalty trains D
    with pytest.raises(ValueError, match="loss.r1"):
        make_system(["loss.r1=-1"])


def evaluation_free_r1(discriminator, real: torch.Tensor, labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 * mean over images of |d mean-patch-logit / d image|^2, computed on its own."""
    x = real.detach().requires_grad_(True)
    score = discriminator(x, labels)[0].flatten(1).mean(1).sum()
    (grad,) = torch.autograd.grad(score, x)
    return 0.5 * gamma * grad.square().flatten(1).sum(1).mean()
