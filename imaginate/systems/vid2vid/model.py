"""vid2vid and world-consistent vid2vid generators (arXiv 1808.06601, 2007.08509) and their discriminators.

One frame ``t >= 1`` of ``Vid2VidGenerator``:

- a **label embedding** (encoder-decoder over the one-hot label map) gives a condition map at every
  resolution of the decoder;
- a **SPADE residual decoder** upsamples from ``H / 2**num_layers`` to full size; every norm is a SPADE
  on the label embedding, the last ``num_multi_spade`` blocks use Multi-SPADE: label embedding, then the
  warped previous output + occlusion mask, then (``wc_vid2vid``) the guidance image + its mask;
- a **flow branch** (encoder, residual blocks, decoder) reads the current and previous label maps and
  previous outputs and predicts the backward flow to the previous output (pixels, dx/dy) and an
  occlusion mask in [0, 1] (1 = trust the warped previous frame);
- output ``= mask * warp(prev, flow) + (1 - mask) * hallucinated``.

Frame 0 comes from a single-image ``SPADEGenerator`` (``first_frame``). Images are in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.config import ConfigError, check_choice
from imaginate.nn import MultiScalePatchDiscriminator, ResidualGeneratorBlock, snconv2d
from imaginate.nn.flow_warp import backward_warp
from imaginate.nn.norms import SPADE
from imaginate.nn.spade import MultiSPADE, SPADEGenerator

MODES = ("vid2vid", "wc_vid2vid")


@dataclass
class Vid2VidModelConfig:
    """Sizes of the generator (defaults: the reference's, ``paper`` preset).

    Args:
        mode: ``vid2vid`` (flow-warped previous frames) or ``wc_vid2vid`` (also guidance images).
        num_labels: L, label classes of the one-hot input.
        height / width: the frame size (multiples of ``2**num_layers`` and ``2**flow_downsamples``).
        base_filters / max_filters: decoder channels ``min(max, base * 2**(num_layers - k))`` at ``H / 2**k``.
        num_layers: upsampling SPADE residual blocks of the decoder (its input is at ``H / 2**num_layers``).
        num_downsamples: downsamplings of the label-embedding encoder.
        embed_filters / embed_max_filters: label-embedding channels ``min(max, embed * 2**j)`` at ``H / 2**j``.
        spade_hidden: hidden channels of every SPADE.
        num_multi_spade: the last blocks that use Multi-SPADE (warped frame, guidance).
        num_prev: previous frames (labels and outputs) the flow branch reads.
        flow_filters / flow_downsamples / flow_blocks: the flow branch's width, depth and residual blocks.
        spectral: spectral norm on the decoder's and flow branch's convs.
        first_frame_filters / first_frame_upsamples / first_frame_hidden: the first-frame SPADE generator.
    """

    mode: str = "wc_vid2vid"
    num_labels: int = 35
    height: int = 512
    width: int = 1024
    base_filters: int = 32
    max_filters: int = 1024
    num_layers: int = 7
    num_downsamples: int = 4
    embed_filters: int = 32
    embed_max_filters: int = 1024
    spade_hidden: int = 128
    num_multi_spade: int = 3
    num_prev: int = 2
    flow_filters: int = 32
    flow_downsamples: int = 3
    flow_blocks: int = 6
    spectral: bool = True
    first_frame_filters: int = 64
    first_frame_upsamples: int = 5
    first_frame_hidden: int = 128

    def __post_init__(self) -> None:
        check_choice("model.mode", self.mode, MODES)
        for key in ("num_labels", "height", "width", "base_filters", "max_filters", "num_layers", "embed_filters",
                    "embed_max_filters", "spade_hidden", "num_prev", "flow_filters", "first_frame_filters",
                    "first_frame_hidden"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}: must be >= 1, got {getattr(self, key)}")
        if self.num_labels < 2:
            raise ConfigError(f"model.num_labels: must be >= 2, got {self.num_labels}")
        for key in ("num_downsamples", "flow_downsamples", "flow_blocks", "first_frame_upsamples"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key}: must be >= 0, got {getattr(self, key)}")
        if not 1 <= self.num_multi_spade <= self.num_layers:
            raise ConfigError(f"model.num_multi_spade: must be in 1..num_layers={self.num_layers}, "
                              f"got {self.num_multi_spade}")
        factor = 2 ** max(self.num_layers, self.flow_downsamples, self.num_downsamples, self.first_frame_upsamples)
        for key in ("height", "width"):
            if getattr(self, key) % factor:
                raise ConfigError(f"model.{key}: must be a multiple of {factor} (2 ** the deepest of num_layers, "
                                  f"num_downsamples, flow_downsamples, first_frame_upsamples), got {getattr(self, key)}")

    @property
    def uses_guidance(self) -> bool:
        return self.mode == "wc_vid2vid"


class LabelEmbedding(nn.Module):
    """Encoder-decoder over the one-hot labels: ``[B, L, H, W]`` -> maps at ``H / 2**j``, ``j = 0..depth``.

    ``channels(j) = min(max_filters, filters * 2**min(j, num_downsamples))``; levels deeper than the
    encoder's (``j > num_downsamples``) are average-pooled copies of its bottom map.
    """

    def __init__(self, num_labels: int, filters: int, max_filters: int, num_downsamples: int) -> None:
        super().__init__()
        self.num_downsamples = num_downsamples
        width = [min(max_filters, filters * 2**j) for j in range(num_downsamples + 1)]
        self.widths = width
        self.stem = nn.Sequential(nn.Conv2d(num_labels, width[0], 3, padding=1), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(width[j], width[j + 1], 4, 2, 1), nn.LeakyReLU(0.2))
                                  for j in range(num_downsamples))
        self.up = nn.ModuleList(nn.Sequential(nn.Conv2d(width[j + 1], width[j], 3, padding=1), nn.LeakyReLU(0.2))
                                for j in range(num_downsamples))

    def channels(self, level: int) -> int:
        return self.widths[min(level, self.num_downsamples)]

    def forward(self, labels: Tensor, depth: int) -> list[Tensor]:
        """labels ``[B, L, H, W]`` -> ``depth + 1`` maps, map j ``[B, channels(j), H / 2**j, W / 2**j]``."""
        skips = [self.stem(labels)]
        for down in self.down:
            skips.append(down(skips[-1]))
        maps = [skips[-1]]  # decode: upsample, conv, add the encoder's map of that level
        for j in reversed(range(self.num_downsamples)):
            up = F.interpolate(maps[0], scale_factor=2.0, mode="nearest")
            maps.insert(0, self.up[j](up) + skips[j])
        while len(maps) <= depth:
            maps.append(F.avg_pool2d(maps[-1], 2))
        return maps


class FlowBranch(nn.Module):
    """Predicts the backward flow to the previous output and an occlusion mask.

    Input: current labels ``[B, L, H, W]``, previous labels ``[B, P*L, H, W]`` and outputs ``[B, P*3, H, W]``.
    Output: flow ``[B, 2, H, W]`` in pixels and mask ``[B, 1, H, W]`` in [0, 1].
    """

    def __init__(self, in_channels: int, filters: int, max_filters: int, downsamples: int, blocks: int,
                 spectral: bool) -> None:
        super().__init__()
        widths = [min(max_filters, filters * 2**j) for j in range(downsamples + 1)]
        layers: list[nn.Module] = [snconv2d(in_channels, widths[0], 7, padding=3, spectral=spectral), nn.LeakyReLU(0.2)]
        for j in range(downsamples):
            layers += [snconv2d(widths[j], widths[j + 1], 3, 2, 1, spectral=spectral), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*layers)
        self.blocks = nn.Sequential(*(ResidualGeneratorBlock(widths[-1], widths[-1], norm=None, spectral=spectral,
                                                             activation=lambda: nn.LeakyReLU(0.2))
                                      for _ in range(blocks)))
        up: list[nn.Module] = []
        for j in reversed(range(downsamples)):
            up += [nn.Upsample(scale_factor=2.0, mode="nearest"),
                   snconv2d(widths[j + 1], widths[j], 3, padding=1, spectral=spectral), nn.LeakyReLU(0.2)]
        self.decoder = nn.Sequential(*up)
        self.to_flow = nn.Conv2d(widths[0], 2, 3, padding=1)
        self.to_mask = nn.Conv2d(widths[0], 1, 3, padding=1)
        nn.init.zeros_(self.to_flow.weight)
        nn.init.zeros_(self.to_flow.bias)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        h = self.decoder(self.blocks(self.encoder(inputs)))  # [B, F, H, W]
        return self.to_flow(h), torch.sigmoid(self.to_mask(h))


class FrameOutput(dict):
    """``image [B, 3, H, W]`` in [-1, 1], ``hallucinated``, ``warped``, ``flow [B, 2, H, W]``, ``mask [B, 1, H, W]``."""


class Vid2VidGenerator(nn.Module):
    """vid2vid / wc-vid2vid generator (see the module docstring).

    Args:
        config: the model config.
    """

    def __init__(self, config: Vid2VidModelConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.first_frame = SPADEGenerator(c.num_labels, c.first_frame_filters, c.height, style_dim=0,
                                          num_upsamples=c.first_frame_upsamples, spade_hidden=c.first_frame_hidden)
        self.embedding = LabelEmbedding(c.num_labels, c.embed_filters, c.embed_max_filters, c.num_downsamples)
        widths = [min(c.max_filters, c.base_filters * 2 ** (c.num_layers - k)) for k in range(c.num_layers + 1)]
        self.head = snconv2d(c.num_labels, widths[0], 3, padding=1, spectral=c.spectral)  # at H / 2**num_layers
        maps = [4] + ([4] if c.uses_guidance else [])  # warped prev + mask; guidance + mask
        blocks = []
        for k in range(c.num_layers):
            level = c.num_layers - 1 - k  # output resolution H / 2**level
            emb = self.embedding.channels(level)
            if k >= c.num_layers - c.num_multi_spade:
                def norm(ch: int, emb: int = emb) -> nn.Module:
                    return MultiSPADE(ch, [emb, *maps], c.spade_hidden, "instance",
                                      ["bilinear"] * (1 + len(maps)))
            else:
                def norm(ch: int, emb: int = emb) -> nn.Module:
                    return SPADE(ch, emb, c.spade_hidden, "instance", interpolation="bilinear")
            blocks.append(ResidualGeneratorBlock(widths[k], widths[k + 1], upsample=True, norm=norm,
                                                 activation=lambda: nn.LeakyReLU(0.2), spectral=c.spectral))
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(widths[-1], 3, 3, padding=1), nn.Tanh())
        flow_in = c.num_labels * (1 + c.num_prev) + 3 * c.num_prev
        self.flow = FlowBranch(flow_in, c.flow_filters, c.max_filters, c.flow_downsamples, c.flow_blocks, c.spectral)

    def generate_first(self, labels: Tensor) -> Tensor:
        """labels ``[B, L, H, W]`` one-hot -> frame 0 ``[B, 3, H, W]`` in [-1, 1] (single-image SPADE)."""
        return self.first_frame(labels)

    def forward(self, labels: Tensor, prev_labels: Tensor, prev_images: Tensor,
                guidance: Tensor | None = None, guidance_mask: Tensor | None = None) -> FrameOutput:
        """One frame ``t >= 1``.

        Args:
            labels: ``[B, L, H, W]`` one-hot labels of frame t.
            prev_labels: ``[B, P, L, H, W]`` of frames t-P .. t-1 (oldest first).
            prev_images: ``[B, P, 3, H, W]`` outputs of frames t-P .. t-1 in [-1, 1] (no gradient needed).
            guidance: ``[B, 3, H, W]`` guidance image in [-1, 1] (``wc_vid2vid`` only; None = no guidance).
            guidance_mask: ``[B, 1, H, W]`` 1 where the guidance is set.
        """
        c = self.config
        batch, _, height, width = labels.shape
        if prev_labels.shape[1] != c.num_prev or prev_images.shape[1] != c.num_prev:
            raise ValueError(f"need {c.num_prev} previous frames, got {prev_labels.shape[1]} labels and "
                             f"{prev_images.shape[1]} images")
        # 1. Flow to the previous output and occlusion mask; warp the previous output.
        flow_in = torch.cat([labels, prev_labels.flatten(1, 2), prev_images.flatten(1, 2)], dim=1)
        flow, mask = self.flow(flow_in)  # [B, 2, H, W], [B, 1, H, W]
        warped = backward_warp(prev_images[:, -1], flow)  # [B, 3, H, W]
        warp_map = torch.cat([warped, mask], dim=1)  # [B, 4, H, W]
        # 2. Guidance (zeroed outside its mask, so unset pixels carry no colour).
        maps: list[Tensor | None] = [warp_map]
        if c.uses_guidance:
            if guidance is None:
                guidance_map = labels.new_zeros(batch, 4, height, width)
            else:
                gmask = guidance_mask if guidance_mask is not None else guidance.new_ones(batch, 1, height, width)
                guidance_map = torch.cat([guidance * gmask, gmask], dim=1)
            maps.append(guidance_map)
        # 3. SPADE residual decoder on the label embedding (Multi-SPADE in the last blocks).
        embeddings = self.embedding(labels, c.num_layers)
        factor = 2**c.num_layers
        x = self.head(F.interpolate(labels, size=(height // factor, width // factor), mode="area"))
        for k, block in enumerate(self.blocks):
            emb = embeddings[c.num_layers - 1 - k]
            x = block(x, emb, *maps) if k >= c.num_layers - c.num_multi_spade else block(x, emb)
        hallucinated = self.to_rgb(x)  # [B, 3, H, W]
        image = mask * warped + (1 - mask) * hallucinated
        return FrameOutput(image=image, hallucinated=hallucinated, warped=warped, flow=flow, mask=mask)


class TemporalDiscriminator(nn.Module):
    """Multi-scale PatchGAN over ``K`` consecutive frames (channels stacked) and the ``K - 1`` flows between them.

    Input: frames ``[B, K, 3, H, W]``, flows ``[B, K - 1, 2, H, W]`` (the exact backward flows, scaled).
    """

    def __init__(self, num_frames: int, num_scales: int, num_layers: int, channels: int, spectral: bool = True) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.net = MultiScalePatchDiscriminator(3 * num_frames + 2 * (num_frames - 1), num_scales, num_layers,
                                                channels, spectral=spectral)

    def forward(self, frames: Tensor, flows: Tensor):
        return self.net(frames.flatten(1, 2), flows.flatten(1, 2) / 16.0)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
