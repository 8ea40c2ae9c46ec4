"""Networks of the weakly supervised detector (wetectron, arXiv 2004.04725): backbone, ROI neck, heads.

The pipeline is split into four calls so that a caller can chunk the ROI neck (sequential batch
back-propagation) or put a module between ROI pooling and the neck (Concrete DropBlock):

    features(images [B, 3, H, W])           -> [B, F, h, w]      h = H // 8, w = W // 8
    roi_features(features, rois [R, 5])     -> [R, F, S, S]      then ``roi_dropout`` in training
    neck(pooled [R, F, S, S])               -> [R, D]
    heads(neck_out [R, D], rois_per_image)  -> dict of WSDDN and refinement outputs

Conventions:

* Boxes are continuous xyxy pixels of the images given to ``features``. ``rois`` rows are
  ``(batch_index, x1, y1, x2, y2)``, grouped by image in batch order; ``rois_per_image`` counts them.
* WSDDN streams have C outputs, foreground classes only, so ``image_scores`` index classes 0..C-1
  like the tags. wetectron gives them C + 1 with a background column whose image-level target is
  always 0 and which every consumer drops (``[:, 1:]``); that column only soaks up softmax mass which
  the BCE then pushes out again, so we leave it out, as WSDDN (Bilen & Vedaldi, 2016) does.
* Refinement branches have C + 1 outputs: index 0 is background, index c + 1 is class c. Their box
  deltas are per class, [R, C + 1, 4], encoded by ``losses.BoxCoder``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from imaginate.config import ConfigError
from imaginate.systems.wsod.sequential import checkpointed_neck

logger = logging.getLogger(__name__)

BACKBONES = ("vgg16", "small")
ROI_OPS = ("pool", "align")
BACKBONE_STRIDE = 8
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


@dataclass
class WSODModelConfig:
    """The detector network.

    Args:
        num_classes: foreground classes C.
        backbone: "vgg16" (the paper's, pool4 removed, conv5 dilated) or "small" (conv-BN-ReLU, CPU).
        width: channels of the small backbone's first stage (doubled per stage, up to 4x).
        frozen_stages: VGG16 conv stages whose weights are frozen (the paper freezes conv1-2 = 2 of
            its ImageNet weights). Applied only with ``backbone_weights``: without them the layers are
            random, and freezing random layers would cripple the detector, so a warning is logged and
            every layer trains.
        backbone_weights: a local file with torchvision's ImageNet VGG16 state dict (``features.*``,
            ``classifier.0/3``; ``.pth``/``.pt`` read with ``torch.load(weights_only=True)``, or
            ``.safetensors``); "" = train from scratch. Nothing is downloaded. Only the vgg16 backbone
            takes weights (there is no ResNet backbone in this detector).
        roi_size: side S of the pooled ROI grid.
        roi_op: "pool" (RoIPool, as wetectron's VGG16 configs) or "align" (RoIAlign, aligned=True).
        neck_dim: width D of fc6 and fc7 (4096 in the paper).
        dropout: dropout probability after fc6 and fc7.
        num_refinements: refinement branches K (3 in the paper; 0 gives plain WSDDN).
    """

    num_classes: int = 20
    backbone: str = "vgg16"
    width: int = 32
    frozen_stages: int = 0
    backbone_weights: str = ""
    roi_size: int = 7
    roi_op: str = "pool"
    neck_dim: int = 4096
    dropout: float = 0.5
    num_refinements: int = 3

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        max_frozen = len(VGG16_STAGES) if self.backbone == "vgg16" else 0
        if not 0 <= self.frozen_stages <= max_frozen:
            raise ValueError(
                f"frozen_stages must lie in [0, {max_frozen}] for backbone {self.backbone!r}, got {self.frozen_stages}"
            )
        if self.backbone_weights and self.backbone != "vgg16":
            raise ValueError(f"model.backbone_weights: torchvision weights fit backbone 'vgg16' only, "
                             f"not {self.backbone!r}")
        if self.roi_size < 1:
            raise ValueError(f"roi_size must be >= 1, got {self.roi_size}")
        if self.roi_op not in ROI_OPS:
            raise ValueError(f"roi_op must be one of {', '.join(ROI_OPS)}, got {self.roi_op!r}")
        if self.neck_dim < 1:
            raise ValueError(f"neck_dim must be >= 1, got {self.neck_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.num_refinements < 0:
            raise ValueError(f"num_refinements must be >= 0, got {self.num_refinements}")


class VGG16Backbone(nn.Module):
    """VGG16 conv1-conv5 with pool4 removed and conv5 dilated by 2: stride 8, 512 channels.

    Args:
        frozen_stages: leading conv stages (of 5) whose parameters get ``requires_grad=False``.
    """

    stride = BACKBONE_STRIDE
    out_channels = 512

    def __init__(self, frozen_stages: int = 0) -> None:
        super().__init__()
        stages, in_channels = [], 3
        for index, widths in enumerate(VGG16_STAGES):
            dilation = 2 if index == 4 else 1
            layers: list[nn.Module] = []
            for out_channels in widths:
                layers += [nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)]
                layers += [nn.ReLU(inplace=True)]
                in_channels = out_channels
            if index < 3:  # pool1-3; pool4 is removed and conv5 dilated instead, as in OICR/wetectron
                layers.append(nn.MaxPool2d(2, 2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        for stage in self.stages[:frozen_stages]:
            stage.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        x = images  # [B, 3, H, W]
        for stage in self.stages:
            x = stage(x)
        return x  # [B, 512, H // 8, W // 8]

    def conv_layers(self) -> list[nn.Conv2d]:
        """The 13 convolutions in order (conv1_1 ... conv5_3)."""
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]


def _conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
    return [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class SmallBackbone(nn.Module):
    """A small CNN for CPU runs: three conv-BN-ReLU pairs each followed by a 2x2 max-pool, then a
    dilated pair (stride 8). Max-pool downsampling keeps it exactly flip-equivariant for widths
    divisible by 8 when its kernels are mirror-symmetric (a test uses that).

    Args:
        width: channels of the first stage; then 2x, 4x, 4x.
    """

    stride = BACKBONE_STRIDE

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers, in_channels = [], 3
        for index, out_channels in enumerate(widths):
            dilation = 2 if index == 3 else 1
            layers += _conv_bn_relu(in_channels, out_channels, dilation)
            layers += _conv_bn_relu(out_channels, out_channels, dilation)
            if index < 3:
                layers.append(nn.MaxPool2d(2, 2))
            in_channels = out_channels
        self.body = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images)  # [B, 4 * width, H // 8, W // 8]


class RoINeck(nn.Module):
    """fc6 and fc7: flatten -> Linear -> ReLU -> dropout -> Linear -> ReLU -> dropout.

    Args:
        in_channels: F, channels of the pooled features.
        roi_size: S, side of the pooled grid.
        neck_dim: D, width of both layers.
        dropout: dropout probability.
    """

    def __init__(self, in_channels: int, roi_size: int, neck_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels * roi_size * roi_size, neck_dim)
        self.fc7 = nn.Linear(neck_dim, neck_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, pooled: Tensor) -> Tensor:
        x = pooled.flatten(1)  # [R, F * S * S]
        x = self.dropout(F.relu(self.fc6(x)))
        return self.dropout(F.relu(self.fc7(x)))  # [R, D]


def _init_head(layer: nn.Linear) -> nn.Linear:
    nn.init.normal_(layer.weight, std=0.001)  # wetectron's predictor initialisation
    nn.init.zeros_(layer.bias)
    return layer


def wsddn_scores(
    cls_logits: Tensor, det_logits: Tensor, rois_per_image: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """WSDDN's two-stream scores.

    Args:
        cls_logits: [R, C] classification stream.
        det_logits: [R, C] detection stream.
        rois_per_image: ROI counts per image, summing to R.

    Returns:
        roi_scores: [R, C] softmax over classes (cls) times softmax over the image's ROIs (det).
        image_scores: [B, C] sum of roi_scores over each image's ROIs, in [0, 1].
    """
    counts = [int(n) for n in rois_per_image]
    if sum(counts) != cls_logits.shape[0]:
        raise ValueError(f"rois_per_image sums to {sum(counts)} but there are {cls_logits.shape[0]} ROIs")
    det = torch.cat([d.softmax(dim=0) for d in det_logits.split(counts)]) if counts else det_logits
    roi_scores = cls_logits.softmax(dim=1) * det
    image_scores = [s.sum(dim=0) for s in roi_scores.split(counts)]
    image_scores = torch.stack(image_scores) if image_scores else roi_scores.new_zeros(0, cls_logits.shape[1])
    return roi_scores, image_scores


class WSDDNHead(nn.Module):
    """The MIL head: classification and detection streams, Linear(D, C) each (C, not C + 1: see the
    module docstring).

    Args:
        neck_dim: D.
        num_classes: C.
    """

    def __init__(self, neck_dim: int, num_classes: int) -> None:
        super().__init__()
        self.cls_stream = _init_head(nn.Linear(neck_dim, num_classes))
        self.det_stream = _init_head(nn.Linear(neck_dim, num_classes))

    def forward(self, x: Tensor, rois_per_image: Sequence[int]) -> dict[str, Tensor]:
        cls_logits, det_logits = self.cls_stream(x), self.det_stream(x)  # [R, C] each
        roi_scores, image_scores = wsddn_scores(cls_logits, det_logits, rois_per_image)
        return dict(
            cls_logits=cls_logits, det_logits=det_logits, roi_scores=roi_scores, image_scores=image_scores
        )


class RefinementHead(nn.Module):
    """K instance classifiers with box regression: Linear(D, C + 1) and Linear(D, 4 (C + 1)) each.

    Args:
        neck_dim: D.
        num_classes: C (foreground); outputs have C + 1 columns, background first.
        num_branches: K.
    """

    def __init__(self, neck_dim: int, num_classes: int, num_branches: int) -> None:
        super().__init__()
        self.num_outputs = num_classes + 1
        self.classifiers = nn.ModuleList(
            _init_head(nn.Linear(neck_dim, num_classes + 1)) for _ in range(num_branches)
        )
        self.regressors = nn.ModuleList(
            _init_head(nn.Linear(neck_dim, 4 * (num_classes + 1))) for _ in range(num_branches)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[R, D] -> logits [K, R, C + 1] and deltas [K, R, C + 1, 4]."""
        rois = x.shape[0]
        if not self.classifiers:
            return x.new_zeros(0, rois, self.num_outputs), x.new_zeros(0, rois, self.num_outputs, 4)
        logits = torch.stack([classifier(x) for classifier in self.classifiers])
        deltas = torch.stack(
            [regressor(x).reshape(rois, self.num_outputs, 4) for regressor in self.regressors]
        )
        return logits, deltas


def rois_from_proposals(proposals: Sequence[Tensor]) -> tuple[Tensor, list[int]]:
    """Per-image [R_i, 4] boxes -> rois [R, 5] (batch_index, x1, y1, x2, y2) and the counts R_i."""
    if not proposals:
        raise ValueError("proposals must hold one [R_i, 4] tensor per image, got none")
    rows = []
    for index, boxes in enumerate(proposals):
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"proposals[{index}] must be [R, 4], got {list(boxes.shape)}")
        rows.append(torch.cat([boxes.new_full((boxes.shape[0], 1), float(index)), boxes], dim=1))
    return torch.cat(rows), [int(boxes.shape[0]) for boxes in proposals]


