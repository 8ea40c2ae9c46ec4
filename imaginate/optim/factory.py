"""Optimizers by name from a typed config, for training systems.

``OptimConfig`` holds only simple field types so that OmegaConf structured configs can wrap it; the
optimizers are built explicitly from a fixed table of names, never from a dotted import path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from imaginate.optim.lns_madam import MODES as LNS_MODES
from imaginate.optim.lns_madam import LNSMadam
from imaginate.optim.madam import IntegerMadam, Madam, reinit_zero_params
from imaginate.optim.quantized_store import lns_store, requantize_after_step

OPTIMIZERS = ("sgd", "adam", "adamw", "madam", "integer_madam", "lns_madam")
MULTIPLICATIVE = ("madam", "integer_madam", "lns_madam")
STORE_OPTIMIZERS = ("sgd", "adam", "adamw")  # the ones OptimConfig.store may re-quantise
# lr used when OptimConfig.lr is None. For integer_madam, lr is Madam's lr: lr_factor = lr / base_lr integer
# steps per unit g_hat (the default 0.016 with base_lr 0.001 is the reference's lr_factor 16).
_DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3, "madam": 0.01, "integer_madam": 0.016, "lns_madam": 1 / 128}
REINIT_SEED = 0  # fixed seed of reinit_zero_params in build_optimizer, so builds are deterministic
REINIT_STD = 0.01


def _check_name(name: str) -> None:
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.name: {name!r} is not one of {', '.join(OPTIMIZERS)}")


def default_lr(name: str) -> float:
    """The learning rate used when ``OptimConfig.lr`` is None (for integer_madam: ``lr_factor * base_lr``)."""
    _check_name(name)
    return _DEFAULT_LR[name]


def is_multiplicative(name: str) -> bool:
    """True for optimizers whose updates scale weights (exact zeros never move)."""
    _check_name(name)
    return name in MULTIPLICATIVE


@dataclass
class OptimConfig:
    """Which optimizer to build and its hyper-parameters.

    Args:
        name: one of ``OPTIMIZERS``: sgd | adam | adamw | madam | integer_madam | lns_madam.
        lr: learning rate; None uses :func:`default_lr` (sgd 0.1, adam/adamw 1e-3, madam 0.01,
            lns_madam 1/128).
            For integer_madam it means the same as for Madam: ``lr_factor = lr / base_lr`` integer
            steps per unit ``g_hat`` (default 0.016, i.e. lr_factor 16 at base_lr 0.001).
        weight_decay: sgd/adam/adamw; must be 0 for madam, integer_madam and native lns_madam.
            For lns_madam in reference mode, > 0 selects the reference's base-e decay branch.
        momentum: sgd momentum, in [0, 1).
        beta1, beta2: adam/adamw moment decays, in [0, 1).
        p_scale: madam/integer_madam/lns_madam: weights stay within ``p_scale`` times their initial RMS.
        g_bound: madam/integer_madam/lns_madam clamp on the normalised gradient; None disables it.
        levels: integer_madam: number of LNS exponent levels (>= 2).
        base_lr: integer_madam: LNS resolution, neighbouring levels differ by ``exp(base_lr)``.
        reinit_zero_params: madam/integer_madam/lns_madam, when built from a module: re-draw all-zero
            tensors (biases) from N(0, 0.01**2) before training, since they could never move.
        lns_mode: lns_madam: "reference" (float weights, the public update) or "native" (the weights
            live as LNS integers). With lr None, native mode uses ``1 / lns_gamma`` (one grid step per
            unit of the rounded ``g_hat``) instead of 1/128; weight_decay must then be 0.
        lns_bits: lns_madam native: bits per stored weight, in [2, 16].
        lns_gamma: lns_madam native: LNS base factor (a power of two), base ``2 ** (1 / lns_gamma)``.
        lns_moment: lns_madam native: storage of the second moment, "fp32" (4 bytes), "bf16" (2) or
            "lns8" (1), the last two rounded stochastically (:mod:`imaginate.optim.moment_store`).
        store: sgd/adam/adamw: the weight store, re-quantised (round to nearest) after every step:
            "fp32" (none) or a format spec of ``imaginate.numerics.formats.parse_format``, e.g.
            "lns8g8", "fp8_e4m3", "int8".
    """

    name: str = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    p_scale: float = 3.0
    g_bound: float | None = 10.0
    levels: int = 4096
    base_lr: float = 0.001
    reinit_zero_params: bool = True
    lns_mode: str = "reference"
    lns_bits: int = 16
    lns_gamma: int = 8
    lns_moment: str = "fp32"
    store: str = "fp32"

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"optim.lr: must be None (the optimizer's default) or > 0, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"optim.weight_decay: must be >= 0, got {self.weight_decay!r}")
        weight_decay_allowed = self.name == "lns_madam" and self.lns_mode == "reference"  # base-e branch
        if self.name in MULTIPLICATIVE and self.weight_decay != 0 and not weight_decay_allowed:
            raise ValueError(
                f"optim.weight_decay: must be 0 for {self.name} (multiplicative updates have no weight "
                f"decay; p_scale bounds the weights instead), got {self.weight_decay!r}"
            )
        for field_name in ("momentum", "beta1", "beta2"):
            value = getattr(self, field_name)
            if not 0 <= value < 1:
                raise ValueError(f"optim.{field_name}: must be in [0, 1), got {value!r}")
        if not (math.isfinite(self.p_scale) and self.p_scale > 0):
            raise ValueError(f"optim.p_scale: must be > 0, got {self.p_scale!r}")
        if self.g_bound is not None and not self.g_bound > 0:
            raise ValueError(f"optim.g_bound: must be None (no clamp) or > 0, got {self.g_bound!r}")
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or not 2 <= self.levels <= 2**31:
            raise ValueError(f"optim.levels: must be an integer in [2, 2**31], got {self.levels!r}")
        if not (math.isfinite(self.base_lr) and self.base_lr > 0):
            raise ValueError(f"optim.base_lr: must be > 0, got {self.base_lr!r}")
        self._check_lns_and_store()

    def _check_lns_and_store(self) -> None:
        if self.lns_mode not in LNS_MODES:
            raise ValueError(f"optim.lns_mode: {self.lns_mode!r} is not one of {', '.join(LNS_MODES)}")
        bits, gamma = self.lns_bits, self.lns_gamma
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
            raise ValueError(f"optim.lns_bits: must be an integer in [2, 16], got {bits!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1 or gamma & (gamma - 1):
            raise ValueError(f"optim.lns_gamma: must be a power of two >= 1 (1, 2, 4, 8, ...), got {gamma!r}")
        from imaginate.optim.moment_store import MOMENTS

        if self.lns_moment not in MOMENTS:
            raise ValueError(f"optim.lns_moment: {self.lns_moment!r} is not one of {', '.join(MOMENTS)}")
        if self.lns_moment != "fp32" and not (self.name == "lns_madam" and self.lns_mode == "native"):
            raise ValueError(f"optim.lns_moment: must be 'fp32' unless lns_madam in native mode, got {self.lns_moment!r}")
        if not isinstance(self.store, str) or not self.store:
            raise ValueError(f"optim.store: must be 'fp32' or a format spec, got {self.store!r}")
        if self.store != "fp32":
            if self.name not in STORE_OPTIMIZERS:
                raise ValueError(
                    f"optim.store: must be 'fp32' for {self.name} (a low-bit store applies to "
                    f"{', '.join(STORE_OPTIMIZERS)}; lns_madam has lns_mode=native), got {self.store!r}"
                )
            store_quantizer(self.store)  # raises "optim.store: ..." for an unknown spec

    @property
    def resolved_lr(self) -> float:
        """``lr``, or the optimizer's default when it is None."""
        if self.lr is not None:
            return self.lr
        if self.name == "lns_madam" and self.lns_mode == "native":
            return 1.0 / self.lns_gamma  # one grid step per unit of the rounded g_hat
        return default_lr(self.name)


