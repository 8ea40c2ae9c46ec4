"""Multi-tensor helpers of the Madam family's fast steps.

The fast steps walk every parameter of a group in *slabs*: lists of flat views that together hold
at most ``SLAB`` elements (a large tensor is cut into several slabs; small tensors share one). Each
slab is updated with ``torch._foreach_*`` ops over its views, so

- many small tensors cost one multi-tensor call per op instead of one call per tensor, and
- the temporaries of an op are slab-sized (``SLAB`` floats, L2-resident) instead of weight-sized,
  so a step never allocates a float tensor the size of the largest weight (on CPU a fresh
  allocation of tens of MB is also page-faulted in on every step, which costs more than the op).

Element-wise ops give the same bits whichever way a tensor is cut (no reductions cross views), so a
fast step equals the per-tensor one; the tests check it bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

SLAB = 1 << 16  # elements per slab: 256 KB of float32 per operand


@dataclass
class Slab:
    """Aligned flat views of several tensors: ``views[k][i]`` is the i-th piece of operand k.

    ``owners[i]`` is the index (into the caller's list of parameters) the i-th piece belongs to.
    """

    views: list[list[Tensor]]
    owners: list[int] = field(default_factory=list)


def _flat(t: Tensor) -> Tensor | None:
    return t.view(-1) if t.is_contiguous() else None


def slabs(operands: Sequence[Sequence[Tensor]], limit: int = SLAB) -> Iterator[Slab]:
    """Cut aligned tensors into slabs of at most ``limit`` elements.

    Args:
        operands: K lists of N tensors each; ``operands[k][i]`` all have the same number of elements
            (e.g. parameters, their gradients, a state tensor of each).
        limit: most elements of one slab (a non-contiguous tensor is one piece, whatever its size).

    Yields:
        :class:`Slab` objects whose views cover every element exactly once, in order.
    """
    count = len(operands)
    current = Slab([[] for _ in range(count)])
    filled = 0
    for i in range(len(operands[0])):
        flats = [_flat(operands[k][i]) for k in range(count)]
        n = operands[0][i].numel()
        if any(f is None for f in flats):  # one piece, never cut
            pieces = [[operands[k][i] for k in range(count)]]
        else:
            pieces = [[f[s:s + limit] for f in flats] for s in range(0, n, limit)] if n else []
        for piece in pieces:
            size = piece[0].numel()
            if filled and filled + size > limit:
                yield current
                current, filled = Slab([[] for _ in range(count)]), 0
            for k in range(count):
                current.views[k].append(piece[k])
            current.owners.append(i)
            filled += size
    if filled or current.owners:
        yield current


def foreach_normalised_gradient(
    grads: list[Tensor], exp_avg_sqs: list[Tensor], bias_corrections: list[float], g_bound: float | None,
    beta: float,
) -> list[Tensor]:
    """The multi-tensor form of :func:`imaginate.optim.madam._normalised_gradient`, op for op.

    Updates every ``exp_avg_sqs[i]`` in place (float32/64) and returns new ``g_hat`` tensors.

    Args:
        grads: gradient views.
        exp_avg_sqs: second-moment views (same shapes), updated in place.
        bias_corrections: ``1 - beta ** step`` of each view's parameter.
        g_bound: clamp of ``|g_hat|``; None: no clamp.
        beta: second-moment decay.
    """
    torch._foreach_mul_(exp_avg_sqs, beta)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta)
    denominators = torch._foreach_div(exp_avg_sqs, bias_corrections)
    torch._foreach_sqrt_(denominators)
    g_hats = torch._foreach_div(grads, denominators)
    for g_hat in g_hats:  # 0/0 -> 0, exactly as masked_fill_(isnan(g_hat), 0)
        torch.nan_to_num_(g_hat, nan=0.0, posinf=float("inf"), neginf=float("-inf"))
    if g_bound is not None:
        torch._foreach_clamp_min_(g_hats, -g_bound)
        torch._foreach_clamp_max_(g_hats, g_bound)
    return g_hats
