"""COCO-FUNIT / FUNIT networks: content and style encoders, the content-conditioned style code with
the constant style bias (CSB), the AdaIN decoder and the projection residual discriminator.

The layout follows the reference animal-faces networks layer by layer, so that the defaults of
``COCOFUNITModelConfig`` build a generator of exactly 121,562,307 and a discriminator of exactly
92,038,977 parameters. FUNIT is the same generator with ``content_conditioned=False``: the style code
is the style encoder's output itself (no content MLP, no style MLP, no CSB).

Two details of the reference that matter for fidelity and are easy to miss:

- Every ``Linear`` of the three MLPs is followed by a ReLU, the last one included, so the style code
  and the AdaIN code are non-negative.
- The generator's residual blocks are post-activation (``conv -> norm -> ReLU`` twice, then add),
  and the upsampling blocks also normalise (AdaIN) and activate their learned 1x1 shortcut. The
  shared ``imaginate.nn.ResidualGeneratorBlock`` is pre-activation with a bare shortcut, so this
  file has its own ``PostActivationResidualBlock``; it reuses ``imaginate.nn.AdaIN``.

All convolutions that pad use reflection padding, as in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.nn import AdaIN, ResidualDiscriminatorBlock, snconv2d
from imaginate.nn.blocks import NormFactory


@dataclass
class COCOFUNITModelConfig:
    """Network sizes; the defaults are the reference's animal-faces config (256x256, 149 classes).

    Generator: ``num_filters`` base channels (the content code has ``num_filters *
    2**num_downsamples_content``); ``num_filters_mlp`` hidden width of the MLPs and length of the
    AdaIN code; ``style_dims`` length of the style code; ``usb_dims`` length of the constant style
    bias; ``num_res_blocks`` residual blocks ending the content encoder; ``num_adain_res_blocks``
    AdaIN residual blocks starting the decoder (fixed at 2 in the reference); ``num_mlp_blocks`` the
    reference's MLP depth setting, which gives ``max(2, num_mlp_blocks - 1)`` linear layers (3 -> 2).
    ``content_conditioned=False`` gives FUNIT.

    Options for small presets (defaults = the reference): ``style_bias_init`` the standard deviation
    of the CSB's initialisation (the reference draws it from N(0, 1); at small widths its norm then
    swamps the raw style in the style MLP's input and most style-code dimensions start dead);
    ``code_last_relu=False`` drops the ReLU after the last layer of the content and style MLPs, so the
    style code (their product) cannot die as a whole (the reference keeps it: non-negative codes).

    Discriminator: ``d_num_layers`` levels of two residual blocks, channels from ``d_num_filters``
    doubling up to ``d_max_num_filters``; ``num_classes`` training classes for the projection.
    """

    image_size: int = 256
    image_channels: int = 3
    num_filters: int = 64
    num_filters_mlp: int = 256
    style_dims: int = 64
    usb_dims: int = 1024
    num_res_blocks: int = 2
    num_adain_res_blocks: int = 2
    num_mlp_blocks: int = 3
    num_downsamples_content: int = 4
    num_downsamples_style: int = 5
    content_conditioned: bool = True
    style_bias_init: float = 1.0
    code_last_relu: bool = True
    num_classes: int = 149
    d_num_filters: int = 64
    d_max_num_filters: int = 1024
    d_num_layers: int = 6
    d_spectral: bool = True

    def __post_init__(self) -> None:
        minimums = {
            "image_channels": 1, "num_filters": 1, "num_filters_mlp": 1, "style_dims": 1, "usb_dims": 1,
            "num_res_blocks": 0, "num_adain_res_blocks": 0, "num_mlp_blocks": 2, "num_downsamples_content": 0,
            "num_downsamples_style": 2, "num_classes": 1, "d_num_filters": 1, "d_num_layers": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"model.{name}: must be an integer >= {minimum}, got {value!r}")
        if not (isinstance(self.style_bias_init, (int, float)) and self.style_bias_init >= 0):
            raise ValueError(f"model.style_bias_init: must be a number >= 0, got {self.style_bias_init!r}")
        if self.d_max_num_filters < self.d_num_filters:
            raise ValueError(
                f"model.d_max_num_filters: must be >= d_num_filters ({self.d_num_filters}), "
                f"got {self.d_max_num_filters}"
            )
        # The 7x7 reflect-padded stems need >= 8 px, the content code >= 2 px (3x3 reflect padding),
        # and every stride-2 stage an even size: one power of two covers all.
        multiple = 2 ** max(3, self.num_downsamples_content + 1, self.num_downsamples_style, self.d_num_layers - 1)
        if self.image_size < multiple or self.image_size % multiple:
            raise ValueError(f"model.image_size: must be a positive multiple of {multiple} for these "
                             f"downsampling depths, got {self.image_size}")


def small_model_config(**overrides: object) -> COCOFUNITModelConfig:
    """A CPU-sized config: 64x64 images, 16 base filters, 2 content / 3 style downsamples, 10 classes."""
    sizes: dict[str, object] = dict(
        image_size=64, num_filters=16, num_filters_mlp=64, style_dims=16, usb_dims=64, num_res_blocks=1,
        num_downsamples_content=2, num_downsamples_style=3, num_classes=10, d_num_filters=16,
        d_max_num_filters=128, d_num_layers=3,
    )
    sizes.update(overrides)
    return COCOFUNITModelConfig(**sizes)  # type: ignore[arg-type]


def conv_block(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, instance_norm: bool = False
) -> nn.Sequential:
    """Reflect-padded conv (``padding = (kernel_size - 1) // 2``, 1 for the 4x4 stride-2 convs), optional
    affine instance norm, ReLU: ``[B, in, H, W]`` -> ``[B, out, H / stride, W / stride]``."""
    padding = 1 if kernel_size == 4 else (kernel_size - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, padding_mode="reflect")
    ]
    if instance_norm:
        layers.append(nn.InstanceNorm2d(out_channels, affine=True))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def relu_mlp(
    in_features: int, hidden_features: int, out_features: int, num_linear: int, last_relu: bool = True
) -> nn.Sequential:
    """``num_linear`` (>= 2) ``Linear`` layers, each followed by ReLU (the last too, as in the reference,
    unless ``last_relu=False``): ``[B, in] -> [B, out]``."""
    widths = [in_features] + [hidden_features] * (num_linear - 1) + [out_features]
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*(layers if last_relu else layers[:-1]))


def dead_share(codes: Tensor) -> float:
    """The share of dimensions of ``codes [N, D]`` that are exactly zero for every one of the N rows
    (N >= 2): a dead ReLU dimension carries nothing and, inside a product, passes no gradient back."""
    if codes.dim() != 2 or codes.shape[0] < 2:
        raise ValueError(f"dead_share needs codes [N >= 2, D], got {tuple(codes.shape)}")
    return float((codes == 0).all(dim=0).double().mean())


class PostActivationResidualBlock(nn.Module):
    """Residual block ``y = act(n2(conv2(up(act(n1(conv1(x)))))) + shortcut(x)``, with reflect padding.

    Without upsampling the shortcut is the identity (``in_channels == out_channels`` required). With
    ``upsample=True`` (2x nearest between the two convs) the shortcut is learned:
    ``act(n_s(conv1x1(up(x))))``. Every norm is built as ``norm(out_channels)`` and called as
    ``norm(h, *condition)``, so the same block serves the content encoder (affine instance norm, no
    condition) and the decoder (``AdaIN``, condition = the AdaIN code). Shapes:
    ``[B, in, H, W]`` -> ``[B, out, sH, sW]``, s = 2 if ``upsample`` else 1.

    Args:
        in_channels: input channels.
        out_channels: output channels (also the hidden width).
        norm: channels -> norm layer called as ``norm(h, *condition)``.
        kernel_size: kernel of the two main convs (odd; 3 in the res blocks, 5 in the upsampling ones).
        upsample: 2x upsampling with a learned, normalised shortcut.
    """

    def __init__(
        self, in_channels: int, out_channels: int, norm: NormFactory, kernel_size: int = 3, upsample: bool = False
    ) -> None:
        super().__init__()
        if not upsample and in_channels != out_channels:
            raise ValueError(f"an identity shortcut needs in_channels == out_channels, got {in_channels}, "
                             f"{out_channels}")
        padding = kernel_size // 2
        self.upsample = upsample
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, padding_mode="reflect")
        self.norm1 = norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=padding, padding_mode="reflect")
        self.norm2 = norm(out_channels)
        self.activation = nn.ReLU()
        if upsample:
            self.shortcut_conv = nn.Conv2d(in_channels, out_channels, 1)
            self.shortcut_norm = norm(out_channels)

    def _up(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest") if self.upsample else x

    def forward(self, x: Tensor, *condition: Tensor) -> Tensor:
        """x: ``[B, in, H, W]``; condition: passed to every norm. Returns ``[B, out, sH, sW]``."""
        h = self.activation(self.norm1(self.conv1(x), *condition))  # [B, out, H, W]
        h = self.activation(self.norm2(self.conv2(self._up(h)), *condition))  # [B, out, sH, sW]
        if not self.upsample:
            return h + x
        shortcut = self.activation(self.shortcut_norm(self.shortcut_conv(self._up(x)), *condition))
        return h + shortcut


def _affine_instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class ContentEncoder(nn.Module):
    """7x7 conv, ``num_downsamples`` 4x4 stride-2 convs doubling the channels, ``num_res_blocks``
    residual blocks; affine instance norm and ReLU throughout.
    ``[B, C, H, W]`` -> ``[B, num_filters * 2**num_downsamples, H / 2**n, W / 2**n]``.

    Args:
        image_channels: input channels.
        num_filters: channels of the first conv.
        num_downsamples: stride-2 convs.
        num_res_blocks: residual blocks at the end.
    """

    def __init__(self, image_channels: int, num_filters: int, num_downsamples: int, num_res_blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_block(image_channels, num_filters, 7, instance_norm=True)]
        channels = num_filters
        for _ in range(num_downsamples):
            layers.append(conv_block(channels, 2 * channels, 4, stride=2, instance_norm=True))
            channels *= 2
        layers += [PostActivationResidualBlock(channels, channels, _affine_instance_norm)
                   for _ in range(num_res_blocks)]
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)


class StyleEncoder(nn.Module):
    """7x7 conv, two 4x4 stride-2 convs doubling the channels, ``num_downsamples - 2`` more at constant
    width, global average pool, 1x1 conv; ReLU, no normalisation. ``[B, C, H, W]`` -> ``[B, style_dims]``.

    Args:
        image_channels: input channels.
        num_filters: channels of the first conv (the rest have ``4 * num_filters``).
        num_downsamples: stride-2 convs (>= 2).
        style_dims: length of the output.
    """

    def __init__(self, image_channels: int, num_filters: int, num_downsamples: int, style_dims: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_block(image_channels, num_filters, 7)]
        channels = num_filters
        for i in range(num_downsamples):
            out = 2 * channels if i < 2 else channels
            layers.append(conv_block(channels, out, 4, stride=2))
            channels = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, style_dims, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images).flatten(1)  # [B, style_dims, 1, 1] -> [B, style_dims]


class AdaINDecoder(nn.Module):
    """AdaIN residual blocks, then upsampling AdaIN residual blocks (5x5 convs) halving the channels,
    then a 7x7 conv and tanh. ``content [B, C, h, w]``, ``adain_code [B, D]`` ->
    ``[B, image_channels, h * 2**num_upsamples, w * 2**num_upsamples]`` in [-1, 1].

    Args:
        in_channels: content channels C.
        adain_dims: length D of the AdaIN code (every AdaIN layer maps it by its own linear layer).
        image_channels: output channels.
        num_upsamples: upsampling blocks (= the content encoder's downsamples).
        num_res_blocks: AdaIN residual blocks at the input resolution.
    """

    def __init__(
        self, in_channels: int, adain_dims: int, image_channels: int, num_upsamples: int, num_res_blocks: int = 2
    ) -> None:
        super().__init__()

        def norm(channels: int) -> nn.Module:
            return AdaIN(channels, adain_dims)

        blocks = [PostActivationResidualBlock(in_channels, in_channels, norm) for _ in range(num_res_blocks)]
        channels = in_channels
        for _ in range(num_upsamples):
            blocks.append(PostActivationResidualBlock(channels, channels // 2, norm, kernel_size=5, upsample=True))
            channels //= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_image = nn.Sequential(nn.Conv2d(channels, image_channels, 7, padding=3, padding_mode="reflect"),
                                      nn.Tanh())

    def forward(self, content: Tensor, adain_code: Tensor) -> Tensor:
        h = content
        for block in self.blocks:
            h = block(h, adain_code)
        return self.to_image(h)


StyleInput = Tensor  # images [B, C, H, W] | [B, K, C, H, W], or raw styles [B, D] | [B, K, D]


class COCOFUNITGenerator(nn.Module):
    """COCO-FUNIT generator (FUNIT with ``content_conditioned=False``).

    ``content = encode_content(x_c)``; ``style = encode_style(x_s)`` (the raw style, ``[B, S]``);
    COCO-FUNIT's style code is ``style_mlp([style, csb]) * content_mlp(spatial_mean(content))``
    (elementwise, ``[B, S]``), FUNIT's is ``style`` itself; the image is
    ``decoder(content, adain_mlp(style_code))``.

    Args:
        image_channels: image channels.
        num_filters: base channels of both encoders.
        num_filters_mlp: hidden width of the MLPs and length of the AdaIN code.
        style_dims: length S of the style code.
        usb_dims: length of the constant style bias (CSB; the reference calls it the universal
            style bias).
        num_res_blocks: residual blocks ending the content encoder.
        num_adain_res_blocks: AdaIN residual blocks starting the decoder.
        num_mlp_blocks: reference MLP depth setting of the AdaIN MLP
            (``max(2, num_mlp_blocks - 1)`` linear layers).
        num_downsamples_content: stride-2 stages of the content encoder (= decoder upsamplings).
        num_downsamples_style: stride-2 stages of the style encoder (>= 2).
        content_conditioned: COCO-FUNIT (True) or FUNIT (False).
        style_bias_init: standard deviation of the CSB's N(0, s^2) initialisation (reference: 1).
        code_last_relu: ReLU after the last layer of the content and style MLPs (reference: True).
    """

    def __init__(
        self,
        image_channels: int = 3,
        num_filters: int = 64,
        num_filters_mlp: int = 256,
        style_dims: int = 64,
        usb_dims: int = 1024,
        num_res_blocks: int = 2,
        num_adain_res_blocks: int = 2,
        num_mlp_blocks: int = 3,
        num_downsamples_content: int = 4,
        num_downsamples_style: int = 5,
        content_conditioned: bool = True,
        style_bias_init: float = 1.0,
        code_last_relu: bool = True,
    ) -> None:
        super().__init__()
        self.style_dims = style_dims
        self.content_conditioned = content_conditioned
        self.content_encoder = ContentEncoder(image_channels, num_filters, num_downsamples_content, num_res_blocks)
        self.style_encoder = StyleEncoder(image_channels, num_filters, num_downsamples_style, style_dims)
        content_channels = self.content_encoder.out_channels
        self.decoder = AdaINDecoder(content_channels, num_filters_mlp, image_channels, num_downsamples_content,
                                    num_adain_res_blocks)
        self.adain_mlp = relu_mlp(style_dims, num_filters_mlp, num_filters_mlp, max(2, num_mlp_blocks - 1))
        if content_conditioned:
            csb = torch.randn(1, usb_dims)
            self.constant_style_bias = nn.Parameter(csb if style_bias_init == 1.0 else csb * style_bias_init)  # [1, U]
            self.content_mlp = relu_mlp(content_channels, num_filters_mlp, style_dims, 2, code_last_relu)
            self.style_mlp = relu_mlp(style_dims + usb_dims, num_filters_mlp, style_dims, 2, code_last_relu)

    @classmethod
    def from_config(cls, cfg: COCOFUNITModelConfig) -> COCOFUNITGenerator:
        return cls(cfg.image_channels, cfg.num_filters, cfg.num_filters_mlp, cfg.style_dims, cfg.usb_dims,
                   cfg.num_res_blocks, cfg.num_adain_res_blocks, cfg.num_mlp_blocks, cfg.num_downsamples_content,
                   cfg.num_downsamples_style, cfg.content_conditioned, cfg.style_bias_init, cfg.code_last_relu)

    def encode_content(self, images: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> content code ``[B, C_c, H / 2**n, W / 2**n]``."""
        return self.content_encoder(images)

    def encode_style(self, images: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> raw style ``[B, style_dims]`` (the style encoder's output)."""
        return self.style_encoder(images)

    def raw_style(self, style: StyleInput) -> Tensor:
        """Raw style ``[B, S]`` from images or raw styles; a K-shot input (``[B, K, C, H, W]`` images or
        ``[B, K, S]`` styles) is averaged over K in the raw-style space, as FUNIT averages the class
        codes of its K examples before they enter the decoder's MLP."""
        if style.dim() == 5:  # [B, K, C, H, W]
            per_example = self.encode_style(style.flatten(0, 1))  # [B*K, S]
            return per_example.view(style.shape[0], style.shape[1], -1).mean(dim=1)
        if style.dim() == 4:
            return self.encode_style(style)
        if style.dim() == 3:  # [B, K, S]
            return style.mean(dim=1)
        if style.dim() == 2:
            return style
        raise ValueError(f"style must be images [B, C, H, W] / [B, K, C, H, W] or styles [B, S] / [B, K, S], "
                         f"got shape {tuple(style.shape)}")

    def style_code(self, content: Tensor, style: StyleInput) -> Tensor:
        """The style code ``[B, S]`` that ``decode`` takes.

        Args:
            content: content code ``[B, C_c, h, w]`` (from ``encode_content``).
            style: style images or raw styles, one or K per example (see ``raw_style``).
        """
        raw = self.raw_style(style)  # [B, S]
        if not self.content_conditioned:
            return raw
        csb = self.constant_style_bias.expand(raw.shape[0], -1)  # [B, U]
        style_part = self.style_mlp(torch.cat([raw, csb], dim=1))  # [B, S]
        content_part = self.content_mlp(content.mean(dim=(2, 3)))  # [B, C_c] -> [B, S]
        return style_part * content_part

    def decode(self, content: Tensor, style_code: Tensor) -> Tensor:
        """content ``[B, C_c, h, w]``, style code ``[B, S]`` -> images ``[B, C, H, W]`` in [-1, 1]."""
        return self.decoder(content, self.adain_mlp(style_code))

    def forward(
        self, content_images: Tensor, style_images: Tensor, reconstruct: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Translate: content images ``[B, C, H, W]``, style images ``[B, C, H', W']`` or K per example
        ``[B, K, C, H', W']`` -> ``[B, C, H, W]`` in [-1, 1].

        With ``reconstruct=True`` (the training step): ``(images [2B, C, H, W], style codes [2B, S])``,
        rows 0..B-1 the translations, rows B..2B-1 the reconstructions ``G(x, x)``; the content is
        encoded once for both halves and each content image's raw style once.
        """
        content = self.encode_content(content_images)  # [B, C_c, h, w]
        if not reconstruct:
            return self.decode(content, self.style_code(content, style_images))
        raw = torch.cat([self.raw_style(style_images), self.encode_style(content_images)])  # [2B, S]
        doubled = torch.cat([content, content])  # [2B, C_c, h, w]
        codes = self.style_code(doubled, raw)  # [2B, S]
        return self.decode(doubled, codes), codes

    @staticmethod
    def interpolate_style(code_a: Tensor, code_b: Tensor, alpha: float | Tensor) -> Tensor:
        """``(1 - alpha) * code_a + alpha * code_b`` for codes ``[B, S]``; alpha a float or ``[B]``."""
        if isinstance(alpha, Tensor) and alpha.dim() == 1:
            alpha = alpha[:, None]
        return code_a + alpha * (code_b - code_a)


def _reflect_padding(module: nn.Module) -> None:
    """Switch every padded ``Conv2d`` under ``module`` to reflection padding (in place)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d) and any(p > 0 for p in layer.padding):  # type: ignore[union-attr]
            layer.padding_mode = "reflect"


class COCOFUNITDiscriminator(nn.Module):
    """Projection residual discriminator with patch logits.

    7x7 conv stem, then ``num_layers`` levels of two pre-activation residual blocks
    (``ResidualDiscriminatorBlock``: LeakyReLU(0.2), 3x3 convs, hidden width = input width, learned
    1x1 shortcut where the width changes); between levels a reflect-pad-1 3x3 stride-2 average pool.
    ``features = blocks(x)`` (``[B, F, h, w]``, no final activation),
    ``logits = conv1x1(LeakyReLU(features)) + <embedding[label], mean_hw(features)>`` (``[B, 1, h, w]``).
    Spectral norm on every conv, none on the class embedding; reflection padding as in the reference.

    The shared ``ProjectionDiscriminator(patch=True)`` differs (one block per level, 2x2 pooling, ReLU,
    no stem, per-location projection), so only its residual block is reused here.

    Args:
        num_classes: training classes of the projection embedding.
        image_channels: image channels.
        num_filters: stem channels.
        max_num_filters: channel cap.
        num_layers: levels (each but the last ends with a 2x downsampling).
        spectral: spectral norm on the convs.
    """

    def __init__(
        self,
        num_classes: int = 149,
        image_channels: int = 3,
        num_filters: int = 64,
        max_num_filters: int = 1024,
        num_layers: int = 6,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [snconv2d(image_channels, num_filters, 7, padding=3, spectral=spectral)]
        channels = num_filters
        for i in range(num_layers):
            out = min(2 * channels, max_num_filters)
            for block_in, block_out in ((channels, channels), (channels, out)):
                layers.append(ResidualDiscriminatorBlock(
                    block_in, block_out, downsample=False, spectral=spectral, preactivation=True,
                    activation=lambda: nn.LeakyReLU(0.2), hidden_channels=block_in,
                ))
            if i < num_layers - 1:
                layers += [nn.ReflectionPad2d(1), nn.AvgPool2d(3, stride=2)]
            channels = out
        self.blocks = nn.Sequential(*layers)
        _reflect_padding(self.blocks)
        self.feature_channels = channels
        self.to_logits = nn.Sequential(nn.LeakyReLU(0.2), snconv2d(channels, 1, 1, spectral=spectral))
        self.class_embedding = nn.Embedding(num_classes, channels)  # [num_classes, F]

    @classmethod
    def from_config(cls, cfg: COCOFUNITModelConfig) -> COCOFUNITDiscriminator:
        return cls(cfg.num_classes, cfg.image_channels, cfg.d_num_filters, cfg.d_max_num_filters,
                   cfg.d_num_layers, cfg.d_spectral)

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """images ``[B, C, H, W]``, labels ``[B]`` int64 -> (patch logits ``[B, 1, h, w]``, pooled features
        ``[B, F]`` for feature matching); ``h = H / 2**(num_layers - 1)``."""
        features = self.blocks(images)  # [B, F, h, w]
        pooled = features.mean(dim=(2, 3))  # [B, F]
        projection = (self.class_embedding(labels) * pooled).sum(dim=1)  # [B]
        logits = self.to_logits(features) + projection[:, None, None, None]  # [B, 1, h, w]
        return logits, pooled


def build_networks(cfg: COCOFUNITModelConfig) -> tuple[COCOFUNITGenerator, COCOFUNITDiscriminator]:
    """The generator and discriminator of ``cfg`` (on the current default device)."""
    return COCOFUNITGenerator.from_config(cfg), COCOFUNITDiscriminator.from_config(cfg)
