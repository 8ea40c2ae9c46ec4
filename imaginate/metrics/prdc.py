"""Precision/recall on k-NN manifolds (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

Each sample x of a set carries a ball of radius NND_k(x), the distance to its k-th nearest other
sample of the same set. With real samples r_i (N of them) and fake samples f_j (M):

    precision = share of f_j inside some real ball           (fake samples that look real)
    recall    = share of r_i inside some fake ball           (real modes that the fakes cover)
    density   = sum_j #{i : f_j in ball(r_i)} / (k M)        (can exceed 1)
    coverage  = share of r_i whose ball holds some f_j

Distances are Euclidean, computed in float64 in row chunks so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from imaginate.metrics.fid import float64_device

_CHUNK_ELEMENTS = 1 << 24  # at most this many distances in memory at once (128 MiB in float64)


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


class DensityCoverage(NamedTuple):
    density: float
    coverage: float


def _as_float64(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, D] and [M, D], got {tuple(real.shape)} and {tuple(fake.shape)}")
    device = float64_device(real.device)
    return real.to(device=device, dtype=torch.float64), fake.to(device=device, dtype=torch.float64)


def _distance_chunks(rows: Tensor, columns: Tensor) -> Iterator[tuple[slice, Tensor]]:
    """Yield (row slice, [chunk, M] Euclidean distances) covering all of rows [N, D] x columns [M, D]."""
    chunk = max(1, _CHUNK_ELEMENTS // max(columns.shape[0], 1))
    for start in range(0, rows.shape[0], chunk):
        block = slice(start, start + chunk)
        yield block, torch.cdist(rows[block], columns).clamp_min_(0)


def knn_radii(features: Tensor, k: int) -> Tensor:
    """[N] distance from each row of features [N, D] to its k-th nearest other row (N > k)."""
    if not 1 <= k < features.shape[0]:
        raise ValueError(f"k must be in 1..{features.shape[0] - 1} for {features.shape[0]} samples, got {k}")
    radii = torch.empty(features.shape[0], dtype=features.dtype, device=features.device)
    for block, distances in _distance_chunks(features, features):
        radii[block] = distances.kthvalue(k + 1, dim=1).values  # the +1 skips the sample itself (distance 0)
    return radii


def _share_inside_balls(points: Tensor, centres: Tensor, radii: Tensor) -> float:
    """Share of points [M, D] within distance radii[i] of some centres[i] ([N, D], [N])."""
    inside = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    for block, distances in _distance_chunks(points, centres):
        inside[block] = (distances <= radii.unsqueeze(0)).any(1)
    return float(inside.double().mean())


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall of fake features against real features.

    Args:
        real: [N, D] features of real samples (N > k).
        fake: [M, D] features of generated samples (M > k).
        k: the neighbour that sets each ball's radius (the paper uses 3).

    Returns:
        PrecisionRecall(precision, recall), each in [0, 1]; both 1 for identical sets.
    """
    real, fake = _as_float64(real, fake)
    precision = _share_inside_balls(fake, real, knn_radii(real, k))
    recall = _share_inside_balls(real, fake, knn_radii(fake, k))
    return PrecisionRecall(precision=precision, recall=recall)


def density_coverage(real: Tensor, fake: Tensor, k: int = 5) -> DensityCoverage:
    """Density and coverage of fake features against real features (only real balls are used).

    Args:
        real: [N, D] features of real samples (N > k).
        fake: [M, D] features of generated samples.
        k: the neighbour that sets each real ball's radius (the paper uses 5).

    Returns:
        DensityCoverage(density, coverage): density >= 0 (about 1 for matching distributions),
        coverage in [0, 1].
    """
    real, fake = _as_float64(real, fake)
    radii = knn_radii(real, k)  # [N]
    balls_per_fake = torch.zeros(fake.shape[0], dtype=torch.float64, device=fake.device)  # [M]
    for block, distances in _distance_chunks(fake, real):  # [chunk, N]
        balls_per_fake[block] = (distances <= radii.unsqueeze(0)).sum(1).double()
    nearest_fake = torch.empty(real.shape[0], dtype=torch.float64, device=real.device)  # [N]
    for block, distances in _distance_chunks(real, fake):  # [chunk, M]
        nearest_fake[block] = distances.min(1).values
    density = float(balls_per_fake.sum()) / (k * fake.shape[0])
    coverage = float((nearest_fake <= radii).double().mean())
    return DensityCoverage(density=density, coverage=coverage)
