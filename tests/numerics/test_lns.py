"""The multi-base LNS format: exact round trips, log-domain rounding, zero/underflow, per-channel scales."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from imaginate.numerics.lns import (
    LNSFormat,
    lns_decode,
    lns_encode,
    lns_quantize,
    lns_quantize_reference,
    lns_scale,
)

GAMMAS = st.sampled_from([1, 2, 4, 8, 16, 64, 256])
SETTINGS = settings(max_examples=40, deadline=None)


def test_format_fields_and_validation() -> None:
    fmt = LNSFormat(8, 8)
    assert (fmt.max_code, fmt.levels, fmt.per_channel) == (127, 127, False)
    assert LNSFormat(5, 1).max_code == 15 and LNSFormat(2, 1).levels == 1
    for kwargs, field in [({"bits": 1, "gamma": 1}, "bits"), ({"bits": 17, "gamma": 1}, "bits"),
                          ({"bits": 8, "gamma": 3}, "gamma"), ({"bits": 8, "gamma": 0}, "gamma"),
                          ({"bits": 8.0, "gamma": 8}, "bits")]:
        with pytest.raises(ValueError, match=field):
            LNSFormat(**kwargs)


@SETTINGS
@given(bits=st.integers(2, 16), gamma=GAMMAS, log_scale=st.floats(-10, 10), seed=st.integers(0, 2**31),
       double=st.booleans())
def test_encode_decode_exact_on_representable_values(bits, gamma, log_scale, seed, double) -> None:
    fmt = LNSFormat(bits, gamma)
    dtype = torch.float64 if double else torch.float32
    g = torch.Generator().manual_seed(seed)
    top = min(fmt.max_code, 100 * gamma)  # keep 2 ** (-e / gamma) far above float32's underflow
    codes = torch.randint(0, top + 1, (64,), generator=g).to(torch.int16)
    codes[0] = 0  # the scale itself is representable
    codes[-1] = fmt.max_code  # and zero
    signs = torch.where(torch.rand(64, generator=g) < 0.5, -1, 1).to(torch.int8)
    signs[codes == fmt.max_code] = 0
    scale = torch.tensor(2.0**log_scale, dtype=dtype)
    x = lns_decode(codes, signs, scale, fmt, dtype=dtype)  # [64]
    assert x.dtype == dtype and (x[codes != fmt.max_code] != 0).all()
    codes2, signs2 = lns_encode(x, fmt, scale)
    assert codes2.dtype == torch.int16 and signs2.dtype == torch.int8
    assert torch.equal(codes2, codes) and torch.equal(signs2, signs)
    assert torch.equal(lns_quantize(x, fmt, scale), x)


@SETTINGS
@given(bits=st.integers(3, 12), gamma=GAMMAS, log_scale=st.integers(-20, 20), seed=st.integers(0, 2**31),
       double=st.booleans())
def test_nearest_error_within_half_a_log_gap(bits, gamma, log_scale, seed, double) -> None:
    fmt = LNSFormat(bits, gamma)
    g = torch.Generator().manual_seed(seed)
    # log2 octaves covered by the draws: the grid and a bit below (within the dtype's normal range)
    span = min((fmt.levels + 2) / gamma, 900.0 if double else 100.0)
    x = 2.0 ** (log_scale - span * torch.rand(256, generator=g, dtype=torch.float64))  # [256]
    x = x * torch.where(torch.rand(256, generator=g) < 0.5, -1.0, 1.0).double()
    x[0] = 2.0**log_scale  # the max: the per-tensor scale is exactly 2 ** log_scale
    x = x if double else x.float()
    q = lns_quantize(x, fmt).double()
    x, tol = x.double(), (1e-9 if double else 1e-3)
    boundary = 2.0 ** (log_scale - (fmt.levels - 1) / gamma) * 2.0 ** (-0.5 / gamma)  # smallest * gap ** -0.5
    kept = x.abs() >= boundary * (1 + tol)  # rounds onto the grid, not to zero
    flushed = x.abs() <= boundary * (1 - tol)
    log_error = gamma * torch.log2(x[kept].abs() / q[kept].abs())  # in units of the log gap
    assert (log_error.abs() <= 0.5 + tol).all()
    assert torch.equal(torch.sign(q[kept]), torch.sign(x[kept]))
    assert (q[flushed] == 0).all()


@SETTINGS
@given(bits=st.integers(2, 16), gamma=GAMMAS, per_channel=st.booleans(), rounding=st.sampled_from(["nearest", "stochastic"]),
       seed=st.integers(0, 2**31), double=st.booleans())
def test_fast_quantize_equals_encode_then_decode(bits, gamma, per_channel, rounding, seed, double) -> None:
    fmt = LNSFormat(bits, gamma, per_channel)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 5, generator=g) * torch.exp2(torch.randint(-40, 40, (4, 3, 5), generator=g).float())
    x[0, 0, :2] = 0.0
    x = x.double() if double else x
    for scale in (None, lns_scale(x, fmt) / 4):  # the max-abs, and one that saturates the largest values
        fast = lns_quantize(x, fmt, scale, rounding, torch.Generator().manual_seed(seed))
        reference = lns_quantize_reference(x, fmt, scale, rounding, torch.Generator().manual_seed(seed))
        assert torch.equal(fast, reference)


def test_round_to_nearest_is_in_the_log_domain_not_linear() -> None:
    fmt = LNSFormat(4, 1)  # magnitudes 1, 1/2, 1/4, ... of scale 1
    one = torch.tensor(1.0)
    # 0.72 is below the linear midpoint 0.75 but above the geometric one sqrt(1/2) ~ 0.7071
    x = torch.tensor([0.72, 0.70, -0.72, 0.36])
    assert torch.equal(lns_quantize(x, fmt, one), torch.tensor([1.0, 0.5, -1.0, 0.5]))


def test_zero_and_underflow_convention() -> None:
    fmt = LNSFormat(4, 1)  # codes 0..6 are 1 .. 1/64, code 7 is zero
    scale = torch.tensor(1.0)
    smallest = 2.0**-6
    x = torch.tensor([0.0, -0.0, smallest, -smallest, smallest * 2**-0.49, smallest * 2**-0.51, 1e-30, 3.0, -5.0])
    codes, signs = lns_encode(x, fmt, scale)
    assert codes.tolist() == [7, 7, 6, 6, 6, 7, 7, 0, 0]
    assert signs.tolist() == [0, 0, 1, -1, 1, 0, 0, 1, -1]
    # the zero code decodes to zero whatever sign it carries
    assert lns_decode(torch.tensor([7, 7]), torch.tensor([1, -1]), scale, fmt).tolist() == [0.0, 0.0]
    # an all-zero tensor: scale 1, every value the zero code
    zeros = torch.zeros(3, 2)
    assert lns_scale(zeros, fmt).item() == 1.0
    z_codes, z_signs = lns_encode(zeros, fmt)
    assert (z_codes == fmt.max_code).all() and (z_signs == 0).all()
    assert torch.equal(lns_quantize(zeros, fmt), zeros)


def test_stochastic_rounding_is_unbiased_in_the_log_domain() -> None:
    fmt, n = LNSFormat(8, 4), 20000
    scale = torch.tensor(1.0)
    exponents = torch.tensor([0.3, 2.5, 7.9, 40.25, 125.6])  # exact real-valued codes
    x = 2.0 ** (-exponents / fmt.gamma)  # [5]
    draws = x.repeat(n, 1)  # [n, 5]
    codes, _ = lns_encode(draws, fmt, scale, rounding="stochastic", generator=torch.Generator().manual_seed(0))
    frac = exponents - exponents.floor()
    assert ((codes == exponents.floor()) | (codes == exponents.ceil())).all()  # only the two neighbours
    standard_error = (frac * (1 - frac) / n).sqrt()
    assert ((codes.double().mean(0) - exponents).abs() <= 4 * standard_error + 1e-6).all()


def test_stochastic_rounding_reproducible_from_the_generator() -> None:
    fmt, x = LNSFormat(5, 1), torch.randn(1000)
    a = lns_quantize(x, fmt, rounding="stochastic", generator=torch.Generator().manual_seed(7))
    b = lns_quantize(x, fmt, rounding="stochastic", generator=torch.Generator().manual_seed(7))
    c = lns_quantize(x, fmt, rounding="stochastic", generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="rounding"):
        lns_quantize(x, fmt, rounding="up")


def test_per_channel_scales_match_slice_by_slice_quantisation() -> None:
    fmt, per_tensor = LNSFormat(6, 4, per_channel=True), LNSFormat(6, 4)
    w = torch.randn(5, 3, 2, 2) * torch.logspace(-3, 3, 5).view(5, 1, 1, 1)  # [5, 3, 2, 2]
    w[2] = 0.0  # an all-zero channel
    scale = lns_scale(w, fmt)
    assert scale.shape == (5, 1, 1, 1) and scale[2].item() == 1.0
    assert torch.equal(scale.flatten()[[0, 1, 3, 4]], w.abs().amax(dim=(1, 2, 3))[[0, 1, 3, 4]])
    q = lns_quantize(w, fmt)  # [5, 3, 2, 2]
    for c in range(5):
        assert torch.equal(q[c], lns_quantize(w[c], per_tensor))
    # each channel's max-abs is code 0 and decodes exactly
    codes, _ = lns_encode(w, fmt)
    assert (codes.flatten(1)[[0, 1, 3, 4]].min(dim=1).values == 0).all()
    bias = torch.tensor([0.5, -2.0, 0.0])  # 1-D: each element is its own channel
    assert torch.equal(lns_quantize(bias, fmt), bias)
    with pytest.raises(ValueError, match="scale"):
        lns_encode(w, fmt, scale=torch.ones(5, 1, 1, 1, 7))


def test_dtypes_are_preserved_and_quantisation_is_idempotent() -> None:
    fmt = LNSFormat(8, 8)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = torch.randn(4, 6, dtype=dtype)
        q = lns_quantize(x, fmt)
        assert q.dtype == dtype and q.shape == x.shape
        if dtype != torch.bfloat16:  # bf16 rounds the decoded grid itself
            assert torch.equal(lns_quantize(q, fmt), q)
    levels = lns_quantize(torch.linspace(-1, 1, 10001), LNSFormat(4, 2)).unique()
    assert len(levels) == 2 * LNSFormat(4, 2).levels + 1  # +- each magnitude, and zero
    assert math.isclose(levels.max().item(), 1.0)


def test_nearest_rounding_breaks_exact_ties_to_even() -> None:
    """An exponent exactly half-way between two codes goes to the even code (torch.round's rule):
    at gamma 2, x = 2**-1.25 has t = 2.5 and decodes to 2**-1 = 0.5, not 2**-1.5 (half-up's answer);
    at t = 4.5 the even code is 4."""
    fmt = LNSFormat(bits=8, gamma=2)
    scale = torch.tensor(1.0, dtype=torch.float64)
    x = torch.tensor([2**-1.25, 2**-2.25, -(2**-1.25)], dtype=torch.float64)
    assert torch.equal(fmt.gamma * torch.log2(scale / x.abs()), torch.tensor([2.5, 4.5, 2.5], dtype=torch.float64))
    codes, signs = lns_encode(x, fmt, scale)
    assert codes.tolist() == [2, 4, 2] and signs.tolist() == [1, 1, -1]
    assert torch.equal(lns_quantize(x, fmt, scale), torch.tensor([0.5, 0.25, -0.5], dtype=torch.float64))
