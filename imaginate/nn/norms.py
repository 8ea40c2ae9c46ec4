"""Conditional normalisation layers: conditional batch norm, AdaIN and SPADE.

Each normalises its input with a parameter-free norm and then applies a scale and bias predicted
from a condition: a class label (``ConditionalBatchNorm2d``), a style vector (``AdaIN``) or a
spatial map (``SPADE``). All share the call convention ``norm(x, condition)`` that the residual
blocks in ``imaginate.nn.blocks`` rely on.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose per-channel scale and bias are looked up from the class label.

    ``y = gamma[label] * BN(x) + beta[label]``, BN without affine parameters (its running
    statistics are shared by all classes). ``gamma`` starts at 1 and ``beta`` at 0.

    Args:
        num_features: channels C of the input ``[B, C, H, W]``.
        num_classes: number of class labels.
        eps: BN epsilon.
        momentum: BN running-statistics momentum.
    """

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.batch_norm = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)  # [K, C]
        self.beta = nn.Embedding(num_classes, num_features)  # [K, C]
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        """x: ``[B, C, H, W]``; labels: ``[B]`` integer classes. Returns ``[B, C, H, W]``."""
        gamma = self.gamma(labels)[:, :, None, None]  # [B, C, 1, 1]
        beta = self.beta(labels)[:, :, None, None]  # [B, C, 1, 1]
        return gamma * self.batch_norm(x) + beta


