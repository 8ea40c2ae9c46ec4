"""Full-reference image quality: PSNR and SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
K1 = 0.01, K2 = 0.03) on ``[B, C, H, W]`` images in [0, 1], per image (mean over channels)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def psnr(x: Tensor, y: Tensor, eps: float = 1e-10) -> Tensor:
    """``[B]`` peak signal-to-noise ratio in dB of images in [0, 1]."""
    mse = (x.float() - y.float()).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / (mse + eps))


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-coords.square() / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()  # [C, 1, size, size]


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """``[B]`` mean structural similarity (valid windows only; images smaller than the window use a smaller one)."""
    x, y = x.float(), y.float()
    c = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    w = _gaussian_window(window, sigma, c, x.device)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


__all__ = ["psnr", "ssim"]
