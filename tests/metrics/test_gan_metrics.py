"""GAN metrics: FID against scipy and closed forms, streaming, KID unbiasedness, k-NN precision/recall,
the committed Fashion-MNIST feature network, the Inception weights error, and labelling by features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from imaginate.data import load_fashion_mnist
from imaginate.metrics import (
    FASHION_FEATURES_NAME,
    FASHION_FEATURES_SIDECAR,
    FASHION_FEATURES_WEIGHTS,
    FeatureExtractor,
    FeatureStats,
    InceptionFeatures,
    MissingWeightsError,
    compute_gan_metrics,
    density_coverage,
    extract_stats,
    frechet_distance,
    kid,
    load_fashion_features,
    mmd2_unbiased,
    per_class_accuracy,
    precision_recall,
    read_sidecar,
)
from imaginate.metrics.feature_net import sha256_of_file
from imaginate.metrics.inception import INCEPTION_FILENAME


def random_gaussian(dim: int, seed: int, n: int = 500) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(samples [n, dim], their mean [dim], their covariance [dim, dim]) of a random correlated Gaussian."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64) @ mixing + torch.randn(dim, generator=g, dtype=torch.float64)
    return x, x.mean(0), torch.cov(x.T)


def scipy_fid(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook FID with scipy's sqrtm (the reference of pytorch-fid)."""
    mu1, sigma1, mu2, sigma2 = (np.asarray(t, dtype=np.float64) for t in (mu1, sigma1, mu2, sigma2))
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


# ---------------------------------------------------------------- FID


def test_fid_of_a_set_with_itself_is_zero():
    _, mu, sigma = random_gaussian(32, seed=0)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9 * float(torch.trace(sigma)))


@pytest.mark.parametrize("dim", [4, 32])
def test_fid_is_symmetric_and_equals_scipy_sqrtm(dim):
    _, mu1, sigma1 = random_gaussian(dim, seed=1)
    _, mu2, sigma2 = random_gaussian(dim, seed=2)
    forward = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert forward > 1.0
    assert frechet_distance(mu2, sigma2, mu1, sigma1) == pytest.approx(forward, rel=1e-9)
    assert forward == pytest.approx(scipy_fid(mu1, sigma1, mu2, sigma2), rel=1e-7)


def test_fid_of_shifted_gaussians_is_squared_mean_distance():
    x, mu, sigma = random_gaussian(16, seed=3)
    shift = torch.linspace(-1, 2, 16, dtype=torch.float64)
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(float(shift.square().sum()), rel=1e-7)
    # the same through streamed statistics of shifted samples
    a, b = FeatureStats(), FeatureStats()
    a.update(x)
    b.update(x + shift)
    assert frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance()) == pytest.approx(
        float(shift.square().sum()), rel=1e-7
    )


