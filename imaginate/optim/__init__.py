"""Optimizers: Madam and its log-number-system form IntegerMadam, plus a config-driven factory."""

from imaginate.optim.factory import (
    OPTIMIZERS,
    OptimConfig,
    build_optimizer,
    default_lr,
    is_multiplicative,
)
from imaginate.optim.madam import IntegerMadam, Madam, reinit_zero_params

__all__ = [
    "OPTIMIZERS",
    "IntegerMadam",
    "Madam",
    "OptimConfig",
    "build_optimizer",
    "default_lr",
    "is_multiplicative",
    "reinit_zero_params",
]
