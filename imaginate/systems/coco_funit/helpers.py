"""The few-shot evaluation's helper networks: a species classifier (PAcc, mFID features) and a mask net
(foreground IoUs, style leak, foreground ratio), trained offline on real images of every species.

They train deterministically (fixed seeds) and are cached in memory and, with ``eval.cache_dir``, on disk
(state dicts, loaded with ``weights_only=True``) by :func:`cached_helper`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.engine.checkpoint import atomic_torch_save

FEATURES = "species-classifier features"  # the name of the classifier's feature space (mFID is only comparable within it)


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU())


class SpeciesClassifier(nn.Module):
    """A small CNN: four 3x3 conv stages (three 2x max-pools), global average pool, linear head.

    Args:
        num_classes: classes of the head.
        channels: image channels.
        width: channels of the first stage (then 2x, 4x, 4x); features have ``4 * width`` dims.
    """

    def __init__(self, num_classes: int, channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, width), nn.MaxPool2d(2), _conv(width, 2 * width), nn.MaxPool2d(2),
            _conv(2 * width, 4 * width), nn.MaxPool2d(2), _conv(4 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(4 * width, num_classes)

    def features(self, images: Tensor) -> Tensor:
        """``[N, C, H, W]`` in [0, 1] -> penultimate features ``[N, 4 * width]``."""
        return self.body(images * 2 - 1)

    def forward(self, images: Tensor) -> Tensor:
        """``[N, C, H, W]`` in [0, 1] -> logits ``[N, num_classes]``."""
        return self.head(self.features(images))


class MaskNet(nn.Module):
    """A two-level U-Net: image ``[N, C, H, W]`` in [0, 1] -> foreground logits ``[N, 1, H, W]`` (H % 4 == 0).

    Args:
        channels: image channels.
        width: channels at full resolution (2x and 4x below).
    """

    def __init__(self, channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(_conv(channels, width), _conv(width, width))
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), _conv(width, 2 * width), _conv(2 * width, 2 * width))
        self.bottom = nn.Sequential(nn.MaxPool2d(2), _conv(2 * width, 4 * width))
        self.dec2 = _conv(6 * width, 2 * width)
        self.dec1 = nn.Sequential(_conv(3 * width, width), nn.Conv2d(width, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        e1 = self.enc1(images * 2 - 1)  # [N, w, H, W]
        e2 = self.enc2(e1)  # [N, 2w, H/2, W/2]
        up = F.interpolate(self.bottom(e2), scale_factor=2.0, mode="nearest")  # [N, 4w, H/2, W/2]
        d2 = self.dec2(torch.cat([up, e2], dim=1))
        return self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], dim=1))


class ClassifierFeatureExtractor(nn.Module):
    """A FeatureExtractor (``name``, images in [0, 1] -> ``[N, D]``) around a SpeciesClassifier."""

    def __init__(self, classifier: SpeciesClassifier, name: str = FEATURES) -> None:
        super().__init__()
        self.classifier = classifier
        self.name = name

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.classifier.features(images)


def _fit(net: nn.Module, loss_fn: Callable[[Tensor], Tensor], num_items: int, steps: int, batch_size: int,
         lr: float, seed: int) -> nn.Module:
    """Adam on ``loss_fn(indices)`` for ``steps`` random batches drawn from a generator seeded by ``seed``
    (gradients on even inside the engine's ``no_grad`` evaluation)."""
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, num_items, (min(batch_size, num_items),), generator=gen)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(idx).backward()
            optimizer.step()
    return net.eval().requires_grad_(False)


