"""GANcraft's discriminator: an OASIS-style (N+1)-class per-pixel segmentation network (arXiv 2012.04781).

For every pixel the discriminator predicts one of the N semantic labels (sky included as label 0) or an
extra "fake" class (index N). Real images are trained towards their true label map, weighted per class
by inverse pixel frequency (rare labels count as much as common ones); generated images towards "fake"
everywhere. The generator wants its pixels classified as the labels of the view it rendered.

The network is a small U-Net: ``depth`` stride-2 spectral-norm conv blocks down, the same number of
upsampling blocks back with skip connections, and a 1x1 conv to ``N + 1`` logits per pixel.
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
