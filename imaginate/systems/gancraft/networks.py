"""GANcraft's networks: the style-modulated render MLP, the sky MLP, the render CNN, the style encoder
and the style MLP, laid out as the reference's (NVlabs/imaginaire ``generators/gancraft_base.py``) so
that the paper sizes give the reference's parameter counts.

Every ``Linear``/``Conv2d`` except the style-modulation heads gets the reference's init (Kaiming-normal
for LeakyReLU(0.2), halved; zero bias). Modulated layers are ``y = W (x * a(s)) + b(s)`` with ``a``,
``b`` affine in the style code ``s`` (biases 1 and 0, weights N(0, 1 / dim s)): the reference
``ModLinear(bias=False, mod_bias=True, output_mode=True)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.systems.gancraft.voxel_field import positional_encoding

LEAKY_SLOPE = 0.2


def _leaky_init(layer: nn.Linear | nn.Conv2d) -> nn.Linear | nn.Conv2d:
    """The reference's init: Kaiming-normal for LeakyReLU(0.2) halved, zero bias."""
    nn.init.kaiming_normal_(layer.weight, a=LEAKY_SLOPE, nonlinearity="leaky_relu")
    with torch.no_grad():
        layer.weight.mul_(0.5)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    return _leaky_init(nn.Linear(in_features, out_features, bias=bias))


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    return _leaky_init(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias))


class ModulatedLinear(nn.Module):
    """``y = W (x * a(s)) + b(s)``: a linear layer whose input channels are scaled and whose output is
    shifted per style code ``s``.

    Args:
        in_features: input width.
        out_features: output width.
        style_dims: style code length.
    """

    def __init__(self, in_features: int, out_features: int, style_dims: int) -> None:
        super().__init__()
        self.linear = _linear(in_features, out_features, bias=False)
        self.to_scale = nn.Linear(style_dims, in_features)
        self.to_shift = nn.Linear(style_dims, out_features)
        for layer in (self.to_scale, self.to_shift):
            nn.init.normal_(layer.weight, std=1.0 / math.sqrt(style_dims))
        nn.init.ones_(self.to_scale.bias)
        nn.init.zeros_(self.to_shift.bias)

    def forward(self, x: Tensor, style: Tensor, batch_index: Tensor) -> Tensor:
        """x ``[P, in]``; style ``[B, style_dims]``; batch_index ``[P]`` the image of each row. -> ``[P, out]``."""
        scale = self.to_scale(style)[batch_index]  # [P, in]
        shift = self.to_shift(style)[batch_index]  # [P, out]
        return self.linear(x * scale) + shift


class RenderMLP(nn.Module):
    """Per-sample MLP: (encoded feature, label) -> (density, feature), modulated by the style code.

    ``h = act(fc_in(x) + embed(label))``, three modulated layers, a density head, two more modulated
    layers and a feature head (the reference ``RenderMLP`` without view directions).

    Args:
        in_dims: width of the encoded voxel feature.
        num_labels: label count of the one-hot label input.
        hidden: width.
        style_dims: style code length.
        out_dims: output feature length.
        density_bias_init: initial bias of the density head.
    """

    def __init__(self, in_dims: int, num_labels: int, hidden: int, style_dims: int, out_dims: int,
                 density_bias_init: float = 0.0) -> None:
        super().__init__()
        self.input = _linear(in_dims, hidden)
        self.label_embedding = nn.Embedding(num_labels, hidden)  # = Linear(one_hot(label), bias=False)
        nn.init.normal_(self.label_embedding.weight, std=0.5 * math.sqrt(2 / (1 + LEAKY_SLOPE**2) / num_labels))
        self.trunk = nn.ModuleList([ModulatedLinear(hidden, hidden, style_dims) for _ in range(3)])
        self.density = _linear(hidden, 1)
        nn.init.constant_(self.density.bias, density_bias_init)
        self.feature_layers = nn.ModuleList([ModulatedLinear(hidden, hidden, style_dims) for _ in range(2)])
        self.feature = _linear(hidden, out_dims)
        self.activation = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: Tensor, labels: Tensor, style: Tensor, batch_index: Tensor) -> tuple[Tensor, Tensor]:
        """x ``[P, in]``; labels ``[P]`` int64; style ``[B, S]``; batch_index ``[P]``.
        Returns raw density ``[P]`` (before the activation) and feature ``[P, out]``."""
        h = self.activation(self.input(x) + self.label_embedding(labels))  # [P, hidden]
        for layer in self.trunk:
            h = self.activation(layer(h, style, batch_index))
        sigma = self.density(h).squeeze(-1)  # [P]
        for layer in self.feature_layers:
            h = self.activation(layer(h, style, batch_index))
        return sigma, self.feature(h)


