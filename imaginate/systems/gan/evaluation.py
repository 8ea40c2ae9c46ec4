"""GAN evaluation with offline features: FID / KID / precision / recall ("Fashion-MNIST features") and
the feature classifier's accuracy on generated samples, per class."""

from __future__ import annotations

import functools

import torch

from imaginate.metrics import compute_gan_metrics, load_fashion_features, per_class_accuracy

FEATURES = "Fashion-MNIST features"


@functools.lru_cache(maxsize=2)
def _extractor(device: str):
    return load_fashion_features(device=device).eval()


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """[n] labels cycling through the classes (equal counts when n is a multiple)."""
    return torch.arange(n) % num_classes


def evaluate_generator(system) -> dict[str, float]:
    """Metrics of ``system.generate`` against the test split; keys: fid, kid, kid_std, precision, recall,
    and (Fashion-MNIST only) class_acc plus class_acc_<k> per class."""
    cfg = system.cfg
    n = min(cfg.eval.num_samples, len(system.test_set))
    k = len(system.class_names)
    labels = balanced_labels(n, k)
    fake = system.generate(labels, seed=cfg.train.seed + 777)  # [n, C, H, W] in [0, 1]
    real = system.test_set.images[:n]
    extractor = _extractor(str(system.ctx.device))
    m = compute_gan_metrics(real, fake, extractor, batch_size=cfg.eval.batch_size, kid_subsets=50,
                            kid_subset_size=min(1000, n // 2), max_kept=n, device=system.ctx.device,
                            seed=cfg.train.seed)
    out = {"fid": m["fid"], "kid": m["kid_mean"], "kid_std": m["kid_std"], "precision": m["precision"],
           "recall": m["recall"]}
    if cfg.data.name == "fashion_mnist":  # the feature net is a Fashion-MNIST classifier
        acc = per_class_accuracy(extractor, fake.to(system.ctx.device), labels, k)
        out["class_acc"] = float(acc.nanmean())
        out.update({f"class_acc_{i}": float(a) for i, a in enumerate(acc)})
    return out
