"""Madam / IntegerMadam against plain-float references written out here, plus the factory.

The references below restate the update rules of arXiv 2006.14560 one scalar at a time with the
``math`` module; they deliberately share no code with ``imaginate.optim``.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from madam_reference import BETA, g_hat_step, sign
from torch import nn

from imaginate.optim import (
    OPTIMIZERS,
    IntegerMadam,
    Madam,
    OptimConfig,
    build_optimizer,
    default_lr,
    reinit_zero_params,
)


def madam_reference(w0, grads, lr=0.01, p_scale=3.0, g_bound=10.0) -> list[list[float]]:
    """Float Madam; returns the weights after every step."""
    w_max = p_scale * math.sqrt(sum(w * w for w in w0) / len(w0))
    w, v, trajectory = list(w0), [0.0] * len(w0), []
    for t, g in enumerate(grads, start=1):
        for i in range(len(w)):
            g_hat, v[i] = g_hat_step(g[i], v[i], t, g_bound)
            w[i] = min(max(w[i] * math.exp(-lr * g_hat * sign(w[i])), -w_max), w_max)
        trajectory.append(list(w))
    return trajectory


def integer_madam_reference(w0, grads, lr_factor, base_lr, levels, p_scale=3.0, g_bound=10.0):
    """LNS Madam with the rounded initial exponents; returns (exponents, weights) after every step."""
    w_max = p_scale * math.sqrt(sum(w * w for w in w0) / len(w0))
    signs = [sign(w) for w in w0]
    n = [min(max(round(-math.log(abs(w) / w_max) / base_lr), 0), levels - 1) if w else levels - 1 for w in w0]
    v, exponents, weights = [0.0] * len(w0), [], []
    for t, g in enumerate(grads, start=1):
        for i in range(len(w0)):
            g_hat, v[i] = g_hat_step(g[i], v[i], t, g_bound)
            n[i] = min(max(n[i] + round(lr_factor * g_hat) * signs[i], 0), levels - 1)
        exponents.append(list(n))
        weights.append([s * w_max * math.exp(-base_lr * k) for s, k in zip(signs, n)])
    return exponents, weights


def run(optimizer_cls, w0, grads, **kwargs):
    """Steps ``optimizer_cls`` on one float64 tensor with the given gradients; returns (trajectory, opt, p)."""
    p = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    opt = optimizer_cls([p], **kwargs)
    trajectory = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        trajectory.append(p.detach().clone())
    return torch.stack(trajectory), opt, p


def _close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)


# ---------------------------------------------------------------- Madam: trajectories


def test_madam_first_step_by_hand():
    # v_hat = g**2 on step 1, so g_hat = sign(g): w -> w * exp(-lr * sign(g) * sign(w))
    trajectory, _, _ = run(Madam, [1.0, -2.0, 0.5], [[3.0, 0.2, -1e-3]], lr=0.01)
    _close(trajectory[0], [math.exp(-0.01), -2.0 * math.exp(0.01), 0.5 * math.exp(0.01)])


def test_madam_zero_weight_never_moves():
    w0 = [0.0, 0.5, -0.25]
    grads = [[math.sin(t), math.cos(t), 0.3 * math.sin(2 * t)] for t in range(30)]
    trajectory, _, _ = run(Madam, w0, grads)
    assert torch.all(trajectory[:, 0] == 0)
    _close(trajectory, madam_reference(w0, grads))


def test_madam_always_zero_gradient_no_move_no_nan():
    w0 = [0.5, -0.25, 1.0]
    grads = [[0.0, 0.3 * (-1) ** t, 0.0] for t in range(20)]
    trajectory, opt, p = run(Madam, w0, grads, g_bound=None)
    assert torch.isfinite(trajectory).all() and torch.isfinite(opt.state[p]["exp_avg_sq"]).all()
    assert torch.all(trajectory[:, 0] == 0.5) and torch.all(trajectory[:, 2] == 1.0)
    assert not torch.all(trajectory[:, 1] == -0.25)
    _close(trajectory, madam_reference(w0, grads, g_bound=None))


def test_madam_gradient_spike_by_closed_form():
    c, spike, n, lr = 0.01, 5.0, 50, 0.01
    w0 = [1.0, -1.0]
    grads = [[c, -c]] * n + [[spike, -spike]] + [[c, -c]] * 5
    trajectory, _, _ = run(Madam, w0, grads, lr=lr)
    # constant c for n steps gives v = c**2 (1 - BETA**n) exactly, hence g_hat = 1 each step
    v = BETA * c**2 * (1 - BETA**n) + (1 - BETA) * spike**2
    g_hat_spike = spike / math.sqrt(v / (1 - BETA ** (n + 1)))
    assert 1 < g_hat_spike < 10  # large, but not clamped
    expected = math.exp(-lr * n) * math.exp(-lr * g_hat_spike)
    _close(trajectory[n], [expected, -expected])
    _close(trajectory, madam_reference(w0, grads, lr=lr))


def test_madam_clamps_at_plus_and_minus_max():
    w0, lr, p_scale = [2.0, -2.0, 0.5, 0.5], 0.1, 3.0
    w_max = p_scale * math.sqrt((4 + 4 + 0.25 + 0.25) / 4)  # 4.373
    assert 2.0 * math.exp(lr * 10) > w_max  # unclamped growth would overshoot within 10 steps
    grads = [[-1.0, 1.0, 1.0, -1.0]] * 10  # grow |w0|, |w1|; shrink w2, grow w3
    trajectory, opt, p = run(Madam, w0, grads, lr=lr, p_scale=p_scale)
    assert opt.state[p]["max"] == pytest.approx(w_max, rel=1e-12)
    assert isinstance(opt.state[p]["max"], float)
    torch.testing.assert_close(trajectory[-1, :2], torch.tensor([w_max, -w_max], dtype=torch.float64))
    assert trajectory[:, :2].abs().max() <= opt.state[p]["max"]
    _close(trajectory, madam_reference(w0, grads, lr=lr, p_scale=p_scale))


def test_madam_g_bound_engages_after_many_steps():
    c, spike, n, lr = 0.01, 10.0, 200, 0.01
    w0 = [1.0, -1.0]
    grads = [[c, -c]] * n + [[spike, -spike]] + [[c, -c]] * 5
    v = BETA * c**2 * (1 - BETA**n) + (1 - BETA) * spike**2
    g_hat_spike = spike / math.sqrt(v / (1 - BETA ** (n + 1)))
    assert g_hat_spike > 13  # ~13.5: above the bound of 10
    bounded, _, _ = run(Madam, w0, grads, lr=lr, g_bound=10.0)
    unbounded, _, _ = run(Madam, w0, grads, lr=lr, g_bound=None)
    torch.testing.assert_close(bounded[:n], unbounded[:n], rtol=0, atol=0)  # identical until the spike
    _close(bounded[n] / bounded[n - 1], [math.exp(-lr * 10.0)] * 2)
    _close(unbounded[n] / unbounded[n - 1], [math.exp(-lr * g_hat_spike)] * 2)
    assert (bounded[-1] - unbounded[-1]).abs().min() > 1e-4  # the clamp changed the trajectory
    _close(bounded, madam_reference(w0, grads, lr=lr, g_bound=10.0))
    _close(unbounded, madam_reference(w0, grads, lr=lr, g_bound=None))


def test_madam_contract_details():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    frozen = torch.tensor([3.0], requires_grad=True)  # grad stays None: skipped, no state
    opt = Madam([a, frozen])
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        loss = (a**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == [True] and loss.item() == 5.0
    assert frozen.item() == 3.0 and frozen not in opt.state
    a.grad = torch.sparse_coo_tensor([[0]], [1.0], (2,), check_invariants=True)
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


# ---------------------------------------------------------------- IntegerMadam


def test_integer_madam_matches_reference_and_lns_invariants():
    w0 = [0.8, -0.3, 0.0, 1.5, -0.05, 0.4]
    lr_factor, base_lr, levels = 16.0, 0.05, 64
    grads = [[0.2 * math.sin(t), 0.1 * math.cos(3 * t), 1.0, -1.0, -0.5, 0.3 * math.sin(0.5 * t) + 0.05]
             for t in range(40)]
    p = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    opt = IntegerMadam([p], lr_factor=lr_factor, base_lr=base_lr, levels=levels)
    exponents_ref, weights_ref = integer_madam_reference(w0, grads, lr_factor, base_lr, levels)
    seen = set()
    for t, g in enumerate(grads):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        state = opt.state[p]
        n = state["exponent"]
        assert n.dtype == torch.int16 and state["sign"].dtype == torch.int8
        assert n.tolist() == exponents_ref[t]
        assert 0 <= n.min() and n.max() <= levels - 1
        seen.update(n.tolist())
        decoded = state["sign"].to(torch.float64) * state["max"] * torch.exp(-base_lr * n.to(torch.float64))
        assert torch.equal(p.detach(), decoded)
        assert torch.equal(torch.sign(p.detach()), torch.sign(torch.tensor(w0, dtype=torch.float64)))
        _close(p.detach(), weights_ref[t])
    assert {0, levels - 1} <= seen  # both ends of the range were reached (and held by the clamp)
    assert p[2].item() == 0.0


def test_integer_madam_move_direction_matches_madam():
    # one step with g_hat = sign(g): n moves by lr_factor * sign(g) * sign(w), |w| by exp(-lr_factor*base_lr*...)
    w0 = [1.0, -1.0, 1.0, -1.0]
    grads = [[1.0, 1.0, -1.0, -1.0]]
    lns, opt, p = run(IntegerMadam, w0, grads, lr_factor=4.0, base_lr=0.01, levels=4096, p_scale=2.0)
    float_madam, _, _ = run(Madam, w0, grads, lr=0.04, p_scale=100.0)
    # start from n = round(log(2) / 0.01) = 69 levels below max = 2
    assert opt.state[p]["exponent"].tolist() == [73, 65, 65, 73]
    w0_tensor = torch.tensor(w0, dtype=torch.float64)
    lns_ratio = lns[0] / (w0_tensor * 2.0 * math.exp(-0.01 * 69))  # change from the quantised start
    _close(lns_ratio, (float_madam[0] / w0_tensor).tolist())  # = Madam's with lr = lr_factor * base_lr


def test_integer_madam_round_init_reproduces_weights():
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(2000, generator=gen, dtype=torch.float64)
    base_lr, levels = 0.001, 4096
    p = w0.clone().requires_grad_(True)
    opt = IntegerMadam([p], base_lr=base_lr, levels=levels)
    p.grad = torch.zeros_like(p)  # g_hat = 0: the first step only quantises
    opt.step()
    w_max = opt.state[p]["max"]
    in_range = (w0.abs() <= w_max) & (w0.abs() >= w_max * math.exp(-base_lr * (levels - 1)))
    assert 1000 < in_range.sum() < 2000  # both kinds occur
    relative_error = (p.detach() / w0 - 1).abs()
    assert relative_error[in_range].max() <= math.exp(base_lr / 2) - 1 + 1e-12
    n = opt.state[p]["exponent"]
    assert torch.all(n[~in_range & (w0.abs() > w_max)] == 0)
    assert torch.all(n[~in_range & (w0.abs() < w_max)] == levels - 1)


def test_integer_madam_random_init_is_deterministic():
    w0 = torch.tensor([0.5, -0.5, 0.0] * 100, dtype=torch.float64)

    def exponents(seed: int) -> torch.Tensor:
        p = w0.clone().requires_grad_(True)
        opt = IntegerMadam([p], levels=4, init="random", generator=torch.Generator().manual_seed(seed))
        p.grad = torch.zeros_like(p)
        opt.step()
        assert torch.equal(torch.sign(p.detach()), torch.sign(w0))
        return opt.state[p]["exponent"]

    first, again, other = exponents(1), exponents(1), exponents(2)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert set(first[w0 != 0].tolist()) == {0, 1, 2, 3}  # every level, levels - 1 included


# ---------------------------------------------------------------- state_dict round trip


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=gen)  # [B, 8] features
    y = (x @ torch.randn(8, 3, generator=gen)).argmax(dim=1)  # [B] labels of a random linear teacher
    return x, y


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> list[float]:
    x, y = _batch()
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", ["madam", "integer_madam"])
def test_state_dict_round_trip_continues_identically(name):
    cfg = OptimConfig(name=name)
    model = _mlp()
    opt = build_optimizer(cfg, model)
    _train(model, opt, 10)
    reference_state = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, opt, 10)

    resumed_model = _mlp()
    resumed_opt = build_optimizer(cfg, resumed_model)
    _train(resumed_model, resumed_opt, 10)
    buffer = io.BytesIO()
    torch.save({"model": resumed_model.state_dict(), "optim": resumed_opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    fresh_model = _mlp()
    fresh_model.load_state_dict(saved["model"])
    fresh_opt = build_optimizer(cfg, fresh_model)
    fresh_opt.load_state_dict(saved["optim"])
    for key, value in fresh_model.state_dict().items():
        assert torch.equal(value, reference_state[key]), key
    for p in fresh_model.parameters():
        if name == "integer_madam":
            assert fresh_opt.state[p]["exponent"].dtype == torch.int16
            assert fresh_opt.state[p]["sign"].dtype == torch.int8
        assert isinstance(fresh_opt.state[p]["max"], float) and isinstance(fresh_opt.state[p]["step"], int)
    _train(fresh_model, fresh_opt, 10)
    for (key, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert torch.equal(a, b), key


# ---------------------------------------------------------------- factory: loss falls, reinit, validation


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_tiny_mlp_loss_falls(name):
    model = _mlp()
    losses = _train(model, build_optimizer(OptimConfig(name=name), model), 200)
    assert losses[-1] < 0.6 * losses[0], (losses[0], losses[-1])


def test_build_optimizer_defaults_and_reinit():
    assert [default_lr(n) for n in OPTIMIZERS] == [0.1, 1e-3, 1e-3, 0.01, 0.016, 1 / 128]
    assert build_optimizer(OptimConfig(name="madam"), _mlp()).param_groups[0]["lr"] == 0.01
    opt = build_optimizer(OptimConfig(name="integer_madam", lr=0.008), _mlp())  # lr = lr_factor * base_lr
    assert opt.param_groups[0]["lr_factor"] == pytest.approx(8.0)

    def zero_bias_model() -> nn.Module:
        model = _mlp()
        nn.init.zeros_(model[0].bias)
        return model

    a, b = zero_bias_model(), zero_bias_model()
    build_optimizer(OptimConfig(name="madam"), a)
    build_optimizer(OptimConfig(name="integer_madam"), b)
    assert a[0].bias.abs().min() > 0 and torch.equal(a[0].bias, b[0].bias)  # re-drawn, deterministically
    for cfg in (OptimConfig(name="madam", reinit_zero_params=False), OptimConfig(name="adam")):
        model = zero_bias_model()
        build_optimizer(cfg, model)
        assert torch.all(model[0].bias == 0)


def test_reinit_zero_params_changes_only_all_zero_tensors():
    all_zero = nn.Parameter(torch.zeros(1000))
    partly_zero = nn.Parameter(torch.tensor([0.0, 1.0, 0.0]))
    frozen_zero = nn.Parameter(torch.zeros(4), requires_grad=False)
    nonzero = nn.Parameter(torch.ones(2))
    params = [all_zero, partly_zero, frozen_zero, nonzero, all_zero]
    changed = reinit_zero_params(params, std=0.01, generator=torch.Generator().manual_seed(0))
    assert changed == 1
    assert torch.all(all_zero != 0) and 0.008 < all_zero.std().item() < 0.012
    assert partly_zero.tolist() == [0.0, 1.0, 0.0] and torch.all(frozen_zero == 0) and torch.all(nonzero == 1)
    assert reinit_zero_params(nn.Linear(3, 3)) == 0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: Madam(p, lr=0.0), "^lr:"),
        (lambda p: Madam(p, lr=-1.0), "^lr:"),
        (lambda p: Madam(p, p_scale=0.0), "^p_scale:"),
        (lambda p: Madam(p, g_bound=0.0), "^g_bound:"),
        (lambda p: Madam([{"params": p, "lr": -0.1}]), "^lr:"),
        (lambda p: IntegerMadam(p, lr_factor=0.0), "^lr_factor:"),
        (lambda p: IntegerMadam(p, base_lr=-1e-3), "^base_lr:"),
        (lambda p: IntegerMadam(p, levels=1), "^levels:"),
        (lambda p: IntegerMadam(p, levels=4096.0), "^levels:"),
        (lambda p: IntegerMadam(p, g_bound=-1.0), "^g_bound:"),
        (lambda p: IntegerMadam(p, init="zeros"), "^init:"),
        (lambda p: reinit_zero_params(p, std=0.0), "^std:"),
    ],
)
def test_optimizer_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make([nn.Parameter(torch.ones(2))])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="sgdd"), r"optim.name: 'sgdd' is not one of sgd, adam, adamw, madam, integer_madam"),
        (dict(name="madam", weight_decay=1e-4), "optim.weight_decay: must be 0 for madam"),
        (dict(name="integer_madam", weight_decay=1e-4), "optim.weight_decay: must be 0 for integer_madam"),
        (dict(lr=0.0), "optim.lr:"),
        (dict(weight_decay=-1.0), "optim.weight_decay:"),
        (dict(momentum=1.0), "optim.momentum:"),
        (dict(beta2=1.5), "optim.beta2:"),
        (dict(p_scale=-3.0), "optim.p_scale:"),
        (dict(g_bound=0.0), "optim.g_bound:"),
        (dict(levels=1), "optim.levels:"),
        (dict(base_lr=0.0), "optim.base_lr:"),
    ],
)
def test_optim_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimConfig(**kwargs)
    OptimConfig(name="adamw", weight_decay=0.05, g_bound=None)  # valid