def test_fid_handles_singular_covariances():
    # commuting diagonal covariances with zeros: tr((S1 S2)^(1/2)) = sum sqrt(a_i b_i)
    a = torch.tensor([0.0, 1.0, 4.0, 0.0, 2.0], dtype=torch.float64)
    b = torch.tensor([3.0, 0.0, 1.0, 0.0, 8.0], dtype=torch.float64)
    mu = torch.zeros(5, dtype=torch.float64)
    expected = float(a.sum() + b.sum() - 2 * (a * b).sqrt().sum())
    assert frechet_distance(mu, torch.diag(a), mu, torch.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_streaming_in_batches_equals_one_shot():
    x, _, _ = random_gaussian(12, seed=4, n=301)
    x = x + 1e6  # a large mean: a naive (sum x x^T - n mu mu^T) covariance would be off by ~1e-3 here
    one_shot, streamed = FeatureStats(max_kept=50), FeatureStats(max_kept=50)
    one_shot.update(x)
    for start, stop in [(0, 1), (1, 40), (40, 41), (41, 200), (200, 301)]:
        streamed.update(x[start:stop])
    assert streamed.count == one_shot.count == 301
    # (torch.allclose, not torch.testing.assert_close: the latter imports torch.distributed, seconds on CI)
    assert torch.allclose(streamed.mean(), x.mean(0), rtol=1e-12, atol=1e-8)
    assert torch.allclose(streamed.covariance(), torch.cov(x.T), rtol=0, atol=1e-8)
    assert torch.equal(streamed.kept(), x[:50].float())
    _, mu2, sigma2 = random_gaussian(12, seed=5)
    assert frechet_distance(streamed.mean(), streamed.covariance(), mu2, sigma2) == pytest.approx(
        frechet_distance(one_shot.mean(), one_shot.covariance(), mu2, sigma2), rel=1e-10
    )


# ---------------------------------------------------------------- KID


def test_mmd2_unbiased_equals_its_double_sum():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)

    def k(a, b):
        return (float(a @ b) / 3 + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert float(mmd2_unbiased(x, y)) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_unbiased_on_equal_distributions_and_positive_on_different_ones():
    g = torch.Generator().manual_seed(7)
    trials, m, dim = 300, 20, 8
    estimates, biased = [], []
    for _ in range(trials):  # fresh independent sets each trial, so the trials are independent
        x, y = torch.randn(m, dim, generator=g), torch.randn(m, dim, generator=g)
        estimates.append(kid(x, y, subsets=1, subset_size=m, generator=g).mean)
        kxx, kyy, kxy = ((a @ b.T / dim + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        biased.append(float(kxx.mean() + kyy.mean() - 2 * kxy.mean()))  # V-statistic: diagonals included
    estimates_t = torch.tensor(estimates, dtype=torch.float64)
    standard_error = float(estimates_t.std()) / math.sqrt(trials)
    assert abs(float(estimates_t.mean())) < 4 * standard_error
    assert (estimates_t < 0).any()  # an unbiased estimate of 0 must sometimes be negative
    assert float(torch.tensor(biased).mean()) > 4 * standard_error  # the biased estimator would fail above

    x, y = torch.randn(400, dim, generator=g), torch.randn(400, dim, generator=g) + 0.5
    result = kid(x, y, subsets=20, subset_size=100, generator=g)
    assert result.mean > 10 * result.std / math.sqrt(20) > 0


def test_kid_subsets_are_reproducible_with_a_generator():
    x, y = torch.randn(100, 4), torch.randn(120, 4)
    first = kid(x, y, subsets=5, subset_size=30, generator=torch.Generator().manual_seed(1))
    second = kid(x, y, subsets=5, subset_size=30, generator=torch.Generator().manual_seed(1))
    assert first == second


# ---------------------------------------------------------------- precision / recall, density / coverage


def reference_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. with plain Python loops over points."""

    def radii(points):
        return [sorted(float((p - q).norm()) for q in points)[k] for p in points]  # [0] is the point itself

    def share_inside(points, centres, centre_radii):
        return sum(
            any(float((p - c).norm()) <= r for c, r in zip(centres, centre_radii)) for p in points
        ) / len(points)

    return share_inside(fake, real, radii(real)), share_inside(real, fake, radii(fake))


def test_precision_recall_equal_loop_reference():
    g = torch.Generator().manual_seed(8)
    real, fake = torch.randn(40, 3, generator=g), torch.randn(30, 3, generator=g) * 1.5 + 0.3
    result = precision_recall(real, fake, k=3)
    assert result == pytest.approx(reference_precision_recall(real.double(), fake.double(), 3), abs=1e-12)


def test_precision_recall_identical_shifted_and_mode_dropping():
    g = torch.Generator().manual_seed(9)
    real = torch.randn(300, 8, generator=g)
    assert precision_recall(real, real.clone(), k=3) == (1.0, 1.0)
    assert density_coverage(real, real.clone(), k=5).coverage == 1.0
    shifted = precision_recall(real, real + 2.0, k=3)
    assert shifted.precision < 0.5 and shifted.recall < 0.5
    # two real modes; the fakes cover one: precision stays high, recall halves
    centres = torch.zeros(600, 8)
    centres[300:, 0] = 20.0
    two_modes = torch.randn(600, 8, generator=g) + centres
    one_mode = torch.randn(300, 8, generator=g)
    dropped = precision_recall(two_modes, one_mode, k=3)
    assert dropped.precision > 0.8 and 0.4 < dropped.recall < 0.55
    dc = density_coverage(two_modes, one_mode, k=5)
    assert 0.4 < dc.coverage < 0.55


# ---------------------------------------------------------------- the committed feature network


def test_committed_feature_net_matches_its_sidecar_and_recorded_accuracy():
    sidecar = read_sidecar()
    assert FASHION_FEATURES_WEIGHTS.stat().st_size < 5 * 2**20
    assert sha256_of_file(FASHION_FEATURES_WEIGHTS) == sidecar["sha256"]
    assert sidecar["seed"] == 20240607 and sidecar["script"] == "scripts/train_feature_net.py"
    assert sidecar["test_accuracy"] > 0.9
    extractor = load_fashion_features()
    assert isinstance(extractor, FeatureExtractor) and extractor.name == FASHION_FEATURES_NAME
    _, test = load_fashion_mnist(limit_test=2000)
    per_class = per_class_accuracy(extractor, test.images, test.labels, num_classes=10)  # [10]
    counts = torch.bincount(test.labels, minlength=10).double()
    accuracy = float((per_class * counts).sum() / counts.sum())
    assert accuracy == pytest.approx(sidecar["test_accuracy_first_2000"], abs=0.005)
    assert extractor(test.images[:7]).shape == (7, 128)
    rgb_32 = torch.nn.functional.interpolate(test.images[:3], size=32).expand(-1, 3, -1, -1)
    assert extractor(rgb_32).shape == (3, 128)  # other sizes and RGB are converted
    assert FASHION_FEATURES_SIDECAR.parent == FASHION_FEATURES_WEIGHTS.parent


def test_fashion_features_label_the_result_and_separate_real_from_noise():
    extractor = load_fashion_features()
    _, test = load_fashion_mnist(limit_test=1200)
    real = extract_stats(test.images[:600], extractor, batch_size=200, max_kept=600)
    same = compute_gan_metrics(real, test.images[600:], extractor, kid_subsets=10, kid_subset_size=200)
    noise = torch.rand(600, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    bad = compute_gan_metrics(real, noise, extractor, kid_subsets=10, kid_subset_size=200)
    assert same.features == bad.features == "Fashion-MNIST features"
    assert "FID (Fashion-MNIST features)" in same.labelled()
    assert bad["fid"] > 10 * same["fid"] and bad["kid_mean"] > 10 * abs(same["kid_mean"])
    assert same["precision"] > 0.8 and bad["precision"] < same["precision"]


# ---------------------------------------------------------------- compute_gan_metrics with any extractor


class MeanPoolFeatures:
    """A toy feature network: 4x4 average pooling of 16x16 grey images, 16-d."""

    name = "toy pooled pixels"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(images, 4).flatten(1)  # [N, 1, 16, 16] -> [N, 16]


def test_compute_gan_metrics_labels_by_feature_name_and_streams_loaders():
    g = torch.Generator().manual_seed(10)
    real, fake = torch.rand(90, 1, 16, 16, generator=g), torch.rand(70, 1, 16, 16, generator=g) * 0.5
    extractor = MeanPoolFeatures()
    assert isinstance(extractor, FeatureExtractor)
    result = compute_gan_metrics(real, fake, extractor, batch_size=32, kid_subsets=5, kid_subset_size=50)
    assert result.features == "toy pooled pixels"
    assert set(result) >= {"fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"}
    assert result.labelled()["FID (toy pooled pixels)"] == result["fid"] > 0
    assert result["num_real"] == 90 and result["num_fake"] == 70
    loader = [(real[i : i + 25], torch.zeros(25)) for i in range(0, 90, 25)]  # like a DataLoader
    from_loader = compute_gan_metrics(loader, fake, extractor, batch_size=7, kid_subsets=5, kid_subset_size=50)
    assert from_loader == pytest.approx(dict(result), rel=1e-9)
    itself = compute_gan_metrics(real, real, extractor, kid_subsets=5, kid_subset_size=50)
    assert itself["fid"] == pytest.approx(0.0, abs=1e-9) and itself["precision"] == itself["recall"] == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compute_gan_metrics(real * 2 - 1, fake, extractor)


# ---------------------------------------------------------------- Inception


def test_inception_without_weights_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(MissingWeightsError) as error:
        InceptionFeatures()
    message = str(error.value)
    assert "\n" not in message and INCEPTION_FILENAME in message
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / INCEPTION_FILENAME) in message
    with pytest.raises(MissingWeightsError, match="nowhere.pth does not exist"):
        InceptionFeatures(tmp_path / "nowhere.pth")


def test_inception_loads_a_torchvision_state_dict_from_the_hub_cache(tmp_path, monkeypatch):
    from torchvision.models import inception_v3

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    with torch.device("meta"):  # torchvision's key names and shapes, without a slow random init
        layout = inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    g = torch.Generator().manual_seed(0)
    random_weights = {
        key: torch.ones(t.shape) if key.endswith("running_var")
        else torch.zeros(t.shape, dtype=t.dtype) if key.endswith("num_batches_tracked")
        else torch.randn(t.shape, generator=g) * 0.05
        for key, t in layout.items()
    }
    torch.save(random_weights, checkpoints / INCEPTION_FILENAME)
    extractor = InceptionFeatures()
    assert extractor.name == "Inception-v3 features (torchvision weights)"
    features = extractor(torch.rand(2, 1, 28, 28))
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
