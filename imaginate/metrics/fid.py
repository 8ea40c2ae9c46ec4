"""Streamed feature statistics and the Fréchet distance (FID) between two Gaussians.

FID = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))   (Heusel et al. 2017)

computed without scipy: tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i) with lambda_i the eigenvalues of
the symmetric positive semi-definite matrix S1^(1/2) S2 S1^(1/2) (similar to S1 S2, so it has the
same eigenvalues, and symmetric, so ``eigvalsh`` is stable). Everything runs in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def float64_device(device: torch.device) -> torch.device:
    """``device`` when it computes in float64, else the CPU (Apple's MPS has no float64)."""
    return torch.device("cpu") if device.type == "mps" else device


class FeatureStats:
    """Running mean and covariance of features streamed batch by batch, plus the first features kept.

    The mean and the centred sum of outer products are merged per batch with Chan et al.'s parallel
    update in float64 (numerically safer than a raw sum of x x^T, and equal to it in exact
    arithmetic), so streaming in batches gives the one-shot statistics up to rounding. The first
    ``max_kept`` feature rows are stored (float32) for KID and precision/recall.

    Args:
        max_kept: how many feature rows to keep (0: none; statistics still cover every row).
        features: the name of the feature space (a FeatureExtractor's ``name``), checked when two
            statistics are compared.
    """

    def __init__(self, max_kept: int = 0, features: str | None = None) -> None:
        if max_kept < 0:
            raise ValueError(f"max_kept must be >= 0, got {max_kept}")
        self.max_kept = max_kept
        self.features = features
        self.count = 0
        self._mean: Tensor | None = None  # [D] float64
        self._centred_outer: Tensor | None = None  # [D, D] float64: sum_i (x_i - mean)(x_i - mean)^T
        self._kept: list[Tensor] = []  # [n_j, D] float32 chunks
        self._num_kept = 0

    def update(self, features: Tensor) -> None:
        """Add a batch of features [B, D] (any float dtype, any device)."""
        if features.dim() != 2:
            raise ValueError(f"features must be [B, D], got shape {tuple(features.shape)}")
        if self._mean is not None and features.shape[1] != self._mean.shape[0]:
            raise ValueError(f"features have {features.shape[1]} dims, earlier batches had {self._mean.shape[0]}")
        n_batch = features.shape[0]
        if n_batch == 0:
            return
        if not torch.isfinite(features).all():
            raise ValueError("features contain NaN or inf (are the images finite?)")
        x = features.detach().to(device=float64_device(features.device), dtype=torch.float64)  # [B, D]
        batch_mean = x.mean(0)  # [D]
        centred = x - batch_mean  # [B, D]
        batch_outer = centred.T @ centred  # [D, D]
        if self._mean is None or self._centred_outer is None:
            self._mean, self._centred_outer = batch_mean, batch_outer
        else:
            total = self.count + n_batch
            delta = batch_mean.to(self._mean.device) - self._mean  # [D]
            self._mean = self._mean + delta * (n_batch / total)
            self._centred_outer = (
                self._centred_outer + batch_outer.to(self._mean.device)
                + torch.outer(delta, delta) * (self.count * n_batch / total)
            )
        self.count += n_batch
        if self._num_kept < self.max_kept:
            take = features[: self.max_kept - self._num_kept].detach().float()
            self._kept.append(take)
            self._num_kept += take.shape[0]

    def mean(self) -> Tensor:
        """[D] float64 mean of all features seen."""
        if self._mean is None:
            raise ValueError("no features seen yet")
        return self._mean

    def covariance(self) -> Tensor:
        """[D, D] float64 unbiased covariance (divided by count - 1) of all features seen."""
        if self._centred_outer is None or self.count < 2:
            raise ValueError(f"the covariance needs at least 2 feature rows, got {self.count}")
        return self._centred_outer / (self.count - 1)

    def kept(self) -> Tensor:
        """[min(count, max_kept), D] float32: the first feature rows seen."""
        if not self._kept:
            raise ValueError("no features kept (max_kept=0 or nothing seen yet)")
        return torch.cat(self._kept) if len(self._kept) > 1 else self._kept[0]

    def __repr__(self) -> str:
        dim = None if self._mean is None else self._mean.shape[0]
        return f"FeatureStats(features={self.features!r}, count={self.count}, dim={dim}, kept={self._num_kept})"


def _symmetric_sqrt_psd(matrix: Tensor) -> Tensor:
    """Principal square root of a symmetric PSD matrix [D, D]; tiny negative eigenvalues clamp to 0."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)  # [D], [D, D]
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); the FID on feature statistics.

    Args:
        mu1: [D] mean of the first set.
        sigma1: [D, D] covariance of the first set (symmetric PSD; singular is fine).
        mu2: [D] mean of the second set.
        sigma2: [D, D] covariance of the second set.

    Returns:
        The distance as a Python float (>= 0; rounding below 0 is clamped to 0).
    """
    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(t).detach().cpu().to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    if mu1.dim() != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must both be [D], got {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must be [{d}, {d}], got {tuple(sigma1.shape)} and {tuple(sigma2.shape)}")
    sigma1 = (sigma1 + sigma1.T) / 2  # remove rounding asymmetry
    sigma2 = (sigma2 + sigma2.T) / 2
    sqrt_sigma1 = _symmetric_sqrt_psd(sigma1)  # [D, D]
    middle = sqrt_sigma1 @ sigma2 @ sqrt_sigma1  # [D, D], similar to sigma1 @ sigma2
    middle = (middle + middle.T) / 2
    trace_sqrt_product = torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum()  # tr((sigma1 sigma2)^(1/2))
    value = (mu1 - mu2).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_sqrt_product
    return max(float(value), 0.0)


def fid_from_stats(stats1: FeatureStats, stats2: FeatureStats) -> float:
    """FID between two streamed statistics (their feature names must agree when both are set)."""
    if stats1.features and stats2.features and stats1.features != stats2.features:
        raise ValueError(f"cannot compare statistics of {stats1.features!r} with {stats2.features!r}")
    return frechet_distance(stats1.mean(), stats1.covariance(), stats2.mean(), stats2.covariance())
