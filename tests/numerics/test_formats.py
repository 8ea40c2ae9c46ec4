"""Number formats behind one interface: FP8 tables and maxima, INT grids, unbiased stochastic rounding, parsing."""

import pytest
import torch

from imaginate.numerics.formats import (
    FP8_E4M3,
    FP8_E5M2,
    LNS,
    FixedPoint,
    FloatingPoint,
    Identity,
    Native,
    NumberFormat,
    parse_format,
)

ALL_SPECS = ["lns8g8", "lns5g1", "lns8g8c", "int8", "int4", "fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp16", "bf16", "fp32"]


def test_parse_format() -> None:
    assert parse_format("lns8g8") == LNS(8, 8) and parse_format("LNS5G1") == LNS(5, 1)
    assert parse_format("lns8g8c") == LNS(8, 8, per_channel=True)
    assert parse_format("int8") == FixedPoint(8)
    assert parse_format("fp8_e4m3") is FP8_E4M3 and parse_format("fp8_e5m2") is FP8_E5M2
    assert parse_format("fp6_e3m2") == FloatingPoint(3, 2)
    assert parse_format("fp16") == Native(torch.float16) and parse_format("bf16") == Native(torch.bfloat16)
    assert parse_format("fp32") == Identity()
    for spec in ALL_SPECS:
        fmt = parse_format(spec)
        assert isinstance(fmt, NumberFormat) and fmt.name == spec
    assert (LNS(8, 8).bits, FixedPoint(8).bits, FP8_E4M3.bits, Native(torch.bfloat16).bits, Identity().bits) == (
        8, 8, 8, 16, 32)
    with pytest.raises(ValueError, match=r"'fp12'.*lns<B>g<gamma>.*int<B>"):
        parse_format("fp12")
    with pytest.raises(ValueError, match="gamma"):
        parse_format("lns8g3")
    with pytest.raises(ValueError, match="bits"):
        parse_format("fp7_e3m2")


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_every_format_keeps_shape_and_dtype_and_is_idempotent(spec: str) -> None:
    fmt = parse_format(spec)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)) * 3  # [6, 5]
    q = fmt.quantize(x)
    assert q.shape == x.shape and q.dtype == x.dtype
    assert torch.equal(fmt.quantize(q), q)
    s = fmt.quantize(x, "stochastic", torch.Generator().manual_seed(1))
    assert s.shape == x.shape and torch.equal(fmt.quantize(s), s)  # stochastic results lie on the grid
    assert torch.equal(fmt.quantize(torch.zeros(3)), torch.zeros(3))


def test_fp8_e4m3_table_and_maximum() -> None:
    assert FP8_E4M3.convention == "fn" and FP8_E4M3.max_value == 448.0
    assert FP8_E4M3.smallest_subnormal == 2.0**-9
    table = {
        448.0: 448.0, 464.0: 448.0, 1e6: 448.0, float("inf"): 448.0,  # saturate (no infinities)
        240.0: 240.0, 1.0: 1.0, 1.0625: 1.0, 1.1875: 1.25,  # ties to the even mantissa (gap 1/8 at 1)
        -3.3: -3.25, 0.3: 0.3125,  # gap 1/4 in [2, 4); 1/32 in [1/4, 1/2)
        2.0**-6: 2.0**-6, 2.0**-9: 2.0**-9, 3 * 2.0**-9: 3 * 2.0**-9,  # smallest normal, subnormals
        2.0**-10: 0.0, 0.75 * 2.0**-9: 2.0**-9, -2.0**-11: -0.0,  # below the smallest subnormal
    }
    x = torch.tensor(list(table))
    assert FP8_E4M3.quantize(x).tolist() == list(table.values())


def test_fp8_e5m2_table_and_maximum() -> None:
    assert FP8_E5M2.convention == "ieee" and FP8_E5M2.max_value == 57344.0
    assert FP8_E5M2.smallest_subnormal == 2.0**-16
    table = {
        57344.0: 57344.0, 61440.0: 57344.0, -1e9: -57344.0,  # saturate instead of overflowing to inf
        1.125: 1.0, 1.375: 1.5, 3.0: 3.0, 0.1: 0.09375,  # gap 1/4 at 1; ties to even
        2.0**-14: 2.0**-14, 2.0**-16: 2.0**-16, 3 * 2.0**-16: 3 * 2.0**-16, 2.0**-17: 0.0,
    }
    x = torch.tensor(list(table))
    assert FP8_E5M2.quantize(x).tolist() == list(table.values())


