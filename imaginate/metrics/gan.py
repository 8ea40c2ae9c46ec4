"""FID, KID, precision/recall and density/coverage of generated images, streamed through any
feature network, and labelled by that network ("FID (Fashion-MNIST features)").

    from imaginate.metrics import compute_gan_metrics, load_fashion_features
    extractor = load_fashion_features()
    real = extract_stats(test.images, extractor, max_kept=5000)   # reuse across evaluations
    result = compute_gan_metrics(real, fake_images, extractor)
    result["fid"], result.features, result.labelled()  # {"FID (Fashion-MNIST features)": ...}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from imaginate.metrics.extractor import FeatureExtractor
from imaginate.metrics.fid import FeatureStats, fid_from_stats
from imaginate.metrics.kid import kid
from imaginate.metrics.prdc import density_coverage, precision_recall

# images [N, C, H, W] in [0, 1], or an iterable of such batches or of (images, ...) tuples
# (a DataLoader), or statistics already extracted with the same feature network
ImageSource = Tensor | Iterable[Tensor] | Iterable[tuple] | FeatureStats

METRIC_DISPLAY_NAMES = {
    "fid": "FID",
    "kid_mean": "KID",
    "kid_std": "KID std",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
}


def metric_label(key: str, features: str) -> str:
    """How a table names a metric: ``metric_label("fid", "Fashion-MNIST features")`` -> "FID (Fashion-MNIST features)"."""
    return f"{METRIC_DISPLAY_NAMES.get(key, key)} ({features})"


class GanMetrics(dict):
    """A dict of metric values (``"fid"``, ``"kid_mean"``, ...) that also knows its feature space.

    Args:
        values: metric name -> value.
        features: the feature network's name, e.g. "Fashion-MNIST features".
    """

    def __init__(self, values: dict[str, float], features: str) -> None:
        super().__init__(values)
        self.features = features

    def labelled(self) -> dict[str, float]:
        """The values keyed for tables: {"FID (Fashion-MNIST features)": ..., "num_real": ...}.

        Counts (``num_*`` keys) keep their plain names.
        """
        return {k if k.startswith("num_") else metric_label(k, self.features): v for k, v in self.items()}

    def __repr__(self) -> str:
        return f"GanMetrics({dict(self)!r}, features={self.features!r})"


def _batches(images: Tensor | Iterable, batch_size: int) -> Iterator[Tensor]:
    """[B, C, H, W] batches of a tensor or an iterable (taking the first element of tuples/lists)."""
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
        return
    for item in images:
        batch = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(batch, Tensor) or batch.dim() != 4:
            raise ValueError(f"each batch must be an [B, C, H, W] tensor (or a tuple starting with one), got {type(batch)}")
        yield batch


def _extractor_device(extractor: FeatureExtractor) -> torch.device | None:
    if isinstance(extractor, nn.Module):
        parameter = next(iter(extractor.parameters()), None)
        if parameter is not None:
            return parameter.device
    return None


@torch.no_grad()
def extract_stats(
    images: Tensor | Iterable,
    extractor: FeatureExtractor,
    batch_size: int = 250,
    max_kept: int = 10000,
    device: str | torch.device | None = None,
    check_range: bool = True,
) -> FeatureStats:
    """Stream images through a feature network into FeatureStats (mean, covariance, first features).

    Args:
        images: [N, C, H, W] in [0, 1], or an iterable of such batches or of (images, ...) tuples.
        extractor: the feature network (callable with a ``name``).
        batch_size: images per forward pass when ``images`` is one tensor.
        max_kept: feature rows kept for KID and precision/recall (the first ones seen).
        device: where images go before the extractor (None: the extractor module's device, else
            where the images are). An ``nn.Module`` extractor is moved there.
        check_range: reject images outside [0, 1] (a common mistake: tanh outputs in [-1, 1]).

    Returns:
        FeatureStats labelled with ``extractor.name``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    target = torch.device(device) if device is not None else _extractor_device(extractor)
    if target is not None and isinstance(extractor, nn.Module):
        extractor.to(target)
    stats = FeatureStats(max_kept=max_kept, features=extractor.name)
    for batch in _batches(images, batch_size):
        if target is not None:
            batch = batch.to(target)
        if check_range and batch.numel():
            low, high = batch.aminmax()
            if float(low) < -1e-3 or float(high) > 1 + 1e-3:
                raise ValueError(
                    f"images must be in [0, 1], got values in [{float(low):.3g}, {float(high):.3g}] "
                    f"(map tanh outputs with (x + 1) / 2, or pass check_range=False)"
                )
        features = extractor(batch)  # [B, D]
        if features.dim() != 2 or features.shape[0] != batch.shape[0]:
            raise ValueError(
                f"{extractor.name}: a batch of {batch.shape[0]} images gave features of shape {tuple(features.shape)}, "
                f"expected [{batch.shape[0]}, D]"
            )
        stats.update(features)
    if stats.count == 0:
        raise ValueError("no images to measure")
    return stats


def compute_gan_metrics(
    real: ImageSource,
    fake: ImageSource,
    extractor: FeatureExtractor,
    batch_size: int = 250,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    dc_k: int = 5,
    max_kept: int = 10000,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> GanMetrics:
    """FID, KID, precision/recall and density/coverage of fake images against real ones.

    FID uses every image; KID and the k-NN metrics use the first ``max_kept`` features of each set.

    Args:
        real: real images (see ImageSource), or their FeatureStats from ``extract_stats`` (reusable).
        fake: generated images, same forms.
        extractor: the feature network; its ``name`` labels the result.
        batch_size: images per forward pass for tensors.
        kid_subsets: KID subsets to average over.
        kid_subset_size: rows per KID subset (reduced to the kept feature count when smaller).
        pr_k: the neighbour that sets precision/recall radii (Kynkäänniemi et al.: 3).
        dc_k: the neighbour that sets density/coverage radii (Naeem et al.: 5).
        max_kept: feature rows kept per set for KID and k-NN metrics.
        device: where features are computed (see ``extract_stats``).
        seed: seed of the KID subsets.

    Returns:
        GanMetrics: {"fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
        "num_real", "num_fake"} and ``.features`` = ``extractor.name``.
    """
    stats: list[FeatureStats] = []
    for source in (real, fake):
        if isinstance(source, FeatureStats):
            if source.features is not None and source.features != extractor.name:
                raise ValueError(f"statistics of {source.features!r} cannot be compared with {extractor.name!r}")
            stats.append(source)
        else:
            stats.append(extract_stats(source, extractor, batch_size, max_kept, device))
    real_stats, fake_stats = stats
    real_kept, fake_kept = real_stats.kept(), fake_stats.kept()  # [N, D], [M, D]
    fake_kept = fake_kept.to(real_kept.device)
    kid_result = kid(
        real_kept, fake_kept, kid_subsets, kid_subset_size, generator=torch.Generator().manual_seed(seed)
    )
    pr = precision_recall(real_kept, fake_kept, k=pr_k)
    dc = density_coverage(real_kept, fake_kept, k=dc_k)
    values = {
        "fid": fid_from_stats(real_stats, fake_stats),
        "kid_mean": kid_result.mean,
        "kid_std": kid_result.std,
        "precision": pr.precision,
        "recall": pr.recall,
        "density": dc.density,
        "coverage": dc.coverage,
        "num_real": float(real_stats.count),
        "num_fake": float(fake_stats.count),
    }
    return GanMetrics(values, features=extractor.name)
