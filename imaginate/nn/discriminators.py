"""Discriminators: multi-scale PatchGAN (pix2pixHD) and residual projection discriminator (SNGAN).

Both return raw logits (no sigmoid) meant for ``imaginate.nn.gan_losses``, and expose the features
that feature matching (``feature_matching_loss``) compares.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.nn.blocks import ActivationFactory, ResidualDiscriminatorBlock, snconv2d, snembedding, snlinear

_PATCH_NORMS = ("none", "instance", "batch")


class PatchDiscriminator(nn.Module):
    """A PatchGAN: ``num_layers`` conv + LeakyReLU(0.2) layers, then a conv to one logit per patch.

    Layer i has ``min(base_channels * 2**i, max_channels)`` channels and stride 2, except the last
    of the ``num_layers`` (stride 1). With the default odd ``kernel_size`` and ``padding =
    (kernel_size - 1) // 2``, an input ``[B, C, H, W]`` (H, W divisible by ``2**(num_layers-1)``)
    gives logits ``[B, 1, H / 2**(num_layers-1), W / 2**(num_layers-1)]``.

    Args:
        in_channels: input channels (image channels + any concatenated condition channels).
        num_layers: number of feature layers (>= 1).
        base_channels: channels of the first layer.
        max_channels: channel cap.
        kernel_size: kernel of every conv.
        spectral: spectral norm on every conv.
        norm: ``"none"``, ``"instance"`` or ``"batch"`` after every conv but the first and last.
    """

    def __init__(
        self,
        in_channels: int,
        num_layers: int = 4,
        base_channels: int = 64,
        max_channels: int = 512,
        kernel_size: int = 3,
        spectral: bool = True,
        norm: str = "none",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if norm not in _PATCH_NORMS:
            raise ValueError(f"patch discriminator norm {norm!r} is not one of {', '.join(_PATCH_NORMS)}")
        padding = (kernel_size - 1) // 2
        layers = []
        channels = in_channels
        for i in range(num_layers):
            out = min(base_channels * 2**i, max_channels)
            stride = 2 if i < num_layers - 1 else 1
            parts: list[nn.Module] = [snconv2d(channels, out, kernel_size, stride, padding, spectral=spectral)]
            if i > 0 and norm == "instance":
                parts.append(nn.InstanceNorm2d(out, affine=False))
            elif i > 0 and norm == "batch":
                parts.append(nn.BatchNorm2d(out))
            parts.append(nn.LeakyReLU(0.2))
            layers.append(nn.Sequential(*parts))
            channels = out
        self.layers = nn.ModuleList(layers)
        self.to_logits = snconv2d(channels, 1, kernel_size, 1, padding, spectral=spectral)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x: ``[B, C, H, W]`` -> (logits ``[B, 1, h, w]``, one feature map per layer)."""
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.to_logits(x), features


class MultiScaleOutput(NamedTuple):
    logits: list[Tensor]  # per scale: [B, 1, h_s, w_s]
    features: list[list[Tensor]]  # per scale, per layer: [B, C_l, h_sl, w_sl]