def _augment(images: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random horizontal flips (species are mirror-symmetric as a class) and slight noise; -> (images, flipped)."""
    flip = torch.rand(images.shape[0], generator=gen) < 0.5  # [B]
    noise = 0.03 * torch.randn(images.shape, generator=gen)
    out = torch.where(flip[:, None, None, None].to(images.device), images.flip(-1), images)
    return (out + noise.to(images.device)).clamp(0, 1), flip


def train_species_classifier(images: Tensor, labels: Tensor, num_classes: int, steps: int = 400,
                             batch_size: int = 64, lr: float = 2e-3, width: int = 16, seed: int = 0,
                             device: str | torch.device = "cpu") -> SpeciesClassifier:
    """Train a SpeciesClassifier on real images (deterministic for a seed on CPU).

    Args:
        images: ``[N, C, H, W]`` float32 in [0, 1].
        labels: ``[N]`` int64 in [0, num_classes).
        num_classes: classes of the head.
        steps: Adam steps.
        batch_size: images per step.
        lr: Adam learning rate.
        width: see SpeciesClassifier.
        seed: seeds the initial weights, the batches and the augmentation.
        device: where to train.

    Returns:
        the trained classifier in eval mode without gradients.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SpeciesClassifier(num_classes, images.shape[1], width).to(device)
    gen = torch.Generator().manual_seed(seed + 1)

    def loss(idx: Tensor) -> Tensor:
        batch, _ = _augment(images[idx].to(device), gen)
        return F.cross_entropy(net(batch), labels[idx].to(device))

    _fit(net, loss, images.shape[0], steps, batch_size, lr, seed + 2)
    return net


def train_mask_net(images: Tensor, masks: Tensor, steps: int = 400, batch_size: int = 32, lr: float = 2e-3,
                   width: int = 16, seed: int = 0, device: str | torch.device = "cpu") -> MaskNet:
    """Train a MaskNet (image -> foreground mask) with binary cross-entropy (deterministic for a seed on CPU).

    Args:
        images: ``[N, C, H, W]`` float32 in [0, 1].
        masks: ``[N, H, W]`` bool foreground masks.
        steps: Adam steps.
        batch_size: images per step.
        lr: Adam learning rate.
        width: see MaskNet.
        seed: seeds the initial weights, the batches and the augmentation.
        device: where to train.

    Returns:
        the trained net in eval mode without gradients.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MaskNet(images.shape[1], width).to(device)
    gen = torch.Generator().manual_seed(seed + 1)

    def loss(idx: Tensor) -> Tensor:
        batch, flip = _augment(images[idx].to(device), gen)
        target = masks[idx].to(device)[:, None].float()  # [B, 1, H, W]
        target = torch.where(flip[:, None, None, None].to(device), target.flip(-1), target)
        return F.binary_cross_entropy_with_logits(net(batch), target)

    _fit(net, loss, images.shape[0], steps, batch_size, lr, seed + 2)
    return net


_HELPERS: dict[str, nn.Module] = {}


def cached_helper(kind: str, key: dict, train: Callable[[], nn.Module], empty: Callable[[], nn.Module],
                  cache_dir: str = "") -> nn.Module:
    """A helper network from the memory cache, else from ``cache_dir`` (if set), else ``train()``-ed and
    stored in both.

    Args:
        kind: a file-name prefix, e.g. "species_classifier".
        key: everything the trained weights depend on (JSON-serialisable); hashed into the file name.
        train: builds and trains the network.
        empty: builds an untrained network of the same shape (to load a cached state dict into).
        cache_dir: a folder for ``<kind>-<hash>.pt`` files ("" = memory only).
    """
    text = json.dumps({"kind": kind, "torch": torch.__version__, **key}, sort_keys=True)
    name = f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if name in _HELPERS:
        return _HELPERS[name]
    path = Path(cache_dir) / f"{name}.pt" if cache_dir else None
    if path is not None and path.is_file():
        net = empty()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        device = key.get("device", "cpu")
        net = net.to(device).eval().requires_grad_(False)
    else:
        net = train()
        if path is not None:
            atomic_torch_save({k: v.cpu() for k, v in net.state_dict().items()}, path)
    _HELPERS[name] = net
    return net
