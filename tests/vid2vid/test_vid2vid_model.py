"""vid2vid networks: shapes at the tiny and paper sizes, Multi-SPADE's use of the guidance, config errors,
and the losses against hand computations."""

import pytest
import torch

from imaginate.config import ConfigError
from imaginate.nn.spade import MultiSPADE, SPADEGenerator
from imaginate.systems.vid2vid.losses import flow_loss, guidance_loss, masked_l1
from imaginate.systems.vid2vid.model import (
    TemporalDiscriminator,
    Vid2VidGenerator,
    Vid2VidModelConfig,
    count_parameters,
)

TINY = dict(num_labels=6, height=32, width=64, base_filters=4, max_filters=16, num_layers=3, num_downsamples=2,
            embed_filters=4, embed_max_filters=8, spade_hidden=8, num_multi_spade=2, num_prev=2, flow_filters=4,
            flow_downsamples=2, flow_blocks=1, spectral=False, first_frame_filters=4, first_frame_upsamples=2,
            first_frame_hidden=8)


def inputs(batch=2, labels=6, height=32, width=64, prev=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, labels, (batch, prev + 1, height, width), generator=g)
    onehot = torch.nn.functional.one_hot(ids, labels).permute(0, 1, 4, 2, 3).float()  # [B, P+1, L, H, W]
    images = torch.rand(batch, prev, 3, height, width, generator=g) * 2 - 1
    guidance = torch.rand(batch, 3, height, width, generator=g) * 2 - 1
    return onehot[:, -1], onehot[:, :-1], images, guidance


@pytest.mark.parametrize("mode", ["vid2vid", "wc_vid2vid"])
def test_tiny_generator_shapes_and_gradients(mode):
    torch.manual_seed(0)
    net = Vid2VidGenerator(Vid2VidModelConfig(mode=mode, **TINY))
    labels, prev_labels, prev_images, guidance = inputs()
    out = net(labels, prev_labels, prev_images, guidance, torch.ones(2, 1, 32, 64))
    assert out["image"].shape == (2, 3, 32, 64) and out["flow"].shape == (2, 2, 32, 64)
    assert out["mask"].shape == (2, 1, 32, 64) and 0 <= float(out["mask"].detach().min()) <= float(out["mask"].detach().max()) <= 1
    assert float(out["image"].detach().abs().max()) <= 1
    out["image"].mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.flow.parameters() if p.grad is not None)
    assert net.flow.to_flow.weight.grad is not None  # the flow branch is trained through the warp
    assert net.generate_first(labels).shape == (2, 3, 32, 64)


def test_paper_generator_builds_at_the_reference_size():
    cfg = Vid2VidModelConfig()  # defaults = the paper preset: 35 labels, 512x1024, 32..1024 filters, 7 layers
    assert (cfg.num_labels, cfg.height, cfg.width, cfg.num_layers, cfg.num_downsamples) == (35, 512, 1024, 7, 4)
    with torch.device("meta"):
        net = Vid2VidGenerator(cfg)
        labels = torch.zeros(1, 35, 512, 1024)
        out = net(labels, torch.zeros(1, 2, 35, 512, 1024), torch.zeros(1, 2, 3, 512, 1024),
                  torch.zeros(1, 3, 512, 1024), torch.zeros(1, 1, 512, 1024))
    assert out["image"].shape == (1, 3, 512, 1024)
    widths = [b.conv2.out_channels for b in net.blocks]
    assert widths == [1024, 1024, 512, 256, 128, 64, 32]  # min(1024, 32 * 2**(7 - k)) after block k
    assert 80e6 < count_parameters(net) < 160e6
    assert any("parametrizations" in name for name, _ in net.blocks.named_parameters())  # spectral norm


