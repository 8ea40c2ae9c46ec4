"""Image classification: the harness that optimizers and number formats are measured on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from imaginate.config import TrainConfig, check_choice
from imaginate.data import ArrayDataset, DataError, load_digits, load_fashion_mnist, load_image_folder
from imaginate.engine import RunContext, System, unwrap
from imaginate.engine.images import captioned_grid
from imaginate.optim import OptimConfig, build_optimizer
from imaginate.systems.classify.model import MODELS, build_classifier

DATASETS = ("digits", "fashion_mnist", "image_folder")


@dataclass
class ClassifyDataConfig:
    """Args:
        name: digits (scikit-learn, always there) | fashion_mnist (Debian package or ``root``) |
            image_folder (``root`` with one sub-folder per class, or ``root/train`` + ``root/test``).
        root: folder of the data (fashion_mnist: optional; image_folder: required).
        image_size / channels: image_folder only (images are resized to image_size²).
        limit_train / limit_test: use only the first N images (0 = all).
    """

    name: str = "digits"
    root: str | None = None
    image_size: int = 32
    channels: int = 3
    limit_train: int = 0
    limit_test: int = 0

    def __post_init__(self) -> None:
        check_choice("data.name", self.name, DATASETS)
        if self.name == "image_folder" and not self.root:
            raise ValueError("data.root: required when data.name=image_folder (a folder with one sub-folder per class)")
        if self.image_size < 8:
            raise ValueError(f"data.image_size: must be >= 8, got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"data.channels: must be 1 or 3, got {self.channels}")
        if self.limit_train < 0 or self.limit_test < 0:
            raise ValueError("data.limit_train / data.limit_test: must be >= 0 (0 = all)")


@dataclass
class ClassifyModelConfig:
    """Args:
        name: mlp | cnn | resnet18 (ResNet-18 with a CIFAR-style stem, for small images).
        width: hidden width / base channels; 0 = the model's default.
    """

    name: str = "mlp"
    width: int = 0

    def __post_init__(self) -> None:
        check_choice("model.name", self.name, MODELS)
        if self.width < 0:
            raise ValueError(f"model.width: must be >= 0 (0 = default), got {self.width}")


@dataclass
class ClassifyConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=500, batch_size=64, eval_every=250))
    data: ClassifyDataConfig = field(default_factory=ClassifyDataConfig)
    model: ClassifyModelConfig = field(default_factory=ClassifyModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="madam"))


def load_classification_data(cfg: ClassifyDataConfig, seed: int = 0):
    """(train, test) data sets for ``cfg``; raises DataError naming what is missing."""
    if cfg.name == "digits":
        train, test = load_digits(seed=seed)
    elif cfg.name == "fashion_mnist":
        train, test = load_fashion_mnist(cfg.root, cfg.limit_train or None, cfg.limit_test or None)
    else:
        train, test = load_image_folder(cfg.root, cfg.image_size, cfg.channels, seed=seed)
    if cfg.name != "fashion_mnist":
        train, test = _limit(train, cfg.limit_train), _limit(test, cfg.limit_test)
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"data.name={cfg.name}: empty train or test split")
    return train, test


def _limit(ds, n: int):
    if not n or n >= len(ds):
        return ds
    if isinstance(ds, ArrayDataset):
        return ArrayDataset(ds.images[:n], ds.labels[:n], ds.class_names)
    return torch.utils.data.Subset(ds, range(n))


def gather(ds, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [B, C, H, W] and labels [B] for ``indices`` (fast path for in-memory data)."""
    if isinstance(ds, ArrayDataset):
        return ds.take(indices)
    items = [ds[int(i)] for i in indices]
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


class ClassifySystem(System):
    """One classifier, one optimizer, cross-entropy; evaluates top-1 accuracy on the test split."""

    def __init__(self, cfg: ClassifyConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        self.train_set, self.test_set = load_classification_data(cfg.data, seed=cfg.train.seed)
        self.class_names = list(getattr(self.train_set, "class_names", None) or
                                self.train_set.dataset.class_names)
        image, _ = self.train_set[0]
        model = build_classifier(cfg.model.name, tuple(image.shape), len(self.class_names), cfg.model.width)
        model = self.transform_model(model)
        optimizer = build_optimizer(cfg.optim, model)  # re-initialises zero biases for madam (explicit option)
        self.net = ctx.prepare(model)
        self.modules = {"classifier": self.net}
        self.optimizers = {"classifier": optimizer}

    def transform_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Hook for systems built on this one (e.g. quantised training): change the model before the
        optimizer is built. The default returns it unchanged."""
        return model

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = gather(self.train_set, self.ctx.batch_indices(step, len(self.train_set)))
        return x.to(self.ctx.device), y.to(self.ctx.device)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        def loss_fn(mb):
            x, y = mb
            logits = self.net(x)  # [B, classes]
            acc = (logits.argmax(1) == y).float().mean()
            return F.cross_entropy(logits.float(), y), {"train_acc": float(acc)}

        return self.ctx.update("classifier", self.optimizers["classifier"], batch, loss_fn)

    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Logits [N, classes] for images [N, C, H, W] (no grad, eval mode is the caller's)."""
        net = unwrap(self.net)
        out = []
        for chunk in images.split(batch_size):
            with self.ctx.autocast():
                out.append(net(chunk.to(self.ctx.device)).float().cpu())
        return torch.cat(out)

    def evaluate(self) -> dict[str, float]:
        correct, total, loss_sum = 0, 0, 0.0
        for start in range(0, len(self.test_set), 512):
            idx = torch.arange(start, min(start + 512, len(self.test_set)))
            x, y = gather(self.test_set, idx)
            logits = self.predict(x)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            total += len(y)
        return {"test_acc": correct / total, "test_loss": loss_sum / total}

    def sample(self) -> dict[str, torch.Tensor]:
        """A grid of test images captioned 'predicted/true', wrong ones in red."""
        n = min(32, len(self.test_set))
        x, y = gather(self.test_set, torch.arange(n))
        pred = self.predict(x).argmax(1)
        names = self.class_names
        captions = [f"{names[p][:6]}/{names[t][:6]}" for p, t in zip(pred.tolist(), y.tolist())]
        colors = [(0, 120, 0) if p == t else (200, 0, 0) for p, t in zip(pred.tolist(), y.tolist())]
        return {"predictions": captioned_grid(x, captions, colors, nrow=8, tile=72)}
