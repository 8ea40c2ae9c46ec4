"""Low-bit weight stores for additive optimizers: the baselines of LNS-Madam (arXiv 2106.13914).

:func:`requantize_after_step` makes any ``torch.optim.Optimizer`` (SGD, Adam, AdamW, ...) keep its
weights on a low-bit grid: the weights are rounded to the grid once when it is attached, and after
every ``step()`` each parameter is overwritten in place by ``quantize(p)``. The float update
``p + delta`` exists only transiently inside the step, so there is no float master copy of the
weights: an update smaller than half a grid gap around ``p`` is rounded away, which is the effect the
paper measures. (Adam's moments stay float: they are optimizer statistics, not a weight copy.)

Quantizers are plain callables ``Tensor -> Tensor`` (same shape and dtype, idempotent on the grid):
:func:`lns_store` builds one from :mod:`imaginate.numerics.lns`; anything with the same signature,
such as the FP8 / INT8 formats' ``quantize``, works too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from imaginate.numerics.lns import LNSFormat, lns_quantize, lns_scale

Quantizer = Callable[[torch.Tensor], torch.Tensor]


SCALES = ("pow2", "max")


def lns_store(bits: int, gamma: int, per_channel: bool = False, scale: str = "pow2") -> Quantizer:
    """A B-bit LNS weight store: round to nearest in the log domain, with a per-tensor (or per-channel)
    scale recomputed from the weights at every call.

    ``scale="pow2"`` (default): the max-abs rounded up to a power of two. As gamma is a power of two,
    the grid is then the fixed set ``+-2 ** (j / gamma)`` (cut to the format's range), so quantising
    twice changes nothing and a small update is rounded away wherever it happens, including on the
    largest weight; the top code may go unused (up to ``gamma`` codes of range).
    ``scale="max"``: the max-abs itself, as the forward-pass quantisers use. The largest weight is then
    always exact (its updates are never rounded away) and when it grows every other weight is
    re-encoded against the new scale: a float degree of freedom the store would not have in hardware.

    Args:
        bits: B, bits per stored weight (1 sign + B - 1 exponent bits), 2..16.
        gamma: LNS base factor (a power of two): neighbouring magnitudes differ by ``2 ** (1 / gamma)``.
        per_channel: one scale per slice along dim 0 instead of one per tensor.
        scale: "pow2" or "max", as above.
    """
    fmt = LNSFormat(bits=bits, gamma=gamma, per_channel=per_channel)
    if scale not in SCALES:
        raise ValueError(f"scale: {scale!r} is not one of {', '.join(SCALES)}")

    def quantize(x: torch.Tensor) -> torch.Tensor:
        s = lns_scale(x, fmt)  # [] or [C, 1, ...]; 1 for an all-zero tensor
        if scale == "pow2":
            s = torch.exp2(torch.ceil(torch.log2(s)))
        return lns_quantize(x, fmt, scale=s, rounding="nearest")

    return quantize


@torch.no_grad()
def quantize_parameters(optimizer: torch.optim.Optimizer, quantize: Quantizer) -> None:
    """Overwrites every parameter of ``optimizer``'s groups in place with ``quantize(p)``.

    Args:
        optimizer: any optimizer; its ``param_groups`` name the weights of the store.
        quantize: ``Tensor -> Tensor`` rounding onto the store's grid (same shape and dtype).
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            q = quantize(p.detach())
            if q.shape != p.shape:
                raise ValueError(
                    f"quantize: returned shape {tuple(q.shape)} for a parameter of {tuple(p.shape)}"
                )
            p.copy_(q)


def requantize_after_step(optimizer: torch.optim.Optimizer, quantize: Quantizer) -> RemovableHandle:
    """Keeps ``optimizer``'s weights in a low-bit store: quantised now, and again after every step.

    Registers a step post-hook on this optimizer instance (the optimizer keeps its type, state_dict
    and scheduler compatibility; hooks are not saved in checkpoints, so attach it again after
    re-building the optimizer). Parameters added later through ``add_param_group`` are covered from
    their first step on.

    Args:
        optimizer: the float optimizer (SGD, Adam, AdamW, ...), already built over its parameters.
        quantize: ``Tensor -> Tensor`` rounding to nearest onto the store's grid, e.g. :func:`lns_store`
            or the ``quantize`` of a format from ``imaginate.numerics.formats``.

    Returns:
        The hook's handle: ``handle.remove()`` detaches the store (the weights stay as they are).
    """
    quantize_parameters(optimizer, quantize)

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        quantize_parameters(opt, quantize)

    return optimizer.register_step_post_hook(hook)
