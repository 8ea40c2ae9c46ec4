"""Perceptual (VGG19 feature) loss. Weights are never downloaded.

``PerceptualLoss()`` compares frozen VGG19 features of two images: by default the outputs of
relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 with weights 1/32, 1/16, 1/8, 1/4 and 1 and an L1
distance (pix2pixHD, SPADE, vid2vid, GANcraft).

The ImageNet VGG19 weights are torchvision's ``vgg19-dcbb9e9d.pth`` state dict. They are read from
``weights_path`` when given, else from the torch hub cache (``torch.hub.get_dir()/checkpoints/
vgg19-*.pth``, where ``torchvision.models.vgg19(weights="DEFAULT")`` would have stored them); if
neither exists the constructor raises ``FileNotFoundError`` saying which file to put where. Only
the ``features.*`` entries up to the deepest requested layer are used (a file holding just those is
enough).

Offline substitute: ``PerceptualLoss(feature_extractor=net, layer_weights=[...])`` uses any module
``net(x) -> list of feature tensors`` (e.g. a small classifier the project trained itself) instead
of VGG19; it is frozen the same way and gets the same input normalisation (set ``input_range=None``
to pass images through untouched). Such a loss is not the paper's perceptual loss: say so wherever
its numbers are reported.

Input normalisation is explicit: ``input_range=(-1, 1)`` (default, generator outputs after tanh) or
``(0, 1)``; images are mapped linearly to [0, 1], then standardised with the ImageNet mean and std.
Single-channel images are repeated to 3 channels for VGG19.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
DEFAULT_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_LAYER_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

# torchvision's VGG19 ("E") feature configuration: conv widths, "M" = 2x2 max pool.
_VGG19_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)


def _vgg19_layer_names() -> list[str]:
    """Names of ``torchvision.models.vgg19().features[i]``: conv1_1, relu1_1, conv1_2, ..., pool5."""
    names, block, conv = [], 1, 1
    for item in _VGG19_CONFIG:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


VGG19_LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(_vgg19_layer_names())}


def build_vgg19_features(last_index: int, device: torch.device | str | None = None) -> nn.Sequential:
    """``torchvision.models.vgg19().features[: last_index + 1]`` (same indices, so the same
    ``features.N.*`` state-dict keys), randomly initialised on ``device``."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG19_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1, device=device), nn.ReLU()]
            channels = int(item)
    return nn.Sequential(*layers[: last_index + 1])


