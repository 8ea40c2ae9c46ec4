"""Madam: multiplicative Adam (Bernstein et al., arXiv 2006.14560), and its log-number-system form.

Both optimizers normalise the gradient by a bias-corrected second moment (Adam without a first
moment or epsilon) and then change each weight *multiplicatively*: a weight's sign never flips and a
weight that is exactly zero never moves. :func:`reinit_zero_params` gives all-zero tensors (usually
biases) a small random start; the optimizers never do that on their own.

- :class:`Madam` keeps float weights: ``p *= exp(-lr * g_hat * sign(p))``, then ``p`` is clamped to
  ``[-max, max]`` with ``max = p_scale * rms(p_initial)`` per tensor.
- :class:`IntegerMadam` keeps each weight as ``sign * max * exp(-base_lr * n)`` with an integer
  ``n in [0, levels - 1]`` and moves ``n`` by whole steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from imaginate.optim.multi_tensor import foreach_normalised_gradient, slabs

BETA = 0.999  # second-moment decay; the paper and the reference implementation fix it
INIT_MODES = ("round", "random")


def _check_common(lr_name: str, lr: float, p_scale: float, g_bound: float | None) -> None:
    if not lr > 0:
        raise ValueError(f"{lr_name}: must be > 0, got {lr!r}")
    if not p_scale > 0:
        raise ValueError(f"p_scale: must be > 0, got {p_scale!r}")
    if g_bound is not None and not g_bound > 0:
        raise ValueError(f"g_bound: must be None (no clamp) or > 0, got {g_bound!r}")


def _grad_of(p: torch.Tensor, optimizer_name: str) -> torch.Tensor:
    grad = p.grad
    if grad.is_sparse:
        raise RuntimeError(f"{optimizer_name} does not support sparse gradients; use dense gradients")
    return grad


def _normalised_gradient(
    grad: torch.Tensor, exp_avg_sq: torch.Tensor, step: int, g_bound: float | None
) -> torch.Tensor:
    """Updates ``exp_avg_sq`` in place and returns ``g_hat`` (same shape as ``grad``).

    ``v = BETA * v + (1 - BETA) * g**2``; ``g_hat = g / sqrt(v / (1 - BETA**step))`` with the 0/0
    entries (a gradient that has always been zero) set to 0, then clamped to ``+-g_bound`` if set.
    ``step`` is the 1-based count including the current step.
    """
    exp_avg_sq.mul_(BETA).addcmul_(grad, grad, value=1 - BETA)
    bias_correction = 1 - BETA**step
    g_hat = grad / (exp_avg_sq / bias_correction).sqrt()
    g_hat.masked_fill_(torch.isnan(g_hat), 0.0)
    if g_bound is not None:
        g_hat.clamp_(-g_bound, g_bound)
    return g_hat


def evaluate_closure(closure: Callable[[], float] | None) -> float | None:
    """The ``step(closure)`` contract: re-evaluate the model with gradients enabled, return its loss."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _init_scale(p: torch.Tensor, p_scale: float) -> float:
    """``max = p_scale * sqrt(mean(p**2))`` of the weights as first seen, as a Python float."""
    wide = p.detach().to(torch.promote_types(p.dtype, torch.float32))  # half precision would round early
    return p_scale * wide.square().mean().sqrt().item()


