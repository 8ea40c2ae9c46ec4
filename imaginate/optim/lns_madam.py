"""LNS-Madam (Zhao et al., arXiv 2106.13914): Madam with a base-2 update on a rounded ``g_hat``.

Two modes share the gradient normalisation of :class:`~imaginate.optim.madam.Madam`:

- ``mode="reference"`` (default) restates the public reference optimizer ``LNS_Madam``
  (github.com/jiaweizzhao/lns-madam-optimizer, ``lns_madam.py``) on float weights::

      g_hat = round(clamp(g / sqrt(v_hat), -g_bound, g_bound))    # round half to even
      p = p * 2 ** (-lr * g_hat * sign(p))                         # weight_decay is None
      p = p * exp(-lr * g_hat * sign(p) - lr * weight_decay)       # weight_decay set: base e (!)
      p = clamp(p, -max, max),  max = p_scale * rms(p_initial)

  The weight-decay branch switches the base from 2 to e, so setting ``weight_decay=0.0`` (not None)
  changes the step size by a factor ``ln 2``. That is inconsistent, and kept only so that this mode
  is a drop-in for the reference; prefer ``weight_decay=None``.

- ``mode="native"`` keeps every weight as a B-bit LNS number (:mod:`imaginate.numerics.lns`):
  ``p = sign * scale * 2 ** (-e / gamma)`` with an int16 exponent code ``e``, an int8 sign and one
  float ``scale = p_scale * rms(p_initial)`` per tensor (Madam's ``max``, so ``e = 0`` is the ``+-max``
  clamp). The step adds integers to the codes; there is no float master copy. See :class:`LNSMadam`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from imaginate.numerics.lns import LNSFormat, lns_decode, lns_encode
from imaginate.optim.madam import _check_common, _grad_of, _init_scale, _normalised_gradient, evaluate_closure

MODES = ("reference", "native")
UNDERFLOWS = ("zero", "saturate")


def _check_group(group: dict[str, Any]) -> None:
    _check_common("lr", group["lr"], group["p_scale"], group["g_bound"])
    weight_decay = group["weight_decay"]
    if weight_decay is not None and not weight_decay >= 0:
        raise ValueError(f"weight_decay: must be None or >= 0, got {weight_decay!r}")
    if group["mode"] not in MODES:
        raise ValueError(f"mode: {group['mode']!r} is not one of {', '.join(MODES)}")
    if group["underflow"] not in UNDERFLOWS:
        raise ValueError(f"underflow: {group['underflow']!r} is not one of {', '.join(UNDERFLOWS)}")
    LNSFormat(bits=group["bits"], gamma=group["gamma"])  # raises "bits: ..." / "gamma: ..."
    if group["mode"] == "native" and weight_decay is not None:
        raise ValueError(
            f"weight_decay: must be None in native mode (the reference's base-e decay is not on the LNS "
            f"grid), got {weight_decay!r}"
        )


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32, so half-precision rounding cannot bias scales and exponent moves."""
    return torch.promote_types(dtype, torch.float32)