class MultiScalePatchDiscriminator(nn.Module):
    """pix2pixHD's multi-scale discriminator: one PatchGAN per scale, scale s sees the input
    downsampled s times by a 3x3 stride-2 average pool (padding 1, padding not counted).

    ``forward(x)`` returns ``MultiScaleOutput(logits, features)``: ``logits[s]`` is
    ``[B, 1, H / 2**(s + num_layers - 1), ...]`` and ``features[s]`` the list of that scale's layer
    outputs, ready for ``d_loss``/``g_loss`` and ``feature_matching_loss``.

    Args:
        in_channels: input channels (image + condition channels when ``condition`` is given).
        num_scales: number of scales (pix2pixHD: 3; vid2vid: 2).
        num_layers: feature layers per PatchGAN.
        base_channels: channels of each PatchGAN's first layer.
        spectral: spectral norm on every conv.
        max_channels: channel cap per layer.
        kernel_size: conv kernel.
        norm: ``"none"``, ``"instance"`` or ``"batch"`` inside each PatchGAN.
    """

    def __init__(
        self,
        in_channels: int,
        num_scales: int = 3,
        num_layers: int = 4,
        base_channels: int = 64,
        spectral: bool = True,
        max_channels: int = 512,
        kernel_size: int = 3,
        norm: str = "none",
    ) -> None:
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_channels, num_layers, base_channels, max_channels, kernel_size, spectral, norm)
            for _ in range(num_scales)
        )

    @staticmethod
    def downsample(x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, C, ceil(H/2), ceil(W/2)]`` by 3x3 average pooling, stride 2."""
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> MultiScaleOutput:
        """x: ``[B, C, H, W]``; condition: optional ``[B, L, H, W]`` concatenated to x (channels)."""
        if condition is not None:
            x = torch.cat([x, condition], dim=1)  # [B, C + L, H, W]
        logits, features = [], []
        for s, discriminator in enumerate(self.scales):
            if s > 0:
                x = self.downsample(x)
            scale_logits, scale_features = discriminator(x)
            logits.append(scale_logits)
            features.append(scale_features)
        return MultiScaleOutput(logits, features)


class AuxiliaryClassifierHead(nn.Module):
    """AC-GAN head: class logits from pooled discriminator features (train with cross-entropy).

    Args:
        in_features: feature channels C.
        num_classes: number of classes K.
        spectral: spectral norm on the linear layer.
    """

    def __init__(self, in_features: int, num_classes: int, spectral: bool = True) -> None:
        super().__init__()
        self.classifier = snlinear(in_features, num_classes, spectral=spectral)

    def forward(self, features: Tensor) -> Tensor:
        """features ``[B, C]`` or ``[B, C, H, W]`` (spatially averaged first) -> logits ``[B, K]``."""
        if features.dim() == 4:
            features = features.mean(dim=(2, 3))
        return self.classifier(features)


class ProjectionDiscriminator(nn.Module):
    """Residual discriminator with projection conditioning (Miyato & Koyama 2018).

    ``phi = act(blocks(x))`` (``[B, C, h, w]``); global mode: ``pooled = sum_{h,w} phi`` (``[B, C]``)
    and ``logit = linear(pooled) + <embedding[y], pooled>`` (``[B]``). Patch mode (``patch=True``,
    as COCO-FUNIT): the same per location, ``logit = conv1x1(phi) + <embedding[y], phi>``
    (``[B, 1, h, w]``). Block i has ``min(base_channels * 2**i, max_channels)`` channels; every
    block but the last halves the resolution; the first block has no pre-activation.

    ``forward(x, labels, return_features=True)`` also returns the features (``pooled`` in global
    mode, ``phi`` in patch mode) for feature matching or the auxiliary classifier.

    Args:
        in_channels: image channels.
        num_classes: number of classes for the projection; 0 for an unconditional D.
        base_channels: channels of the first block.
        num_blocks: number of residual blocks (>= 1).
        spectral: spectral norm on every conv, the linear layer and the class embedding.
        max_channels: channel cap.
        patch: per-location logits instead of global sum pooling.
        aux_classifier: also build ``self.aux_classifier`` (an ``AuxiliaryClassifierHead``).
        activation: factory of the non-linearity (default ``nn.ReLU``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_channels: int = 64,
        num_blocks: int = 4,
        spectral: bool = True,
        max_channels: int = 1024,
        patch: bool = False,
        aux_classifier: bool = False,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if num_classes < 0 or (aux_classifier and num_classes == 0):
            raise ValueError(f"num_classes must be >= 0 (>= 1 with aux_classifier), got {num_classes}")
        self.num_classes = num_classes
        self.patch = patch
        blocks, channels = [], in_channels
        for i in range(num_blocks):
            out = min(base_channels * 2**i, max_channels)
            blocks.append(
                ResidualDiscriminatorBlock(
                    channels, out, downsample=i < num_blocks - 1, spectral=spectral,
                    preactivation=i > 0, activation=activation,
                )
            )
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.activation = activation()
        self.feature_channels = channels
        self.to_logit: nn.Module = (
            snconv2d(channels, 1, 1, spectral=spectral) if patch else snlinear(channels, 1, spectral=spectral)
        )
        self.embedding = snembedding(num_classes, channels, spectral=spectral) if num_classes > 0 else None
        self.aux_classifier = AuxiliaryClassifierHead(channels, num_classes, spectral) if aux_classifier else None

    def forward(
        self, x: Tensor, labels: Tensor | None = None, return_features: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x: ``[B, C_in, H, W]``; labels: ``[B]`` classes (required when ``num_classes > 0``).

        Returns logits ``[B]`` (patch mode ``[B, 1, h, w]``), and with ``return_features`` also the
        features (``[B, C]`` pooled, patch mode ``[B, C, h, w]``).
        """
        if self.embedding is not None and labels is None:
            raise ValueError("ProjectionDiscriminator with num_classes > 0 needs labels")
        phi = self.activation(self.blocks(x))  # [B, C, h, w]
        if self.patch:
            features = phi
            logits = self.to_logit(phi)  # [B, 1, h, w]
            if self.embedding is not None:
                class_vectors = self.embedding(labels)[:, :, None, None]  # [B, C, 1, 1]
                logits = logits + (class_vectors * phi).sum(dim=1, keepdim=True)
        else:
            features = phi.sum(dim=(2, 3))  # [B, C]
            logits = self.to_logit(features).squeeze(1)  # [B]
            if self.embedding is not None:
                logits = logits + (self.embedding(labels) * features).sum(dim=1)
        return (logits, features) if return_features else logits
