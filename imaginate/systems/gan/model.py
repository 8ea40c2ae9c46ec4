"""Class-conditional residual generator (conditional batch norm) for small grey or colour images."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imaginate.nn import ConditionalBatchNorm2d, ResidualGeneratorBlock


class ConditionalResGenerator(nn.Module):
    """z and a class -> image in [-1, 1], through two 2x up-sampling residual blocks whose batch norms
    take their scale and bias from the class (BigGAN/SNGAN style, sized for 8..32 px images).

    Args:
        z_dim: latent size.
        num_classes: number of classes.
        image_size: output side; must be divisible by 4 (8 for digits, 28 for Fashion-MNIST).
        out_channels: image channels.
        width: channels of the last block (the first has 4x, the second 2x).
    """

    def __init__(self, z_dim: int, num_classes: int, image_size: int, out_channels: int = 1, width: int = 64):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        self.z_dim, self.num_classes, self.start = z_dim, num_classes, image_size // 4
        self.fc = nn.Linear(z_dim, self.start * self.start * 4 * width)

        def norm(c: int) -> nn.Module:
            return ConditionalBatchNorm2d(c, num_classes)

        self.block1 = ResidualGeneratorBlock(4 * width, 2 * width, upsample=True, norm=norm)
        self.block2 = ResidualGeneratorBlock(2 * width, width, upsample=True, norm=norm)
        self.to_image = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, out_channels, 3, padding=1),
                                      nn.Tanh())

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        """z: [B, z_dim]; labels: [B] int64 -> images [B, C, H, W] in [-1, 1]."""
        h = self.fc(z).view(z.shape[0], -1, self.start, self.start)  # [B, 4w, H/4, W/4]
        h = self.block1(h, labels)  # [B, 2w, H/2, W/2]
        h = self.block2(h, labels)  # [B, w, H, W]
        return self.to_image(h)

    def sample_latents(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        return torch.randn(n, self.z_dim, generator=generator, device=device)
