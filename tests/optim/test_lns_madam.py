"""LNSMadam (reference and native modes) and the low-bit weight stores, against formulas written here.

The scalar references restate the public ``LNS_Madam`` update with the ``math`` module and share no
code with ``imaginate.optim``. Python's ``round`` is half to even, as ``torch.round``.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from madam_reference import g_hat_step, sign
from torch import nn

from imaginate.numerics.lns import LNSFormat, lns_decode, lns_quantize
from imaginate.optim import (
    LNSMadam,
    OptimConfig,
    build_optimizer,
    default_lr,
    lns_store,
    requantize_after_step,
)


def _rounded_g_hat(g: float, v: float, t: int, g_bound: float | None) -> tuple[int, float]:
    """One scalar step of the normalisation, then round half to even: returns (round(g_hat), new v)."""
    g_hat, v = g_hat_step(g, v, t, g_bound)
    return round(g_hat), v


def lns_madam_reference(w0, grads, lr=1 / 128, p_scale=3.0, g_bound=10.0, weight_decay=None):
    """The public LNS_Madam update in float64 scalars; returns the weights after every step."""
    w_max = p_scale * math.sqrt(sum(w * w for w in w0) / len(w0))
    w, v, trajectory = list(w0), [0.0] * len(w0), []
    for t, g in enumerate(grads, start=1):
        for i in range(len(w)):
            k, v[i] = _rounded_g_hat(g[i], v[i], t, g_bound)
            if weight_decay is None:
                w[i] = w[i] * 2.0 ** (-lr * k * sign(w[i]))
            else:
                w[i] = w[i] * math.exp(-lr * k * sign(w[i]) - lr * weight_decay)
            w[i] = min(max(w[i], -w_max), w_max)
        trajectory.append(list(w))
    return trajectory


def run(w0, grads, **kwargs):
    """Steps LNSMadam on one float64 tensor with the given gradients; returns (trajectory, opt, p)."""
    p = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    opt = LNSMadam([p], **kwargs)
    trajectory = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        trajectory.append(p.detach().clone())
    return torch.stack(trajectory), opt, p


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------- reference mode


def test_reference_hand_cases_bit_exact():
    # lr = 1: every step multiplies by a power of two, so the float64 trajectory is exact and
    # must equal the formula bit for bit. Entry 0 is an exact zero, entry 1 always sees 0/0,
    # entries 2 and 3 are pushed up until the +-max clamp holds them.
    w0 = [0.0, 0.75, -1.5, 0.375, 0.5]
    grads = [[math.sin(t), 0.0, 0.2 + 0.1 * math.cos(t), -0.3, 0.4 * math.sin(3 * t)] for t in range(12)]
    trajectory, opt, p = run(w0, grads, lr=1.0)
    assert torch.equal(trajectory, _t(lns_madam_reference(w0, grads, lr=1.0)))
    w_max = 3.0 * math.sqrt(sum(w * w for w in w0) / len(w0))
    assert opt.state[p]["max"] == w_max
    assert torch.all(trajectory[:, 0] == 0) and torch.all(trajectory[:, 1] == 0.75)
    assert trajectory[-1, 2].item() == -w_max and trajectory[-1, 3].item() == w_max  # clamped exactly


def test_reference_default_lr_trajectory():
    w0 = [0.3, -0.7, 1.1, -0.05, 0.0]
    grads = [[math.sin(1.3 * t + i) * (1 + i) for i in range(5)] for t in range(80)]
    trajectory, _, _ = run(w0, grads)
    # 2 ** x is not correctly rounded in either library, hence a few ulps of slack
    torch.testing.assert_close(trajectory, _t(lns_madam_reference(w0, grads)), rtol=1e-14, atol=0)


@pytest.mark.parametrize("g_bound, expected_exponent", [(2.5, -2), (3.5, -4), (None, -5)])
def test_reference_g_bound_then_round_half_to_even(g_bound, expected_exponent):
    # 20 steps of a constant gradient (g_hat = 1 each, the weight halves each step at lr = 1), then a
    # spike with g_hat ~ sqrt(21) ~ 4.6: clamped to 2.5 -> 2 and 3.5 -> 4 (half to even), or 5 unclamped
    grads = [[0.01]] * 20 + [[100.0]]
    trajectory, _, _ = run([1.0], grads, lr=1.0, g_bound=g_bound)
    assert trajectory[19].item() == 2.0**-20
    assert trajectory[20].item() == 2.0 ** (-20 + expected_exponent)
    assert torch.equal(trajectory, _t(lns_madam_reference([1.0], grads, lr=1.0, g_bound=g_bound)))


def test_reference_g_hat_below_half_does_not_move():
    grads = [[5.0]] * 10 + [[0.1]] * 5  # after the large gradients, |g_hat| ~ 0.06 rounds to 0
    trajectory, _, _ = run([0.5, -0.5], [[g[0], g[0]] for g in grads], lr=1 / 128)
    assert torch.all(trajectory[10:] == trajectory[9])


def test_reference_weight_decay_branch_is_base_e():
    # entry 0: p > 0, g < 0 (g_hat = -1) and wd = 1: the exponent -lr * (-1) - lr * 1 = 0, exactly no move
    # entry 1: p < 0, g < 0: exp(-lr - lr * wd); base 2 would give a visibly different value
    w0, grads, lr, wd = [0.5, -0.5], [[-1.0, -1.0]], 1 / 128, 1.0
    trajectory, _, _ = run(w0, grads, lr=lr, weight_decay=wd)
    assert trajectory[0, 0].item() == 0.5
    torch.testing.assert_close(trajectory[0, 1], _t(-0.5 * math.exp(-2 * lr)), rtol=1e-15, atol=0)
    assert abs(trajectory[0, 1].item() + 0.5 * 2.0 ** (-2 * lr)) > 1e-4
    grads = [[math.cos(t), math.sin(t)] for t in range(30)]
    trajectory, _, _ = run(w0, grads, lr=lr, weight_decay=0.1)
    expected = _t(lns_madam_reference(w0, grads, lr=lr, weight_decay=0.1))
    torch.testing.assert_close(trajectory, expected, rtol=1e-14, atol=0)
    # weight_decay=0.0 is not None: still the base-e branch, as in the reference
    base_e, _, _ = run(w0, [[1.0, 1.0]], lr=lr, weight_decay=0.0)
    torch.testing.assert_close(base_e[0], _t([0.5 * math.exp(-lr), -0.5 * math.exp(lr)]), rtol=1e-15, atol=0)


# ---------------------------------------------------------------- native mode


# On the grid of its own scale: with p_scale = 2, sum(w**2) = 2 * 1 + 11 / 4 + 4 / 16 = 5 = n / 4 for
# n = 20, so rms = 1/2 and max = scale = 1 exactly; codes (gamma = 8) are 0, 8 and 16, zeros code 127.
GRID_W0 = [1.0, -1.0] + [0.5, -0.5] * 5 + [-0.5] + [0.25, -0.25] * 2 + [0.0] * 3


@pytest.mark.parametrize("k", [1, 2])
def test_native_integer_updates_equal_reference(k):
    gamma, steps, n = 8, 40, len(GRID_W0)
    gen = torch.Generator().manual_seed(k)
    grads = torch.randn(steps, n, generator=gen, dtype=torch.float64)
    grads[:, 0] = -torch.rand(steps, generator=gen, dtype=torch.float64)  # pushes +1 = max up: clamp
    grads[:, 2] = 0.0  # the 0/0 path: g_hat = 0, no move
    kwargs = dict(lr=k / gamma, p_scale=2.0, bits=16, gamma=gamma)
    reference, _, _ = run(GRID_W0, grads.tolist(), mode="reference", **kwargs)
    p = torch.tensor(GRID_W0, dtype=torch.float64, requires_grad=True)
    opt = LNSMadam([p], mode="native", **kwargs)
    for t in range(steps):
        p.grad = grads[t].clone()
        opt.step()
        state = opt.state[p]
        expected = reference[t]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=0)  # decode vs running product
        nonzero = expected != 0
        codes = torch.round(gamma * torch.log2(1.0 / expected[nonzero].abs())).to(torch.int16)
        stored_codes, stored_signs = opt.native_codes(p)
        assert state["packed"].dtype == torch.int16  # B = 16: two bytes
        assert torch.equal(stored_codes[nonzero], codes)
        assert torch.all(stored_codes[~nonzero] == 2**15 - 1)
        assert torch.equal(stored_signs, torch.sign(expected).to(torch.int8))
    assert state["scale"] == 1.0 and reference[-1, 0].item() == 1.0  # the clamp held entry 0 at max
    assert reference[-1, 2].item() == 0.5 and not torch.equal(reference[-1], _t(GRID_W0))


def test_native_keeps_no_float_copy_and_rewrites_parameters():
    model = _mlp()
    opt = LNSMadam(model.parameters(), lr=1 / 8, mode="native", bits=8, gamma=8)
    _train(model, opt, 5)
    fmt = LNSFormat(bits=8, gamma=8)
    for p in model.parameters():
        state = opt.state[p]
        assert set(state) == {"step", "scale", "exp_avg_sq", "packed"}
        assert state["packed"].dtype == torch.uint8  # sign and code in one byte
        assert isinstance(state["scale"], float) and isinstance(state["step"], int)
        # the only float tensor in the state is the gradient's second moment (statistics, as in Madam)
        assert [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()] == ["exp_avg_sq"]
        codes, signs = opt.native_codes(p)
        assert 0 <= codes.min() and codes.max() <= fmt.max_code
        decoded = lns_decode(codes, signs, torch.tensor(state["scale"]), fmt, p.dtype)
        # equal up to one float32 ulp: the kernel's magnitude table takes the vectorised exp2, torch's decode
        # takes the scalar one on a tensor's tail, whose length depends on the CPU's vector width (AVX-512)
        assert torch.allclose(p.detach(), decoded, rtol=2**-22, atol=0)
    # p is a view materialised from the store, never read: an edit is discarded by the next step
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.data.add_(1.0)
        p.grad = torch.zeros_like(p)
    opt.step()
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))


def test_native_init_encodes_and_clamps():
    w0 = [4.0, 1.0, -0.5, 1e-9, 0.0, -0.3]
    p = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    opt = LNSMadam([p], mode="native", p_scale=1.0, bits=8, gamma=8)
    opt.init_store()
    scale = math.sqrt(sum(w * w for w in w0) / len(w0))
    state = opt.state[p]
    state = {**state, **dict(zip(("codes", "signs"), opt.native_codes(p)))}
    assert state["scale"] == pytest.approx(scale, rel=1e-15) and state["step"] == 0
    assert state["codes"][0] == 0 and p[0].item() == pytest.approx(scale, rel=1e-15)  # above max: e = 0
    assert state["codes"][3] == 127 and state["signs"][3] == 0 and p[3].item() == 0.0  # underflow: zero
    assert state["signs"][4] == 0 and p[4].item() == 0.0
    expected = round(8 * math.log2(scale / 0.3))
    assert state["codes"][5] == expected and p[5].item() == pytest.approx(-scale * 2 ** (-expected / 8))
    reference = torch.tensor(w0, requires_grad=True)
    LNSMadam([reference]).init_store()  # reference mode: a no-op
    assert reference.tolist() == torch.tensor(w0).tolist()


def _native_code_moves(g: list[float], **kwargs) -> list[int]:
    """One native step from fixed weights; returns how far each exponent code moved."""
    p = torch.tensor([0.5, 0.25, -0.5, 0.125], dtype=torch.float64, requires_grad=True)
    opt = LNSMadam([p], mode="native", p_scale=3.0, bits=8, gamma=8, **kwargs)
    opt.init_store()
    before = opt.native_codes(p)[0]
    assert before.min() > 4  # all well inside the range, so no clamp interferes
    p.grad = _t(g)
    opt.step()
    return (opt.native_codes(p)[0].to(torch.int32) - before).tolist()


def test_native_off_grid_lr_rounds_the_move():
    # gamma = 8, lr = 3/16: 1.5 grid steps per unit g_hat; the first g_hat is +-1: moves of 2 (1.5 -> 2)
    # a larger code is a smaller magnitude: p > 0, g > 0 shrinks (+2); p < 0, g > 0 grows (-2)
    with pytest.warns(UserWarning, match="lr \\* gamma = 1.5 is not an integer"):
        assert _native_code_moves([1.0, -1.0, 1.0, 0.0], lr=3 / 16) == [2, -2, -2, 0]
    assert _native_code_moves([1.0, -1.0, 1.0, 0.0], lr=1 / 8) == [1, -1, -1, 0]
    # lr = 1/128 with gamma = 8: 1/16 grid step per unit g_hat rounds to nothing: the weights freeze
    with pytest.warns(UserWarning, match="lr \\* gamma = 0.0625"):
        assert _native_code_moves([1.0, -1.0, 1.0, 0.5], lr=1 / 128) == [0, 0, 0, 0]


@pytest.mark.parametrize("underflow, codes_after", [("zero", [7, 7]), ("saturate", [6, 5])])
def test_native_underflow(underflow, codes_after):
    # bits = 4: codes 0..6 are magnitudes, 7 is zero; gamma = 1, so code 6 is scale / 64
    fmt = LNSFormat(bits=4, gamma=1)
    p = torch.tensor([1.0, 2.0**-6], dtype=torch.float64, requires_grad=True)
    opt = LNSMadam([p], lr=1.0, p_scale=1.0, mode="native", bits=4, gamma=1, underflow=underflow)
    p.grad = _t([0.0, 1.0])  # shrink entry 1 past the smallest magnitude
    opt.step()
    assert opt.native_codes(p)[0][1].item() == codes_after[0]
    p.grad = _t([0.0, -1.0])  # and try to grow it back
    opt.step()
    assert opt.native_codes(p)[0][1].item() == codes_after[1]
    zero = codes_after[1] == fmt.max_code
    assert (p[1].item() == 0.0) == zero and (opt.native_codes(p)[1][1].item() == 0) == zero


def test_native_state_dict_round_trip_continues_identically():
    cfg = OptimConfig(name="lns_madam", lns_mode="native", lns_bits=8, lns_gamma=8)
    model = _mlp()
    opt = build_optimizer(cfg, model)
    _train(model, opt, 6)

    resumed_model = _mlp()
    resumed_opt = build_optimizer(cfg, resumed_model)
    _train(resumed_model, resumed_opt, 3)
    buffer = io.BytesIO()
    torch.save({"model": resumed_model.state_dict(), "optim": resumed_opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh_model = _mlp()
    fresh_model.load_state_dict(saved["model"])
    fresh_opt = build_optimizer(cfg, fresh_model)
    fresh_opt.load_state_dict(saved["optim"])
    for p in fresh_model.parameters():
        state = fresh_opt.state[p]
        assert state["packed"].dtype == torch.uint8 and state["exp_avg_sq"].dtype == p.dtype
        assert isinstance(state["scale"], float) and state["step"] == 3
    _train(fresh_model, fresh_opt, 3)
    for (key, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert torch.equal(a, b), key


def test_native_tiny_mlp_loss_falls_at_8_bits():
    model = _mlp()
    losses = _train(
        model, build_optimizer(OptimConfig(name="lns_madam", lns_mode="native", lns_bits=8), model), 60
    )
    assert losses[-1] < 0.6 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=0.0), "^lr:"),
        (dict(p_scale=-1.0), "^p_scale:"),
        (dict(g_bound=0.0), "^g_bound:"),
        (dict(weight_decay=-0.1), "^weight_decay:"),
        (dict(mode="float"), "^mode:"),
        (dict(underflow="wrap"), "^underflow:"),
        (dict(bits=17), "^bits:"),
        (dict(bits=8.0), "^bits:"),
        (dict(gamma=3), "^gamma:"),
        (dict(mode="native", weight_decay=0.0), "^weight_decay: must be None in native mode"),
    ],
)
def test_lns_madam_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LNSMadam([nn.Parameter(torch.ones(2))], **kwargs)
    with pytest.raises(ValueError, match=match):
        LNSMadam([{"params": [nn.Parameter(torch.ones(2))], **kwargs}])


# ---------------------------------------------------------------- low-bit stores for SGD / Adam / AdamW


def _fixed_point(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 32) / 32  # a grid written here, independent of any format module


@pytest.mark.parametrize("make", [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize(
    "quantize",
    [lns_store(8, 8), lns_store(6, 4, per_channel=True, scale="max"), _fixed_point],
    ids=["lns8g8", "lns6g4_channel_max", "fixed"],
)
def test_requantized_weights_stay_on_the_grid(make, quantize):
    model = _mlp()
    opt = make(model.parameters(), lr=0.3 if make is torch.optim.SGD else 0.05)
    requantize_after_step(opt, quantize)
    start = [p.detach().clone() for p in model.parameters()]
    for _ in range(4):
        for p in model.parameters():
            assert torch.equal(quantize(p.detach()), p.detach())
        _train(model, opt, 1)
    assert not all(torch.equal(a, p) for a, p in zip(start, model.parameters()))


def test_store_rounds_small_updates_away_and_handle_detaches():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    handle = requantize_after_step(opt, lns_store(8, 1))  # neighbours a factor 2 apart
    start = [p.detach().clone() for p in model.parameters()]
    _train(model, opt, 3)
    assert all(torch.equal(a, p) for a, p in zip(start, model.parameters()))  # every update vanished
    handle.remove()
    _train(model, opt, 1)
    assert not all(torch.equal(a, p) for a, p in zip(start, model.parameters()))


def test_tiny_mlp_trains_with_a_16_bit_lns_store():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    requantize_after_step(opt, lns_store(16, 8))
    losses = _train(model, opt, 60)
    assert losses[-1] < 0.6 * losses[0], (losses[0], losses[-1])
    # the default power-of-two scale makes the store the absolute grid +-2 ** (j / 8)
    exponents = torch.cat([8 * torch.log2(p.detach().abs()[p != 0]) for p in model.parameters()])
    torch.testing.assert_close(exponents, exponents.round(), rtol=0, atol=1e-4)
    # the max-abs scale instead puts each tensor's largest weight exactly on code 0
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    requantize_after_step(opt, lns_store(16, 8, scale="max"))
    _train(model, opt, 3)
    fmt = LNSFormat(bits=16, gamma=8)
    assert all(torch.equal(lns_quantize(p.detach(), fmt), p.detach()) for p in model.parameters())


# ---------------------------------------------------------------- factory


def test_factory_builds_lns_madam():
    assert default_lr("lns_madam") == 1 / 128
    opt = build_optimizer(OptimConfig(name="lns_madam"), _mlp())
    assert isinstance(opt, LNSMadam) and opt.param_groups[0]["lr"] == 1 / 128
    assert opt.param_groups[0]["mode"] == "reference" and opt.param_groups[0]["weight_decay"] is None
    cfg = OptimConfig(name="lns_madam", lns_mode="native", lns_bits=10, lns_gamma=16)
    assert cfg.resolved_lr == 1 / 16  # one grid step per unit g_hat when lr is None
    model = _mlp()
    opt = build_optimizer(cfg, model)
    group = opt.param_groups[0]
    assert (group["mode"], group["bits"], group["gamma"]) == ("native", 10, 16)
    assert all(set(opt.state[p]) == {"step", "scale", "packed", "exp_avg_sq"} for p in model.parameters())  # before step 1
    decay = build_optimizer(OptimConfig(name="lns_madam", weight_decay=1e-4), _mlp())
    assert decay.param_groups[0]["weight_decay"] == 1e-4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="lns_madam", lns_mode="fp"), "optim.lns_mode:"),
        (dict(name="lns_madam", lns_bits=17), "optim.lns_bits:"),
        (dict(name="lns_madam", lns_gamma=6), "optim.lns_gamma:"),
        (dict(name="lns_madam", lns_mode="native", weight_decay=1e-4), "optim.weight_decay: must be 0"),
        (dict(name="madam", store="int8"), "optim.store: must be 'fp32' for madam"),
        (dict(name="adam", store=""), "optim.store:"),
    ],
)
def test_factory_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimConfig(**kwargs)


def test_factory_store_formats():
    """After each step every weight is on its store's grid (LNS stores use a fixed power-of-two scale)."""
    from imaginate.optim.factory import store_quantizer

    with pytest.raises(ValueError, match="optim.store:"):
        OptimConfig(name="adam", store="fp99_nonsense")
    for spec in ("lns8g8", "int8", "fp8_e4m3"):
        model = _mlp()
        opt = build_optimizer(OptimConfig(name="adamw", store=spec), model)
        _train(model, opt, 2)
        quantize = store_quantizer(spec)
        for p in model.parameters():
            assert torch.equal(quantize(p.detach()), p.detach()), spec
    grid = store_quantizer("lns8g8")(torch.tensor([0.3, -0.7, 1.5]))
    exponents = torch.log2(grid.abs()) * 8  # gamma = 8: a fixed grid of 2 ** (j / 8)
    assert torch.allclose(exponents, exponents.round(), atol=1e-4)


# ---------------------------------------------------------------- helpers


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.bias.normal_(0.0, 0.01)  # multiplicative updates need non-zero starts
    return model


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> list[float]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=gen)  # [B, 8] features
    y = (x @ torch.randn(8, 3, generator=gen)).argmax(dim=1)  # [B] labels of a random linear teacher
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
