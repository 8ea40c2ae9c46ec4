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
  ``p = sign * scale * 2 ** (-e / gamma)`` with the sign and the exponent code ``e`` packed in one
  byte for B <= 8 (two for B > 8, :mod:`imaginate.numerics.lns_pack`) and one float
  ``scale = p_scale * rms(p_initial)`` per tensor (Madam's ``max``, so ``e = 0`` is the ``+-max``
  clamp). The step adds integers to the codes; there is no float master copy. See :class:`LNSMadam`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from imaginate.numerics.lns import LNSFormat, lns_encode
from imaginate.numerics.lns_kernels import lns_madam_native_step, native_step_applies, random_words
from imaginate.numerics.lns_pack import decode_table, pack_lns, unpack_lns
from imaginate.optim.madam import (
    BETA,
    _check_common,
    _grad_of,
    _init_scale,
    _normalised_gradient,
    evaluate_closure,
)
from imaginate.optim.moment_store import (
    MOMENTS,
    init_moment,
    lns8_next_scale,
    lns8_table,
    read_moment,
    stored_moment,
    write_moment,
)
from imaginate.optim.multi_tensor import foreach_normalised_gradient, slabs

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
    if group["moment"] not in MOMENTS:
        raise ValueError(f"moment: {group['moment']!r} is not one of {', '.join(MOMENTS)}")
    if group["mode"] == "reference" and group["moment"] != "fp32":
        raise ValueError(f"moment: must be 'fp32' in reference mode, got {group['moment']!r}")
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

    What lives where in native mode. The optimizer state holds the weights as ``packed`` (sign and
    code in one uint8 for B <= 8, one int16 for B > 8; :mod:`imaginate.numerics.lns_pack`) and
    ``scale`` (a Python float per tensor): that is the weight store, and no float copy of the weights
    is kept in the state. The second moment is optimizer statistics, stored as ``moment`` says
    (:mod:`imaginate.optim.moment_store`): "fp32" (4 bytes, the reference), "bf16" (2 bytes) or
    "lns8" (1 byte), the last two with stochastic rounding from ``generator``. The parameter tensor
    ``p`` holds the decoded weights the forward pass multiplies with: the modules, autograd, state
    dicts and checkpoints of the training framework read it as a float tensor, so it exists (4 bytes
    per element in float32); it is rewritten from the store after every step (a table look-up) and
    never read once the store exists, so edits to ``p`` between steps are discarded. State is
    created lazily on a tensor's first step (encoding the weights it has then); :meth:`init_store`
    encodes every parameter at once, so that even the first forward pass sees stored weights.

    ``foreach=True`` (default) runs the multi-tensor step over slabs of at most 65536 elements
    (:mod:`imaginate.optim.multi_tensor`), and in native mode on a CPU the fused C++ step of
    :mod:`imaginate.numerics.lns_kernels` where it applies (``IMAGINATE_NO_KERNELS=1``: never);
    ``False`` runs the per-tensor reference step, which unpacks the store into int16 codes and int8
    signs. All give the same bits (tests).

    Group keys ``mode``, ``bits``, ``gamma``, ``underflow`` and ``moment`` must not change once a
    tensor has state.

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
        moment: native: storage of the second moment, "fp32", "bf16" or "lns8" (reference mode: "fp32").
        foreach: the multi-tensor step (True) or the per-tensor reference step (False).
        generator: random source of the stochastic moment rounding; None: torch's default generator.
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
        moment: str = "fp32",
        foreach: bool = True,
        generator: torch.Generator | None = None,
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
            moment=moment,
            foreach=bool(foreach),
        )
        _check_group(defaults)
        super().__init__(params, defaults)
        self._warned_off_grid = False
        self.generator = generator
        self._tables: dict[int, torch.Tensor] = {}  # id(p) -> decode table of its store (B <= 8)

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
        fmt = self._format(group)
        codes, signs = lns_encode(p.detach(), fmt, scale=scale_t, rounding="nearest")
        return dict(step=0, scale=scale, packed=pack_lns(codes, signs, fmt), **init_moment(p, group["moment"]))

    def native_codes(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Native mode: the store of ``p`` unpacked, as (codes int16 in [0, max_code], signs int8)."""
        group = next(g for g in self.param_groups if any(q is p for q in g["params"]))
        return unpack_lns(self.state[p]["packed"], self._format(group))

    def _table(self, p: torch.Tensor, state: dict[str, Any], fmt: LNSFormat) -> torch.Tensor:
        """The decode table of ``p``'s store (cached for B <= 8: 256 entries; rebuilt for B > 8)."""
        table = self._tables.get(id(p)) if fmt.bits <= 8 else None
        if table is None or table.device != p.device or table.dtype != p.dtype:
            scale_t = torch.tensor(state["scale"], dtype=_compute_dtype(p.dtype), device=p.device)
            table = decode_table(fmt, scale_t, p.dtype).to(p.device)
            if fmt.bits <= 8:
                self._tables[id(p)] = table
        return table

    def _write_back(self, p: torch.Tensor, state: dict[str, Any], fmt: LNSFormat) -> None:
        """Re-materialises ``p`` (the forward pass's view) from the packed store."""
        table = self._table(p, state, fmt)
        index = state["packed"].reshape(-1).to(torch.int32)
        if fmt.bits > 8:
            index &= 0xFFFF
        p.copy_(torch.index_select(table, 0, index).view(p.shape))

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

    def _check_grid(self, group: dict[str, Any]) -> float:
        steps_per_unit = group["lr"] * group["gamma"]  # grid steps of e per unit of g_hat
        if not self._warned_off_grid and abs(steps_per_unit - round(steps_per_unit)) > 1e-9:
            self._warned_off_grid = True
            warnings.warn(
                f"LNSMadam native mode: lr * gamma = {steps_per_unit:g} is not an integer; exponent moves "
                f"are rounded to whole grid steps, and moves under half a step vanish (use lr = k / gamma)",
                stacklevel=4,
            )
        return steps_per_unit

    def _native_step(self, p: torch.Tensor, g_hat: torch.Tensor, group: dict[str, Any]) -> None:
        """The per-tensor reference: unpack, move the codes with int32 arithmetic, pack, decode."""
        state, fmt = self.state[p], self._format(group)
        steps_per_unit = self._check_grid(group)
        codes, signs = unpack_lns(state["packed"], fmt)
        # grid steps of e per step: lr * gamma * g_hat, rounded to whole steps (exact when lr * gamma is
        # an integer); clamped to +-max_code (no effect on the result) so the int32 sum cannot overflow
        move = torch.round(steps_per_unit * g_hat.to(_compute_dtype(g_hat.dtype)))
        move = move.clamp_(-fmt.max_code, fmt.max_code).to(torch.int32) * signs  # larger e: smaller |p|
        codes = codes.to(torch.int32) + move
        alive = signs != 0
        if group["underflow"] == "zero":
            alive = alive & (codes <= fmt.max_code - 1)
            signs = torch.where(alive, signs, torch.zeros_like(signs))
        codes = torch.where(alive, codes.clamp(0, fmt.max_code - 1), fmt.max_code)
        state["packed"] = pack_lns(codes, signs, fmt)
        # decode through the table (lns_decode's arithmetic per bit pattern): torch's exp2 over a whole
        # tensor may round the last bit of some elements differently (scalar tails of threads), a table not
        self._write_back(p, state, fmt)

    def _native_foreach_step(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        """The same update over slabs: integer ops on the packed bytes, table decode into ``p``."""
        fmt, moment, steps_per_unit = self._format(group), group["moment"], self._check_grid(group)
        if moment == "fp32":  # the fused C++ step where it applies (imaginate.numerics.lns_kernels), same bits
            params = [p for p in params if not lns_madam_native_step(
                p, p.grad, self.state[p]["packed"], self.state[p]["exp_avg_sq"], self._table(p, self.state[p], fmt),
                1 - BETA ** self.state[p]["step"], BETA, group["g_bound"], steps_per_unit, fmt, group["underflow"])]
            if not params:
                return
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        moment_tables: list[torch.Tensor | None] = [None] * len(params)
        if moment == "lns8":  # the new scale bounds every new v; decode with the old one
            for i, (p, s) in enumerate(zip(params, states)):
                moment_tables[i] = lns8_table(s["exp_avg_sq_scale"], p.device)
                s["exp_avg_sq_scale"] = lns8_next_scale(s["exp_avg_sq_scale"], [grads[i]], BETA)
        tables = [self._table(p, s, fmt) for p, s in zip(params, states)]
        if moment != "fp32" and all(native_step_applies(p, p.grad, s["packed"], stored_moment(s, moment), fmt, moment)
                                    for p, s in zip(params, states)):
            # fused per tensor, all or none: the random bits are drawn as the slabs below draw them (per
            # tensor, per piece of at most SLAB = lns_kernels.CHUNK elements), so the stream and result are the same
            for i, (p, s) in enumerate(zip(params, states)):
                n = p.numel()
                if n == 0:
                    continue
                bits = random_words(n, self.generator)  # the words random_u16 draws piece by piece below
                lns_madam_native_step(p, p.grad, s["packed"], stored_moment(s, moment), tables[i],
                                      1 - BETA ** s["step"], BETA, group["g_bound"], steps_per_unit, fmt,
                                      group["underflow"], moment, bits, moment_tables[i],
                                      s.get("exp_avg_sq_scale", 0.0))
            return
        code_mask, sign_shift = (1 << (fmt.bits - 1)) - 1, 7 if fmt.bits <= 8 else 15
        integer_move = abs(steps_per_unit - round(steps_per_unit)) == 0
        transitions, reach, width = None, 0, 0
        if fmt.bits <= 8 and group["g_bound"] is not None:
            # every move lies in [-reach, reach]; clamping to it changes nothing (the result saturates)
            reach = min(fmt.max_code, math.ceil(abs(steps_per_unit) * (group["g_bound"] + 0.5)) + 1)
            width = 2 * reach + 1
            transitions = self._transitions(fmt, group["underflow"], reach, params[0].device)
        operands = [params, grads, [s["packed"] for s in states], [stored_moment(s, moment) for s in states]]
        for slab in slabs(operands):
            ps, gs, packs, stored = slab.views
            owners = slab.owners
            vs = [read_moment(m, moment, moment_tables[i]) for m, i in zip(stored, owners)]
            g_hats = foreach_normalised_gradient(gs, vs, [1 - BETA ** states[i]["step"] for i in owners],
                                                 group["g_bound"], BETA)
            if moment != "fp32":
                for m, v, i in zip(stored, vs, owners):
                    write_moment(m, v, moment, states[i].get("exp_avg_sq_scale", 0.0), self.generator)
            torch._foreach_round_(g_hats)  # half to even, as the reference's round_()
            if steps_per_unit != 1:
                torch._foreach_mul_(g_hats, steps_per_unit)
                if not integer_move:
                    torch._foreach_round_(g_hats)
            if transitions is not None:  # B <= 8 and bounded moves: two table look-ups per element
                for p, move, packed, owner in zip(ps, g_hats, packs, owners):
                    index = move.clamp_(-reach, reach).add_(reach).add_(packed, alpha=width).to(torch.int32)
                    new = torch.index_select(transitions, 0, index.view(-1))  # uint8, the new patterns
                    packed.copy_(new.view(packed.shape))
                    p.copy_(torch.index_select(tables[owner], 0, new.to(torch.int32)).view(p.shape))
                continue
            for p, move, packed, owner in zip(ps, g_hats, packs, owners):
                bits = packed.to(torch.int32)
                if fmt.bits > 8:
                    bits &= 0xFFFF
                negative = bits >> sign_shift  # 0 / 1
                codes = bits & code_mask
                move = move.clamp_(-fmt.max_code, fmt.max_code).to(torch.int32)
                new = codes + torch.where(negative.bool(), -move, move)  # larger e: smaller |p|
                alive = codes < fmt.max_code
                if group["underflow"] == "zero":
                    alive &= new <= fmt.max_code - 1
                new = torch.where(alive, new.clamp_(0, fmt.max_code - 1) | (negative << sign_shift), fmt.max_code)
                packed.copy_(new)  # int32 -> uint8 / int16 (bit 15 wraps to the int16 sign)
                p.copy_(torch.index_select(tables[owner], 0, new.reshape(-1)).view(p.shape))

    _TRANSITIONS: dict[tuple, torch.Tensor] = {}

    @classmethod
    def _transitions(cls, fmt: LNSFormat, underflow: str, reach: int, device: torch.device) -> torch.Tensor:
        """[256 * (2 * reach + 1)] uint8: entry ``pattern * width + move + reach`` is the pattern after
        moving ``pattern``'s code by ``move`` grid steps (towards smaller magnitudes when positive,
        the sign applied as in :meth:`_native_step`), built with the same integer rules."""
        key = (fmt.bits, fmt.gamma, underflow, reach, str(device))
        if key not in cls._TRANSITIONS:
            width = 2 * reach + 1
            pattern = torch.arange(256, dtype=torch.int32).repeat_interleave(width)
            move = torch.arange(-reach, reach + 1, dtype=torch.int32).repeat(256)
            codes, signs = unpack_lns(pattern.to(torch.uint8), fmt)
            new = codes.to(torch.int32) + move * signs
            alive = signs != 0
            if underflow == "zero":
                alive = alive & (new <= fmt.max_code - 1)
                signs = torch.where(alive, signs, torch.zeros_like(signs))
            new = torch.where(alive, new.clamp(0, fmt.max_code - 1), fmt.max_code)
            cls._TRANSITIONS[key] = pack_lns(new, signs, fmt).to(device)
        return cls._TRANSITIONS[key]

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one update. ``closure`` re-evaluates the model and returns the loss."""
        loss = evaluate_closure(closure)

        for group in self.param_groups:
            native = group["mode"] == "native"
            fast = group.get("foreach", True) and (native or group["weight_decay"] is None)
            batch = []
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
                if fast and p.dtype in (torch.float32, torch.float64):  # half precision: per tensor
                    batch.append(p)
                    continue
                if native:
                    self._native_reference_step(p, grad, group)
                    continue
                g_hat = _normalised_gradient(grad, state["exp_avg_sq"], state["step"], group["g_bound"])
                g_hat.round_()  # half to even, as the reference's round_()
                lr, weight_decay = group["lr"], group["weight_decay"]
                if weight_decay is None:
                    p.mul_(torch.pow(2.0, -lr * g_hat * torch.sign(p)))
                else:  # the reference's base-e branch (see the module docstring)
                    p.mul_(torch.exp(-lr * g_hat * torch.sign(p) - lr * weight_decay))
                p.clamp_(-state["max"], state["max"])
            if batch and native:
                self._native_foreach_step(batch, group)
            elif batch:
                self._reference_foreach_step(batch, group)
        return loss

    def _native_reference_step(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        state, moment = self.state[p], group["moment"]
        if moment == "lns8":
            table = lns8_table(state["exp_avg_sq_scale"], p.device)
            state["exp_avg_sq_scale"] = lns8_next_scale(state["exp_avg_sq_scale"], [grad], BETA)
        else:
            table = None
        stored = stored_moment(state, moment)
        v = read_moment(stored, moment, table)
        g_hat = _normalised_gradient(grad, v, state["step"], group["g_bound"])
        write_moment(stored, v, moment, state.get("exp_avg_sq_scale", 0.0), self.generator)
        g_hat.round_()  # half to even, as the reference's round_()
        self._native_step(p, g_hat, group)

    def _reference_foreach_step(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        """Reference mode without weight decay, op for op over slabs."""
        states = [self.state[p] for p in params]
        operands = [params, [p.grad for p in params], [s["exp_avg_sq"] for s in states]]
        for slab in slabs(operands):
            ps, gs, vs = slab.views
            owners = [states[i] for i in slab.owners]
            g_hats = foreach_normalised_gradient(gs, vs, [1 - BETA ** s["step"] for s in owners],
                                                 group["g_bound"], BETA)
            torch._foreach_round_(g_hats)
            torch._foreach_mul_(g_hats, -group["lr"])
            torch._foreach_mul_(g_hats, torch._foreach_sign(ps))  # -lr * g_hat * sign(p)
            for p, g_hat in zip(ps, g_hats):
                p.mul_(torch.pow(2.0, g_hat))
            maxes = [s["max"] for s in owners]
            torch._foreach_clamp_min_(ps, [-m for m in maxes])
            torch._foreach_clamp_max_(ps, maxes)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer.load_state_dict``, keeping every stored dtype.

        torch casts every non-``step`` state tensor to its parameter's float dtype, which would turn
        the packed store into floats and a bf16 moment into float32; every state tensor that is not
        in the parameter's dtype is restored as saved. In native mode the parameters are then
        re-materialised from the loaded store (the store is the source of truth: a store built
        earlier, e.g. by :meth:`init_store`, has re-encoded them with its own scale).
        """
        saved_ids = [param_id for group in state_dict["param_groups"] for param_id in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        dtypes = {param_id: p.dtype for param_id, p in zip(saved_ids, params)}
        kept = {
            param_id: {
                key: value
                for key, value in param_state.items()
                if isinstance(value, torch.Tensor) and key != "step" and value.dtype != dtypes.get(param_id)
            }
            for param_id, param_state in state_dict["state"].items()
        }
        for group in state_dict["param_groups"]:  # checkpoints written before these keys existed
            group.setdefault("moment", "fp32")
            group.setdefault("foreach", True)
        super().load_state_dict(state_dict)
        self._tables.clear()
        for param_id, p in zip(saved_ids, params):
            for key, value in kept.get(param_id, {}).items():
                self.state[p][key] = value.to(device=p.device, copy=True)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state[p]
                    if group["mode"] == "native" and "codes" in state:  # an unpacked store (older format)
                        fmt = self._format(group)
                        state["packed"] = pack_lns(state.pop("codes"), state.pop("signs"), fmt)
                    if group["mode"] == "native" and "packed" in state:
                        self._write_back(p, state, self._format(group))
