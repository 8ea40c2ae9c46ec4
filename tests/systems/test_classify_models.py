"""Image classifiers: shapes on small inputs, gradients, the ResNet-18 parameter count, learning."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from imaginate.data import load_digits
from imaginate.systems.classify.model import MODELS, ResNet18Small, build_classifier

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
SMALL_WIDTH = {"mlp": 32, "cnn": 8, "resnet18": 8}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("in_shape", SHAPES)
def test_classifier_logits_shape_and_gradients(name: str, in_shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_classifier(name, in_shape, num_classes=7, width=SMALL_WIDTH[name])
    images = torch.rand(3, *in_shape)
    logits = model(images)
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 3, 6])).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


def test_resnet18_small_has_the_cifar_resnet18_parameter_count() -> None:
    model = ResNet18Small(in_channels=3, num_classes=10, width=64)
    assert count_parameters(model) == 11_173_962
    # the same count as torchvision's ResNet-18 with the 3x3 stride-1 stem and no max-pool
    from torchvision.models import resnet18

    reference = resnet18(num_classes=10)
    reference.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    reference.maxpool = nn.Identity()
    assert count_parameters(model) == count_parameters(reference)
    assert count_parameters(build_classifier("resnet18", (3, 32, 32), 10)) == 11_173_962  # width 0 = 64


def test_resnet18_small_keeps_resolution_in_the_stem() -> None:
    model = ResNet18Small(in_channels=3, num_classes=10, width=8).eval()
    features = model.stages(model.stem(torch.rand(1, 3, 32, 32)))
    assert features.shape == (1, 64, 4, 4)  # 32 / 8: only the three strided stages downsample


def test_build_classifier_width_and_unknown_name() -> None:
    default = build_classifier("mlp", (1, 8, 8), 10)
    assert count_parameters(default) == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert count_parameters(build_classifier("cnn", (1, 8, 8), 10, width=16)) < count_parameters(
        build_classifier("cnn", (1, 8, 8), 10)
    )
    with pytest.raises(ValueError, match="model.name") as info:
        build_classifier("vgg", (1, 8, 8), 10)
    assert all(name in str(info.value) for name in MODELS)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_classifier_fits_a_small_digits_batch(name: str) -> None:
    torch.manual_seed(0)
    train, _ = load_digits()
    images, labels = train.take(torch.arange(128))
    model = build_classifier(name, train.image_shape, train.num_classes, width=SMALL_WIDTH[name])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).argmax(dim=1) == labels).float().mean().item()
    assert accuracy > 0.95