class Madam(torch.optim.Optimizer):
    """Multiplicative Adam on float weights.

    Per tensor, on its first step: ``max = p_scale * sqrt(mean(p**2))`` (never updated afterwards).
    Every step: ``g_hat`` as in Adam's normalisation (see :func:`_normalised_gradient`), then
    ``p = clamp(p * exp(-lr * g_hat * sign(p)), -max, max)``.

    State per parameter: ``step`` (int), ``max`` (float), ``exp_avg_sq`` (like ``p``).

    Args:
        params: parameters or parameter-group dicts, as for any ``torch.optim.Optimizer``.
        lr: relative change per step; ``|g_hat| ~ 1`` moves a weight by a factor ``exp(+-lr)``.
        p_scale: weights are kept within ``p_scale`` times their initial RMS, per tensor.
        g_bound: clamp for ``|g_hat|``; None disables it. It matters only after ~100 steps, since the
            bias correction keeps ``|g_hat| <= sqrt((1 - BETA**t) / (1 - BETA))`` (about ``sqrt(t)``).
        foreach: True (default): the multi-tensor step over slabs (:mod:`imaginate.optim.multi_tensor`);
            False: the per-tensor reference step. Both give the same bits.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        p_scale: float = 3.0,
        g_bound: float | None = 10.0,
        foreach: bool = True,
    ) -> None:
        _check_common("lr", lr, p_scale, g_bound)
        super().__init__(params, dict(lr=lr, p_scale=p_scale, g_bound=g_bound, foreach=bool(foreach)))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_common("lr", group["lr"], group["p_scale"], group["g_bound"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one update. ``closure`` re-evaluates the model and returns the loss."""
        loss = evaluate_closure(closure)

        for group in self.param_groups:
            params = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = _grad_of(p, "Madam")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["max"] = _init_scale(p, group["p_scale"])
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

                state["step"] += 1
                if group.get("foreach", True):
                    params.append(p)
                    continue
                g_hat = _normalised_gradient(grad, state["exp_avg_sq"], state["step"], group["g_bound"])
                p.mul_(torch.exp(-group["lr"] * g_hat * torch.sign(p)))
                p.clamp_(-state["max"], state["max"])
            if params:
                self._foreach_step(params, group)
        return loss

    def _foreach_step(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        """The per-tensor update, op for op, over slabs of views (see :mod:`imaginate.optim.multi_tensor`)."""
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        for slab in slabs([params, grads, [s["exp_avg_sq"] for s in states]]):
            ps, gs, vs = slab.views
            owners = [states[i] for i in slab.owners]
            g_hats = foreach_normalised_gradient(gs, vs, [1 - BETA ** s["step"] for s in owners],
                                                 group["g_bound"], BETA)
            torch._foreach_mul_(g_hats, -group["lr"])
            torch._foreach_mul_(g_hats, torch._foreach_sign(ps))  # -lr * g_hat * sign(p)
            torch._foreach_exp_(g_hats)
            torch._foreach_mul_(ps, g_hats)
            maxes = [s["max"] for s in owners]
            torch._foreach_clamp_min_(ps, [-m for m in maxes])
            torch._foreach_clamp_max_(ps, maxes)


def _lns_code_dtype(levels: int) -> torch.dtype:
    """Smallest signed integer dtype that holds ``levels - 1``."""
    return torch.int16 if levels - 1 <= torch.iinfo(torch.int16).max else torch.int32


def _lns_weights(
    sign: torch.Tensor, max_: float, exponent: torch.Tensor, base_lr: float, dtype: torch.dtype
) -> torch.Tensor:
    """Decodes the LNS weight ``sign * max * exp(-base_lr * n)`` into ``dtype`` (shape of ``sign``)."""
    return sign.to(dtype) * max_ * torch.exp(-base_lr * exponent.to(dtype))


class IntegerMadam(torch.optim.Optimizer):
    """Madam on weights stored natively in a logarithmic number system (LNS).

    Each weight is ``sign * max * exp(-base_lr * n)``: ``sign in {-1, 0, +1}`` (int8, the sign of the
    initial weight), ``max = p_scale * sqrt(mean(p_initial**2))`` per tensor, and an integer exponent
    ``n in [0, levels - 1]`` (int16, or int32 when ``levels > 32768``). Larger ``n`` means a smaller
    magnitude; ``n = 0`` is ``max``, so no extra clamp is needed.

    Every step, with ``g_hat`` exactly as in :class:`Madam`::

        n = clamp(n + round(lr_factor * g_hat) * sign, 0, levels - 1)
        p = sign * max * exp(-base_lr * n)

    so a positive ``g_hat * sign`` shrinks ``|p|``, as Madam's ``exp(-lr * g_hat * sign(p))`` does,
    with ``lr_factor * base_lr`` playing Madam's ``lr``. ``round`` is ``torch.round`` (half to even),
    computed in at least float32. These follow the reference implementation (jxbz/madam,
    ``pytorch/optim/int_madam.py``).

    Conventions of this implementation:

    - The state (``sign``, ``n``) is the source of truth: ``p`` is rewritten from it after every
      step, so edits made to ``p`` between steps are discarded.
    - Exactly-zero initial weights get ``sign = 0`` and stay 0 (their ``n`` is set to ``levels - 1``).
    - ``init="round"`` (default): ``n = round(log(max / |p|) / base_lr)`` clamped into range, so the
      first step starts from the initial weights up to the LNS resolution (a relative error of at
      most ``exp(base_lr / 2) - 1``); magnitudes above ``max`` are lowered to it and those below
      ``max * exp(-base_lr * (levels - 1))`` are raised to that floor. ``init="random"``: ``n`` uniform on ``[0, levels - 1]`` keeping only the
      signs, as the reference does (the reference's ``randint(0, levels - 1)`` never draws
      ``levels - 1``; here every level can be drawn).
    - Learning-rate schedules should scale ``group["lr_factor"]`` (the reference decays it); the
      groups have no ``"lr"`` key.

    State per parameter: ``step`` (int), ``max`` (float), ``exp_avg_sq`` (like ``p``), ``sign``
    (int8, like ``p``), ``exponent`` (the integer ``n``, like ``p``).

    Args:
        params: parameters or parameter-group dicts, as for any ``torch.optim.Optimizer``.
        lr_factor: integer steps per unit of ``g_hat``: ``n`` moves by ``round(lr_factor * g_hat)``.
        base_lr: LNS resolution: neighbouring levels differ by a factor ``exp(base_lr)``.
        levels: number of exponent levels (``log2(levels)`` bits for the magnitude).
        p_scale: the largest magnitude is ``p_scale`` times the tensor's initial RMS.
        g_bound: clamp for ``|g_hat|``; None disables it.
        init: "round" (start from the rounded initial magnitudes) or "random" (uniform ``n``).
        generator: random source for ``init="random"``; None uses torch's global generator.
        foreach: True (default): the multi-tensor step over slabs, with the weights decoded through a
            per-tensor table of the ``levels`` magnitudes; False: the per-tensor reference step. Both
            give the same bits.
    """

    _INTEGER_STATE = ("sign", "exponent")

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr_factor: float = 16.0,
        base_lr: float = 0.001,
        levels: int = 4096,
        p_scale: float = 3.0,
        g_bound: float | None = 10.0,
        init: str = "round",
        generator: torch.Generator | None = None,
        foreach: bool = True,
    ) -> None:
        defaults = dict(
            lr_factor=lr_factor, base_lr=base_lr, levels=levels, p_scale=p_scale, g_bound=g_bound, init=init,
            foreach=bool(foreach),
        )
        self._check_group(defaults)
        self.generator = generator
        super().__init__(params, defaults)

    @staticmethod
    def _check_group(group: dict[str, Any]) -> None:
        _check_common("lr_factor", group["lr_factor"], group["p_scale"], group["g_bound"])
        if not group["base_lr"] > 0:
            raise ValueError(f"base_lr: must be > 0, got {group['base_lr']!r}")
        levels = group["levels"]
        if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 2**31:
            raise ValueError(f"levels: must be an integer in [2, 2**31], got {levels!r}")
        if group["init"] not in INIT_MODES:
            raise ValueError(f"init: {group['init']!r} is not one of {', '.join(INIT_MODES)}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        levels, base_lr = group["levels"], group["base_lr"]
        max_ = _init_scale(p, group["p_scale"])
        sign = torch.sign(p).to(torch.int8)
        code_dtype = _lns_code_dtype(levels)
        if group["init"] == "round":
            magnitude = p.detach().abs().to(torch.promote_types(p.dtype, torch.float32))
            # log(max / |p|) / base_lr, with zeros mapped to +inf so they land on the last level
            exponent = torch.where(magnitude > 0, torch.log(max_ / magnitude), torch.inf) / base_lr
            exponent = torch.round(exponent.clamp(0, levels - 1)).to(code_dtype)
        else:
            device = self.generator.device if self.generator is not None else p.device
            exponent = torch.randint(0, levels, p.shape, generator=self.generator, device=device)
            exponent = exponent.to(device=p.device, dtype=code_dtype)
            exponent.masked_fill_(sign == 0, levels - 1)
        return dict(
            step=0,
            max=max_,
            exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format),
            sign=sign,
            exponent=exponent,
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one update. ``closure`` re-evaluates the model and returns the loss."""
        loss = evaluate_closure(closure)

        for group in self.param_groups:
            levels = group["levels"]
            params = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = _grad_of(p, "IntegerMadam")
                state = self.state[p]
                if len(state) == 0:
                    state.update(self._init_state(p, group))

                state["step"] += 1
                if group.get("foreach", True):
                    params.append(p)
                    continue
                g_hat = _normalised_gradient(grad, state["exp_avg_sq"], state["step"], group["g_bound"])
                # integer move of n, in at least float32 so half-precision rounding cannot bias it;
                # clamped to +-(levels - 1) first (no effect on the result) so int32 cannot overflow
                compute_dtype = torch.promote_types(g_hat.dtype, torch.float32)
                move = torch.round(group["lr_factor"] * g_hat.to(compute_dtype))
                move = move.clamp_(-(levels - 1), levels - 1).to(torch.int32) * state["sign"]
                exponent = (state["exponent"].to(torch.int32) + move).clamp_(0, levels - 1)
                state["exponent"] = exponent.to(state["exponent"].dtype)
                p.copy_(_lns_weights(state["sign"], state["max"], state["exponent"], group["base_lr"], p.dtype))
            if params:
                self._foreach_step(params, group)
        return loss

    def _foreach_step(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        """The per-tensor update over slabs; ``p = sign * table[n]`` with ``table[n] = max * exp(-base_lr * n)``
        computed as :func:`_lns_weights` computes it (a sign of +-1 or 0 multiplies exactly)."""
        levels = group["levels"]
        states = [self.state[p] for p in params]
        tables = [_lns_weights(torch.ones((), dtype=torch.int8, device=p.device), s["max"],
                               torch.arange(levels, device=p.device), group["base_lr"], p.dtype)
                  for p, s in zip(params, states)]  # [levels] each
        operands = [params, [p.grad for p in params], [s["exp_avg_sq"] for s in states],
                    [s["exponent"] for s in states], [s["sign"] for s in states]]
        for slab in slabs(operands):
            ps, gs, vs, ns, signs = slab.views
            g_hats = foreach_normalised_gradient(gs, vs, [1 - BETA ** states[i]["step"] for i in slab.owners],
                                                 group["g_bound"], BETA)
            for p, g_hat, n, sign, owner in zip(ps, g_hats, ns, signs, slab.owners):
                move = torch.round(group["lr_factor"] * g_hat.to(torch.promote_types(g_hat.dtype, torch.float32)))
                move = move.clamp_(-(levels - 1), levels - 1).to(torch.int32) * sign
                exponent = (n.to(torch.int32) + move).clamp_(0, levels - 1)
                n.copy_(exponent)
                magnitude = torch.index_select(tables[owner], 0, exponent.reshape(-1)).view(exponent.shape)
                p.copy_(magnitude.mul_(sign))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer.load_state_dict``, keeping ``sign`` and ``exponent`` integer.

        torch casts every non-``step`` state tensor to the parameter's float dtype; that would make
        the integer codes float (and lossy in half precision), so they are restored afterwards.
        """
        integer_state = {
            param_id: {key: value for key, value in param_state.items() if key in self._INTEGER_STATE}
            for param_id, param_state in state_dict["state"].items()
        }
        saved_ids = [param_id for group in state_dict["param_groups"] for param_id in group["params"]]
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for param_id, p in zip(saved_ids, params):
            for key, value in integer_state.get(param_id, {}).items():
                self.state[p][key] = value.to(device=p.device, copy=True)


@torch.no_grad()
def reinit_zero_params(
    model_or_params: nn.Module | Iterable[torch.Tensor],
    std: float = 0.01,
    generator: torch.Generator | None = None,
) -> int:
    """Re-draws every trainable tensor whose entries are all exactly zero from ``N(0, std**2)``.

    Multiplicative optimizers cannot move an exact zero, so zero-initialised biases would stay zero
    forever; the Madam paper starts them from a small normal instead. Empty and frozen
    (``requires_grad=False``) tensors are left alone.

    Args:
        model_or_params: a module (all its parameters) or an iterable of tensors.
        std: standard deviation of the new values.
        generator: random source (draws happen on its device, then move to the parameter's).

    Returns:
        How many tensors were re-initialised.
    """
    if not std > 0:
        raise ValueError(f"std: must be > 0, got {std!r}")
    params = model_or_params.parameters() if isinstance(model_or_params, nn.Module) else model_or_params
    seen: set[int] = set()
    changed = 0
    for p in params:
        if id(p) in seen or not p.requires_grad or p.numel() == 0 or bool(p.any()):
            continue
        seen.add(id(p))
        device = generator.device if generator is not None else p.device
        noise = torch.randn(p.shape, generator=generator, device=device, dtype=p.dtype) * std
        p.copy_(noise)
        changed += 1
    return changed
