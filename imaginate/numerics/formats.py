"""Number formats behind one interface: LNS, fixed point, custom floating point, native torch dtypes.

Every format is a :class:`NumberFormat`: a ``name``, a ``bits`` width and
``quantize(x, rounding="nearest", generator=None)``, which returns ``x`` rounded onto the format's
grid in ``x``'s dtype (no gradient: the straight-through wiring lives in ``quant.py``). Rounding is
"nearest" (half to even) or "stochastic" (unbiased: round up with probability equal to the
fractional position between the two neighbouring grid points, drawn from ``generator``).

| spec           | class                         | grid                                                   |
|----------------|-------------------------------|--------------------------------------------------------|
| ``lns8g8``     | ``LNS(8, 8)``                 | sign * max-abs * 2 ** (-e / 8), e in 0..126, 127 = zero |
| ``lns8g8c``    | ``LNS(8, 8, per_channel=True)`` | the same with one scale per output channel (dim 0)   |
| ``int8``       | ``FixedPoint(8)``             | symmetric integers -127..127 times max-abs / 127       |
| ``fp8_e4m3``   | ``FloatingPoint(4, 3)``       | OCP E4M3 ("fn"): no infinities, max 448                |
| ``fp8_e5m2``   | ``FloatingPoint(5, 2)``       | IEEE-like E5M2: max 57344                              |
| ``fp16``/``bf16`` | ``Native(dtype)``          | a round trip through the torch dtype                  |
| ``fp32``       | ``Identity()``                | unchanged                                              |

``FloatingPoint`` has no scale (values are quantised as they are, as an FP8 tensor core sees
them); ``FixedPoint`` and ``LNS`` scale each tensor by its max-abs.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from imaginate.numerics.lns import LNSFormat, lns_quantize, round_tensor
from imaginate.numerics.lns_fast import lns_quantize_fast

FORMAT_FORMS = "lns<B>g<gamma>[c] (e.g. lns8g8, lns5g1, lns8g8c per channel), int<B>, fp8_e4m3, fp8_e5m2, fp<1+E+M>_e<E>m<M>, fp16, bf16, fp32"


class NumberFormat(ABC):
    """A number format: ``quantize`` rounds a tensor onto its grid, in the tensor's dtype."""

    name: str
    bits: int

    @abstractmethod
    def quantize(self, x: Tensor, rounding: str = "nearest", generator: torch.Generator | None = None) -> Tensor:
        """Round ``x`` onto the grid (same shape and dtype).

        Args:
            x: floating tensor, any shape.
            rounding: "nearest" or "stochastic".
            generator: random source for stochastic rounding, on ``x``'s device; None: torch's default.
        """

    def __str__(self) -> str:
        return self.name


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@dataclass(frozen=True, eq=True)
class LNS(NumberFormat):
    """Multi-base LNS (see ``lns.py``): sign + (bits-1)-bit exponent, base 2 ** (1 / gamma), max-abs scale.

    Args:
        bits: total bits, 2..16.
        gamma: base factor, a power of two.
        per_channel: one scale per slice along dim 0.
    """

    bits: int
    gamma: int
    per_channel: bool = False
    fmt: LNSFormat = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fmt", LNSFormat(self.bits, self.gamma, self.per_channel))

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"lns{self.bits}g{self.gamma}" + ("c" if self.per_channel else "")

    def quantize(self, x: Tensor, rounding: str = "nearest", generator: torch.Generator | None = None) -> Tensor:
        if LNS_IMPL["impl"] == "fast":  # slab by slab, 16-bit random numbers (imaginate.numerics.lns_fast)
            return lns_quantize_fast(x, self.fmt, rounding=rounding, generator=generator)
        return lns_quantize(x, self.fmt, rounding=rounding, generator=generator)


LNS_IMPL = {"impl": "fast"}  # "fast" or "reference" (lns_quantize: torch.rand, whole-tensor ops)


@contextmanager
def lns_impl(impl: str) -> Iterator[None]:
    """Inside the block, LNS formats quantise with ``impl``: "fast" (default) or "reference" (for timings).

    Args:
        impl: "fast" (:func:`~imaginate.numerics.lns_fast.lns_quantize_fast`) or "reference"
            (:func:`~imaginate.numerics.lns.lns_quantize`).
    """
    if impl not in ("fast", "reference"):
        raise ValueError(f"impl: {impl!r} is not one of fast, reference")
    before = LNS_IMPL["impl"]
    LNS_IMPL["impl"] = impl
    try:
        yield
    finally:
        LNS_IMPL["impl"] = before


