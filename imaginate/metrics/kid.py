"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel.

k(x, y) = (x . y / d + 1)^3 for d-dimensional features. On each of ``subsets`` random subsets of
m rows from each set (drawn without replacement):

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2

Unbiased: its expectation is 0 when both sets come from one distribution, so single estimates can
be negative. KID reports the mean and standard deviation over subsets.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from imaginate.metrics.fid import float64_device


class KIDResult(NamedTuple):
    """Mean and standard deviation (unbiased; 0 for one subset) of MMD^2 over subsets."""

    mean: float
    std: float


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """Cubic polynomial kernel [N, M] between rows of x [N, D] and y [M, D]: (x . y / D + 1)^3."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 (scalar tensor) between samples x [m, D] and y [n, D] (m, n >= 2), cubic kernel."""
    m, n = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))  # off-diagonal mean
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return within_x + within_y - 2 * k_xy.mean()


def kid(
    feats1: Tensor,
    feats2: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> KIDResult:
    """KID between two feature sets: mean and std of unbiased MMD^2 over random subsets.

    Args:
        feats1: [N1, D] features of the first set (e.g. real images).
        feats2: [N2, D] features of the second set (e.g. generated images).
        subsets: how many subset pairs to draw.
        subset_size: rows per subset, reduced to min(N1, N2) when either set is smaller.
        generator: CPU random generator for the subsets (None: torch's global one).

    Returns:
        KIDResult(mean, std), computed in float64.
    """
    if feats1.dim() != 2 or feats2.dim() != 2 or feats1.shape[1] != feats2.shape[1]:
        raise ValueError(f"features must be [N1, D] and [N2, D], got {tuple(feats1.shape)} and {tuple(feats2.shape)}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(subset_size, feats1.shape[0], feats2.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 rows per set, got {feats1.shape[0]} and {feats2.shape[0]}")
    device = float64_device(feats1.device)
    x_all = feats1.to(device=device, dtype=torch.float64)  # [N1, D]
    y_all = feats2.to(device=device, dtype=torch.float64)  # [N2, D]
    estimates = torch.empty(subsets, dtype=torch.float64)  # [subsets]
    for s in range(subsets):
        index1 = torch.randperm(x_all.shape[0], generator=generator)[:m].to(device)
        index2 = torch.randperm(y_all.shape[0], generator=generator)[:m].to(device)
        estimates[s] = mmd2_unbiased(x_all[index1], y_all[index2]).cpu()
    std = float(estimates.std()) if subsets > 1 else 0.0
    return KIDResult(mean=float(estimates.mean()), std=std)