@pytest.mark.parametrize(
    ("fmt", "dtype"),
    [(FP8_E4M3, "float8_e4m3fn"), (FP8_E5M2, "float8_e5m2"), (FloatingPoint(5, 10), "float16"),
     (FloatingPoint(8, 7), "bfloat16")],
)
def test_custom_float_matches_torch_dtypes_in_range(fmt: FloatingPoint, dtype: str) -> None:
    if not hasattr(torch, dtype):
        pytest.skip(f"torch has no {dtype}")
    torch_dtype = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g) * torch.exp2(torch.randint(-30, 20, (20000,), generator=g).float())
    x = x[x.abs() <= fmt.max_value]  # torch's conversions differ only in overflow handling
    assert torch.equal(fmt.quantize(x), x.to(torch_dtype).float())
    assert FloatingPoint(5, 10).max_value == 65504.0
    assert FloatingPoint(8, 7).max_value == torch.finfo(torch.bfloat16).max


def test_int8_grid() -> None:
    fmt = FixedPoint(8)
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    step = x.abs().max() / 127
    q = fmt.quantize(x)
    levels = q / step
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max().round().item() == 127
    top = x.abs().argmax()
    assert torch.isclose(q[top], x[top], rtol=1e-6, atol=0)  # the max-abs maps onto itself
    assert ((q - x).abs() <= step / 2 * (1 + 1e-5)).all()
    assert len(fmt.quantize(torch.linspace(-1, 1, 5001)).unique()) == 255


@pytest.mark.parametrize(
    ("fmt", "x"),
    [(FixedPoint(4), [0.33, -0.61, 0.05, 0.9]),  # 4-bit grid of step 1/7 with max-abs 1
     (FP8_E4M3, [1.03, -5.1, 0.0041, 300.0]),
     (FP8_E5M2, [1.1, -700.0, 3e-5, 0.2]),
     (Native(torch.bfloat16), [1.0 + 2**-9, -3.0001, 1e-3, 7.77])],
)
def test_stochastic_rounding_is_unbiased_in_the_linear_domain(fmt: NumberFormat, x: list[float]) -> None:
    n = 20000
    values = torch.tensor(x, dtype=torch.float64)
    if isinstance(fmt, FixedPoint):  # pin the per-tensor scale: a max-abs of 1 in every row
        values = torch.cat([values, torch.ones(1, dtype=torch.float64)])
    draws = fmt.quantize(values.repeat(n, 1), "stochastic", torch.Generator().manual_seed(0))  # [n, k]
    values, draws = values[: len(x)], draws[:, : len(x)]
    lower, upper = draws.min(0).values, draws.max(0).values  # [k]: the two neighbours, both drawn
    assert ((draws == lower) | (draws == upper)).all()
    assert ((lower < values) & (values < upper)).all()
    if not isinstance(fmt, FixedPoint):  # (a FixedPoint grid depends on the tensor's max-abs)
        assert torch.equal(fmt.quantize(lower), lower) and torch.equal(fmt.quantize(upper), upper)
    p = (values - lower) / (upper - lower)  # probability of rounding up
    standard_error = (upper - lower) * (p * (1 - p) / n).sqrt()
    assert ((draws.mean(0) - values).abs() <= 4 * standard_error).all()


def test_native_and_identity() -> None:
    x = torch.randn(100) * 1000
    assert torch.equal(Native(torch.float16).quantize(x), x.half().float())
    assert torch.equal(Native(torch.bfloat16).quantize(x), x.bfloat16().float())
    assert torch.equal(Identity().quantize(x, "stochastic"), x)
    with pytest.raises(ValueError, match="dtype"):
        Native(torch.float32)


def test_validation_names_the_field() -> None:
    for make, field in [(lambda: FloatingPoint(1, 3), "exp_bits"), (lambda: FloatingPoint(4, 11), "man_bits"),
                        (lambda: FloatingPoint(4, 0, "fn"), "convention"), (lambda: FloatingPoint(4, 3, "x"), "convention"),
                        (lambda: FixedPoint(1), "bits"), (lambda: LNS(8, 5), "gamma")]:
        with pytest.raises(ValueError, match=field):
            make()
