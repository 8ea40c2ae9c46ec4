"""vid2vid's objectives (arXiv 1808.06601, 2007.08509): flow, warp, occlusion-mask and guidance losses.

The GAN, feature-matching and perceptual terms come from ``imaginate.nn``; images here are in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from imaginate.config import ConfigError, check_choice
from imaginate.nn.flow_warp import backward_warp


@dataclass
class Vid2VidLossConfig:
    """Weights of the generator objective (the paper's defaults).

    Args:
        gan: image GAN (hinge) and temporal GAN weight.
        feature_matching: discriminator feature matching (both discriminators).
        perceptual: perceptual loss; ``perceptual_net=vgg19`` reads VGG19 from ``vgg19_weights`` (or the
            torch hub cache), ``gradients`` is the weight-free substitute (image + finite-difference L1 at
            3 scales, not a perceptual loss).
        flow: L1 of the predicted flow to the exact flow on visible pixels, plus the occlusion mask's L1
            to the visibility map.
        warp: L1 between the real previous frame warped by the predicted flow and the real frame.
        guidance: masked L1 between the output and the guidance image (wc-vid2vid).
    """

    gan: float = 1.0
    feature_matching: float = 10.0
    perceptual: float = 10.0
    flow: float = 10.0
    warp: float = 10.0
    guidance: float = 20.0
    perceptual_net: str = "gradients"
    vgg19_weights: str = ""

    def __post_init__(self) -> None:
        for key in ("gan", "feature_matching", "perceptual", "flow", "warp", "guidance"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"loss.{key}: must be >= 0, got {getattr(self, key)}")
        check_choice("loss.perceptual_net", self.perceptual_net, ("gradients", "vgg19"))


def masked_l1(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Mean ``|a - b|`` over the pixels where ``mask [B, 1, H, W]`` is set (0 when none is)."""
    weight = mask.expand_as(a)
    return (weight * (a - b).abs()).sum() / weight.sum().clamp_min(1.0)


def flow_loss(flow: Tensor, mask: Tensor, true_flow: Tensor, visible: Tensor) -> Tensor:
    """L1 of ``flow [B, 2, H, W]`` to ``true_flow`` where ``visible [B, 1, H, W]`` + L1 of the occlusion
    ``mask [B, 1, H, W]`` to ``visible`` (1 = the pixel is seen in the previous frame)."""
    return masked_l1(flow, true_flow, visible) + (mask - visible).abs().mean()


def warp_loss(flow: Tensor, real_prev: Tensor, real: Tensor, visible: Tensor) -> Tensor:
    """L1 between the real previous frame warped by the predicted ``flow`` and the real frame, on visible pixels."""
    return masked_l1(backward_warp(real_prev, flow), real, visible)


def guidance_loss(image: Tensor, guidance: Tensor, guidance_mask: Tensor) -> Tensor:
    """Masked L1 between the output ``[B, 3, H, W]`` and the guidance image where ``guidance_mask`` is 1."""
    return masked_l1(image, guidance, guidance_mask)