def store_quantizer(spec: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The round-to-nearest quantizer of a weight-store format spec ("lns8g8", "fp8_e4m3", "int8", ...).

    Args:
        spec: a format spec understood by ``imaginate.numerics.formats.parse_format``.
    """
    from imaginate.numerics.formats import LNS, parse_format  # lazily: only low-bit stores need it

    try:
        fmt = parse_format(spec)
    except ValueError as error:
        raise ValueError(f"optim.store: {error}") from error
    if isinstance(fmt, LNS):
        # A fixed LNS grid (power-of-two scale), as a hardware weight store has: with the max-abs scale
        # the largest weight would be exact and could move freely, which flatters the baseline.
        return lns_store(fmt.bits, fmt.gamma, fmt.per_channel, scale="pow2")

    def quantize(x: torch.Tensor) -> torch.Tensor:
        return fmt.quantize(x, rounding="nearest")

    return quantize


Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def _build_sgd(cfg: OptimConfig, params: Params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.resolved_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _build_adam(cfg: OptimConfig, params: Params) -> torch.optim.Optimizer:
    betas = (cfg.beta1, cfg.beta2)
    return torch.optim.Adam(params, lr=cfg.resolved_lr, betas=betas, weight_decay=cfg.weight_decay)


def _build_adamw(cfg: OptimConfig, params: Params) -> torch.optim.Optimizer:
    betas = (cfg.beta1, cfg.beta2)
    return torch.optim.AdamW(params, lr=cfg.resolved_lr, betas=betas, weight_decay=cfg.weight_decay)


def _build_madam(cfg: OptimConfig, params: Params) -> torch.optim.Optimizer:
    return Madam(params, lr=cfg.resolved_lr, p_scale=cfg.p_scale, g_bound=cfg.g_bound)


def _build_integer_madam(cfg: OptimConfig, params: Params) -> torch.optim.Optimizer:
    return IntegerMadam(
        params,
        lr_factor=cfg.resolved_lr / cfg.base_lr,
        base_lr=cfg.base_lr,
        levels=cfg.levels,
        p_scale=cfg.p_scale,
        g_bound=cfg.g_bound,
    )


def _build_lns_madam(cfg: OptimConfig, params: Params) -> torch.optim.Optimizer:
    optimizer = LNSMadam(
        params,
        lr=cfg.resolved_lr,
        p_scale=cfg.p_scale,
        g_bound=cfg.g_bound,
        weight_decay=cfg.weight_decay if cfg.weight_decay > 0 else None,
        mode=cfg.lns_mode,
        bits=cfg.lns_bits,
        gamma=cfg.lns_gamma,
        moment=cfg.lns_moment,
    )
    optimizer.init_store()  # native: the weights are on the LNS grid before the first forward pass
    return optimizer


_BUILDERS: dict[str, Callable[[OptimConfig, Params], torch.optim.Optimizer]] = {
    "sgd": _build_sgd,
    "adam": _build_adam,
    "adamw": _build_adamw,
    "madam": _build_madam,
    "integer_madam": _build_integer_madam,
    "lns_madam": _build_lns_madam,
}


def build_optimizer(cfg: OptimConfig, params_or_module: nn.Module | Params) -> torch.optim.Optimizer:
    """Builds the optimizer named by ``cfg.name`` over a module's parameters or given params/groups.

    For madam/integer_madam with ``cfg.reinit_zero_params`` and a module, all-zero parameter tensors
    are first re-drawn from N(0, REINIT_STD**2) with a generator seeded REINIT_SEED (deterministic).
    Plain parameter iterables are passed through untouched: call :func:`reinit_zero_params` yourself.
    lns_madam in native mode encodes the weights into its LNS store at once (they change to the
    nearest grid values). With ``cfg.store`` other than "fp32" the weights are quantised to the store
    now and after every step (:func:`~imaginate.optim.quantized_store.requantize_after_step`).
    """
    _check_name(cfg.name)
    if isinstance(params_or_module, nn.Module):
        if is_multiplicative(cfg.name) and cfg.reinit_zero_params:
            generator = torch.Generator().manual_seed(REINIT_SEED)
            reinit_zero_params(params_or_module, std=REINIT_STD, generator=generator)
        params: Params = params_or_module.parameters()
    else:
        params = params_or_module
    optimizer = _BUILDERS[cfg.name](cfg, params)
    if cfg.store != "fp32":
        requantize_after_step(optimizer, store_quantizer(cfg.store))
    return optimizer