class WSODNet(nn.Module):
    """Backbone, ROI pooling, fc6/fc7 neck, WSDDN head and refinement head (module docstring).

    Args:
        config: the network's settings.

    Attributes:
        roi_dropout: ``None`` or a module applied to the pooled ROI features in training mode
            (Concrete DropBlock). Its parameters belong to it, not to the detector: build the
            detector's optimizer from ``detector_parameters()``.
    """

    def __init__(self, config: WSODModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.backbone == "vgg16":
            self.backbone: nn.Module = VGG16Backbone()
        else:
            self.backbone = SmallBackbone(config.width)
        self.stride = BACKBONE_STRIDE
        self.roi_dropout: nn.Module | None = None
        self.roi_neck = RoINeck(self.backbone.out_channels, config.roi_size, config.neck_dim, config.dropout)
        self.wsddn = WSDDNHead(config.neck_dim, config.num_classes)
        self.refinement = RefinementHead(config.neck_dim, config.num_classes, config.num_refinements)
        self.loaded_weights: list[str] = []  # what backbone_weights filled ("conv", "fc6", "fc7")
        if config.backbone_weights:
            self.loaded_weights = load_torchvision_vgg16(self, read_state_dict(config.backbone_weights),
                                                         source=config.backbone_weights)
            for stage in self.backbone.stages[: config.frozen_stages]:
                stage.requires_grad_(False)
        elif config.frozen_stages:
            logger.warning("model.frozen_stages=%d ignored: no model.backbone_weights, so the layers are random "
                           "and all of them train", config.frozen_stages)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def detector_parameters(self) -> Iterator[nn.Parameter]:
        """Trainable parameters outside ``roi_dropout``."""
        for name, parameter in self.named_parameters():
            if parameter.requires_grad and not name.startswith("roi_dropout."):
                yield parameter

    def features(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, F, h, w] backbone features at stride 8."""
        return self.backbone(images)

    def roi_features(self, features: Tensor, rois: Tensor) -> Tensor:
        """[B, F, h, w] features and [R, 5] rois (batch_index, x1, y1, x2, y2 in image pixels) ->
        [R, F, S, S] pooled features, passed through ``roi_dropout`` when set and training.

        Pooling runs in float32 with autocast off (torchvision has no bfloat16 CPU kernel for it, and
        box coordinates lose pixels in half precision); the result comes back in the features' dtype.
        """
        size, scale = self.config.roi_size, 1.0 / self.stride
        with torch.autocast(device_type=features.device.type, enabled=False):
            wide = torch.float32 if features.dtype in (torch.float16, torch.bfloat16) else features.dtype
            features32, rois32 = features.to(wide), rois.to(wide)
            if self.config.roi_op == "pool":
                pooled = torchvision.ops.roi_pool(features32, rois32, (size, size), spatial_scale=scale)
            else:
                pooled = torchvision.ops.roi_align(
                    features32, rois32, (size, size), spatial_scale=scale, sampling_ratio=2, aligned=True
                )
        pooled = pooled.to(features.dtype)  # [R, F, S, S]
        if self.roi_dropout is not None and self.training:
            pooled = self.roi_dropout(pooled)
        return pooled

    def neck(self, pooled: Tensor) -> Tensor:
        """[R, F, S, S] -> [R, D]."""
        return self.roi_neck(pooled)

    def heads(self, neck_out: Tensor, rois_per_image: Sequence[int]) -> dict[str, Tensor]:
        """[R, D] neck output -> dict with

        * ``cls_logits``, ``det_logits``: [R, C] WSDDN streams,
        * ``roi_scores``: [R, C] WSDDN per-ROI scores (the first refinement branch's teacher),
        * ``image_scores``: [B, C] WSDDN image scores in [0, 1],
        * ``refine_logits``: [K, R, C + 1] (background first),
        * ``refine_deltas``: [K, R, C + 1, 4] box deltas per class.
        """
        outputs = self.wsddn(neck_out, rois_per_image)
        outputs["refine_logits"], outputs["refine_deltas"] = self.refinement(neck_out)
        return outputs

    def forward(self, images: Tensor, proposals: Sequence[Tensor], neck_chunk_size: int = 0) -> dict[str, Tensor]:
        """[B, 3, H, W] images and per-image [R_i, 4] proposals -> ``heads``' dict.

        ``neck_chunk_size`` > 0: sequential batch back-propagation (``sequential.checkpointed_neck``):
        the ROI pooling and neck activations are recomputed per chunk of that many ROIs in the
        backward pass instead of being stored; the gradients are the same.
        """
        rois, counts = rois_from_proposals(proposals)
        features = self.features(images)
        if neck_chunk_size > 0:
            neck_out = checkpointed_neck(features, rois, lambda f, r: self.neck(self.roi_features(f, r)),
                                         neck_chunk_size)
        else:
            neck_out = self.neck(self.roi_features(features, rois))
        return self.heads(neck_out, counts)


def read_state_dict(path: str) -> dict[str, Tensor]:
    """A state dict from a local ``.safetensors`` file or a ``torch.save``d one (``weights_only=True``: no
    code runs). A dict holding one ``state_dict`` or ``model`` entry is unwrapped.

    Raises:
        ConfigError: the file is missing or unreadable, or holds no mapping of tensors (names the file).
    """
    if not os.path.isfile(path):
        raise ConfigError(f"model.backbone_weights: no file {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip, safetensors and I/O errors all mean: not a weights file we can read
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"model.backbone_weights: cannot read {path} ({detail[:200]})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping) and len(state) == 1:
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"model.backbone_weights: {path} holds no state dict (a mapping of names to tensors)")
    return dict(state)


def load_torchvision_vgg16(net: WSODNet, state_dict: Mapping[str, Tensor], source: str = "state dict") -> list[str]:
    """Copy ImageNet VGG16 weights in torchvision's layout (``features.*``, ``classifier.0/3``) into
    ``net``: the 13 convolutions, and fc6/fc7 when the neck is 512 x 7 x 7 -> 4096 -> 4096.

    No weights ship offline: pass a state dict you loaded yourself, e.g. from a file saved from
    ``torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()`` (``model.backbone_weights``).
    Every shape is checked before anything is copied.

    Returns:
        the parts filled: "conv", and "fc6" / "fc7" when their shapes fit.

    Raises:
        ConfigError: naming ``source``, when the convolutions are missing or do not fit VGG16 (e.g. a
            ResNet or VGG16-BN state dict).
    """
    if not isinstance(net.backbone, VGG16Backbone):
        raise ValueError(f"load_torchvision_vgg16 needs backbone 'vgg16', got {net.config.backbone!r}")
    where = f"model.backbone_weights: {source}"
    if any(key.startswith("layer1.") for key in state_dict):
        raise ConfigError(f"{where} is a ResNet state dict; this detector's backbone is VGG16 (no ResNet backbone)")
    conv_keys = sorted(
        {key.rsplit(".", 1)[0] for key in state_dict if key.startswith("features.") and key.endswith(".weight")},
        key=lambda key: int(key.split(".")[1]) if key.split(".")[1].isdigit() else -1,
    )
    convs = net.backbone.conv_layers()
    if len(conv_keys) != len(convs):
        raise ConfigError(f"{where} has {len(conv_keys)} layers under 'features.', torchvision's VGG16 has "
                          f"{len(convs)} convolutions (VGG16-BN and other nets do not fit)")
    for key, conv in zip(conv_keys, convs):
        for name, param in (("weight", conv.weight), ("bias", conv.bias)):
            value = state_dict.get(f"{key}.{name}")
            if value is None or value.shape != param.shape:
                got = "missing" if value is None else list(value.shape)
                raise ConfigError(f"{where}: {key}.{name} is {got}, expected {list(param.shape)}")
    loaded = ["conv"]
    with torch.no_grad():
        for key, conv in zip(conv_keys, convs):
            conv.weight.copy_(state_dict[f"{key}.weight"])
            conv.bias.copy_(state_dict[f"{key}.bias"])
        for part, key, layer in (("fc6", "classifier.0", net.roi_neck.fc6), ("fc7", "classifier.3", net.roi_neck.fc7)):
            weight, bias = state_dict.get(f"{key}.weight"), state_dict.get(f"{key}.bias")
            if weight is not None and bias is not None and weight.shape == layer.weight.shape:
                layer.weight.copy_(weight)
                layer.bias.copy_(bias)
                loaded.append(part)
    return loaded
