"""Conditional norms against their formulas; residual blocks' shapes and formula; spectral norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from imaginate.nn.blocks import (
    ResidualDiscriminatorBlock,
    ResidualGeneratorBlock,
    snconv2d,
    snembedding,
    snlinear,
)
from imaginate.nn.norms import SPADE, AdaIN, ConditionalBatchNorm2d, adain, channel_mean_std


def batch_normalise(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


def test_conditional_batch_norm_uses_each_samples_class() -> None:
    torch.manual_seed(0)
    norm = ConditionalBatchNorm2d(num_features=3, num_classes=4).double()
    with torch.no_grad():
        norm.gamma.weight.copy_(torch.arange(12, dtype=torch.float64).view(4, 3) + 1)
        norm.beta.weight.copy_(-torch.arange(12, dtype=torch.float64).view(4, 3))
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    labels = torch.tensor([2, 0, 3, 3, 1])
    gamma = norm.gamma.weight[labels][:, :, None, None]
    beta = norm.beta.weight[labels][:, :, None, None]
    torch.testing.assert_close(norm(x, labels), gamma * batch_normalise(x) + beta)
    fresh = ConditionalBatchNorm2d(3, 4)  # starts as plain batch norm
    torch.testing.assert_close(fresh(x.float(), labels), batch_normalise(x.float()))


def test_adain_gives_the_target_channel_statistics() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64) * 4 + 1
    mean = torch.tensor([[0.5, -2.0, 3.0], [1.0, 0.0, -1.0]], dtype=torch.float64)
    std = torch.tensor([[0.1, 2.0, 1.0], [3.0, 0.5, 0.25]], dtype=torch.float64)
    y = adain(x, mean, std, eps=1e-12)
    got_mean, got_std = channel_mean_std(y, eps=0.0)
    torch.testing.assert_close(got_mean, mean)
    torch.testing.assert_close(got_std, std)
    # style transfer form: content takes the style image's statistics
    style = torch.randn(2, 3, 5, 5, dtype=torch.float64) * 3 - 2
    transferred = adain(x, *channel_mean_std(style, eps=0.0), eps=1e-12)
    torch.testing.assert_close(channel_mean_std(transferred, 0.0)[1], channel_mean_std(style, 0.0)[1])


def test_adain_module_predicts_scale_and_bias_from_the_style() -> None:
    torch.manual_seed(0)
    layer = AdaIN(num_features=4, style_dim=6, eps=1e-12).double()
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    style = torch.randn(3, 6, dtype=torch.float64)
    y = layer(x, style)
    params = style @ layer.style_to_params.weight.T + layer.style_to_params.bias  # [B, 2C]
    scale, bias = params[:, :4], params[:, 4:]
    got_mean, got_std = channel_mean_std(y, eps=0.0)
    torch.testing.assert_close(got_mean, bias)
    torch.testing.assert_close(got_std, scale.abs())
    fresh = AdaIN(4, 6)
    torch.testing.assert_close(fresh.style_params(torch.zeros(1, 6))[0], torch.ones(1, 4))  # scale starts at 1


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_spade_equals_its_formula_from_its_submodules(norm: str) -> None:
    torch.manual_seed(0)
    layer = SPADE(num_features=3, label_channels=2, hidden=5, norm=norm).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    label_map = torch.randn(2, 2, 8, 8, dtype=torch.float64)  # twice x's size: nearest-resized
    resized = label_map[:, :, ::2, ::2]
    conv_shared = layer.shared[0]
    hidden = F.relu(F.conv2d(resized, conv_shared.weight, conv_shared.bias, padding=1))
    gamma = F.conv2d(hidden, layer.conv_gamma.weight, layer.conv_gamma.bias, padding=1)
    beta = F.conv2d(hidden, layer.conv_beta.weight, layer.conv_beta.bias, padding=1)
    if norm == "batch":
        normalised = batch_normalise(x)
    else:
        mean, var = x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), unbiased=False, keepdim=True)
        normalised = (x - mean) / (var + 1e-5).sqrt()
    torch.testing.assert_close(layer(x, label_map), normalised * (1 + gamma) + beta)


def test_spade_output_varies_spatially_with_the_label_map() -> None:
    torch.manual_seed(0)
    layer = SPADE(num_features=2, label_channels=2, hidden=8, norm="batch")
    x = torch.ones(1, 2, 8, 8) * torch.tensor([1.0, -2.0])[None, :, None, None]  # normalises to 0
    label_map = torch.zeros(1, 2, 8, 8)
    label_map[:, 0, :, :4] = 1  # class 0 on the left half
    label_map[:, 1, :, 4:] = 1  # class 1 on the right half
    y = layer(x, label_map)  # = beta(label map): constant within each half away from the borders
    left, right = y[0, :, 2:6, 1:2], y[0, :, 2:6, 6:7]
    torch.testing.assert_close(left, left[:, :1].expand_as(left))
    assert (left[:, 0] - right[:, 0]).abs().max() > 1e-3
    uniform = layer(x, torch.ones(1, 2, 8, 8))[0, :, 2:-2, 2:-2]  # one label: no variation (5x5 field)
    torch.testing.assert_close(uniform, uniform[:, :1, :1].expand_as(uniform))
    with pytest.raises(ValueError, match="norm"):
        SPADE(2, 2, norm="layer")


def test_generator_block_shapes_and_conditional_norm_injection() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4)
    up = ResidualGeneratorBlock(8, 4, upsample=True, norm=lambda c: ConditionalBatchNorm2d(c, 3))
    assert up(x, torch.tensor([0, 2])).shape == (2, 4, 8, 8)
    same = ResidualGeneratorBlock(8, 8, norm=lambda c: AdaIN(c, 5), kernel_size=5)
    assert isinstance(same.shortcut, nn.Identity)
    assert same(x, torch.randn(2, 5)).shape == (2, 8, 4, 4)
    spade = ResidualGeneratorBlock(8, 6, upsample=True, norm=lambda c: SPADE(c, 3, hidden=4))
    assert spade(x, torch.randn(2, 3, 16, 16)).shape == (2, 6, 8, 8)
    plain = ResidualGeneratorBlock(8, 8)  # batch norm, no condition
    assert plain(x).shape == (2, 8, 4, 4)


def test_generator_block_formula_without_norm() -> None:
    torch.manual_seed(0)
    block = ResidualGeneratorBlock(3, 5, upsample=True, norm=None).double()
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest 2x
    residual = block.conv2(F.relu(block.conv1(F.relu(up))))
    torch.testing.assert_close(block(x), residual + block.shortcut(up))


def test_discriminator_block_shapes_and_formula() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    first = ResidualDiscriminatorBlock(3, 6, preactivation=False, spectral=False).double()
    xd = x.double()
    residual = F.avg_pool2d(first.conv2(F.relu(first.conv1(xd))), 2)
    torch.testing.assert_close(first(xd), residual + first.shortcut(F.avg_pool2d(xd, 2)))
    middle = ResidualDiscriminatorBlock(6, 6, downsample=False)
    assert middle.shortcut is None and middle(torch.randn(2, 6, 4, 4)).shape == (2, 6, 4, 4)
    down = ResidualDiscriminatorBlock(3, 12, activation=lambda: nn.LeakyReLU(0.2))
    assert down(x).shape == (2, 12, 4, 4)


@pytest.mark.parametrize("make", [lambda: snlinear(7, 5), lambda: snconv2d(3, 4, 3, padding=1),
                                  lambda: snembedding(6, 4)])
def test_spectral_norm_top_singular_value_is_one(make) -> None:
    torch.manual_seed(0)
    layer = make()
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(10.0)  # far from norm 1 before normalisation
    for _ in range(20):  # each training-mode forward runs one power iteration
        _ = layer.weight
    sigma = torch.linalg.svdvals(layer.weight.detach().flatten(1))[0]
    assert sigma.item() == pytest.approx(1.0, abs=1e-3)
    plain = snlinear(7, 5, spectral=False)
    assert not hasattr(plain, "parametrizations")