def find_vgg19_weights(weights_path: str | Path | None = None) -> Path:
    """The VGG19 weight file to use: ``weights_path``, else the first ``vgg19-*.pth`` in the hub cache."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"VGG19 weights: no file at {path} (expected torchvision's {VGG19_FILE})")
        return path
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(cache.glob("vgg19-*.pth"))
    if not found:
        raise FileNotFoundError(
            f"VGG19 weights not found and never downloaded: put {VGG19_FILE} ({VGG19_URL}) in {cache}/ "
            f"or pass weights_path=FILE"
        )
    return found[0]


def load_vgg19_features(weights_path: str | Path | None, last_index: int) -> nn.Sequential:
    """VGG19 ``features[: last_index + 1]`` with ImageNet weights from a local file (see module doc)."""
    from imaginate.data.errors import DataError

    path = find_vgg19_weights(weights_path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise DataError(f"VGG19 weights {path}: not a readable weights file ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise DataError(f"VGG19 weights {path}: not a state_dict (holds a {type(state).__name__})")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    features = build_vgg19_features(last_index, device="meta")
    wanted = {f"features.{key}": key for key in features.state_dict()}
    missing = [key for key in wanted if key not in state]
    if missing:
        raise DataError(f"VGG19 weights {path}: not a torchvision vgg19 state_dict (missing {missing[0]})")
    bad = [key for key in wanted if not isinstance(state[key], torch.Tensor) or not torch.isfinite(state[key]).all()]
    if bad:
        raise DataError(f"VGG19 weights {path}: {bad[0]} is not a finite tensor")
    try:
        features.load_state_dict({wanted[key]: state[key] for key in wanted}, assign=True)
    except RuntimeError:
        raise DataError(f"VGG19 weights {path}: tensor shapes do not match torchvision's vgg19") from None
    return features


class VGG19Features(nn.Module):
    """Frozen VGG19 that returns the activations of the named layers (``relu3_1``, ``conv4_2``, ...).

    Args:
        weights_path: a torchvision vgg19 state_dict file; None: look in the torch hub cache.
        layers: layer names in ``VGG19_LAYER_INDEX``; the network is cut after the deepest one.
    """

    def __init__(self, weights_path: str | Path | None = None, layers: Sequence[str] = DEFAULT_LAYERS) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYER_INDEX]
        if unknown or not layers:
            raise ValueError(f"VGG19 layers: {unknown or 'none given'}; allowed: {', '.join(VGG19_LAYER_INDEX)}")
        self.layer_indices = [VGG19_LAYER_INDEX[name] for name in layers]
        self.features = load_vgg19_features(weights_path, max(self.layer_indices))
        self.requires_grad_(False).eval()

    def forward(self, x: Tensor) -> list[Tensor]:
        """x: ImageNet-normalised ``[B, 3, H, W]`` -> one ``[B, C_l, H_l, W_l]`` per requested layer."""
        wanted = {index: position for position, index in enumerate(self.layer_indices)}
        outputs: list[Tensor | None] = [None] * len(self.layer_indices)
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                outputs[wanted[index]] = x
        return outputs  # type: ignore[return-value]

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always frozen, in eval mode


class PerceptualLoss(nn.Module):
    """``sum_l w_l * L1(phi_l(fake), phi_l(real))`` with ``phi_l`` frozen features (see module doc).

    Gradients flow into ``fake`` only (the target features are computed without a graph).

    Args:
        weights_path: torchvision vgg19 state_dict file; None: the torch hub cache (never downloads).
        layers: VGG19 layer names (default relu1_1 ... relu5_1).
        layer_weights: one weight per layer (default 1/32, 1/16, 1/8, 1/4, 1).
        input_range: ``(low, high)`` of the input images, mapped to [0, 1] and then (3-channel
            images only) ImageNet-standardised; None: no normalisation at all.
        feature_extractor: a module ``x -> list of tensors`` replacing VGG19 (no weights file is
            read; ``layers`` is ignored; it is frozen here).
        num_scales: also compare 2x, 4x, ... bilinearly downsampled copies (losses summed).
        criterion: ``"l1"`` (default) or ``"l2"`` (mean squared error).
    """

    def __init__(
        self,
        weights_path: str | Path | None = None,
        layers: Sequence[str] = DEFAULT_LAYERS,
        layer_weights: Sequence[float] = DEFAULT_LAYER_WEIGHTS,
        input_range: tuple[float, float] | None = (-1.0, 1.0),
        feature_extractor: nn.Module | None = None,
        num_scales: int = 1,
        criterion: str = "l1",
    ) -> None:
        super().__init__()
        if criterion not in ("l1", "l2"):
            raise ValueError(f"perceptual criterion {criterion!r} is not one of l1, l2")
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        if input_range is not None and not input_range[1] > input_range[0]:
            raise ValueError(f"input_range must be (low, high) with high > low, got {input_range}")
        if feature_extractor is None:
            if len(layer_weights) != len(layers):
                raise ValueError(f"{len(layer_weights)} layer weights for {len(layers)} layers")
            feature_extractor = VGG19Features(weights_path, layers)
        elif weights_path is not None:
            raise ValueError("give either weights_path (VGG19) or feature_extractor, not both")
        self.uses_vgg = isinstance(feature_extractor, VGG19Features)
        self.feature_extractor = feature_extractor.requires_grad_(False).eval()
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.input_range = input_range
        self.num_scales = num_scales
        self.distance = F.l1_loss if criterion == "l1" else F.mse_loss
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        """Images in ``input_range`` -> ImageNet-standardised ``[B, 3, H, W]`` (gray repeated)."""
        if self.uses_vgg and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.input_range is None:
            return x
        low, high = self.input_range
        unit = (x - low) / (high - low)  # [B, C, H, W] in [0, 1]
        if unit.shape[1] != 3:
            return unit
        return (unit - self.mean.to(unit.dtype)) / self.std.to(unit.dtype)

    def _features(self, x: Tensor) -> list[Tensor]:
        features = list(self.feature_extractor(self.normalize(x)))
        if len(features) != len(self.layer_weights):
            raise ValueError(f"feature extractor gave {len(features)} features for {len(self.layer_weights)} weights")
        return features

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        """fake, real: ``[B, C, H, W]`` images in ``input_range``. Returns a scalar."""
        loss = fake.new_zeros(())
        for scale in range(self.num_scales):
            if scale > 0:
                fake = F.interpolate(fake, scale_factor=0.5, mode="bilinear", align_corners=False)
                real = F.interpolate(real, scale_factor=0.5, mode="bilinear", align_corners=False)
            with torch.no_grad():
                real_features = self._features(real)
            for weight, fake_feature, real_feature in zip(self.layer_weights, self._features(fake), real_features):
                loss = loss + weight * self.distance(fake_feature, real_feature)
        return loss

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.feature_extractor.eval()  # frozen: batch-norm statistics never move
        return self


class ImageGradients(nn.Module):
    """The offline stand-in for VGG features (no weights): ``x -> [x, d/dx x, d/dy x]``.

    ``[B, C, H, W]`` -> ``[B, C, H, W]``, ``[B, C, H, W-1]``, ``[B, C, H-1, W]``. Used by GANcraft and
    vid2vid when no VGG19 file is present; a loss on these is an image + edge L1, not a perceptual loss.
    """

    def forward(self, x: Tensor) -> list[Tensor]:
        return [x, x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]]


def offline_perceptual_loss(num_scales: int = 3) -> PerceptualLoss:
    """The weight-free substitute of the VGG19 loss: L1 of images and their finite differences at
    ``num_scales`` scales (``ImageGradients`` features, no input normalisation)."""
    return PerceptualLoss(feature_extractor=ImageGradients(), layer_weights=(1.0, 1.0, 1.0), input_range=None,
                          num_scales=num_scales)
