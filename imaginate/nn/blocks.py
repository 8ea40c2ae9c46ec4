"""Residual generator and discriminator blocks, and spectral-norm layer helpers.

Spectral norm goes through ``torch.nn.utils.parametrizations.spectral_norm``: the weight is divided
by an estimate of its largest singular value (of the weight reshaped to ``[out, -1]``), refreshed by
one power iteration per training-mode forward; the estimate's vectors ``u``, ``v`` are buffers, so
they are checkpointed and copied by ``ModelEMA``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

NormFactory = Callable[[int], nn.Module]  # channels -> a norm layer called as norm(x, *condition)
ActivationFactory = Callable[[], nn.Module]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def maybe_spectral(module: ModuleT, enabled: bool = True) -> ModuleT:
    """``module`` with spectral norm on its ``weight`` when ``enabled``, else unchanged."""
    return spectral_norm(module) if enabled else module


def snconv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    bias: bool = True,
    spectral: bool = True,
) -> nn.Conv2d:
    """An ``nn.Conv2d`` with spectral norm (``spectral=False``: a plain conv)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    return maybe_spectral(conv, spectral)


def snlinear(in_features: int, out_features: int, bias: bool = True, spectral: bool = True) -> nn.Linear:
    """An ``nn.Linear`` with spectral norm (``spectral=False``: a plain linear layer)."""
    return maybe_spectral(nn.Linear(in_features, out_features, bias=bias), spectral)


def snembedding(num_embeddings: int, embedding_dim: int, spectral: bool = True) -> nn.Embedding:
    """An ``nn.Embedding`` with spectral norm on its ``[num_embeddings, embedding_dim]`` table."""
    return maybe_spectral(nn.Embedding(num_embeddings, embedding_dim), spectral)


def _norm(norm: nn.Module, x: Tensor, condition: tuple[Tensor, ...]) -> Tensor:
    return norm(x, *condition) if condition else norm(x)


class ResidualGeneratorBlock(nn.Module):
    """Pre-activation residual block for generators, optionally upsampling 2x (nearest).

    ``residual = conv2(act(norm2(conv1(up(act(norm1(x, *c)))), *c)))``;
    ``shortcut = conv1x1(up(x))`` when channels change or it upsamples, else ``x``;
    ``y = residual + shortcut``. Shapes: ``[B, in, H, W]`` -> ``[B, out, sH, sW]``, s = 2 if
    ``upsample`` else 1.

    The norm is a factory so that any conditional norm can be injected: ``forward(x, *condition)``
    calls each norm as ``norm(h, *condition)``, e.g.
    ``norm=lambda c: ConditionalBatchNorm2d(c, num_classes)`` and ``block(x, labels)``,
    ``norm=lambda c: AdaIN(c, style_dim)`` and ``block(x, style)``, or
    ``norm=lambda c: SPADE(c, label_channels)`` and ``block(x, segmap)``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        upsample: 2x nearest-neighbour upsampling (between the first norm and the first conv).
        norm: channels -> norm layer; None for no normalisation. Default: ``nn.BatchNorm2d``.
        activation: factory of the non-linearity (default ``nn.ReLU``).
        kernel_size: kernel of the two main convs (odd; COCO-FUNIT's decoder uses 5).
        hidden_channels: channels between the two convs (default ``out_channels``).
        spectral: spectral norm on the convs (BigGAN puts it in G too).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        upsample: bool = False,
        norm: NormFactory | None = nn.BatchNorm2d,
        activation: ActivationFactory = nn.ReLU,
        kernel_size: int = 3,
        hidden_channels: int | None = None,
        spectral: bool = False,
    ) -> None:
        super().__init__()
        hidden = hidden_channels or out_channels
        self.upsample = upsample
        self.norm1 = norm(in_channels) if norm is not None else nn.Identity()
        self.conv1 = snconv2d(in_channels, hidden, kernel_size, padding=kernel_size // 2, spectral=spectral)
        self.norm2 = norm(hidden) if norm is not None else nn.Identity()
        self.conv2 = snconv2d(hidden, out_channels, kernel_size, padding=kernel_size // 2, spectral=spectral)
        self.activation = activation()
        self.has_norm = norm is not None
        self.shortcut: nn.Module = (
            snconv2d(in_channels, out_channels, 1, spectral=spectral)
            if in_channels != out_channels or upsample
            else nn.Identity()
        )

    def _up(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest") if self.upsample else x

    def forward(self, x: Tensor, *condition: Tensor) -> Tensor:
        """x: ``[B, in, H, W]``; condition: passed to each norm. Returns ``[B, out, sH, sW]``."""
        condition = condition if self.has_norm else ()
        h = self.activation(_norm(self.norm1, x, condition))  # [B, in, H, W]
        h = self.conv1(self._up(h))  # [B, hidden, sH, sW]
        h = self.conv2(self.activation(_norm(self.norm2, h, condition)))  # [B, out, sH, sW]
        return h + self.shortcut(self._up(x))


class ResidualDiscriminatorBlock(nn.Module):
    """Residual block for discriminators (SNGAN / BigGAN style), optionally downsampling 2x.

    ``residual = pool(conv2(act(conv1(act(x)))))`` (no first ``act`` when
    ``preactivation=False``, for the block that sees the image); ``pool`` is a 2x2 average pool
    when ``downsample``. The shortcut is ``pool(conv1x1(x))`` (``conv1x1(pool(x))`` without
    pre-activation) when channels change or it downsamples, else ``x``. Shapes:
    ``[B, in, H, W]`` -> ``[B, out, H/s, W/s]``, s = 2 if ``downsample`` else 1.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        downsample: 2x average-pool downsampling at the end of both paths.
        spectral: spectral norm on every conv.
        preactivation: apply the activation to the input first (False for the first block).
        activation: factory of the non-linearity (default ``nn.ReLU``; e.g.
            ``lambda: nn.LeakyReLU(0.2)``).
        kernel_size: kernel of the two main convs (odd).
        hidden_channels: channels between the two convs (default ``out_channels``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsample: bool = True,
        spectral: bool = True,
        preactivation: bool = True,
        activation: ActivationFactory = nn.ReLU,
        kernel_size: int = 3,
        hidden_channels: int | None = None,
    ) -> None:
        super().__init__()
        hidden = hidden_channels or out_channels
        self.downsample = downsample
        self.preactivation = preactivation
        self.conv1 = snconv2d(in_channels, hidden, kernel_size, padding=kernel_size // 2, spectral=spectral)
        self.conv2 = snconv2d(hidden, out_channels, kernel_size, padding=kernel_size // 2, spectral=spectral)
        self.activation = activation()
        self.shortcut: nn.Module | None = (
            snconv2d(in_channels, out_channels, 1, spectral=spectral)
            if in_channels != out_channels or downsample
            else None
        )

    def _pool(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, in, H, W]``. Returns ``[B, out, H/s, W/s]``."""
        h = self.activation(x) if self.preactivation else x
        h = self.conv2(self.activation(self.conv1(h)))  # [B, out, H, W]
        h = self._pool(h)  # [B, out, H/s, W/s]
        if self.shortcut is None:
            return h + x
        shortcut = self._pool(self.shortcut(x)) if self.preactivation else self.shortcut(self._pool(x))
        return h + shortcut
