"""What a feature network must offer to the GAN metrics, and the input conversions they share."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 RGB -> luminance


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights that imaginate needs are not on this machine (they are never downloaded)."""


@runtime_checkable
class FeatureExtractor(Protocol):
    """A callable mapping images [N, C, H, W] in [0, 1] to features [N, D], with a ``name``.

    The name labels every metric computed on its features ("FID (Fashion-MNIST features)").
    An ``nn.Module`` with a ``name`` attribute qualifies; ``compute_gan_metrics`` moves such a
    module to its device. Calls happen under ``torch.no_grad()``.
    """

    name: str

    def __call__(self, images: Tensor) -> Tensor: ...


def to_channels_and_size(images: Tensor, channels: int, size: int) -> Tensor:
    """Convert [N, C, H, W] images to [N, channels, size, size] for a feature network.

    1 -> 3 channels repeats the grey channel; 3 -> 1 takes the BT.601 luminance; other sizes are
    resized bilinearly (antialiased when shrinking).

    Args:
        images: [N, C, H, W] floating point, C in {1, 3}.
        channels: 1 or 3.
        size: the output height and width.

    Returns:
        [N, channels, size, size], same dtype and device.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    c = images.shape[1]
    if c == channels:
        pass
    elif c == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1)
    elif c == 3 and channels == 1:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        images = (images * weights).sum(1, keepdim=True)
    else:
        raise ValueError(f"images have {c} channels; this feature network takes 1 or 3 (it uses {channels})")
    if images.shape[-2:] != (size, size):
        shrinking = images.shape[-2] > size or images.shape[-1] > size
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)
    return images
