"""The project's own offline feature network: a small Fashion-MNIST CNN classifier.

Its penultimate layer (128-d, after ReLU) is the feature space of the offline FID / KID /
precision-recall, labelled "Fashion-MNIST features" so that nobody mistakes these numbers for
Inception FIDs. Its logits measure "classifier accuracy on generated samples per class".

The weights ship with the package (``weights/fashion_mnist_features.safetensors``, trained by
``scripts/train_feature_net.py``; seed, epochs, test accuracy, torch version and sha256 are in the
JSON sidecar next to them). Loading checks the file against the sidecar's sha256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from imaginate.metrics.extractor import MissingWeightsError, to_channels_and_size

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FASHION_FEATURES_WEIGHTS = WEIGHTS_DIR / "fashion_mnist_features.safetensors"
FASHION_FEATURES_SIDECAR = WEIGHTS_DIR / "fashion_mnist_features.json"
FASHION_FEATURES_NAME = "Fashion-MNIST features"
FASHION_MNIST_MEAN = 0.2860  # pixel mean of the Fashion-MNIST train split (images in [0, 1])
FASHION_MNIST_STD = 0.3530  # pixel std of the Fashion-MNIST train split


class FashionFeatureNet(nn.Module):
    """Two conv3x3-BN-ReLU + max-pool stages (28 -> 14 -> 7), a 128-d ReLU feature layer and a
    linear classifier. Inputs are [N, 1, 28, 28] in [0, 1]; normalisation happens inside.

    Args:
        num_classes: number of output logits (10 for Fashion-MNIST).
        feature_dim: width of the penultimate (feature) layer.
        width: channels of the first conv stage (the second has twice as many).
        dropout: dropout on the features before the classifier (training only).
    """

    def __init__(self, num_classes: int = 10, feature_dim: int = 128, width: int = 32, dropout: float = 0.25):
        super().__init__()
        self.feature_dim = feature_dim
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # [N, w, 14, 14]
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # [N, 2w, 7, 7]
            nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Linear(2 * width * 7 * 7, feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, images: Tensor) -> Tensor:
        """[N, 1, 28, 28] in [0, 1] -> [N, feature_dim] penultimate-layer activations (>= 0)."""
        x = (images - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
        return self.embed(self.conv(x))

    def forward(self, images: Tensor) -> Tensor:
        """[N, 1, 28, 28] in [0, 1] -> [N, num_classes] logits."""
        return self.classifier(self.dropout(self.features(images)))


class ClassifierFeatures(nn.Module):
    """A FeatureExtractor around a trained classifier: ``extractor(images)`` gives its features,
    ``extractor.classify(images)`` its logits. Any [N, C, H, W] input in [0, 1] is accepted: RGB
    becomes luminance, other sizes are resized to 28x28 (bilinear, antialiased when shrinking).

    Always in eval mode (batch-norm running statistics, no dropout), without gradients.

    Args:
        net: the trained classifier.
        name: the label of metrics computed on these features, e.g. "Fashion-MNIST features".
    """

    def __init__(self, net: FashionFeatureNet, name: str = FASHION_FEATURES_NAME) -> None:
        super().__init__()
        self.net = net.eval()
        self.name = name
        self.feature_dim = net.feature_dim
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)  # a frozen measuring instrument: never in training mode

    def _prepare(self, images: Tensor) -> Tensor:
        device = next(self.net.parameters()).device
        return to_channels_and_size(images.to(device=device, dtype=torch.float32), channels=1, size=28)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """[N, C, H, W] in [0, 1] -> [N, feature_dim] features (float32, on the net's device)."""
        return self.net.features(self._prepare(images))

    @torch.no_grad()
    def classify(self, images: Tensor) -> Tensor:
        """[N, C, H, W] in [0, 1] -> [N, num_classes] logits."""
        return self.net(self._prepare(images))


def sha256_of_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sidecar(path: str | Path = FASHION_FEATURES_SIDECAR) -> dict:
    """The JSON sidecar of the committed weights (seed, epochs, test accuracy, torch version, sha256)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_fashion_features(
    device: str | torch.device | None = None,
    weights_path: str | Path | None = None,
    verify: bool = True,
) -> ClassifierFeatures:
    """The committed Fashion-MNIST feature network as a FeatureExtractor (name "Fashion-MNIST features").

    Args:
        device: where to put the network (None: CPU).
        weights_path: a safetensors file to load instead of the committed one (same architecture).
        verify: check the committed file's sha256 against its JSON sidecar (ignored for weights_path).

    Returns:
        ClassifierFeatures: ``extractor(images) -> [N, 128]`` and ``extractor.classify(images) -> [N, 10]``.

    Raises:
        MissingWeightsError: the weights file does not exist.
        ValueError: the file's sha256 differs from the sidecar's (a corrupt or replaced file).
    """
    from safetensors.torch import load_file

    path = Path(weights_path) if weights_path is not None else FASHION_FEATURES_WEIGHTS
    if not path.is_file():
        raise MissingWeightsError(
            f"Fashion-MNIST feature weights not found at {path}: reinstall imaginate or regenerate them with "
            f"`python scripts/train_feature_net.py`"
        )
    if verify and weights_path is None:
        expected = read_sidecar()["sha256"]
        actual = sha256_of_file(path)
        if actual != expected:
            raise ValueError(
                f"{path} has sha256 {actual}, its sidecar {FASHION_FEATURES_SIDECAR.name} says {expected}: "
                f"the weights file is corrupt or was replaced"
            )
    net = FashionFeatureNet()
    net.load_state_dict(load_file(str(path)), strict=True)
    return ClassifierFeatures(net).to(torch.device(device) if device is not None else torch.device("cpu"))


@torch.no_grad()
def per_class_accuracy(
    classifier: ClassifierFeatures, images: Tensor, labels: Tensor, num_classes: int, batch_size: int = 500
) -> Tensor:
    """Share of images of each class that the classifier assigns to that class.

    Used as "classifier accuracy on generated samples per class" for a class-conditional generator
    (``labels`` are the classes the samples were generated for).

    Args:
        classifier: anything with ``classify(images) -> logits`` [N, K].
        images: [N, C, H, W] in [0, 1].
        labels: [N] int64 intended classes.
        num_classes: K.
        batch_size: images per forward pass.

    Returns:
        [K] float64 accuracies on CPU; NaN for a class with no images.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    chunks = [torch.zeros(0, dtype=torch.int64)]
    for start in range(0, len(images), batch_size):
        chunks.append(classifier.classify(images[start : start + batch_size]).argmax(1).cpu())
    predictions = torch.cat(chunks)  # [N]
    labels = labels.cpu().long()
    correct = torch.bincount(labels[predictions == labels], minlength=num_classes).double()  # [K]
    total = torch.bincount(labels, minlength=num_classes).double()  # [K]
    return correct / total  # 0/0 -> NaN for empty classes

