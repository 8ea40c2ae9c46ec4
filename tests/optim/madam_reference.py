"""Scalar, float64, plain-Python Madam normalisation: the independent reference the optimizer tests
compare against (written from the formulas in shared/papers/madam.md, not from the package's code)."""

from __future__ import annotations

import math

BETA = 0.999  # the paper's fixed second-moment decay


def sign(x: float) -> int:
    return (x > 0) - (x < 0)


def g_hat_step(g: float, v: float, t: int, g_bound: float | None) -> tuple[float, float]:
    """One scalar step of the gradient normalisation: returns (g_hat, new v)."""
    v = BETA * v + (1 - BETA) * g * g
    v_hat = v / (1 - BETA**t)
    g_hat = 0.0 if v_hat == 0 else g / math.sqrt(v_hat)  # 0/0 -> 0
    if g_bound is not None:
        g_hat = min(max(g_hat, -g_bound), g_bound)
    return g_hat, v
