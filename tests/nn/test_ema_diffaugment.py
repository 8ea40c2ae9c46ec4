"""ModelEMA's exact update, warm-up and state; DiffAugment's operations against hand computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imaginate.nn.blocks import snlinear
from imaginate.nn.diffaugment import (
    DiffAugment,
    cutout_mask,
    diff_augment,
    parse_policy,
    random_color,
    random_cutout,
    random_translation,
    translate,
)
from imaginate.nn.ema import ModelEMA


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), snlinear(3 * 4 * 4, 2)).double()


def perturb(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    model.train()(torch.randn(4, 2, 6, 6, generator=gen, dtype=torch.float64))  # moves BN stats, SN vectors


def test_ema_update_is_exact() -> None:
    torch.manual_seed(0)
    model = small_net()
    ema = ModelEMA(model, beta=0.9)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    for seed in (1, 2):
        perturb(model, seed)
        ema.update(model)
        for name, p in model.named_parameters():
            expected[name] = 0.9 * expected[name] + (1 - 0.9) * p.detach()
    for name, p in ema.module.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=0, atol=0)
    for (name, buffer), (_, ema_buffer) in zip(model.named_buffers(), ema.module.named_buffers(), strict=True):
        torch.testing.assert_close(ema_buffer, buffer, rtol=0, atol=0, msg=name)  # BN stats, SN u/v copied
    assert int(ema.num_updates) == 2
    # the copy is independent of the live model
    with torch.no_grad():
        next(model.parameters()).zero_()
    assert next(ema.module.parameters()).abs().sum() > 0


def test_ema_warmup_ramps_beta_from_a_copy() -> None:
    model = nn.Linear(3, 2).double()
    ema = ModelEMA(model, beta=0.8, warmup_updates=4)
    betas = []
    for seed in range(6):
        betas.append(ema.current_beta())
        perturb_linear = torch.randn(2, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        with torch.no_grad():
            model.weight.add_(perturb_linear)
        before = ema.module.weight.clone()
        ema.update(model)
        torch.testing.assert_close(ema.module.weight, betas[-1] * before + (1 - betas[-1]) * model.weight.detach(),
                                   rtol=0, atol=0)
    assert betas == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 0.8])


def test_ema_state_dict_round_trip_and_stays_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = small_net()
    ema = ModelEMA(model, beta=0.5, warmup_updates=10)
    perturb(model, 3)
    ema.update(model)
    restored = ModelEMA(small_net(), beta=0.5, warmup_updates=10)
    restored.load_state_dict(ema.state_dict())
    assert int(restored.num_updates) == 1 and restored.current_beta() == ema.current_beta()
    for a, b in zip(ema.state_dict().values(), restored.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # ema.module is a plain module with the model's keys (what a system registers for checkpoints)
    assert ema.module.state_dict().keys() == model.state_dict().keys()
    ema.train()
    assert not ema.module.training
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(ema(x), ema.module(x))
    with pytest.raises(ValueError, match="beta"):
        ModelEMA(model, beta=1.5)
    with pytest.raises(ValueError, match="differ"):
        ema.update(nn.Linear(2, 2))


def test_policy_parsing_and_validation() -> None:
    assert parse_policy("color, translation,cutout") == ("color", "translation", "cutout")
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match="'flip' is not one of color, translation, cutout"):
        parse_policy("color,flip")
    with pytest.raises(ValueError, match="repeats"):
        DiffAugment("cutout,cutout")
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(diff_augment(x, ""), x)


def test_translate_by_known_offsets() -> None:
    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.float64).view(2, 1, 4, 5)
    out = translate(x, torch.tensor([1, -2]), torch.tensor([-1, 0]))
    for b, (dy, dx) in enumerate([(1, -1), (-2, 0)]):
        for i in range(4):
            for j in range(5):
                inside = 0 <= i + dy < 4 and 0 <= j + dx < 5
                want = x[b, 0, i + dy, j + dx] if inside else 0.0
                assert out[b, 0, i, j].item() == want


def test_random_translation_uses_the_generators_draws() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 2, 16, 8)
    out = random_translation(x, 0.125, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    shift_y = torch.randint(-2, 3, (3,), generator=gen)  # round(0.125 * 16) = 2
    shift_x = torch.randint(-1, 2, (3,), generator=gen)  # round(0.125 * 8) = 1
    torch.testing.assert_close(out, translate(x, shift_y, shift_x))
    torch.testing.assert_close(out, random_translation(x, 0.125, torch.Generator().manual_seed(5)))


def test_color_equals_the_formulas_with_the_same_draws() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    out = random_color(x, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    u = [torch.rand(2, 1, 1, 1, generator=gen, dtype=torch.float64) for _ in range(3)]
    y = x + u[0] - 0.5
    y = (y - y.mean(1, keepdim=True)) * 2 * u[1] + y.mean(1, keepdim=True)
    y = (y - y.mean((1, 2, 3), keepdim=True)) * (u[2] + 0.5) + y.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, y)


def test_cutout_zeroes_one_clipped_box_per_image() -> None:
    x = torch.ones(64, 1, 8, 8)
    out = random_cutout(x, 0.5, torch.Generator().manual_seed(0))
    for image in out[:, 0]:
        rows, cols = (image == 0).any(1).nonzero().flatten(), (image == 0).any(0).nonzero().flatten()
        assert 2 <= len(rows) <= 4 and 2 <= len(cols) <= 4  # a 4x4 box, clipped at the borders
        assert (image[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == 0).all()
        assert (image == 0).sum() == len(rows) * len(cols)
    mask = cutout_mask(6, 6, 2, 2, torch.tensor([0]), torch.tensor([5]))
    assert mask[0, 0].logical_not().nonzero().tolist() == [[0, 4], [0, 5]]


def test_diffaugment_shapes_gradients_and_independent_draws() -> None:
    torch.manual_seed(0)
    augment = DiffAugment("color,translation,cutout")
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    out = augment(x)
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # each call draws afresh (reals and fakes get independent parameters); a seeded generator repeats
    assert not torch.equal(augment(x.detach()), augment(x.detach()))
    first = augment(x.detach(), torch.Generator().manual_seed(1))
    torch.testing.assert_close(first, augment(x.detach(), torch.Generator().manual_seed(1)))
    assert augment(torch.randn(2, 1, 7, 9)).shape == (2, 1, 7, 9)
    assert "color,translation,cutout" in repr(augment)
