"""Perceptual loss: loading a (random) torchvision vgg19 state dict, the formula, the missing-file
error, and the pluggable feature extractor. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from imaginate.nn.perceptual import (
    DEFAULT_LAYER_WEIGHTS,
    VGG19_LAYER_INDEX,
    PerceptualLoss,
    VGG19Features,
    find_vgg19_weights,
)

RELU_INDICES = (1, 6, 11, 20, 29)  # relu1_1 ... relu5_1 in torchvision's vgg19().features


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Sequential]:
    """A torchvision vgg19 with random weights, saved as its state dict (the entries the loss reads
    plus a few it must ignore, to keep the file small) and its feature network for reference."""
    torch.manual_seed(0)
    model = torchvision.models.vgg19(weights=None).eval()
    state = model.state_dict()
    kept = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) <= 30}
    kept["classifier.6.bias"] = state["classifier.6.bias"]
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(kept, path)
    return path, model.features[:30]


def reference_features(features: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    outputs = []
    for index, layer in enumerate(features):
        x = layer(x)
        if index in RELU_INDICES:
            outputs.append(x.clone())
    return outputs


def imagenet_normalise(x_minus1_1: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ((x_minus1_1 + 1) / 2 - mean) / std


def test_layer_names_match_torchvision_indices() -> None:
    assert [VGG19_LAYER_INDEX[f"relu{b}_1"] for b in range(1, 6)] == list(RELU_INDICES)
    assert VGG19_LAYER_INDEX["conv4_2"] == 21 and VGG19_LAYER_INDEX["pool5"] == 36


def test_loaded_features_equal_torchvision_vgg19(vgg19_file) -> None:
    path, reference = vgg19_file
    vgg = VGG19Features(path)
    assert len(vgg.features) == 30 and not any(p.requires_grad for p in vgg.parameters())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for got, want in zip(vgg(x), reference_features(reference, x), strict=True):
            torch.testing.assert_close(got, want)
    vgg.train()
    assert not vgg.training and not vgg.features.training


def test_loss_equals_weighted_l1_of_normalised_features(vgg19_file) -> None:
    path, reference = vgg19_file
    loss_fn = PerceptualLoss(weights_path=str(path))
    torch.manual_seed(1)
    fake = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    loss = loss_fn(fake, real)
    with torch.no_grad():
        fake_features = reference_features(reference, imagenet_normalise(fake))
        real_features = reference_features(reference, imagenet_normalise(real))
    want = sum(w * F.l1_loss(f, r) for w, f, r in zip(DEFAULT_LAYER_WEIGHTS, fake_features, real_features))
    torch.testing.assert_close(loss.detach(), want, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.parameters())
    # [0, 1] inputs: the same images rescaled give the same loss
    zero_one = PerceptualLoss(weights_path=path, input_range=(0.0, 1.0))
    torch.testing.assert_close(zero_one((fake.detach() + 1) / 2, (real + 1) / 2), loss.detach(), rtol=1e-5, atol=1e-6)
    # grayscale is repeated to 3 channels
    gray = loss_fn(fake.detach()[:, :1], real[:, :1])
    torch.testing.assert_close(gray, loss_fn(fake.detach()[:, :1].expand(-1, 3, -1, -1), real[:, :1].expand(-1, 3, -1, -1)))
    assert loss_fn(real, real).item() == 0.0


def test_hub_cache_is_searched(vgg19_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = vgg19_file
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "vgg19-0123abcd.pth").symlink_to(path)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert find_vgg19_weights() == tmp_path / "checkpoints" / "vgg19-0123abcd.pth"
    assert len(VGG19Features(layers=["relu2_1"]).features) == 7  # cut after the deepest layer


def test_missing_weights_say_which_file_to_put_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        PerceptualLoss()
    message = str(info.value)
    assert "\n" not in message
    assert "vgg19-dcbb9e9d.pth" in message and str(tmp_path / "checkpoints") in message
    assert "weights_path" in message
    with pytest.raises(FileNotFoundError, match="no file at"):
        PerceptualLoss(weights_path=tmp_path / "nowhere.pth")


def test_wrong_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "not_vgg.pth"
    torch.save({"weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="missing features.0.weight"):
        VGG19Features(bad)
    with pytest.raises(ValueError, match="allowed"):
        VGG19Features(bad, layers=["relu9_9"])


class TinyFeatures(nn.Module):
    """A stand-in feature network: two conv stages, each returned."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = self.stage1(x)
        return [first, self.stage2(first)]


def test_feature_extractor_substitute() -> None:
    torch.manual_seed(0)
    net = TinyFeatures()
    loss_fn = PerceptualLoss(feature_extractor=net, layer_weights=[0.5, 2.0], input_range=(-1.0, 1.0))
    assert not any(p.requires_grad for p in net.parameters())
    fake, real = torch.rand(2, 1, 8, 8) * 2 - 1, torch.rand(2, 1, 8, 8) * 2 - 1
    f, r = net((fake + 1) / 2), net((real + 1) / 2)  # 1 channel: mapped to [0, 1], no ImageNet stats
    want = 0.5 * F.l1_loss(f[0], r[0]) + 2.0 * F.l1_loss(f[1], r[1])
    torch.testing.assert_close(loss_fn(fake, real), want)
    two_scales = PerceptualLoss(feature_extractor=net, layer_weights=[0.5, 2.0], num_scales=2, criterion="l2")
    assert two_scales(fake, real).item() > 0
    with pytest.raises(ValueError, match="not both"):
        PerceptualLoss(weights_path="x.pth", feature_extractor=net)
    with pytest.raises(ValueError, match="3 weights"):
        PerceptualLoss(feature_extractor=net, layer_weights=[1.0, 1.0, 1.0])(fake, real)
