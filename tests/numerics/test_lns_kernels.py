"""The fused C++ kernels (imaginate.numerics.lns_kernels) against the PyTorch paths they replace.

The first test that needs the kernels compiles them (about 40 s on this project's machine, once: the
build is cached in torch's extension directory)."""

from __future__ import annotations

import warnings

import pytest
import torch

from imaginate.numerics import lns_kernels
from imaginate.numerics.lns import LNSFormat, lns_quantize
from imaginate.numerics.lns_fast import lns_quantize_fast
from imaginate.numerics.lns_kernels import lns_quantize_kernel, use_kernels
from imaginate.numerics.quant import QuantConfig, quantize_model
from imaginate.optim import LNSMadam


def _values(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen, dtype=dtype) * torch.rand(n, generator=gen, dtype=dtype) ** 6
    x[::7] = 0.0  # zeros, and magnitudes over ~20 octaves (some flush to zero)
    return x


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One thread unless a test asks for two (the machine is shared; OpenMP waits are slow under load);
    the kernels on even where the environment turns them off (these tests are about them)."""
    monkeypatch.delenv("IMAGINATE_NO_KERNELS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_kernels_build():
    assert lns_kernels.available(), "the C++ kernels did not build (see the warning)"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nearest_is_bit_identical_to_lns_quantize(threads, dtype):
    torch.set_num_threads(threads)  # torch's exp2 rounds the tail of every thread's chunk the scalar way
    sizes = (5, 16, 37, 40_003, 140_001) if threads == 1 else (37, 70_001)  # 70_001: two chunks of 35_001
    formats = ((5, 1), (8, 8), (6, 2), (12, 128), (16, 1024)) if threads == 1 else ((8, 8), (12, 128))
    for n in sizes:
        x = _values(n, dtype, seed=n)
        for bits, gamma in formats:
            fmt = LNSFormat(bits, gamma)
            for scale in (None, torch.tensor(0.03)):  # 0.03: larger magnitudes saturate to code 0
                fused = lns_quantize_kernel(x, fmt, scale)
                assert fused is not None and fused.dtype == dtype
                assert torch.equal(fused, lns_quantize(x, fmt, scale)), (n, bits, gamma, scale)
    torch.set_num_threads(1)
    shaped = _values(2 * 3 * 5 * 7, torch.float32).view(2, 3, 5, 7).transpose(1, 3)  # non-contiguous
    assert lns_quantize_kernel(shaped, LNSFormat(8, 8)) is None  # strided: the PyTorch path (failed on AVX-512)
    dense = shaped.contiguous()
    assert torch.equal(lns_quantize_kernel(dense, LNSFormat(8, 8)), lns_quantize(dense, LNSFormat(8, 8)))


def test_stochastic_is_unbiased_hits_the_two_neighbours_and_is_reproducible():
    fmt = LNSFormat(5, 1)
    for dtype in (torch.float32, torch.float64):
        x = torch.full((200_001,), 0.3, dtype=dtype)
        x[0] = -1.0  # the max-abs scale: the neighbours of 0.3 are 2**-2 and 2**-1
        q = lns_quantize_kernel(x, fmt, rounding="stochastic", generator=torch.Generator().manual_seed(0))
        assert q[0] == -1.0 and set(q[1:].unique().tolist()) == {0.25, 0.5}
        exponent = torch.log2(q[1:]).mean().item()  # unbiased in the log domain: E[e] = log2(0.3)
        assert exponent == pytest.approx(float(torch.log2(torch.tensor(0.3))), abs=5e-3)
        # the same values as the PyTorch stochastic rounding can reach, on spread-out values
        y = _values(50_000, dtype)
        fused = lns_quantize_kernel(y, LNSFormat(8, 8), rounding="stochastic", generator=torch.Generator().manual_seed(1))
        down = lns_quantize(y, LNSFormat(8, 8), torch.tensor(y.abs().max().item() * 2 ** (-1 / 8), dtype=dtype))
        grid = set(lns_quantize(y, LNSFormat(8, 8)).tolist()) | set(down.tolist()) | {0.0}
        assert set(fused.tolist()) <= grid | {float(v) for v in -torch.tensor(sorted(grid), dtype=dtype)}
    y = _values(10_000, torch.float32)
    again = [lns_quantize_kernel(y, fmt, rounding="stochastic", generator=torch.Generator().manual_seed(s))
             for s in (3, 3, 4)]
    assert torch.equal(again[0], again[1]) and not torch.equal(again[0], again[2])
    torch.manual_seed(5)  # generator=None: one draw from torch's default generator per call
    first = lns_quantize_kernel(y, fmt, rounding="stochastic")
    torch.manual_seed(5)
    assert torch.equal(first, lns_quantize_kernel(y, fmt, rounding="stochastic"))


def test_stochastic_neighbour_probabilities_follow_the_fraction():
    # frac of log2: values 2**-(k + f) for f in 0.1 .. 0.9 must round up (to the smaller magnitude) w.p. f
    fmt = LNSFormat(8, 1)
    fracs = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    x = torch.exp2(-(3 + fracs)).repeat_interleave(40_000)
    x = torch.cat([torch.ones(1), x])
    q = lns_quantize_kernel(x, fmt, rounding="stochastic", generator=torch.Generator().manual_seed(2))[1:]
    up = (q.view(5, -1) == 2.0 ** -4).float().mean(1)
    torch.testing.assert_close(up, fracs, atol=0.01, rtol=0)


def _native_sides(cfg: dict, dtype: torch.dtype, steps: int = 20,
                  transposed: bool = True) -> list[tuple[list[torch.Tensor], LNSMadam]]:
    shapes = [(300, 500), (7,), (140_001,), (3, 5)]  # the last one is passed transposed (non-contiguous)
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    start[1][0] = 0.0
    sides = []
    for fused in (True, False):
        last = start[3].clone().t() if transposed else start[3].clone()
        params = [w.clone().requires_grad_() for w in start[:3]] + [last.requires_grad_()]
        # the bf16 / lns8 moments round stochastically: both sides draw from equally seeded generators
        sides.append((params, LNSMadam(params, mode="native", generator=torch.Generator().manual_seed(3), **cfg),
                      fused))
    for t in range(steps):
        for pa, pb in zip(sides[0][0], sides[1][0]):
            g = torch.randn(pa.shape, generator=gen, dtype=dtype) * (t % 3)  # every third step: zero gradients
            pa.grad, pb.grad = g.clone(), g.clone()
        for _params, opt, fused in sides:
            with use_kernels(fused), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # off-grid lr warns once
                opt.step()
    return sides


@pytest.mark.parametrize("cfg, dtype", [
    (dict(bits=8, gamma=8, lr=1 / 8), torch.float32),
    (dict(bits=6, gamma=2, lr=0.5), torch.float32),
    (dict(bits=8, gamma=8, lr=1 / 8, g_bound=None), torch.float32),
    (dict(bits=12, gamma=128, lr=3 / 256, underflow="saturate"), torch.float32),
    (dict(bits=16, gamma=1024, lr=1 / 1024), torch.float64),
    (dict(bits=8, gamma=8, lr=1 / 8, moment="bf16"), torch.float32),
    (dict(bits=8, gamma=8, lr=1 / 8, moment="lns8"), torch.float32),
    (dict(bits=12, gamma=128, lr=3 / 256, moment="lns8", underflow="saturate"), torch.float32),
], ids=["b8", "b6", "b8_unbounded", "b12_offgrid_saturate", "b16_float64", "b8_bf16", "b8_lns8", "b12_lns8"])
def test_fused_native_step_equals_the_multi_tensor_step(cfg, dtype, monkeypatch):
    from imaginate.optim import lns_madam
    from imaginate.optim.multi_tensor import SLAB

    assert lns_kernels.CHUNK == SLAB  # the fused step draws the moment's random words as the slabs do
    calls = []

    def counted(*args, **kwargs):
        done = lns_kernels.lns_madam_native_step(*args, **kwargs)
        calls.append(done)
        return done

    monkeypatch.setattr(lns_madam, "lns_madam_native_step", counted)
    # fp32: the non-contiguous tensor takes the slab path beside the fused ones; bf16 / lns8: all or none
    transposed = cfg.get("moment", "fp32") == "fp32"
    (params_a, opt_a, _), (params_b, opt_b, _) = _native_sides(cfg, dtype, transposed=transposed)
    assert lns_kernels.available() and any(calls)
    for pa, pb in zip(params_a, params_b):
        assert torch.equal(pa, pb)
        for key, value in opt_a.state[pa].items():
            other = opt_b.state[pb][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, key
    moved = sum(int((opt_a.state[p]["packed"] != opt_a.state[p]["packed"].new_tensor(0)).sum()) for p in params_a)
    assert moved > 0


def test_environment_variable_forces_the_pytorch_path(monkeypatch):
    # one thread: with more, torch's slab-by-slab path (lns_fast) and its whole-tensor lns_quantize
    # (which the kernel follows) may differ in the last bit of elements at the end of a thread's chunk
    x = _values(70_001, torch.float32)
    fmt = LNSFormat(8, 8)
    fused = lns_quantize_fast(x, fmt)
    monkeypatch.setenv("IMAGINATE_NO_KERNELS", "1")
    assert lns_quantize_kernel(x, fmt) is None and not lns_kernels.available()
    assert torch.equal(lns_quantize_fast(x, fmt), fused)  # the PyTorch path: the same nearest bits
    p = torch.randn(10, requires_grad=True)
    p.grad = torch.randn(10)
    opt = LNSMadam([p], mode="native", bits=8, gamma=8, lr=1 / 8)
    opt.step()
    assert not lns_kernels.lns_madam_native_step(p, p.grad, opt.state[p]["packed"], opt.state[p]["exp_avg_sq"],
                                                 opt._table(p, opt.state[p], LNSFormat(8, 8)), 0.5, 0.999, 10.0,
                                                 1.0, LNSFormat(8, 8), "zero")


def test_failed_build_warns_once_and_falls_back(monkeypatch):
    def broken() -> None:
        raise RuntimeError("no compiler here\nsecond line")

    monkeypatch.setitem(lns_kernels._STATE, "tried", False)
    monkeypatch.setitem(lns_kernels._STATE, "module", None)
    monkeypatch.setattr(lns_kernels, "_load", broken)
    x = _values(1000, torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert lns_quantize_kernel(x, LNSFormat(5, 1)) is None
        assert lns_quantize_kernel(x, LNSFormat(5, 1), rounding="stochastic") is None
        out = lns_quantize_fast(x, LNSFormat(5, 1))
    assert len(caught) == 1 and "no compiler here" in str(caught[0].message)
    assert "second line" not in str(caught[0].message)
    assert torch.equal(out, lns_quantize(x, LNSFormat(5, 1)))


def test_training_gradients_use_the_kernel_and_stay_on_the_grid():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    x = torch.randn(32, 12)
    grads = []
    for fused in (True, True, False):
        quantize_model(model, QuantConfig(), generator=torch.Generator().manual_seed(1))
        model.zero_grad()
        with use_kernels(fused):
            model(x).square().sum().backward()
        grads.append(model[0].weight.grad.clone())
    assert torch.equal(grads[0], grads[1])  # reproducible from the generator
    assert not torch.equal(grads[0], grads[2])  # and a different stream from torch.rand's
    for g in grads:  # lns5g1: every gradient lies on its own max-abs grid
        assert torch.equal(lns_quantize(g, LNSFormat(5, 1)), g) and g.abs().sum() > 0
