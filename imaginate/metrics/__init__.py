"""Metrics: FID / KID / precision-recall / density-coverage with pluggable feature networks.

Offline, the project's own Fashion-MNIST classifier supplies the features (labelled "Fashion-MNIST
features"); the standard Inception-v3 features need a weights file the user provides (torchvision's
weights: numbers are not comparable with published TF-Inception FIDs).
"""

from imaginate.metrics.extractor import FeatureExtractor, MissingWeightsError, to_channels_and_size
from imaginate.metrics.feature_net import (
    FASHION_FEATURES_NAME,
    FASHION_FEATURES_SIDECAR,
    FASHION_FEATURES_WEIGHTS,
    ClassifierFeatures,
    FashionFeatureNet,
    load_fashion_features,
    per_class_accuracy,
    read_sidecar,
)
from imaginate.metrics.fid import FeatureStats, fid_from_stats, frechet_distance
from imaginate.metrics.gan import GanMetrics, compute_gan_metrics, extract_stats, metric_label
from imaginate.metrics.inception import INCEPTION_FEATURES_NAME, InceptionFeatures, inception_hub_path
from imaginate.metrics.kid import KIDResult, kid, mmd2_unbiased, polynomial_kernel
from imaginate.metrics.prdc import (
    DensityCoverage,
    PrecisionRecall,
    density_coverage,
    knn_radii,
    precision_recall,
)

__all__ = [
    "FASHION_FEATURES_NAME",
    "FASHION_FEATURES_SIDECAR",
    "FASHION_FEATURES_WEIGHTS",
    "INCEPTION_FEATURES_NAME",
    "ClassifierFeatures",
    "DensityCoverage",
    "FashionFeatureNet",
    "FeatureExtractor",
    "FeatureStats",
    "GanMetrics",
    "InceptionFeatures",
    "KIDResult",
    "MissingWeightsError",
    "PrecisionRecall",
    "compute_gan_metrics",
    "density_coverage",
    "extract_stats",
    "fid_from_stats",
    "frechet_distance",
    "inception_hub_path",
    "kid",
    "knn_radii",
    "load_fashion_features",
    "metric_label",
    "mmd2_unbiased",
    "per_class_accuracy",
    "polynomial_kernel",
    "precision_recall",
    "read_sidecar",
    "to_channels_and_size",
]