class SkyMLP(nn.Module):
    """Sky dome: encoded ray direction + style code -> feature (the reference ``SKYMLP``).

    Args:
        num_freqs: octaves of the direction's positional encoding (the direction itself is appended).
        hidden: width (five layers).
        style_dims: style code length.
        out_dims: output feature length.
    """

    def __init__(self, num_freqs: int, hidden: int, style_dims: int, out_dims: int) -> None:
        super().__init__()
        self.num_freqs = num_freqs
        self.style = _linear(style_dims, hidden, bias=False)
        self.layers = nn.ModuleList([_linear(3 * (2 * num_freqs + 1), hidden)] + [_linear(hidden, hidden) for _ in range(4)])
        self.output = _linear(hidden, out_dims)
        self.activation = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, directions: Tensor, style: Tensor, batch_index: Tensor) -> Tensor:
        """directions ``[R, 3]`` (any length); style ``[B, S]``; batch_index ``[R]`` -> ``[R, out]``."""
        encoded = positional_encoding(F.normalize(directions, dim=-1), self.num_freqs, include_input=True)
        h = self.activation(self.layers[0](encoded) + self.style(style)[batch_index])
        for layer in self.layers[1:]:
            h = self.activation(layer(h))
        return self.output(h)


class RenderCNN(nn.Module):
    """Style-modulated residual CNN: feature image -> image before tanh (the reference ``RenderCNN``).

    1x1 conv; two residual 3x3 blocks, each followed by ``x (1 + w(s)) + b(s)``; a residual 1x1 block;
    a 1x1 conv to the image channels. Receptive field 9x9.

    Args:
        in_channels: feature channels F.
        channels: width.
        style_dims: style code length.
        out_channels: image channels.
    """

    def __init__(self, in_channels: int, channels: int, style_dims: int, out_channels: int = 3) -> None:
        super().__init__()
        self.input = _conv(in_channels, channels, 1)
        self.blocks = nn.ModuleList([
            nn.ModuleList([_conv(channels, channels, k), _conv(channels, channels, k, bias=k == 1)]) for k in (3, 3, 1)
        ])
        self.modulation = _linear(style_dims, 2 * 2 * channels)  # (w, b) after the first two blocks
        self.output = _conv(channels, out_channels, 1)
        self.activation = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """x ``[B, F, H, W]``; style ``[B, S]`` -> ``[B, out, H, W]`` (no tanh)."""
        mods = self.modulation(style)[:, :, None, None].chunk(4, dim=1)  # 4 x [B, C, 1, 1]
        h = self.activation(self.input(x))
        for i, (conv_a, conv_b) in enumerate(self.blocks):
            h = h + conv_b(self.activation(conv_a(h)))
            if i < 2:
                h = h * (1 + mods[2 * i]) + mods[2 * i + 1]
            h = self.activation(h)
        return self.output(h)


class StyleEncoder(nn.Module):
    """Image -> (mu, logvar) of the style posterior (the reference SPADE-style encoder).

    The image is resized to ``size`` x ``size``, then stride-2 3x3 convs with LeakyReLU halve it to 4x4
    (channels ``filters * 2^i``, at most ``8 filters``); two linear heads give ``mu`` and ``logvar``.

    Args:
        image_channels: input channels.
        filters: base width.
        style_dims: length of z.
        size: working resolution (a power of two >= 8; 256 in the paper).
    """

    def __init__(self, image_channels: int, filters: int, style_dims: int, size: int = 256) -> None:
        super().__init__()
        self.size = size
        layers: list[nn.Module] = []
        channels = image_channels
        for i in range(int(math.log2(size)) - 2):
            out = filters * min(2**i, 8)
            layers += [_conv_stride2(channels, out), nn.LeakyReLU(LEAKY_SLOPE)]
            channels = out
        self.convs = nn.Sequential(*layers)
        self.mu = _linear(channels * 16, style_dims)
        self.logvar = _linear(channels * 16, style_dims)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """image ``[B, C, H, W]`` in [-1, 1] -> ``(mu, logvar)``, each ``[B, style_dims]``."""
        if tuple(image.shape[-2:]) != (self.size, self.size):
            image = F.interpolate(image, size=(self.size, self.size), mode="bilinear", align_corners=False)
        h = self.convs(image).flatten(1)  # [B, C * 16]
        return self.mu(h), self.logvar(h)


def _conv_stride2(in_channels: int, out_channels: int) -> nn.Conv2d:
    return _leaky_init(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1))


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``: ``[B, D]``."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over dims, averaged over the batch: a scalar."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / mu.shape[0]


class StyleMLP(nn.Module):
    """z -> style code: L2-normalised input, ``layers`` Linear+LeakyReLU of width ``hidden``, a Linear to
    ``out_dims`` and a final LeakyReLU (the reference ``StyleMLP``).

    Args:
        style_dims: length of z.
        out_dims: length of the code.
        hidden: width.
        layers: hidden layers (5 in the reference).
    """

    def __init__(self, style_dims: int, out_dims: int, hidden: int = 256, layers: int = 5) -> None:
        super().__init__()
        widths = [style_dims] + [hidden] * layers + [out_dims]
        self.layers = nn.ModuleList([_linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.activation = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, z: Tensor) -> Tensor:
        """z ``[B, style_dims]`` -> ``[B, out_dims]``."""
        h = F.normalize(z, dim=-1)
        for layer in self.layers:
            h = self.activation(layer(h))
        return h
