"""Storage formats of the second moment ``v`` of the Madam family (LNSMadam native mode).

``v = BETA * v + (1 - BETA) * g**2`` moves by ~0.1 % per step (``BETA = 0.999``), far less than half
a grid step of any 8- or 16-bit format, so a moment stored with round-to-nearest never decays
(bf16: 0.4 % spacing). Both low-precision formats therefore round *stochastically* when they store
the updated ``v`` (computed in float32 each step, slab by slab): the stored value is unbiased in
expectation, and the optimizer's random bits come from its own generator.

- ``"fp32"``: a float tensor like the parameter (4 bytes per element), updated in place; exactly
  the per-tensor reference.
- ``"bf16"``: 2 bytes. Stochastic rounding by adding 16 random bits below bf16's mantissa and
  truncating (unbiased in the linear domain up to the 16-bit resolution).
- ``"lns8"``: 1 byte, ``v = scale * 2 ** (-c / 8)`` with ``c`` in 0..254 (31.75 octaves of ``v``,
  about 16 of ``|g|``) and ``c = 255`` for an exact zero; one float ``scale`` per tensor, set before
  each store to ``BETA * scale + (1 - BETA) * max(g**2)``, an upper bound of every new ``v``. Codes
  round stochastically in the log domain (unbiased in ``log v``); values below the smallest
  magnitude saturate to it (flushing them to 0 would turn a small gradient into ``g / 0``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from imaginate.numerics.random_bits import random_u16, uniform_from_u16

MOMENTS = ("fp32", "bf16", "lns8")
LNS8_GAMMA = 8  # neighbouring lns8 magnitudes differ by 2 ** (1 / 8): 9 % in v, 4.4 % in sqrt(v)
LNS8_ZERO = 255


def moment_bytes(moment: str) -> int:
    """Bytes per element of the stored second moment."""
    return {"fp32": 4, "bf16": 2, "lns8": 1}[moment]


def init_moment(p: Tensor, moment: str) -> dict[str, object]:
    """The state entries of a zero second moment for parameter ``p``."""
    if moment == "fp32":
        return {"exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
    if moment == "bf16":
        return {"exp_avg_sq": torch.zeros_like(p, dtype=torch.bfloat16, memory_format=torch.preserve_format)}
    if moment == "lns8":
        return {"exp_avg_sq_code": torch.full_like(p, LNS8_ZERO, dtype=torch.uint8), "exp_avg_sq_scale": 0.0}
    raise ValueError(f"moment: {moment!r} is not one of {', '.join(MOMENTS)}")


def stored_moment(state: dict, moment: str) -> Tensor:
    """The weight-shaped tensor that holds the moment (float32, bf16 or uint8 codes)."""
    return state["exp_avg_sq_code"] if moment == "lns8" else state["exp_avg_sq"]


def lns8_table(scale: float, device: torch.device) -> Tensor:
    """[256] float32: the value of every lns8 code at ``scale`` (code 255: 0)."""
    codes = torch.arange(256, device=device, dtype=torch.float32)
    table = scale * torch.exp2(codes * (-1.0 / LNS8_GAMMA))
    table[LNS8_ZERO] = 0.0
    return table


def lns8_next_scale(scale: float, grads: list[Tensor], beta: float) -> float:
    """``beta * scale + (1 - beta) * max(g**2)`` over the whole tensor (its pieces ``grads``)."""
    peak = max((float(g.detach().abs().amax()) for g in grads if g.numel()), default=0.0)
    return beta * scale + (1 - beta) * peak * peak


def read_moment(stored: Tensor, moment: str, table: Tensor | None = None) -> Tensor:
    """float32 ``v`` of a stored piece: the piece itself for fp32 (updated in place), else a copy.

    Args:
        stored: a piece of the stored moment.
        moment: its format.
        table: lns8: :func:`lns8_table` of the scale the codes were stored with.
    """
    if moment == "fp32":
        return stored
    if moment == "bf16":
        return stored.float()
    return torch.index_select(table, 0, stored.reshape(-1).to(torch.int32)).view(stored.shape)


def write_moment(stored: Tensor, v: Tensor, moment: str, scale: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
    """Stores float32 ``v`` (>= 0) into ``stored`` with stochastic rounding (fp32: nothing to do).

    Args:
        stored: the piece of the stored moment ``v`` belongs to.
        v: the updated float32 values.
        moment: the format.
        scale: lns8: the scale to encode against (an upper bound of ``v``).
        generator: random source (on ``v``'s device); None: torch's default generator.
    """
    if moment == "fp32":
        return
    bits = random_u16(v.numel(), v.device, generator).view(v.shape)
    if moment == "bf16":
        # bf16 keeps the top 16 bits of a float32: add 16 random bits below them, then truncate
        raised = (v.contiguous().view(torch.int32) + bits) & -65536
        stored.copy_(raised.view(torch.float32))  # exact: the low 16 bits are zero
        return
    t = LNS8_GAMMA * torch.log2(scale / v)  # >= 0 up to rounding; +inf for v = 0
    floor = torch.floor(t)
    codes = floor + (uniform_from_u16(bits) < t - floor).to(t.dtype)
    codes = torch.where(v > 0, codes.clamp(0, LNS8_ZERO - 1), float(LNS8_ZERO))
    stored.copy_(codes)
