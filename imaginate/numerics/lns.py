"""The multi-base logarithmic number system (LNS) of LNS-Madam (arXiv 2106.13914).

A value is ``x = sign * scale * 2 ** (-e / gamma)``:

- ``sign`` is one bit (held here as an int8 in {-1, 0, +1}, 0 for the value zero);
- ``e`` is an unsigned integer exponent code of ``bits - 1`` bits, so ``0 <= e <= max_code`` with
  ``max_code = 2 ** (bits - 1) - 1``;
- ``gamma`` is the base factor, a power of two: the base is ``2 ** (1 / gamma)``, so neighbouring
  magnitudes are a factor ``2 ** (1 / gamma)`` apart (a larger gamma: a finer gap, a smaller range);
- ``scale`` is the largest magnitude (code 0): the max-abs of the tensor, or of each slice along
  dim 0 (output channel) when the format is ``per_channel``.

Zero and underflow. The all-ones exponent pattern, ``e == max_code``, is reserved for ZERO (the
hardware view: like an IEEE float's reserved exponent, a detector on the all-ones pattern gates the
datapath). Non-zero magnitudes use ``e`` in ``[0, max_code - 1]``: ``levels = max_code`` of them,
from ``scale`` down to ``scale * 2 ** (-(max_code - 1) / gamma)``. Encoding a value whose rounded
exponent is above ``max_code - 1`` (below the smallest magnitude) flushes it to zero: sign 0 and
code ``max_code``. An exact zero always encodes as zero. A magnitude above ``scale`` (possible only
with an explicit ``scale``) saturates to code 0.

Rounding happens in the LOG domain: ``e = round(gamma * log2(scale / |x|))``. Round-to-nearest in
the log domain is not nearest in the linear domain: the midpoint between two neighbouring
magnitudes ``m`` and ``m * 2 ** (1 / gamma)`` is their geometric mean, not their arithmetic mean,
so a value slightly above the arithmetic midpoint can still round down (e.g. gamma = 1: between
1 and 2 the boundary is sqrt(2) ~ 1.414, not 1.5). Ties (a fractional exponent of exactly .5)
round half to even. Stochastic rounding rounds the exponent down with probability ``1 - frac`` and
up with probability ``frac``, so it is unbiased in the log domain (``E[e]`` equals the exact
real-valued exponent), not in the linear domain.

Precision. The logarithm is computed in float32 (float64 for float64 inputs). Float32 resolves
neighbouring magnitudes reliably while ``gamma`` is well below ``2 ** 20``; and a decoded value
below float32's smallest subnormal (for example the low codes of a 16-bit format with a large
gamma) decodes to 0 in float32 even though its code is not the zero code. Non-finite inputs are not
supported. Everything is vectorised and device-agnostic: tensors, scales and the generator must
simply live on the same device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ROUNDINGS = ("nearest", "stochastic")


@dataclass(frozen=True)
class LNSFormat:
    """A B-bit multi-base LNS format.

    Args:
        bits: B, total bits per value: 1 sign bit + (B - 1) exponent bits; 2 <= B <= 16.
        gamma: base factor, a power of two >= 1: base = 2 ** (1 / gamma).
        per_channel: one scale per slice along dim 0 (the output channel) instead of one per tensor.
    """

    bits: int  # B
    gamma: int  # LNS base factor: base = 2 ** (1 / gamma)
    per_channel: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 16:
            raise ValueError(f"bits: must be an integer in [2, 16], got {self.bits!r}")
        gamma = self.gamma
        if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1 or gamma & (gamma - 1):
            raise ValueError(f"gamma: must be a power of two >= 1 (1, 2, 4, 8, ...), got {gamma!r}")
        if not isinstance(self.per_channel, bool):
            raise ValueError(f"per_channel: must be a bool, got {self.per_channel!r}")

    @property
    def max_code(self) -> int:
        """2 ** (bits - 1) - 1: the all-ones exponent code, reserved for zero."""
        return 2 ** (self.bits - 1) - 1

    @property
    def levels(self) -> int:
        """Number of non-zero magnitudes: codes 0 .. max_code - 1."""
        return self.max_code

    @property
    def dynamic_range_log2(self) -> float:
        """log2 of the largest over the smallest non-zero magnitude: (levels - 1) / gamma."""
        return (self.levels - 1) / self.gamma


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def lns_scale(x: Tensor, fmt: LNSFormat) -> Tensor:
    """The max-abs scale of ``x``: per tensor, or per slice along dim 0 when ``fmt.per_channel``.

    Args:
        x: [C, ...] floating tensor.
        fmt: the format (only ``per_channel`` is read).

    Returns:
        A 0-dim tensor (per tensor) or [C, 1, 1, ...] broadcastable against ``x`` (per channel), in
        float32 (float64 for float64 ``x``). An all-zero tensor or slice gets scale 1.
    """
    ax = x.detach().abs().to(_compute_dtype(x.dtype))
    if fmt.per_channel and x.dim() >= 1:
        scale = ax.amax(dim=tuple(range(1, x.dim())), keepdim=True) if x.dim() > 1 else ax  # [C, 1, ...]
    else:
        scale = ax.amax()  # []
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding: '{rounding}' is not one of {', '.join(ROUNDINGS)}")


def round_tensor(t: Tensor, rounding: str, generator: torch.Generator | None = None) -> Tensor:
    """Round a real tensor to integers: half to even ("nearest") or floor + Bernoulli(frac) ("stochastic").

    Args:
        t: floating tensor of any shape; stays floating.
        rounding: "nearest" or "stochastic".
        generator: random source for "stochastic" (on ``t``'s device); None uses torch's default.
    """
    _check_rounding(rounding)
    if rounding == "nearest":
        return torch.round(t)
    if generator is not None and generator.device.type != t.device.type:
        raise ValueError(
            f"generator: on {generator.device} but the tensor is on {t.device}; "
            f"create it with torch.Generator(device={str(t.device)!r})"
        )
    floor = torch.floor(t)
    u = torch.rand(t.shape, generator=generator, device=t.device, dtype=t.dtype)  # uniform [0, 1)
    return floor + (u < t - floor).to(t.dtype)


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def lns_encode(
    x: Tensor,
    fmt: LNSFormat,
    scale: Tensor | None = None,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Encode ``x`` as LNS exponent codes and signs: ``x ~ sign * scale * 2 ** (-codes / gamma)``.

    Args:
        x: floating tensor, any shape.
        fmt: the LNS format.
        scale: 0-dim or broadcastable against ``x`` (per channel [C, 1, ...]); None: ``lns_scale(x, fmt)``.
        rounding: "nearest" (log domain, half to even) or "stochastic" (log domain, unbiased).
        generator: random source for stochastic rounding, on ``x``'s device; None uses torch's default.

    Returns:
        (codes, signs): codes int16 of ``x``'s shape in [0, max_code] (max_code means zero), signs
        int8 in {-1, 0, +1} (0 exactly where the code is max_code).
    """
    _check_rounding(rounding)
    compute = _compute_dtype(x.dtype)
    if scale is None:
        scale = lns_scale(x, fmt)
    elif not _broadcasts_to(scale.shape, x.shape):
        raise ValueError(f"scale: shape {tuple(scale.shape)} does not broadcast to x's shape {tuple(x.shape)}")
    x = x.detach()
    ax = x.abs().to(compute)
    # real-valued exponent; |x| = 0 (or an underflowing ratio) gives +inf, which flushes to zero below
    t = fmt.gamma * torch.log2(scale.to(compute) / ax)  # [...], >= 0 when |x| <= scale
    e = round_tensor(t, rounding, generator)
    zero = (e > fmt.max_code - 1) | (ax == 0)
    e = torch.where(zero, float(fmt.max_code), e.clamp(0, fmt.max_code - 1))
    codes = e.to(torch.int16)
    signs = torch.where(zero, 0, torch.sign(x).to(torch.int8)).to(torch.int8)
    return codes, signs


def lns_decode(
    codes: Tensor, signs: Tensor, scale: Tensor, fmt: LNSFormat, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Decode LNS codes and signs to ``sign * scale * 2 ** (-codes / gamma)``.

    Args:
        codes: integer tensor in [0, max_code]; max_code decodes to zero whatever the sign.
        signs: integer tensor in {-1, 0, +1}, same shape as ``codes``.
        scale: 0-dim or broadcastable against ``codes``.
        fmt: the LNS format.
        dtype: floating dtype of the result (computed in float32, or float64 for float64).

    Returns:
        Tensor of ``codes``' shape in ``dtype``.
    """
    compute = _compute_dtype(dtype)
    magnitude = scale.to(compute) * torch.exp2(codes.to(compute) * (-1.0 / fmt.gamma))  # [...]
    value = torch.where(codes >= fmt.max_code, 0.0, signs.to(compute) * magnitude)
    return value.to(dtype)


def lns_quantize(
    x: Tensor,
    fmt: LNSFormat,
    scale: Tensor | None = None,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Round ``x`` onto the LNS grid: ``lns_decode(*lns_encode(x, ...))`` in ``x``'s dtype (no gradient).

    The fast path of the training quantisers: the same arithmetic as encode + decode without the
    integer tensors in between (tests check it equals :func:`lns_quantize_reference` bit for bit).

    Args:
        x: floating tensor, any shape.
        fmt: the LNS format.
        scale: as in :func:`lns_encode`; None: the max-abs of ``x`` (per tensor or per channel).
        rounding: "nearest" or "stochastic" (both in the log domain).
        generator: random source for stochastic rounding, on ``x``'s device.
    """
    _check_rounding(rounding)
    compute = _compute_dtype(x.dtype)
    if scale is None:
        scale = lns_scale(x, fmt)
    elif not _broadcasts_to(scale.shape, x.shape):
        raise ValueError(f"scale: shape {tuple(scale.shape)} does not broadcast to x's shape {tuple(x.shape)}")
    xc = x.detach().to(compute)
    scale = scale.to(compute)
    e = round_tensor(fmt.gamma * torch.log2(scale / xc.abs()), rounding, generator)  # [...]; +inf for 0
    magnitude = scale * torch.exp2(e.clamp(min=0) * (-1.0 / fmt.gamma))
    value = torch.where(e > fmt.max_code - 1, 0.0, torch.copysign(magnitude, xc))  # flush to zero
    return value.to(x.dtype)


def lns_quantize_reference(
    x: Tensor,
    fmt: LNSFormat,
    scale: Tensor | None = None,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> Tensor:
    """``lns_decode(*lns_encode(x, ...))``: the plain definition :func:`lns_quantize` must equal."""
    if scale is None:
        scale = lns_scale(x, fmt)
    codes, signs = lns_encode(x, fmt, scale, rounding, generator)
    return lns_decode(codes, signs, scale, fmt, dtype=x.dtype)
