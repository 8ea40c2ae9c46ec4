"""Optimizers: Madam, its log-number-system forms IntegerMadam and LNSMadam, low-bit weight stores for
additive optimizers, and a config-driven factory."""

from imaginate.optim.factory import (
    OPTIMIZERS,
    OptimConfig,
    build_optimizer,
    default_lr,
    is_multiplicative,
)
from imaginate.optim.lns_export import export_lns_safetensors, load_lns_into, load_lns_safetensors
from imaginate.optim.lns_madam import LNSMadam
from imaginate.optim.madam import IntegerMadam, Madam, reinit_zero_params
from imaginate.optim.quantized_store import lns_store, requantize_after_step

__all__ = [
    "OPTIMIZERS",
    "IntegerMadam",
    "LNSMadam",
    "Madam",
    "OptimConfig",
    "build_optimizer",
    "default_lr",
    "export_lns_safetensors",
    "is_multiplicative",
    "lns_store",
    "load_lns_into",
    "load_lns_safetensors",
    "reinit_zero_params",
    "requantize_after_step",
]