@dataclass(frozen=True, eq=True)
class FixedPoint(NumberFormat):
    """INT-B symmetric fixed point: integers in [-(2**(B-1) - 1), 2**(B-1) - 1] times max-abs / (2**(B-1) - 1).

    Args:
        bits: total bits B, 2..32 (the code -2**(B-1) is unused, keeping the grid symmetric).
    """

    bits: int

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 32:
            raise ValueError(f"bits: must be an integer in [2, 32], got {self.bits!r}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"int{self.bits}"

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def scale(self, x: Tensor) -> Tensor:
        """The grid step: max |x| / qmax as a 0-dim tensor (1 / qmax for an all-zero tensor)."""
        amax = x.detach().abs().to(_compute_dtype(x)).amax()
        return torch.where(amax > 0, amax, torch.ones_like(amax)) / self.qmax

    def quantize(self, x: Tensor, rounding: str = "nearest", generator: torch.Generator | None = None) -> Tensor:
        step = self.scale(x)  # []
        q = round_tensor(x.detach().to(step.dtype) / step, rounding, generator)  # integers, [...]
        return (q.clamp(-self.qmax, self.qmax) * step).to(x.dtype)


@dataclass(frozen=True, eq=True)
class FloatingPoint(NumberFormat):
    """Custom binary floating point: 1 sign, E exponent bits (bias 2**(E-1) - 1), M mantissa bits.

    Subnormals are kept (exponent field 0); values beyond the largest finite value saturate to it
    (also infinities; NaN stays NaN). Two conventions for the top of the range:

    - "ieee": the all-ones exponent is reserved for inf/NaN, max = 2**(2**E - 2 - bias) * (2 - 2**-M)
      (E5M2: 57344; E5M10 = fp16: 65504);
    - "fn" (OCP FP8 E4M3): no infinities; the all-ones exponent holds normals except the all-ones
      mantissa (the single NaN), max = 2**(2**E - 1 - bias) * (2 - 2**(1-M)) (E4M3: 448).

    Args:
        exp_bits: E, 2..8.
        man_bits: M, 0..10 (E8M7 is bf16's grid, E5M10 fp16's).
        convention: "ieee", "fn", or "auto" ("fn" for E4M3, "ieee" otherwise).
    """

    exp_bits: int
    man_bits: int
    convention: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.exp_bits, bool) or not isinstance(self.exp_bits, int) or not 2 <= self.exp_bits <= 8:
            raise ValueError(f"exp_bits: must be an integer in [2, 8], got {self.exp_bits!r}")
        if isinstance(self.man_bits, bool) or not isinstance(self.man_bits, int) or not 0 <= self.man_bits <= 10:
            raise ValueError(f"man_bits: must be an integer in [0, 10], got {self.man_bits!r}")
        if self.convention == "auto":
            object.__setattr__(self, "convention", "fn" if (self.exp_bits, self.man_bits) == (4, 3) else "ieee")
        if self.convention not in ("ieee", "fn"):
            raise ValueError(f"convention: '{self.convention}' is not one of auto, ieee, fn")
        if self.convention == "fn" and self.man_bits == 0:
            raise ValueError("convention: 'fn' needs man_bits >= 1 (the all-ones mantissa is NaN)")

    @property
    def bits(self) -> int:  # type: ignore[override]
        return 1 + self.exp_bits + self.man_bits

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"fp{self.bits}_e{self.exp_bits}m{self.man_bits}"

    @property
    def bias(self) -> int:
        return 2 ** (self.exp_bits - 1) - 1

    @property
    def min_exponent(self) -> int:
        """Unbiased exponent of the smallest normal (and of the subnormals' spacing): 1 - bias."""
        return 1 - self.bias

    @property
    def max_exponent(self) -> int:
        top = 2**self.exp_bits - 1  # all-ones exponent field
        return (top if self.convention == "fn" else top - 1) - self.bias

    @property
    def max_value(self) -> float:
        m = self.man_bits
        mantissa = 2 - 2.0 ** (1 - m) if self.convention == "fn" else 2 - 2.0**-m
        return 2.0**self.max_exponent * mantissa

    @property
    def smallest_subnormal(self) -> float:
        return 2.0 ** (self.min_exponent - self.man_bits)

    def quantize(self, x: Tensor, rounding: str = "nearest", generator: torch.Generator | None = None) -> Tensor:
        # float32 holds every grid point and spacing exactly while the subnormal spacing is a float32
        # normal (E <= 7 or so); wider exponents compute in float64
        compute = _compute_dtype(x) if self.min_exponent - self.man_bits >= -126 else torch.float64
        xc = x.detach().to(compute)
        a = xc.abs().clamp(max=self.max_value)  # saturate first: everything above rounds to max anyway
        _, frexp_exponent = torch.frexp(a)  # a = m * 2**k with m in [0.5, 1): floor(log2 a) = k - 1
        exponent = (frexp_exponent - 1).clamp(min=self.min_exponent)  # subnormals share the min exponent
        ulp = torch.exp2((exponent - self.man_bits).to(compute))  # grid spacing in this binade
        q = round_tensor(a / ulp, rounding, generator)  # integer multiples of ulp
        magnitude = (q * ulp).clamp(max=self.max_value)
        return torch.copysign(magnitude, xc).to(x.dtype)