def channel_mean_std(x: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and ``sqrt(biased variance + eps)`` of ``[B, C, H, W]`` -> ``[B, C]`` each."""
    var, mean = spatial_var_mean(x)
    return mean, (var + eps).sqrt()


def spatial_var_mean(x: Tensor) -> tuple[Tensor, Tensor]:
    """Biased variance and mean over the spatial dimensions: ``[B, C, ...]`` -> ``[B, C]`` each."""
    flat = x.flatten(2)  # [B, C, HW]
    return flat.var(dim=2, unbiased=False), flat.mean(dim=2)


def adain(x: Tensor, mean: Tensor, std: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalisation: give each channel of each sample the target mean and std.

    ``y = std * (x - mu(x)) / sqrt(var(x) + eps) + mean`` with ``mu``, ``var`` (biased) over H, W.
    The output's per-channel mean is ``mean`` and its std is ``std * sqrt(var / (var + eps))``
    (``std`` up to eps). Style transfer: ``adain(content, *channel_mean_std(style))``.

    Args:
        x: ``[B, C, H, W]``.
        mean: target means, ``[B, C]`` (or broadcastable to ``[B, C, 1, 1]`` when 4-d).
        std: target standard deviations, the same shape as ``mean``.
    """
    var, mu = spatial_var_mean(x)  # [B, C] each
    normalised = (x - mu[:, :, None, None]) / (var[:, :, None, None] + eps).sqrt()  # [B, C, H, W]
    if mean.dim() == 2:
        mean, std = mean[:, :, None, None], std[:, :, None, None]
    return std * normalised + mean


class AdaIN(nn.Module):
    """AdaIN with the per-channel scale and bias predicted from a style code by a linear layer.

    ``y = scale(s) * IN(x) + bias(s)`` where ``[scale, bias] = Linear(s)`` and IN is a
    parameter-free instance norm. The linear bias is initialised so that ``scale`` starts near 1 and
    ``bias`` near 0. Output channel c of sample b has mean ``bias[b, c]`` and std ``|scale[b, c]|``.

    Args:
        num_features: channels C of the input ``[B, C, H, W]``.
        style_dim: length D of the style code ``[B, D]``.
        eps: instance-norm epsilon.
    """

    def __init__(self, num_features: int, style_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.style_to_params = nn.Linear(style_dim, 2 * num_features)  # [scale | bias]
        nn.init.ones_(self.style_to_params.bias[:num_features].data)
        nn.init.zeros_(self.style_to_params.bias[num_features:].data)

    def style_params(self, style: Tensor) -> tuple[Tensor, Tensor]:
        """style ``[B, D]`` -> ``(scale, bias)``, each ``[B, C]``."""
        scale, bias = self.style_to_params(style).chunk(2, dim=1)
        return scale, bias

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """x: ``[B, C, H, W]``; style: ``[B, D]``. Returns ``[B, C, H, W]``."""
        scale, bias = self.style_params(style)
        return scale[:, :, None, None] * F.instance_norm(x, eps=self.eps) + bias[:, :, None, None]


_SPADE_NORMS = ("batch", "instance")


class SPADE(nn.Module):
    """Spatially-adaptive normalisation (Park et al. 2019).

    ``y = norm(x) * (1 + gamma(m)) + beta(m)`` where ``norm`` is parameter-free batch or instance
    norm, ``m`` is the condition map resized to x's height and width, ``h = ReLU(conv(m))`` is a
    shared hidden map, and ``gamma = conv_gamma(h)``, ``beta = conv_beta(h)`` are per-pixel,
    per-channel (all convs ``kernel_size`` x ``kernel_size``, same padding).

    Args:
        num_features: channels C of the input ``[B, C, H, W]``.
        label_channels: channels L of the condition map ``[B, L, H', W']`` (a one-hot segmentation
            map, or any image-like guidance such as a warped previous frame).
        hidden: channels of the shared hidden map (128 in the paper).
        norm: ``"batch"`` (the paper) or ``"instance"``.
        kernel_size: kernel of the three convs (odd).
        interpolation: how the map is resized to ``[H, W]``: ``"nearest"`` for labels, or
            ``"bilinear"`` for continuous maps.
    """

    def __init__(
        self,
        num_features: int,
        label_channels: int,
        hidden: int = 128,
        norm: str = "batch",
        kernel_size: int = 3,
        interpolation: str = "nearest",
    ) -> None:
        super().__init__()
        if norm not in _SPADE_NORMS:
            raise ValueError(f"SPADE norm {norm!r} is not one of {', '.join(_SPADE_NORMS)}")
        if kernel_size % 2 != 1:
            raise ValueError(f"SPADE kernel_size must be odd, got {kernel_size}")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"SPADE interpolation {interpolation!r} is not one of nearest, bilinear")
        self.interpolation = interpolation
        self.param_free_norm: nn.Module = (
            nn.BatchNorm2d(num_features, affine=False)
            if norm == "batch"
            else nn.InstanceNorm2d(num_features, affine=False)
        )
        padding = kernel_size // 2
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, kernel_size, padding=padding), nn.ReLU())
        self.conv_gamma = nn.Conv2d(hidden, num_features, kernel_size, padding=padding)
        self.conv_beta = nn.Conv2d(hidden, num_features, kernel_size, padding=padding)

    def resize_map(self, label_map: Tensor, size: tuple[int, int]) -> Tensor:
        """``[B, L, H', W']`` -> ``[B, L, H, W]`` with the layer's interpolation (no-op if equal)."""
        if tuple(label_map.shape[-2:]) == tuple(size):
            return label_map
        if self.interpolation == "nearest":
            return F.interpolate(label_map, size=size, mode="nearest")
        return F.interpolate(label_map, size=size, mode="bilinear", align_corners=False)

    def modulation(self, label_map: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``(gamma, beta)``, each ``[B, C, H, W]``, from the map resized to ``size``."""
        hidden = self.shared(self.resize_map(label_map, size))  # [B, hidden, H, W]
        return self.conv_gamma(hidden), self.conv_beta(hidden)

    def forward(self, x: Tensor, label_map: Tensor) -> Tensor:
        """x: ``[B, C, H, W]``; label_map: ``[B, L, H', W']``. Returns ``[B, C, H, W]``."""
        gamma, beta = self.modulation(label_map, (x.shape[-2], x.shape[-1]))
        return self.param_free_norm(x) * (1 + gamma) + beta
