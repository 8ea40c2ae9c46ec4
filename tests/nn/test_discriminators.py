"""Discriminators: per-scale shapes and features, the projection term, patch mode, aux classifier."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from imaginate.nn.diffaugment import DiffAugment
from imaginate.nn.discriminators import (
    AuxiliaryClassifierHead,
    MultiScalePatchDiscriminator,
    PatchDiscriminator,
    ProjectionDiscriminator,
)
from imaginate.nn.gan_losses import d_loss, feature_matching_loss, g_loss
from imaginate.nn.regularizers import lazy_penalty, r1_penalty


def test_multi_scale_patch_discriminator_shapes_and_features() -> None:
    torch.manual_seed(0)
    d = MultiScalePatchDiscriminator(in_channels=5, num_scales=3, num_layers=3, base_channels=4, max_channels=12)
    images, labels = torch.randn(2, 3, 32, 32), torch.randn(2, 2, 32, 32)
    logits, features = d(images, condition=labels)  # a NamedTuple unpacks as (logits, features)
    assert [tuple(t.shape) for t in logits] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2)]
    assert len(features) == 3 and all(len(scale) == 3 for scale in features)
    assert [tuple(t.shape) for t in features[0]] == [(2, 4, 16, 16), (2, 8, 8, 8), (2, 12, 8, 8)]
    assert [tuple(t.shape) for t in features[2]] == [(2, 4, 4, 4), (2, 8, 2, 2), (2, 12, 2, 2)]
    # each scale sees the previous scale's input average-pooled (eval: spectral norm weights fixed)
    d.eval()
    half = MultiScalePatchDiscriminator.downsample(torch.cat([images, labels], 1))
    torch.testing.assert_close(d.scales[1](half)[0], d(images, labels).logits[1])
    d.train()
    # the outputs plug straight into the losses
    fake = d(torch.randn(2, 3, 32, 32), labels)
    loss = d_loss("hinge", logits, fake.logits) + g_loss("least_squares", fake.logits)
    loss = loss + feature_matching_loss(features, fake.features)
    loss.backward()
    assert all(p.grad is not None for p in d.parameters())


def test_patch_discriminator_options() -> None:
    d = PatchDiscriminator(3, num_layers=1, base_channels=4, spectral=False, norm="instance")
    logits, features = d(torch.randn(1, 3, 8, 8))
    assert logits.shape == (1, 1, 8, 8) and len(features) == 1  # one stride-1 layer
    odd = MultiScalePatchDiscriminator(3, num_scales=2, num_layers=2, base_channels=4, norm="batch")
    assert [tuple(t.shape) for t in odd(torch.randn(2, 3, 10, 14)).logits] == [(2, 1, 5, 7), (2, 1, 3, 4)]
    with pytest.raises(ValueError, match="norm"):
        PatchDiscriminator(3, norm="group")


def test_projection_term_is_the_class_embedding_inner_product() -> None:
    torch.manual_seed(0)
    d = ProjectionDiscriminator(in_channels=1, num_classes=5, base_channels=4, num_blocks=3)
    d.eval()  # spectral norm: no power iteration, so weights are fixed between calls
    x = torch.randn(4, 1, 16, 16)
    labels = torch.tensor([0, 4, 2, 2])
    logits, pooled = d(x, labels, return_features=True)
    assert logits.shape == (4,) and pooled.shape == (4, d.feature_channels) == (4, 16)
    unconditional = d.to_logit(pooled).squeeze(1)
    projection = (d.embedding.weight[labels] * pooled).sum(1)
    torch.testing.assert_close(logits, unconditional + projection)
    # changing the class changes the logit by <e_a - e_b, pooled>
    other = torch.tensor([1, 1, 1, 1])
    delta = ((d.embedding.weight[labels] - d.embedding.weight[other]) * pooled).sum(1)
    torch.testing.assert_close(logits - d(x, other), delta)
    # pooled = global sum of the activated last block's output
    torch.testing.assert_close(pooled, F.relu(d.blocks(x)).sum(dim=(2, 3)))
    with pytest.raises(ValueError, match="needs labels"):
        d(x)


def test_projection_patch_mode_and_aux_classifier() -> None:
    torch.manual_seed(0)
    d = ProjectionDiscriminator(3, num_classes=4, base_channels=4, num_blocks=3, patch=True, aux_classifier=True)
    d.eval()
    x, labels = torch.randn(2, 3, 32, 32), torch.tensor([3, 0])
    logits, phi = d(x, labels, return_features=True)
    assert logits.shape == (2, 1, 8, 8) and phi.shape == (2, 16, 8, 8)
    projection = (d.embedding.weight[labels][:, :, None, None] * phi).sum(1, keepdim=True)
    torch.testing.assert_close(logits, d.to_logit(phi) + projection)
    assert d.aux_classifier(phi).shape == (2, 4)
    assert AuxiliaryClassifierHead(16, 4)(phi.mean(dim=(2, 3))).shape == (2, 4)


def test_unconditional_projection_discriminator_and_validation() -> None:
    d = ProjectionDiscriminator(3, num_classes=0, base_channels=4, num_blocks=2, spectral=False)
    assert d.embedding is None and d(torch.randn(2, 3, 8, 8)).shape == (2,)
    with pytest.raises(ValueError, match="num_blocks"):
        ProjectionDiscriminator(3, 2, num_blocks=0)
    with pytest.raises(ValueError, match="aux_classifier"):
        ProjectionDiscriminator(3, 0, aux_classifier=True)


def test_projection_discriminator_learns_with_hinge_r1_and_diffaugment() -> None:
    """The parts together: D's hinge loss falls when it learns to tell class images from noise."""
    torch.manual_seed(0)
    d = ProjectionDiscriminator(1, num_classes=2, base_channels=8, num_blocks=2)
    optimizer = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.999))
    augment = DiffAugment("translation")
    labels = torch.tensor([0, 1] * 4)
    real = torch.where(labels[:, None, None, None] == 0, 1.0, -1.0) * torch.ones(8, 1, 8, 8)
    losses = []
    for step in range(40):
        fake = torch.randn(8, 1, 8, 8)
        loss = d_loss("hinge", d(augment(real), labels), d(augment(fake), labels))
        penalty = lazy_penalty(step, 4, lambda: r1_penalty(d, real, gamma=0.1, condition=labels))
        total = loss if penalty is None else loss + penalty
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