@dataclass(frozen=True, eq=True)
class Native(NumberFormat):
    """A native torch dtype (bf16 or fp16): a round trip through it, as autocast would store it.

    "nearest" is torch's conversion (round half to even; fp16 overflows to inf). "stochastic" uses
    the equal custom float (E8M7 / E5M10, saturating), since torch has no stochastic conversion.

    Args:
        dtype: torch.bfloat16 or torch.float16.
    """

    dtype: torch.dtype

    def __post_init__(self) -> None:
        if self.dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"dtype: must be torch.bfloat16 or torch.float16, got {self.dtype}")

    @property
    def bits(self) -> int:  # type: ignore[override]
        return 16

    @property
    def name(self) -> str:  # type: ignore[override]
        return "bf16" if self.dtype == torch.bfloat16 else "fp16"

    def quantize(self, x: Tensor, rounding: str = "nearest", generator: torch.Generator | None = None) -> Tensor:
        if rounding == "stochastic":
            emulated = FloatingPoint(8, 7) if self.dtype == torch.bfloat16 else FloatingPoint(5, 10)
            return emulated.quantize(x, rounding, generator)
        if rounding != "nearest":
            raise ValueError(f"rounding: '{rounding}' is not one of nearest, stochastic")
        return x.detach().to(self.dtype).to(x.dtype)


@dataclass(frozen=True, eq=True)
class Identity(NumberFormat):
    """FP32: no quantisation (``quantize`` returns ``x`` detached, whatever the rounding)."""

    @property
    def bits(self) -> int:  # type: ignore[override]
        return 32

    @property
    def name(self) -> str:  # type: ignore[override]
        return "fp32"

    def quantize(self, x: Tensor, rounding: str = "nearest", generator: torch.Generator | None = None) -> Tensor:
        return x.detach()


FP8_E4M3 = FloatingPoint(4, 3)
FP8_E5M2 = FloatingPoint(5, 2)

_LNS_SPEC = re.compile(r"lns(\d+)g(\d+)(c?)")
_INT_SPEC = re.compile(r"int(\d+)")
_FP_SPEC = re.compile(r"fp(\d+)_e(\d+)m(\d+)")


def parse_format(spec: str) -> NumberFormat:
    """Build a format from its name: "lns8g8", "lns5g1", "lns8g8c", "int8", "fp8_e4m3", "fp16", "bf16", "fp32"...

    Args:
        spec: the format's name (case-insensitive); see ``FORMAT_FORMS``.

    Raises:
        ValueError: naming the spec and listing the accepted forms, or naming the bad field.
    """
    s = spec.strip().lower() if isinstance(spec, str) else ""
    named: dict[str, NumberFormat] = {
        "fp32": Identity(), "fp16": Native(torch.float16), "bf16": Native(torch.bfloat16),
        "fp8_e4m3": FP8_E4M3, "fp8_e5m2": FP8_E5M2,
    }
    if s in named:
        return named[s]
    try:
        if m := _LNS_SPEC.fullmatch(s):
            return LNS(int(m.group(1)), int(m.group(2)), per_channel=bool(m.group(3)))
        if m := _INT_SPEC.fullmatch(s):
            return FixedPoint(int(m.group(1)))
        if m := _FP_SPEC.fullmatch(s):
            total, e, mant = (int(g) for g in m.groups())
            if total != 1 + e + mant:
                raise ValueError(f"bits: fp{total} must equal 1 + E + M = {1 + e + mant}")
            return FloatingPoint(e, mant)
    except ValueError as error:
        raise ValueError(f"format '{spec}': {error}") from None
    raise ValueError(f"unknown number format '{spec}' (forms: {FORMAT_FORMS})")
