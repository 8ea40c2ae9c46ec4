"""GANcraft's discriminator: an OASIS-style (N+1)-class per-pixel segmentation network (arXiv 2012.04781).

For every pixel the discriminator predicts one of the N semantic labels (sky included as label 0) or an
extra "fake" class (index N). Real images are trained towards their true label map, weighted per class
by inverse pixel frequency (rare labels count as much as common ones); generated images towards "fake"
everywhere. The generator wants its pixels classified as the labels of the view it rendered.

The network is a small U-Net: ``depth`` stride-2 spectral-norm conv blocks down, the same number of
upsampling blocks back with skip connections, and a 1x1 conv to ``N + 1`` logits per pixel.
``FPSEDiscriminator`` is the reference's network instead (``disc_type=fpse``): a feature pyramid with
logits at 1/4 resolution and an unbalanced cross-entropy (``fpse_losses``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.nn.blocks import snconv2d


class SegmentationDiscriminator(nn.Module):
    """A U-Net that outputs ``num_labels + 1`` logits per pixel.

    Args:
        num_labels: N, the semantic labels (the extra class ``N`` is "fake").
        channels: channels of the first level (doubled per level, at most 8x).
        depth: downsampling levels (the input size must be divisible by ``2**depth``).
        image_channels: channels of the input image.
    """

    def __init__(self, num_labels: int, channels: int = 32, depth: int = 3, image_channels: int = 3) -> None:
        super().__init__()
        if num_labels < 2 or channels < 1 or depth < 1:
            raise ValueError(f"need num_labels >= 2, channels >= 1, depth >= 1; got {num_labels}, {channels}, {depth}")
        self.num_labels, self.depth = num_labels, depth
        widths = [min(channels * 2**k, 8 * channels) for k in range(depth + 1)]  # level k width
        self.stem = snconv2d(image_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList(snconv2d(widths[k], widths[k + 1], 4, stride=2, padding=1) for k in range(depth))
        self.up = nn.ModuleList(snconv2d(widths[k + 1] + widths[k], widths[k], 3, padding=1)
                                for k in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_labels + 1, 1)

    def forward(self, image: Tensor) -> Tensor:
        """image ``[B, C, H, W]`` in [-1, 1] -> logits ``[B, N + 1, H, W]``."""
        factor = 2**self.depth
        if image.ndim != 4 or image.shape[-1] % factor or image.shape[-2] % factor:
            raise ValueError(f"image must be [B, C, H, W] with H, W multiples of {factor}, got {list(image.shape)}")
        x = F.leaky_relu(self.stem(image), 0.2)
        skips = []
        for conv in self.down:
            skips.append(x)
            x = F.leaky_relu(conv(x), 0.2)
        for conv, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = F.leaky_relu(conv(torch.cat([x, skip], dim=1)), 0.2)
        return self.head(x)


class FPSEDiscriminator(nn.Module):
    """The reference's discriminator: an FPSE-style feature pyramid with ``N + 1`` logits per pixel at 1/4 of
    the input resolution (imaginaire ``discriminators/gancraft.py``, single scale).

    Five stride-2 3x3 spectral-norm convs down (widths ``c, 2c, 4c, 8c, 8c``), 1x1 lateral convs to ``4c``, a
    top-down path (bilinear 2x upsampling + lateral) back to 1/4 resolution, a 3x3 conv to ``2c`` and a 1x1
    conv to the logits. The losses (``fpse_losses``) compare them with the label map downsampled to 1/4 by
    ``downsample_labels`` (area-average of the one-hot map, then its argmax: the reference's
    ``smooth_resample``), without class balancing.

    Args:
        num_labels: N (the extra class ``N`` is "fake").
        channels: ``c`` (128 in the reference).
        image_channels: channels of the input image.
    """

    reduction = 4

    def __init__(self, num_labels: int, channels: int = 128, image_channels: int = 3) -> None:
        super().__init__()
        if num_labels < 2 or channels < 1:
            raise ValueError(f"need num_labels >= 2 and channels >= 1; got {num_labels}, {channels}")
        self.num_labels = num_labels
        widths = [image_channels, channels, 2 * channels, 4 * channels, 8 * channels, 8 * channels]
        self.down = nn.ModuleList(snconv2d(widths[k], widths[k + 1], 3, stride=2, padding=1) for k in range(5))
        self.lateral = nn.ModuleList(snconv2d(widths[k], 4 * channels, 1) for k in (2, 3, 4, 5))  # levels 2..5
        self.final = snconv2d(4 * channels, 2 * channels, 3, padding=1)
        self.head = snconv2d(2 * channels, num_labels + 1, 1)

    def forward(self, image: Tensor) -> Tensor:
        """image ``[B, C, H, W]`` in [-1, 1], H and W multiples of 32 -> logits ``[B, N + 1, H / 4, W / 4]``."""
        if image.ndim != 4 or image.shape[-1] % 32 or image.shape[-2] % 32:
            raise ValueError(f"image must be [B, C, H, W] with H, W multiples of 32, got {list(image.shape)}")
        levels, x = [], image
        for conv in self.down:
            x = F.leaky_relu(conv(x), 0.2)
            levels.append(x)  # 1/2, 1/4, 1/8, 1/16, 1/32
        lateral = [F.leaky_relu(conv(level), 0.2) for conv, level in zip(self.lateral, levels[1:])]  # 1/4 .. 1/32
        top = lateral[-1]
        for side in reversed(lateral[:-1]):
            top = F.interpolate(top, scale_factor=2, mode="bilinear", align_corners=False) + side
        return self.head(F.leaky_relu(self.final(top), 0.2))


def downsample_labels(labels: Tensor, size: tuple[int, int], num_labels: int) -> Tensor:
    """``[B, H, W]`` int64 label map -> ``[B, h, w]``: the most frequent label of each area (the
    reference's ``smooth_resample``: area-averaged one-hot map, then argmax)."""
    one_hot = F.one_hot(labels, num_labels).permute(0, 3, 1, 2).float()  # [B, N, H, W]
    return F.interpolate(one_hot, size=size, mode="area").argmax(dim=1)


def fpse_losses(logits: Tensor, labels: Tensor, real: bool) -> Tensor:
    """The reference's N+1 loss at the logits' resolution: real pixels -> cross-entropy to their label
    (``labels [B, H, W]`` at full resolution, downsampled here), fake pixels -> the "fake" class; a mean."""
    if not real:
        return oasis_fake_loss(logits)
    small = downsample_labels(labels, tuple(logits.shape[-2:]), logits.shape[1] - 1)
    return F.cross_entropy(logits, small)


def class_balance_weights(labels: Tensor, num_labels: int) -> Tensor:
    """Per-pixel weights ``[B, H, W]``: ``P / (n_present * count[label])`` with P the batch's pixel count,
    ``count`` each label's pixel count in the batch and ``n_present`` the number of labels present (so a
    batch with one label gets weight 1 everywhere, and every present label gets the same total weight)."""
    counts = torch.bincount(labels.flatten(), minlength=num_labels).to(torch.float32)  # [N]
    present = (counts > 0).sum().clamp(min=1)
    per_class = torch.where(counts > 0, labels.numel() / (present * counts.clamp(min=1)), torch.zeros_like(counts))
    return per_class[labels]


def oasis_real_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Class-balanced cross-entropy of real (or, for G, generated) pixels against their true labels.

    Args:
        logits: ``[B, N + 1, H, W]``.
        labels: ``[B, H, W]`` int64 in ``0..N-1``.

    Returns:
        ``mean(w * CE(logits, labels))`` over all pixels, ``w`` from ``class_balance_weights``.
    """
    weights = class_balance_weights(labels, logits.shape[1] - 1).to(logits.dtype)
    return (F.cross_entropy(logits, labels, reduction="none") * weights).mean()


def oasis_fake_loss(logits: Tensor) -> Tensor:
    """Unweighted cross-entropy of generated pixels against the "fake" class (index N)."""
    target = torch.full((logits.shape[0], *logits.shape[2:]), logits.shape[1] - 1, dtype=torch.long,
                        device=logits.device)
    return F.cross_entropy(logits, target)


def discriminator_loss(real_logits: list[Tensor], real_labels: list[Tensor], real_weights: list[float],
                       fake_logits: Tensor) -> tuple[Tensor, dict[str, float]]:
    """The D objective: ``sum_i w_i * real_loss(real_i) / sum_i w_i + fake_loss(fake)``.

    GANcraft shows D two kinds of real images (photos and pseudo ground truth); ``real_weights`` are the
    GAN weights of the two (0.5 and 0.5 in the paper), normalised here so that real and fake balance.
    """
    total = sum(real_weights)
    if total <= 0:
        raise ValueError(f"real_weights must sum to > 0, got {real_weights}")
    real = sum(w * oasis_real_loss(x, y) for x, y, w in zip(real_logits, real_labels, real_weights)) / total
    fake = oasis_fake_loss(fake_logits)
    return real + fake, {"d_real": float(real.detach()), "d_fake": float(fake.detach())}
