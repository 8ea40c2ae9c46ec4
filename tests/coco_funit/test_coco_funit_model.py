"""COCO-FUNIT / FUNIT networks: exact reference parameter counts, what the FUNIT flag removes, shapes,
K-shot averaging, content conditioning, gradients, output range, reflect padding, config errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from imaginate.systems.coco_funit.model import (
    COCOFUNITDiscriminator,
    COCOFUNITGenerator,
    COCOFUNITModelConfig,
    build_networks,
    small_model_config,
)

REFERENCE_GENERATOR_PARAMETERS = 121_562_307  # reference animal-faces COCO-FUNIT generator
REFERENCE_DISCRIMINATOR_PARAMETERS = 92_038_977  # its discriminator, 149 classes


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def linear_parameters(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


def content_conditioning_parameters(cfg: COCOFUNITModelConfig) -> int:
    """CSB + content MLP (C_c -> H -> S) + style MLP (S + U -> H -> S): what FUNIT does not have."""
    content_channels = cfg.num_filters * 2**cfg.num_downsamples_content
    hidden, style, usb = cfg.num_filters_mlp, cfg.style_dims, cfg.usb_dims
    content_mlp = linear_parameters(content_channels, hidden) + linear_parameters(hidden, style)
    style_mlp = linear_parameters(style + usb, hidden) + linear_parameters(hidden, style)
    return usb + content_mlp + style_mlp


@pytest.fixture(scope="module")
def paper_networks() -> tuple[COCOFUNITGenerator, COCOFUNITDiscriminator, COCOFUNITGenerator]:
    with torch.device("meta"):  # no memory, no random init
        generator, discriminator = build_networks(COCOFUNITModelConfig())
        funit = COCOFUNITGenerator.from_config(COCOFUNITModelConfig(content_conditioned=False))
    return generator, discriminator, funit


def test_paper_config_matches_the_reference_parameter_counts(paper_networks) -> None:
    generator, discriminator, funit = paper_networks
    assert count(generator) == REFERENCE_GENERATOR_PARAMETERS
    assert count(discriminator) == REFERENCE_DISCRIMINATOR_PARAMETERS
    assert count(funit) == REFERENCE_GENERATOR_PARAMETERS - 575_104  # 120,987,203
    # spectral norm's power-iteration vectors are buffers, not parameters
    assert any(name.endswith("_u") or name.endswith("_v") for name, _ in discriminator.named_buffers())


def test_paper_shapes_on_meta(paper_networks) -> None:
    generator, discriminator, _ = paper_networks
    images = torch.empty(2, 3, 256, 256, device="meta")
    labels = torch.zeros(2, dtype=torch.long, device="meta")
    with torch.no_grad():
        content = generator.encode_content(images)
        assert content.shape == (2, 1024, 16, 16)
        assert generator.encode_style(images).shape == (2, 64)
        assert generator.style_code(content, images).shape == (2, 64)
        assert generator(images, images).shape == (2, 3, 256, 256)
        logits, features = discriminator(images, labels)
    assert logits.shape == (2, 1, 8, 8)
    assert features.shape == (2, 1024)


@pytest.mark.parametrize("cfg", [COCOFUNITModelConfig(), small_model_config()], ids=["paper", "small"])
def test_funit_flag_removes_exactly_the_content_conditioning(cfg: COCOFUNITModelConfig) -> None:
    with torch.device("meta"):
        coco = COCOFUNITGenerator.from_config(cfg)
        funit = COCOFUNITGenerator.from_config(replace(cfg, content_conditioned=False))
    coco_shapes = {name: p.shape for name, p in coco.named_parameters()}
    funit_shapes = {name: p.shape for name, p in funit.named_parameters()}
    removed = set(coco_shapes) - set(funit_shapes)
    assert set(funit_shapes) <= set(coco_shapes)
    assert {name.split(".")[0] for name in removed} == {"constant_style_bias", "content_mlp", "style_mlp"}
    assert all(coco_shapes[name] == shape for name, shape in funit_shapes.items())  # the rest is identical
    assert count(coco) - count(funit) == content_conditioning_parameters(cfg)
    # In the reference FUNIT the AdaIN MLP reads the raw style (S); COCO-FUNIT's style MLP reads [style, CSB]
    # (S + U) and outputs S, so the AdaIN MLP is the same S -> H -> H in both.
    assert coco.style_mlp[0].in_features == cfg.style_dims + cfg.usb_dims
    assert coco.content_mlp[0].in_features == cfg.num_filters * 2**cfg.num_downsamples_content
    assert coco.adain_mlp[0].in_features == funit.adain_mlp[0].in_features == cfg.style_dims


@pytest.fixture
def small() -> tuple[COCOFUNITModelConfig, COCOFUNITGenerator, COCOFUNITDiscriminator]:
    torch.manual_seed(0)
    cfg = small_model_config()
    generator, discriminator = build_networks(cfg)
    return cfg, generator, discriminator


def test_small_config_shapes(small) -> None:
    cfg, generator, discriminator = small
    content_images, style_images = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 64, 64)
    content = generator.encode_content(content_images)
    assert content.shape == (3, 16 * 4, 16, 16)
    assert generator.encode_style(style_images).shape == (3, cfg.style_dims)
    code = generator.style_code(content, style_images)
    assert code.shape == (3, cfg.style_dims)
    assert generator.decode(content, code).shape == (3, 3, 64, 64)
    assert generator(content_images, style_images.unsqueeze(1).expand(-1, 2, -1, -1, -1)).shape == (3, 3, 64, 64)
    logits, features = discriminator(content_images, torch.tensor([0, 4, 9]))
    assert logits.shape == (3, 1, 16, 16)
    assert features.shape == (3, 128)


@pytest.mark.parametrize("content_conditioned", [True, False])
def test_k_shot_averages_the_raw_styles(content_conditioned: bool) -> None:
    # FUNIT averages the style encoder's outputs of the K examples before the (non-linear) MLPs.
    torch.manual_seed(0)
    generator = COCOFUNITGenerator.from_config(small_model_config(content_conditioned=content_conditioned))
    content = generator.encode_content(torch.randn(2, 3, 64, 64))
    shots = torch.randn(2, 3, 3, 64, 64)  # [B, K, C, H, W]
    per_example = torch.stack([generator.encode_style(shots[:, k]) for k in range(3)], dim=1)  # [B, K, S]
    expected = generator.style_code(content, per_example.mean(dim=1))
    torch.testing.assert_close(generator.style_code(content, shots), expected)
    torch.testing.assert_close(generator.style_code(content, per_example), expected)
    torch.testing.assert_close(generator.raw_style(shots), per_example.mean(dim=1))
    one_shot = generator.style_code(content, shots[:, :1])
    torch.testing.assert_close(one_shot, generator.style_code(content, shots[:, 0]))
    assert not torch.allclose(one_shot, expected)
    with pytest.raises(ValueError, match="style must be"):
        generator.style_code(content, torch.randn(2))


def test_style_code_depends_on_the_content_only_in_coco_funit() -> None:
    torch.manual_seed(0)
    coco = COCOFUNITGenerator.from_config(small_model_config())
    funit = COCOFUNITGenerator.from_config(small_model_config(content_conditioned=False))
    content_images = torch.randn(2, 3, 64, 64)
    other_content_images = torch.randn(2, 3, 64, 64) * 2 + 0.5
    style_images = torch.randn(2, 3, 64, 64)
    for generator in (coco, funit):
        a = generator.encode_content(content_images)
        b = generator.encode_content(other_content_images)
        code_a, code_b = generator.style_code(a, style_images), generator.style_code(b, style_images)
        if generator is coco:
            assert not torch.allclose(code_a, code_b)
            assert (code_a >= 0).all()  # product of two ReLU outputs, as in the reference
        else:
            torch.testing.assert_close(code_a, code_b, rtol=0, atol=0)
            torch.testing.assert_close(code_a, generator.encode_style(style_images))


@pytest.mark.parametrize("content_conditioned", [True, False])
def test_forward_backward_gives_finite_gradients_everywhere(content_conditioned: bool) -> None:
    torch.manual_seed(0)
    generator, discriminator = build_networks(small_model_config(content_conditioned=content_conditioned))
    content_images, style_images = torch.randn(2, 3, 64, 64), torch.randn(2, 2, 3, 64, 64)
    labels = torch.tensor([1, 7])
    translation = generator(content_images, style_images)
    logits, features = discriminator(translation, labels)
    (-logits.mean() + features.abs().mean()).backward()  # linear in the logits: every sample contributes
    for module in (generator, discriminator):
        for name, parameter in module.named_parameters():
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name
    used = discriminator.class_embedding.weight.grad.abs().sum(dim=1) > 0
    assert used.tolist() == [i in (1, 7) for i in range(10)]  # projection touches only the labels' rows


def test_decoder_output_is_in_the_tanh_range(small) -> None:
    _, generator, _ = small
    content = generator.encode_content(torch.randn(2, 3, 64, 64)) * 50
    images = generator.decode(content, torch.rand(2, 16) * 100)
    assert images.min() >= -1 and images.max() <= 1
    assert images.abs().max() > 0.99  # saturates at large inputs: a tanh, not a clamp of a small range


def test_interpolate_style() -> None:
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    torch.testing.assert_close(COCOFUNITGenerator.interpolate_style(a, b, 0.0), a)
    torch.testing.assert_close(COCOFUNITGenerator.interpolate_style(a, b, 1.0), b)
    torch.testing.assert_close(COCOFUNITGenerator.interpolate_style(a, b, 0.25), 0.75 * a + 0.25 * b)
    alpha = torch.tensor([0.0, 0.5, 1.0])
    mixed = COCOFUNITGenerator.interpolate_style(a, b, alpha)
    torch.testing.assert_close(mixed, torch.stack([a[0], (a[1] + b[1]) / 2, b[2]]))


def test_every_padded_conv_reflects(small) -> None:
    _, generator, discriminator = small
    padded = [m for net in (generator, discriminator) for m in net.modules()
              if isinstance(m, nn.Conv2d) and m.padding[0] > 0]
    assert padded and all(m.padding_mode == "reflect" for m in padded)
    # the spectral-norm (parametrised) convs of the discriminator honour it numerically
    stem = discriminator.blocks[0]
    discriminator.eval()  # no power iteration, so .weight is fixed
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(stem(x), F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), stem.weight, stem.bias))


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_filters", 0), ("num_downsamples_style", 1), ("num_mlp_blocks", 1), ("usb_dims", 0),
     ("image_size", 100), ("d_max_num_filters", 8), ("num_classes", 0), ("num_res_blocks", -1)],
)
def test_config_rejects_impossible_values(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=rf"^model\.{field}:"):
        COCOFUNITModelConfig(**{field: value})
