"""Class-conditional GAN: conditional-BN residual generator, projection discriminator, EMA, TTUR."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from imaginate.config import TrainConfig, check_choice
from imaginate.data import DataError, load_digits, load_fashion_mnist
from imaginate.engine import RunContext, System, unwrap
from imaginate.engine.images import make_grid
from imaginate.engine.system import frozen
from imaginate.nn import (
    GAN_LOSSES,
    DiffAugment,
    ModelEMA,
    ProjectionDiscriminator,
    d_loss,
    g_loss,
    gradient_penalty,
    lazy_penalty,
    r1_penalty,
)
from imaginate.systems.gan.model import ConditionalResGenerator

DATASETS = ("fashion_mnist", "digits")


@dataclass
class GANDataConfig:
    """Args:
        name: fashion_mnist (Debian package or ``root``) | digits (scikit-learn, 8x8).
        root: Fashion-MNIST folder (optional).
        limit_train: use only the first N training images (0 = all).
    """

    name: str = "fashion_mnist"
    root: str | None = None
    limit_train: int = 0

    def __post_init__(self) -> None:
        check_choice("data.name", self.name, DATASETS)
        if self.limit_train < 0:
            raise ValueError(f"data.limit_train: must be >= 0, got {self.limit_train}")


@dataclass
class GANModelConfig:
    z_dim: int = 64
    g_width: int = 64
    d_width: int = 64
    d_blocks: int = 3
    spectral_norm: bool = True

    def __post_init__(self) -> None:
        for name in ("z_dim", "g_width", "d_width", "d_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}: must be >= 1, got {getattr(self, name)}")


@dataclass
class GANLossConfig:
    """Args:
        loss: saturating | non_saturating | least_squares | wasserstein | hinge.
        lr_g / lr_d: two time-scale learning rates (Adam, betas (beta1, beta2)).
        r1_gamma: R1 penalty weight on real images (0 = off), applied every ``r1_interval`` steps.
        gp_weight: WGAN-GP weight (0 = off; use with loss=wasserstein).
        ema_beta: generator EMA decay used for evaluation and samples (0 = no EMA).
        diffaugment: DiffAugment policy applied to real and fake images before D ("" = off).
    """

    loss: str = "hinge"
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.999
    r1_gamma: float = 0.0
    r1_interval: int = 16
    gp_weight: float = 0.0
    ema_beta: float = 0.999
    ema_warmup: int = 100
    diffaugment: str = ""

    def __post_init__(self) -> None:
        check_choice("gan.loss", self.loss, GAN_LOSSES)
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise ValueError(f"gan.{name}: must be > 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "ema_beta"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"gan.{name}: must be in [0, 1), got {getattr(self, name)}")
        if self.r1_gamma < 0 or self.gp_weight < 0 or self.r1_interval < 1 or self.ema_warmup < 0:
            raise ValueError("gan.r1_gamma / gan.gp_weight / gan.ema_warmup: must be >= 0; gan.r1_interval >= 1")
        if self.diffaugment:
            try:
                DiffAugment(self.diffaugment)  # validates the policy (ValueError names the op)
            except ValueError as exc:
                raise ValueError(f"gan.diffaugment: {exc}") from None


@dataclass
class GANEvalConfig:
    num_samples: int = 2000
    batch_size: int = 250

    def __post_init__(self) -> None:
        if self.num_samples < 10 or self.batch_size < 1:
            raise ValueError("eval.num_samples: must be >= 10; eval.batch_size >= 1")


@dataclass
class GANConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=64, eval_every=1000))
    data: GANDataConfig = field(default_factory=GANDataConfig)
    model: GANModelConfig = field(default_factory=GANModelConfig)
    gan: GANLossConfig = field(default_factory=GANLossConfig)
    eval: GANEvalConfig = field(default_factory=GANEvalConfig)


def load_gan_data(cfg: GANDataConfig, seed: int):
    """(train, test) ArrayDatasets with images in [0, 1]."""
    if cfg.name == "fashion_mnist":
        train, test = load_fashion_mnist(cfg.root, cfg.limit_train or None, None)
    else:
        train, test = load_digits(seed=seed)
    if len(train) == 0:
        raise DataError(f"data.name={cfg.name}: empty training set")
    return train, test


class GANSystem(System):
    """D step (real vs detached fake, optional R1 / GP), then G step, then the EMA update."""

    def __init__(self, cfg: GANConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        self.train_set, self.test_set = load_gan_data(cfg.data, cfg.train.seed)
        if cfg.data.limit_train and cfg.data.name == "digits":
            self.train_set.images = self.train_set.images[: cfg.data.limit_train]
            self.train_set.labels = self.train_set.labels[: cfg.data.limit_train]
        self.class_names = self.train_set.class_names
        channels, size, _ = self.train_set.image_shape
        m = cfg.model
        generator = ConditionalResGenerator(m.z_dim, len(self.class_names), size, channels, m.g_width)
        discriminator = ProjectionDiscriminator(channels, len(self.class_names), m.d_width, m.d_blocks,
                                                spectral=m.spectral_norm)
        self.ema = ModelEMA(generator, cfg.gan.ema_beta, cfg.gan.ema_warmup) if cfg.gan.ema_beta > 0 else None
        self.generator = ctx.prepare(generator)
        self.discriminator = ctx.prepare(discriminator)
        self.modules = {"generator": self.generator, "discriminator": self.discriminator}
        if self.ema is not None:
            self.modules["generator_ema"] = ctx.prepare(self.ema, ddp=False)
        g = cfg.gan
        self.optimizers = {
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=g.lr_d, betas=(g.beta1, g.beta2)),
            "generator": torch.optim.Adam(generator.parameters(), lr=g.lr_g, betas=(g.beta1, g.beta2)),
        }
        self.augment = DiffAugment(g.diffaugment) if g.diffaugment else None
        self.step = 0

    # -- data ---------------------------------------------------------------------------------
    def train_batch(self, step: int) -> tuple[torch.Tensor, ...]:
        """Images in [-1, 1], labels, and the latents of D's and of G's fakes: all a function of (seed, step),
        so N processes together train on what one process would."""
        self.step = step
        x, y = self.train_set.take(self.ctx.batch_indices(step, len(self.train_set)))
        z_dim = self.cfg.model.z_dim
        return ((x * 2 - 1).to(self.ctx.device), y.to(self.ctx.device),
                self.ctx.batch_noise(step, z_dim, stream=0), self.ctx.batch_noise(step, z_dim, stream=1))

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment(x) if self.augment is not None else x

    # -- updates ------------------------------------------------------------------------------
    def train_step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        g = self.cfg.gan
        real, labels, z_d, z_g = batch

        def discriminator_loss(mb):
            real, labels, z = mb
            with torch.no_grad():
                fake = self.generator(z, labels)
            loss = d_loss(g.loss, self.discriminator(self._aug(real), labels),
                          self.discriminator(self._aug(fake), labels))
            logs = {}
            if g.r1_gamma > 0:
                # the penalty is on the D that training uses: D(augment(x)), differentiated at the real x
                r1 = lazy_penalty(self.step, g.r1_interval,
                                  lambda: r1_penalty(lambda x, y: self.discriminator(self._aug(x), y), real,
                                                     g.r1_gamma, labels))
                if r1 is not None:
                    loss, logs["r1"] = loss + r1, float(r1.detach()) / g.r1_interval
            if g.gp_weight > 0:
                gp = gradient_penalty(self.discriminator, real, fake, g.gp_weight, condition=labels)
                loss, logs["gp"] = loss + gp, float(gp)
            return loss, logs

        def generator_loss(mb):
            labels, z = mb
            return g_loss(g.loss, self.discriminator(self._aug(self.generator(z, labels)), labels))

        logs = self.ctx.update("discriminator", self.optimizers["discriminator"], (real, labels, z_d),
                               discriminator_loss)
        with frozen(self.discriminator):  # no D gradients (nor DDP syncs of them) during the G step
            logs |= self.ctx.update("generator", self.optimizers["generator"], (labels, z_g), generator_loss)
        if self.ema is not None:
            self.ema.update(unwrap(self.generator))
        return logs

    # -- looking at it ------------------------------------------------------------------------
    @property
    def eval_generator(self) -> torch.nn.Module:
        """The EMA generator when there is one (evaluation and samples), else the trained one.

        The EMA copy averages the weights only; its batch-norm running statistics would be the trained
        generator's (``ModelEMA`` copies buffers), which do not match the averaged weights. So they are
        re-estimated from the EMA generator's own activations whenever the average has moved since.
        """
        if self.ema is None:
            return unwrap(self.generator)
        updates = int(self.ema.num_updates)
        if getattr(self, "_bn_calibrated_at", None) != updates:
            self.recalibrate_batch_norm(self.ema.module)
            self._bn_calibrated_at = updates
        return self.ema.module

    @torch.no_grad()
    def recalibrate_batch_norm(self, net: torch.nn.Module, batches: int = 8, batch_size: int = 64,
                               seed: int = 12345) -> None:
        """Reset ``net``'s batch-norm running statistics to the plain average over ``batches`` batches of
        its own activations (fixed latents from ``seed``, labels cycling through the classes)."""
        norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        gen = torch.Generator().manual_seed(seed)
        device = next(net.parameters()).device
        was_training = net.training
        net.train()
        for i in range(batches):
            labels = (torch.arange(batch_size) + i * batch_size) % len(self.class_names)
            z = torch.randn(batch_size, self.cfg.model.z_dim, generator=gen)
            net(z.to(device), labels.to(device))
        net.train(was_training)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    def generate(self, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Images [N, C, H, W] in [0, 1] for ``labels`` [N], with latents drawn from ``seed``."""
        gen = torch.Generator().manual_seed(seed)
        net = self.eval_generator
        z = torch.randn(labels.shape[0], self.cfg.model.z_dim, generator=gen)
        out = [net(zc.to(self.ctx.device), yc.to(self.ctx.device)).float().cpu()
               for zc, yc in zip(z.split(500), labels.split(500))]
        return (torch.cat(out) + 1) / 2

    def sample(self) -> dict[str, torch.Tensor]:
        """A class x seed grid: row c holds 10 samples of class c."""
        k = len(self.class_names)
        labels = torch.arange(k).repeat_interleave(10)
        return {"class_by_seed": make_grid(self.generate(labels, seed=1), nrow=10)}

    def evaluate(self) -> dict[str, float]:
        from imaginate.systems.gan.evaluation import evaluate_generator

        return evaluate_generator(self)
