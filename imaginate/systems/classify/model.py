"""Image classifiers for small inputs (8x8 to 64x64): an MLP, a small CNN and a CIFAR-style ResNet-18."""

from __future__ import annotations

import math

from torch import Tensor, nn

MODELS = ("mlp", "cnn", "resnet18")


class MLP(nn.Module):
    """Flatten, then Linear + ReLU layers, then a linear classifier.

    Args:
        in_shape: (C, H, W) of one input image.
        num_classes: number of output logits.
        hidden: widths of the hidden layers.
    """

    def __init__(
        self, in_shape: tuple[int, int, int], num_classes: int, hidden: tuple[int, ...] = (256, 256)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)  # [B, C, H, W] -> [B, num_classes]


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (same padding, no bias), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Three conv3x3-BN-ReLU blocks (widths w, 2w, 4w) with 2x2 max-pooling after the first two,
    global average pooling and a linear classifier. Works from 4x4 inputs up (8x8 -> 2x2 features,
    28x28 -> 7x7).

    Args:
        in_channels: channels of the input images.
        num_classes: number of output logits.
        width: channels of the first block.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, width),
            nn.MaxPool2d(2),
            conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2),
            conv_bn_relu(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))  # [B, C, H, W] -> [B, num_classes]


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, identity (or 1x1 conv-BN projection) shortcut, ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first convolution and of the projection.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))  # [B, out_channels, H / stride, W / stride]


class ResNet18Small(nn.Module):
    """ResNet-18 (BasicBlock x [2, 2, 2, 2], widths w, 2w, 4w, 8w) with the CIFAR-style stem:
    a 3x3 stride-1 convolution and no max-pool, for 8..64 px inputs. At width 64 with 3 input
    channels and 10 classes it has 11,173,962 parameters.

    Args:
        in_channels: channels of the input images.
        num_classes: number of output logits.
        width: channels of the stem and the first stage.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, width)
        stages: list[nn.Module] = []
        channels = width
        for i, out_channels in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(
                    BasicBlock(channels, out_channels, stride), BasicBlock(out_channels, out_channels)
                )
            )
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        features = self.stages(self.stem(images))  # [B, 8w, H / 8, W / 8]
        return self.classifier(self.pool(features))  # [B, num_classes]


def build_classifier(
    name: str, in_shape: tuple[int, int, int], num_classes: int, width: int = 0
) -> nn.Module:
    """A classifier by name.

    Args:
        name: one of MODELS: "mlp", "cnn", "resnet18".
        in_shape: (C, H, W) of one input image.
        num_classes: number of output logits.
        width: 0 keeps the model's default; otherwise the MLP's hidden width (two layers), the CNN's
            or the ResNet's first-stage channels.
    """
    if width < 0:
        raise ValueError(f"model.width must be >= 0 (0 = the model's default), got {width}")
    in_channels = in_shape[0]
    if name == "mlp":
        return MLP(in_shape, num_classes) if width == 0 else MLP(in_shape, num_classes, hidden=(width, width))
    if name == "cnn":
        return SmallCNN(in_channels, num_classes) if width == 0 else SmallCNN(in_channels, num_classes, width)
    if name == "resnet18":
        return (
            ResNet18Small(in_channels, num_classes)
            if width == 0
            else ResNet18Small(in_channels, num_classes, width)
        )
    raise ValueError(f"unknown model.name {name!r}: choose one of {', '.join(MODELS)}")