def test_multi_spade_uses_the_guidance_only_where_its_mask_is_set():
    torch.manual_seed(0)
    net = Vid2VidGenerator(Vid2VidModelConfig(mode="wc_vid2vid", **TINY)).eval()
    labels, prev_labels, prev_images, guidance = inputs()
    other = torch.rand_like(guidance) * 2 - 1
    ones, zeros = torch.ones(2, 1, 32, 64), torch.zeros(2, 1, 32, 64)
    with torch.no_grad():
        a = net(labels, prev_labels, prev_images, guidance, ones)["image"]
        b = net(labels, prev_labels, prev_images, other, ones)["image"]
        c = net(labels, prev_labels, prev_images, guidance, zeros)["image"]
        d = net(labels, prev_labels, prev_images, other, zeros)["image"]
        e = net(labels, prev_labels, prev_images, None, None)["image"]
    assert (a - b).abs().mean() > 1e-3  # the guidance image changes the output
    torch.testing.assert_close(c, d)  # ... and is ignored where its mask is 0
    torch.testing.assert_close(c, e)  # an empty mask = no guidance at all


def test_vid2vid_mode_has_no_guidance_layer():
    torch.manual_seed(0)
    net = Vid2VidGenerator(Vid2VidModelConfig(mode="vid2vid", **TINY)).eval()
    labels, prev_labels, prev_images, guidance = inputs()
    with torch.no_grad():
        a = net(labels, prev_labels, prev_images, guidance, torch.ones(2, 1, 32, 64))["image"]
        b = net(labels, prev_labels, prev_images, -guidance, torch.ones(2, 1, 32, 64))["image"]
    torch.testing.assert_close(a, b)
    assert all(len(block.norm1.modulations) == 2 for block in net.blocks[-2:])  # labels, warped frame


def test_multi_spade_modulates_in_sequence_and_skips_missing_maps():
    torch.manual_seed(0)
    layer = MultiSPADE(4, [3, 2], hidden=5).eval()
    x, m1, m2 = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 8, 8), torch.randn(2, 2, 4, 4)
    h = torch.nn.functional.instance_norm(x)
    g1, b1 = layer.modulations[0].modulation(m1, (8, 8))
    g2, b2 = layer.modulations[1].modulation(m2, (8, 8))
    expected = (h * (1 + g1) + b1) * (1 + g2) + b2
    torch.testing.assert_close(layer(x, m1, m2), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x, m1, None), h * (1 + g1) + b1, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="takes 2 maps"):
        layer(x, m1)


def test_first_frame_generator_is_the_shared_spade_generator():
    from imaginate.systems.gancraft.pseudo_gt import SPADETranslator

    assert SPADETranslator is SPADEGenerator
    net = Vid2VidGenerator(Vid2VidModelConfig(**TINY))
    assert isinstance(net.first_frame, SPADEGenerator)


def test_temporal_discriminator_shapes():
    d = TemporalDiscriminator(3, 2, 3, 8)
    out = d(torch.randn(2, 3, 3, 32, 64), torch.randn(2, 2, 2, 32, 64))
    assert len(out.logits) == 2 and out.logits[0].shape == (2, 1, 8, 16)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.mode"):
        Vid2VidModelConfig(mode="wc")
    with pytest.raises(ConfigError, match="model.height"):
        Vid2VidModelConfig(**{**TINY, "height": 36})
    with pytest.raises(ConfigError, match="model.num_multi_spade"):
        Vid2VidModelConfig(**{**TINY, "num_multi_spade": 4})


def test_masked_losses_against_hand_computation():
    a, b = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert float(masked_l1(a, b, mask)) == pytest.approx(1.0)
    assert float(guidance_loss(a, b, torch.zeros_like(mask))) == 0.0  # no guidance, no loss
    flow, true = torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 2.0)
    occ = torch.full((1, 1, 2, 2), 0.5)
    # flow L1 on the one visible pixel (2) + mask L1 to visibility: mean(|0.5 - [1, 0, 0, 0]|) = 0.5
    assert float(flow_loss(flow, occ, true, mask)) == pytest.approx(2.5)