class LNSMadam(torch.optim.Optimizer):
    """LNS-Madam: Madam with ``g_hat`` rounded to integers and a base-2 multiplicative step.

    Every step, per tensor: ``v = BETA * v + (1 - BETA) * g**2`` and
    ``g_hat = round(clamp(g / sqrt(v / (1 - BETA**t)), -g_bound, g_bound))`` (0/0 -> 0; ``round`` is
    half to even, so ``|g_hat| < 0.5`` does not move a weight and ``g_bound < 0.5`` freezes training).

    ``mode="reference"``: ``p = clamp(p * 2 ** (-lr * g_hat * sign(p)), -max, max)``, with
    ``max = p_scale * rms(p_initial)``; with ``weight_decay`` set (even 0.0) the step is
    ``p * exp(-lr * g_hat * sign(p) - lr * weight_decay)`` instead, in base e, as the reference does
    (inconsistent; for conformance only). State: ``step`` (int), ``max`` (float), ``exp_avg_sq``.

    ``mode="native"``: the weight store is B-bit LNS, ``p = sign * scale * 2 ** (-e / gamma)``.
    ``log2|p|`` moving by ``-lr * g_hat * sign(p)`` is ``e`` moving by ``+lr * gamma * g_hat * sign(p)``
    (a larger ``e`` is a smaller magnitude), so with ``lr = k / gamma``::

        e = clamp(e + round(k * g_hat) * sign, 0, max_code - 1)    # k * g_hat is an integer
        p = decode(e, sign, scale)                                 # what the forward pass reads

    which is the reference update exactly on the grid when ``k`` is an integer (and the store is wide
    enough not to underflow). When ``lr * gamma`` is not an integer the move ``k * g_hat`` is rounded
    to the nearest integer (half to even): moves under half a grid step vanish, which is the paper's
    reason for choosing ``lr`` on the grid (defaults: ``lr = 1/128``, ``gamma = 128``, ``k = 1``); a
    ``UserWarning`` is issued once per optimizer when it is not (an lr schedule will trigger it).
    ``e = 0`` is the ``+-max`` clamp. Zero is the code ``max_code`` with sign 0 and never moves (as in
    Madam); an initial magnitude below the smallest one flushes to zero at encoding. A move past the
    smallest magnitude flushes to zero too (``underflow="zero"``, as re-encoding would), or stops at
    the smallest magnitude (``underflow="saturate"``, as :class:`~imaginate.optim.madam.IntegerMadam`).

    What lives where in native mode: the optimizer state holds the weights as ``codes`` (int16, like
    ``p``), ``signs`` (int8, like ``p``) and ``scale`` (a Python float per tensor): that is the weight
    store, and no float copy of the weights is kept anywhere in the state. ``exp_avg_sq`` (float, like
    ``p``) is the gradient's second moment, optimizer statistics exactly as in Madam, not a weight
    copy. The parameter tensor ``p`` holds the decoded weights that the forward pass multiplies with;
    it is rewritten from the state after every step and never read once the state exists, so edits to
    ``p`` between steps are discarded. State is created lazily on a tensor's first step (encoding the
    weights it has then); :meth:`init_store` encodes every parameter at once, so that even the first
    forward pass sees stored weights.

    Group keys ``mode``, ``bits``, ``gamma`` and ``underflow`` must not change once a tensor has state.

    Args:
        params: parameters or parameter-group dicts, as for any ``torch.optim.Optimizer``.
        lr: base-2 step: ``|g_hat| = 1`` moves ``log2|p|`` by ``lr``. Native: ``lr * gamma`` grid steps.
        p_scale: weights stay within ``p_scale`` times their initial RMS, per tensor.
        g_bound: clamp for ``|g_hat|`` before rounding; None disables it (the reference always clamps).
        weight_decay: None, or the reference's base-e decay rate (reference mode only).
        mode: "reference" (float weights, the public update) or "native" (B-bit LNS weight store).
        bits: native: B, bits per stored weight (1 sign + B - 1 exponent bits), 2..16.
        gamma: native: LNS base factor, a power of two: neighbouring magnitudes differ by
            ``2 ** (1 / gamma)``; the store spans ``(2 ** (bits - 1) - 2) / gamma`` octaves below ``max``.
        underflow: native: "zero" (flush to zero, then stay zero) or "saturate" at the smallest magnitude.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1 / 128,
        p_scale: float = 3.0,
        g_bound: float | None = 10.0,
        weight_decay: float | None = None,
        mode: str = "reference",
        bits: int = 16,
        gamma: int = 128,
        underflow: str = "zero",
    ) -> None:
        defaults = dict(
            lr=lr,
            p_scale=p_scale,
            g_bound=g_bound,
            weight_decay=weight_decay,
            mode=mode,
            bits=bits,
            gamma=gamma,
            underflow=underflow,
        )
        _check_group(defaults)
        super().__init__(params, defaults)
        self._warned_off_grid = False

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        _check_group(self.param_groups[-1])

    # ------------------------------------------------------------------ native store

    @staticmethod
    def _format(group: dict[str, Any]) -> LNSFormat:
        return LNSFormat(bits=group["bits"], gamma=group["gamma"])

    def _init_native(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        scale = _init_scale(p, group["p_scale"])  # Madam's max; e = 0 decodes to it
        scale_t = torch.tensor(scale, dtype=_compute_dtype(p.dtype), device=p.device)  # []
        codes, signs = lns_encode(p.detach(), self._format(group), scale=scale_t, rounding="nearest")
        return dict(
            step=0,
            scale=scale,
            exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format),
            codes=codes,  # int16, like p; max_code means zero
            signs=signs,  # int8, like p; 0 exactly where the code is max_code
        )

    @staticmethod
    def _write_back(p: torch.Tensor, state: dict[str, Any], fmt: LNSFormat) -> None:
        """Re-materialises ``p`` (the forward pass's view) from the integer store."""
        scale_t = torch.tensor(state["scale"], dtype=_compute_dtype(p.dtype), device=p.device)
        p.copy_(lns_decode(state["codes"], state["signs"], scale_t, fmt, dtype=p.dtype))

    @torch.no_grad()
    def init_store(self) -> None:
        """Native mode: encodes every parameter that has no state yet and writes the decoded weights
        into it, so the forward pass sees stored weights from the start. Reference mode: no-op."""
        for group in self.param_groups:
            if group["mode"] != "native":
                continue
            for p in group["params"]:
                if len(self.state[p]) == 0:
                    self.state[p].update(self._init_native(p, group))
                    self._write_back(p, self.state[p], self._format(group))

    def _native_step(self, p: torch.Tensor, g_hat: torch.Tensor, group: dict[str, Any]) -> None:
        state, fmt = self.state[p], self._format(group)
        steps_per_unit = group["lr"] * group["gamma"]  # grid steps of e per unit of g_hat
        if not self._warned_off_grid and abs(steps_per_unit - round(steps_per_unit)) > 1e-9:
            self._warned_off_grid = True
            warnings.warn(
                f"LNSMadam native mode: lr * gamma = {steps_per_unit:g} is not an integer; exponent moves "
                f"are rounded to whole grid steps, and moves under half a step vanish (use lr = k / gamma)",
                stacklevel=3,
            )
        # grid steps of e per step: lr * gamma * g_hat, rounded to whole steps (exact when lr * gamma is
        # an integer); clamped to +-max_code (no effect on the result) so the int32 sum cannot overflow
        move = torch.round(steps_per_unit * g_hat.to(_compute_dtype(g_hat.dtype)))
        signs = state["signs"]
        move = move.clamp_(-fmt.max_code, fmt.max_code).to(torch.int32) * signs  # larger e: smaller |p|
        codes = state["codes"].to(torch.int32) + move
        alive = signs != 0
        if group["underflow"] == "zero":
            alive = alive & (codes <= fmt.max_code - 1)
            state["signs"] = torch.where(alive, signs, torch.zeros_like(signs))
        codes = torch.where(alive, codes.clamp(0, fmt.max_code - 1), fmt.max_code)
        state["codes"] = codes.to(state["codes"].dtype)
        self._write_back(p, state, fmt)

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one update. ``closure`` re-evaluates the model and returns the loss."""
        loss = evaluate_closure(closure)

        for group in self.param_groups:
            native = group["mode"] == "native"
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = _grad_of(p, "LNSMadam")
                state = self.state[p]
                if len(state) == 0:
                    if native:
                        state.update(self._init_native(p, group))
                    else:
                        state.update(
                            step=0,
                            max=_init_scale(p, group["p_scale"]),
                            exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format),
                        )

                state["step"] += 1
                g_hat = _normalised_gradient(grad, state["exp_avg_sq"], state["step"], group["g_bound"])
                g_hat.round_()  # half to even, as the reference's round_()
                if native:
                    self._native_step(p, g_hat, group)
                    continue
                lr, weight_decay = group["lr"], group["weight_decay"]
                if weight_decay is None:
                    p.mul_(torch.pow(2.0, -lr * g_hat * torch.sign(p)))
                else:  # the reference's base-e branch (see the module docstring)
                    p.mul_(torch.exp(-lr * g_hat * torch.sign(p) - lr * weight_decay))
                p.clamp_(-state["max"], state["max"])
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer.load_state_dict``, keeping the integer store integer.

        torch casts every non-``step`` state tensor to its parameter's float dtype, which would turn
        ``codes`` and ``signs`` into floats; every integer state tensor is restored as saved. In native
        mode the parameters are then re-materialised from the loaded store (the store is the source of
        truth: a store built earlier, e.g. by :meth:`init_store`, has re-encoded them with its own scale).
        """
        saved_ids = [param_id for group in state_dict["param_groups"] for param_id in group["params"]]
        integer_state = {
            param_id: {
                key: value
                for key, value in param_state.items()
                if isinstance(value, torch.Tensor) and not (value.is_floating_point() or value.is_complex())
            }
            for param_id, param_state in state_dict["state"].items()
        }
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for param_id, p in zip(saved_ids, params):
            for key, value in integer_state.get(param_id, {}).items():
                self.state[p][key] = value.to(device=p.device, copy=True)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if group["mode"] == "native" and "codes" in self.state[p]:
                        self._write_back(p, self.state[p], self._format(group))
