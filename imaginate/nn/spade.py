"""The single-image SPADE generator and Multi-SPADE, shared by GANcraft's pseudo ground truth and vid2vid.

- ``segmentation_one_hot``: integer label ids -> one-hot maps;
- ``SPADEGenerator``: segmentation (+ a style code) -> RGB, SPADE residual blocks (Park et al. 2019).
  GANcraft's pseudo-GT translator (``imaginate.systems.gancraft.pseudo_gt.SPADETranslator``) is this
  class; vid2vid draws its first frame with it;
- ``MultiSPADE``: one parameter-free normalisation followed by several SPADE modulations in sequence,
  one per condition map (world-consistent vid2vid: label embedding, warped previous frame + mask,
  guidance image + mask). It is a norm for ``ResidualGeneratorBlock`` (called ``norm(x, *maps)``).

The SPADE norm itself is ``imaginate.nn.norms.SPADE`` and the residual block
``imaginate.nn.blocks.ResidualGeneratorBlock``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.nn.blocks import ResidualGeneratorBlock
from imaginate.nn.norms import SPADE


def segmentation_one_hot(labels: Tensor, num_labels: int) -> Tensor:
    """``[..., H, W]`` integer label ids -> ``[..., L, H, W]`` float32 one-hot (L = ``num_labels``)."""
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.ndim < 2:
        raise ValueError(f"label ids must be an integer [..., H, W] tensor, got {labels.dtype} {list(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
        raise ValueError(f"label ids must lie in 0..{num_labels - 1}, found {int(labels.min())}..{int(labels.max())}")
    return F.one_hot(labels.long(), num_labels).movedim(-1, -3).float()


class SPADEGenerator(nn.Module):
    """A SPADE generator: segmentation (+ a style code) -> RGB.

    The condition map is the one-hot segmentation with the style code broadcast over the pixels
    (``[B, L + S, H, W]``). It is area-downsampled ``2**num_upsamples`` times and a conv turns it
    into the first features; then one SPADE residual block at that size and ``num_upsamples``
    upsampling ones (every norm a SPADE on the condition map) and a conv + tanh to RGB. Channels
    run from ``base_channels * 2**num_upsamples`` (capped at ``8 * base_channels``) down to
    ``base_channels``.

    The constructor arguments are kept in ``self.arguments`` so that a saved file can rebuild the
    module (GANcraft's translator files store them as JSON).

    Args:
        num_labels: L, channels of the one-hot segmentation.
        base_channels: channels at full resolution.
        image_size: the training resolution (a multiple of ``2**num_upsamples``); inputs of any
            size divisible by ``2**num_upsamples`` are accepted.
        style_dim: S, length of the style code; 0 for none.
        num_upsamples: 2x upsampling blocks.
        spade_hidden: channels of each SPADE's shared hidden map.
        norm: SPADE's parameter-free norm, ``"instance"`` or ``"batch"``.
    """

    def __init__(self, num_labels: int, base_channels: int = 32, image_size: int = 64, style_dim: int = 16,
                 num_upsamples: int = 3, spade_hidden: int = 64, norm: str = "instance") -> None:
        super().__init__()
        if num_labels < 2 or base_channels < 1 or spade_hidden < 1 or style_dim < 0 or num_upsamples < 0:
            raise ValueError(f"{type(self).__name__} needs num_labels >= 2, base_channels >= 1, spade_hidden >= 1, "
                             f"style_dim >= 0, num_upsamples >= 0; got {num_labels}, {base_channels}, "
                             f"{spade_hidden}, {style_dim}, {num_upsamples}")
        if image_size < 1 or image_size % 2**num_upsamples:
            raise ValueError(f"image_size must be a positive multiple of 2**num_upsamples = {2**num_upsamples}, "
                             f"got {image_size}")
        self.arguments = {"num_labels": num_labels, "base_channels": base_channels, "image_size": image_size,
                          "style_dim": style_dim, "num_upsamples": num_upsamples, "spade_hidden": spade_hidden,
                          "norm": norm}
        self.num_labels, self.style_dim, self.num_upsamples = num_labels, style_dim, num_upsamples
        condition = num_labels + style_dim
        channels = [min(base_channels * 2 ** (num_upsamples - k), 8 * base_channels) for k in range(num_upsamples + 1)]
        self.head = nn.Conv2d(condition, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            ResidualGeneratorBlock(channels[max(k - 1, 0)], channels[k], upsample=k > 0,
                                   norm=lambda c: SPADE(c, condition, spade_hidden, norm),
                                   activation=lambda: nn.LeakyReLU(0.2))
            for k in range(num_upsamples + 1)
        )
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(channels[-1], 3, 3, padding=1), nn.Tanh())
        self.register_buffer("default_style", torch.zeros(style_dim))  # [S] used when no style is given

    def forward(self, segmentation: Tensor, style: Tensor | None = None) -> Tensor:
        """segmentation: ``[B, L, H, W]`` one-hot (or soft) labels; style: ``[B, S]`` (default
        ``default_style``). Returns ``[B, 3, H, W]`` in [-1, 1]."""
        factor = 2**self.num_upsamples
        if (segmentation.ndim != 4 or segmentation.shape[1] != self.num_labels
                or segmentation.shape[2] % factor or segmentation.shape[3] % factor or segmentation.shape[2] == 0):
            raise ValueError(f"segmentation must be [B, {self.num_labels}, H, W] with H, W positive multiples of "
                             f"{factor}, got {list(segmentation.shape)}")
        batch, _, height, width = segmentation.shape
        condition = segmentation.to(self.head.weight.dtype)
        if self.style_dim:
            if style is None:
                style = self.default_style.expand(batch, -1)
            if tuple(style.shape) != (batch, self.style_dim):
                raise ValueError(f"style must be [{batch}, {self.style_dim}], got {list(style.shape)}")
            styles = style.to(condition)[:, :, None, None].expand(-1, -1, height, width)  # [B, S, H, W]
            condition = torch.cat([condition, styles], dim=1)  # [B, L + S, H, W]
        x = self.head(F.interpolate(condition, size=(height // factor, width // factor), mode="area"))
        for block in self.blocks:
            x = block(x, condition)  # SPADE resizes the condition map to each block's size
        return self.to_rgb(x)


class MultiSPADE(nn.Module):
    """Normalise once, then modulate in sequence by one SPADE per condition map.

    ``h = norm(x)``; for each map ``m_i``: ``h = h * (1 + gamma_i(m_i)) + beta_i(m_i)``, where
    ``gamma_i``, ``beta_i`` come from ``SPADE`` modules (their parameter-free norm is not used).
    A map passed as ``None`` skips its modulation (e.g. the first frame has no warped previous
    frame). World-consistent vid2vid's order: label embedding, warped previous output + mask,
    guidance image + mask.

    Args:
        num_features: channels C of the input ``[B, C, H, W]``.
        map_channels: channels of each condition map, in the order they modulate.
        hidden: channels of each SPADE's shared hidden map.
        norm: the parameter-free norm, ``"instance"`` or ``"batch"``.
        interpolation: how each map is resized to x's size, one per map (default bilinear for all).
    """

    def __init__(self, num_features: int, map_channels: Sequence[int], hidden: int = 128, norm: str = "instance",
                 interpolation: Sequence[str] | None = None) -> None:
        super().__init__()
        if not map_channels or min(map_channels) < 1:
            raise ValueError(f"MultiSPADE needs at least one map with >= 1 channel, got {list(map_channels)}")
        modes = list(interpolation) if interpolation is not None else ["bilinear"] * len(map_channels)
        if len(modes) != len(map_channels):
            raise ValueError(f"MultiSPADE: {len(modes)} interpolation modes for {len(map_channels)} maps")
        if norm not in ("instance", "batch"):
            raise ValueError(f"MultiSPADE norm {norm!r} is not one of batch, instance")
        self.param_free_norm: nn.Module = (nn.BatchNorm2d(num_features, affine=False) if norm == "batch"
                                           else nn.InstanceNorm2d(num_features, affine=False))
        self.modulations = nn.ModuleList(SPADE(num_features, c, hidden, norm, interpolation=mode)
                                         for c, mode in zip(map_channels, modes))

    def forward(self, x: Tensor, *maps: Tensor | None) -> Tensor:
        """x: ``[B, C, H, W]``; maps: one ``[B, C_i, H', W']`` (or None) per modulation. Returns ``[B, C, H, W]``."""
        if len(maps) != len(self.modulations):
            raise ValueError(f"MultiSPADE takes {len(self.modulations)} maps, got {len(maps)}")
        h = self.param_free_norm(x)
        size = (x.shape[-2], x.shape[-1])
        for spade, condition in zip(self.modulations, maps):
            if condition is not None:
                gamma, beta = spade.modulation(condition, size)  # [B, C, H, W] each
                h = h * (1 + gamma) + beta
        return h
