"""The fast LNS quantiser of training: :func:`~imaginate.numerics.lns.lns_quantize` slab by slab.

Why it is faster on a CPU (single-threaded, measured on this project's machine; see
docs/results/optim_speed.md):

- the tensor is processed in slabs of ``SLAB`` elements with every op writing into one slab-sized
  buffer, so nothing weight- or activation-sized is allocated (a fresh allocation of tens of MB is
  page-faulted in on every call and cost more than the arithmetic) and the slab stays in L2;
- the stochastic rounding's uniform numbers are drawn slab by slab into a reused buffer, and the
  decision ``u < frac`` is taken in float arithmetic (``(frac - u) > 0``), not through a bool mask.

Both roundings perform the same float operations on the same elements as :func:`lns_quantize` and
give the same bits on a CPU (slab boundaries are multiples of the vector width, so torch's
vectorised and scalar ``log2`` / ``exp2`` see the same elements as on the whole tensor; the CPU
generator yields the same stream whether ``uniform_`` fills one tensor or consecutive slabs; tests
check both). On CUDA the random stream of slabs differs from one ``torch.rand`` call (Philox
offsets): the roundings are then equal in distribution, not in bits.

Round-to-nearest on a CPU tensor goes to the fused C++ kernel of :mod:`imaginate.numerics.lns_kernels`
when it is built (same bits); stochastic rounding here keeps torch's random stream (the training
quantisers of :mod:`imaginate.numerics.quant` call the kernel's counter-based rounding directly).

A counter-based generator compiled with ``torch.compile`` was considered: on this machine compiling
one small function took 55 s and every new tensor shape recompiles, which costs more than the
whole quantised run it would speed up; it is not used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from imaginate.numerics.lns import LNSFormat, _check_rounding, _compute_dtype, lns_quantize, lns_scale
from imaginate.numerics.lns_kernels import lns_quantize_kernel

SLAB = 1 << 16  # elements per slab (a multiple of every SIMD width)
_SCRATCH: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}


def _scratch(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """Three slab-sized float buffers and one bool buffer, allocated once per (device, dtype)."""
    key = (device, dtype)
    if key not in _SCRATCH:
        _SCRATCH[key] = (*(torch.empty(SLAB, dtype=dtype, device=device) for _ in range(3)),
                         torch.empty(SLAB, dtype=torch.bool, device=device))
    return _SCRATCH[key]


def lns_quantize_fast(
    x: Tensor,
    fmt: LNSFormat,
    scale: Tensor | None = None,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Round ``x`` onto the LNS grid (no gradient), as :func:`lns_quantize` does.

    Args:
        x: floating tensor, any shape.
        fmt: the LNS format (per-channel formats take :func:`lns_quantize`).
        scale: a 0-dim scale; None: the max-abs of ``x``.
        rounding: "nearest" or "stochastic" (both bit-identical to :func:`lns_quantize` on a CPU).
        generator: random source for stochastic rounding, on ``x``'s device; None: torch's default.
    """
    _check_rounding(rounding)
    if rounding == "nearest":  # the fused C++ kernel where it applies: the same bits (imaginate.numerics.lns_kernels)
        fused = lns_quantize_kernel(x, fmt, scale)
        if fused is not None:
            return fused
    if fmt.per_channel or (scale is not None and scale.dim() > 0) or x.numel() == 0:
        return lns_quantize(x, fmt, scale, rounding, generator)
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator: on {generator.device} but the tensor is on {x.device}")
    compute = _compute_dtype(x.dtype)
    scale = (lns_scale(x, fmt) if scale is None else scale).to(compute)
    flat = x.detach().reshape(-1)
    out = torch.empty(flat.shape, dtype=x.dtype, device=x.device)
    work, floor, uniform, below = _scratch(x.device, compute)
    for start in range(0, flat.numel(), SLAB):
        xs = flat[start:start + SLAB].to(compute)  # a view when x is already in the compute dtype
        m = xs.numel()
        t, zero = work[:m], below[:m]
        torch.abs(xs, out=t)
        torch.div(scale, t, out=t)  # scale / |x|: +inf for 0
        torch.log2(t, out=t)
        t.mul_(fmt.gamma)  # the real-valued exponent, >= 0 when |x| <= scale
        if rounding == "nearest":
            t.round_()  # half to even
        else:  # floor + (u < t - floor): frac - u > 0 exactly when u < frac (IEEE, subnormals kept)
            fl, u = floor[:m], uniform[:m]
            torch.floor(t, out=fl)
            u.uniform_(generator=generator)  # the next m numbers of the stream torch.rand(x.shape) reads
            t.sub_(fl).sub_(u).gt_(0.0).add_(fl)
        torch.gt(t, fmt.max_code - 1, out=zero)  # below the smallest magnitude: flush to zero
        t.clamp_(min=0).mul_(-1.0 / fmt.gamma)
        torch.exp2(t, out=t)
        t.mul_(scale)
        torch.copysign(t, xs, out=t)
        t.masked_fill_(zero, 0.0)
        out[start:start + m].copy_(t)
    return out.view(x.shape)
