"""COCO-FUNIT / FUNIT training: few-shot unsupervised image translation (arXiv 2007.07431).

One step, as in the reference trainer (imaginaire's FUNIT trainer, which COCO-FUNIT shares):

- batch: content images ``x_a`` (class a) and, independently, K style images ``x_b`` of one class b
  per content image, both drawn from the seen classes;
- D step: hinge loss on the real style images (label b) against the detached translation
  ``x_ab = G(x_a, x_b)`` (label b); the reconstruction is not shown to D (as in the reference);
- G step: ``w_gan * 0.5 * (hinge(D(x_ab, b)) + hinge(D(x_aa, a)))`` with the reconstruction
  ``x_aa = G(x_a, x_a)``, ``+ w_fm * |feat(x_ab) - feat(x_b)|_1`` (D's pooled features, the style
  side detached), ``+ w_rec * |x_aa - x_a|_1``; D's parameters are frozen during the G step;
- EMA of G, used for evaluation, samples and ``imaginate translate``.

Images are in [-1, 1] inside the system and in [0, 1] at its edges (``translate``, samples, data).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import functional as F

from imaginate.config import ConfigError, TrainConfig, check_choice
from imaginate.data import (
    MAX_SPECIES,
    NUM_SPECIES,
    SPLIT,
    ClassSubset,
    DataError,
    SpeciesDataset,
    few_shot_folder,
)
from imaginate.data.species import VARIANTS
from imaginate.engine import RunContext, System, make_grid, unwrap
from imaginate.engine.batching import global_batch_indices, rank_share
from imaginate.engine.system import frozen
from imaginate.nn import ModelEMA, d_loss_terms, feature_matching_loss, g_loss
from imaginate.nn.regularizers import squared_gradient_norm_penalty
from imaginate.systems.coco_funit.model import (
    COCOFUNITDiscriminator,
    COCOFUNITGenerator,
    COCOFUNITModelConfig,
    dead_share,
    small_model_config,
)

DATASETS = ("species", "image_folder")
STYLE_STREAM = 7919  # offsets the seed of the style-image stream from the content stream's


@dataclass
class COCOFUNITDataConfig:
    """Args:
        name: species (procedural, offline, with known content) | image_folder (a folder per class,
            e.g. Animal Faces, plus a seen / unseen split file).
        images_per_species: training images rendered per seen species (species only).
        seed: the seed of the species contents (species only).
        plain_background: species drawn on a uniform grey instead of varied backgrounds (species only).
        variant: the species appearance set: "full" (many parts, fine textures) or "simple" (four large
            parts in bold colours; see ``imaginate.data.species_simple``) (species only).
        extra_species: more training species beyond the 19 seen ones, drawn by the same procedural rules
            (ids 24, 25, ...; species only): the unseen five stay unseen; few-shot translation generalises
            to new species only after many training species (FUNIT trains on 119 animal classes).
        root: the image folder (image_folder only).
        split_file: the seen / unseen class split (image_folder only; see ``imaginate.data.class_split``).

    Images have the model's size (``model.image_size``): species are rendered at it, folder images
    resized to it.
    """

    name: str = "species"
    images_per_species: int = 200
    seed: int = 0
    plain_background: bool = False
    variant: str = "full"
    extra_species: int = 0
    root: str | None = None
    split_file: str | None = None

    def __post_init__(self) -> None:
        check_choice("data.name", self.name, DATASETS)
        check_choice("data.variant", self.variant, VARIANTS)
        if self.images_per_species < 1:
            raise ValueError(f"data.images_per_species: must be >= 1, got {self.images_per_species}")
        if not 0 <= self.extra_species <= MAX_SPECIES - NUM_SPECIES:
            raise ValueError(f"data.extra_species: must be in [0, {MAX_SPECIES - NUM_SPECIES}], got {self.extra_species}")
        if self.extra_species and self.name != "species":
            raise ValueError("data.extra_species: only for data.name=species")
        if self.name == "image_folder":
            for key in ("root", "split_file"):
                if not getattr(self, key):
                    raise ValueError(f"data.{key}: required when data.name=image_folder (data.{key}=PATH)")


@dataclass
class COCOFUNITOptimConfig:
    """Adam for G and D; ``lr_decay_every`` > 0 multiplies both learning rates by ``lr_decay`` every
    that many steps (the reference halves them every 100k of 150k iterations)."""

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.999
    lr_decay_every: int = 0
    lr_decay: float = 0.5

    def __post_init__(self) -> None:
        for key in ("lr_g", "lr_d", "lr_decay"):
            if not getattr(self, key) > 0:
                raise ValueError(f"optim.{key}: must be > 0, got {getattr(self, key)}")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"optim.{key}: must be in [0, 1), got {getattr(self, key)}")
        if self.lr_decay_every < 0:
            raise ValueError(f"optim.lr_decay_every: must be >= 0 (0 = constant), got {self.lr_decay_every}")


@dataclass
class COCOFUNITLossConfig:
    """Weights of the G objective (the reference: 1, 1, 0.1) and of D's R1 penalty.

    ``r1`` = gamma > 0 adds ``gamma / 2 * E ||grad_x D(x)||^2`` on the real style images to the D loss
    (D(x): the image's mean patch logit). Imaginaire's COCO-FUNIT trainer has none (0, the default); the
    original FUNIT code penalises D's gradient on real images with weight 10.

    ``adversarial_warmup`` = W > 0 (an option for small presets; the reference has none) sets the GAN and
    feature-matching weights to 0 for the first W / 2 steps and ramps them linearly to their values over
    the next W / 2, so that G first learns to reconstruct its input: at batch 8 on a CPU the adversarial
    terms, even at a third of their weight, kept the same-image reconstruction a blur for thousands of
    steps (docs/results/coco_funit.md).
    """

    gan: float = 1.0
    feature_matching: float = 1.0
    reconstruction: float = 0.1
    adversarial_warmup: int = 0
    r1: float = 0.0

    def __post_init__(self) -> None:
        for key in ("gan", "feature_matching", "reconstruction", "adversarial_warmup", "r1"):
            if getattr(self, key) < 0:
                raise ValueError(f"loss.{key}: must be >= 0, got {getattr(self, key)}")

    def adversarial_scale(self, step: int) -> float:
        """The factor on the GAN and feature-matching weights at ``step`` (0-based): 1 without warm-up."""
        if self.adversarial_warmup == 0:
            return 1.0
        return min(1.0, max(0.0, 2.0 * step / self.adversarial_warmup - 1.0))


@dataclass
class COCOFUNITEvalConfig:
    """Few-shot evaluation on the unseen classes (see ``evaluation.py``).

    Args:
        shots: the K values (style examples per translation).
        translations_per_class: translations per unseen class and K.
        real_per_class: real images per unseen class (style examples and mFID reference).
        helper_images_per_class: images per class that train the species classifier and mask net.
        classifier_steps / mask_net_steps: training steps of those helper networks.
        batch_size: images per forward pass.
        cache_dir: where the helper networks are cached on disk ("" = in memory only).
        mfid: also compute per-class FID (needs many samples per class to be stable).
        targets: "unseen" (the few-shot task: examples of species never trained on) or "seen" (freshly
            drawn examples of five seen species; species data only): a model that fails on both has not
            learned to translate, one that fails only on unseen does not generalise.
    """

    shots: list[int] = field(default_factory=lambda: [1, 5])
    translations_per_class: int = 50
    real_per_class: int = 50
    helper_images_per_class: int = 100
    classifier_steps: int = 400
    mask_net_steps: int = 400
    batch_size: int = 50
    cache_dir: str = ""
    mfid: bool = True
    targets: str = "unseen"  # evaluation.TARGETS

    def __post_init__(self) -> None:
        from imaginate.systems.coco_funit.evaluation import TARGETS

        check_choice("eval.targets", self.targets, TARGETS)
        if not self.shots or any(k < 1 for k in self.shots):
            raise ValueError(f"eval.shots: must be a non-empty list of K >= 1, got {list(self.shots)}")
        for key in ("translations_per_class", "real_per_class", "helper_images_per_class", "batch_size"):
            if getattr(self, key) < 2:
                raise ValueError(f"eval.{key}: must be >= 2, got {getattr(self, key)}")
        if max(self.shots) > self.real_per_class:
            raise ValueError(f"eval.real_per_class: must be >= the largest K ({max(self.shots)}), "
                             f"got {self.real_per_class}")
        for key in ("classifier_steps", "mask_net_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"eval.{key}: must be >= 1, got {getattr(self, key)}")


@dataclass
class COCOFUNITConfig:
    """Args:
        style_shots: K style images of one class per content image during training (their raw
            style codes are averaged).
        ema_beta: decay of the generator EMA (0 = no EMA: evaluation uses the trained G).
        ema_warmup: EMA updates over which the decay ramps up from 0.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=20000, batch_size=8, eval_every=5000))
    data: COCOFUNITDataConfig = field(default_factory=COCOFUNITDataConfig)
    model: COCOFUNITModelConfig = field(default_factory=lambda: small_model_config(num_classes=len(SPLIT.seen)))
    optim: COCOFUNITOptimConfig = field(default_factory=COCOFUNITOptimConfig)
    loss: COCOFUNITLossConfig = field(default_factory=COCOFUNITLossConfig)
    eval: COCOFUNITEvalConfig = field(default_factory=COCOFUNITEvalConfig)
    style_shots: int = 1
    ema_beta: float = 0.999
    ema_warmup: int = 0

    def __post_init__(self) -> None:
        if self.style_shots < 1:
            raise ValueError(f"style_shots: must be >= 1, got {self.style_shots}")
        if not 0 <= self.ema_beta < 1:
            raise ValueError(f"ema_beta: must be in [0, 1), got {self.ema_beta}")
        if self.ema_warmup < 0:
            raise ValueError(f"ema_warmup: must be >= 0, got {self.ema_warmup}")
        if self.eval.targets == "seen" and self.data.name != "species":
            raise ValueError("eval.targets: 'seen' needs data.name=species (an image folder has no held-out "
                             "images of its seen classes)")


class FewShotTrainData:
    """The seen classes' images and labels, with each class's members for K-shot style sampling.

    Species are rendered into memory on first use (so that ``imaginate translate`` and evaluation of a
    saved run do not render the training set); folder images are read on demand.

    Args:
        cfg: the data config.
        image_size: the model's image size.
        channels: the model's image channels.
    """

    def __init__(self, cfg: COCOFUNITDataConfig, image_size: int, channels: int) -> None:
        self.species: SpeciesDataset | None = None
        self.folder: ClassSubset | None = None
        self._arrays: Tensor | None = None  # [N, 3, H, W], rendered on first use
        if cfg.name == "species":
            if channels != 3:
                raise ConfigError(f"model.image_channels: species images are RGB (3), got {channels}")
            ids = SPLIT.seen + tuple(range(NUM_SPECIES, NUM_SPECIES + cfg.extra_species))
            self.species = SpeciesDataset(ids, cfg.images_per_species, image_size, cfg.seed, cfg.plain_background,
                                          cfg.variant)
            self.labels = self.species.labels
            self.class_names = list(self.species.class_names)
        else:
            assert cfg.root is not None and cfg.split_file is not None  # checked by the config
            self.folder, _ = few_shot_folder(cfg.root, cfg.split_file, image_size, channels)
            self.labels = self.folder.labels
            self.class_names = list(self.folder.class_names)
        if len(self.labels) == 0:
            raise DataError(f"data.name={cfg.name}: no training images")
        self.members = [torch.nonzero(self.labels == c).flatten() for c in range(len(self.class_names))]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def images(self, indices: Tensor) -> Tensor:
        """``[len(indices), C, H, W]`` float32 in [0, 1] for int64 ``indices`` (any shape, flattened)."""
        flat = indices.reshape(-1)
        if self.species is not None:
            if self._arrays is None:
                self._arrays = self.species.prerender().images
            return self._arrays[flat]
        assert self.folder is not None
        return torch.stack([self.folder[int(i)][0] for i in flat])


def collapse_monitor(images: Tensor, codes: Tensor) -> dict[str, float]:
    """The style path's known failure mode, as training scalars.

    Args:
        images: ``[2B, C, H, W]``, the translations ``G(x_a, x_b)`` then the reconstructions ``G(x_a, x_a)``.
        codes: ``[2B, S]``, their style codes.

    Returns:
        ``dead_style_code``: share of style-code dimensions that are zero for every image of the batch
        (1 = the code is dead: the output no longer depends on the style image, and no gradient can
        revive it through the product of ReLUs); ``style_sensitivity``: mean absolute difference
        between translation and reconstruction of the same content, which differ only in the style
        image (0 = the style is ignored).
    """
    bsz = images.shape[0] // 2
    return {"dead_style_code": dead_share(codes.float()),
            "style_sensitivity": float((images[:bsz] - images[bsz:]).abs().mean())}


class COCOFUNITSystem(System):
    """COCO-FUNIT (``model.content_conditioned=true``) or FUNIT (false) with a projection D and EMA.

    Args:
        cfg: the run's config.
        ctx: the engine's run context (device, DDP, AMP, batching).
    """

    def __init__(self, cfg: COCOFUNITConfig, ctx: RunContext) -> None:
        super().__init__(cfg, ctx)
        m = cfg.model
        self._data: FewShotTrainData | None = None
        self._step = 0  # the step of the last train_batch
        if cfg.data.name == "species":  # cheap (rendering waits for the first batch): check now
            _ = self.data
        generator = COCOFUNITGenerator.from_config(m)
        discriminator = COCOFUNITDiscriminator.from_config(m)
        self.ema = ModelEMA(generator, cfg.ema_beta, cfg.ema_warmup) if cfg.ema_beta > 0 else None
        self.generator = ctx.prepare(generator)
        self.discriminator = ctx.prepare(discriminator)
        self.modules = {"generator": self.generator, "discriminator": self.discriminator}
        if self.ema is not None:
            self.modules["generator_ema"] = ctx.prepare(self.ema, ddp=False)
        o = cfg.optim
        self.optimizers = {
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2)),
            "generator": torch.optim.Adam(generator.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2)),
        }
        if o.lr_decay_every > 0:
            self.schedulers = {name: torch.optim.lr_scheduler.StepLR(opt, o.lr_decay_every, o.lr_decay)
                               for name, opt in self.optimizers.items()}

    # -- data ---------------------------------------------------------------------------------
    @property
    def data(self) -> FewShotTrainData:
        """The training data, opened on first use (translating with a saved folder run needs no data)."""
        if self._data is None:
            m = self.cfg.model
            data = FewShotTrainData(self.cfg.data, m.image_size, m.image_channels)
            if m.num_classes < len(data.class_names):
                raise ConfigError(f"model.num_classes: {m.num_classes} is fewer than the "
                                  f"{len(data.class_names)} seen classes of the data")
            self._data = data
        return self._data

    def style_indices(self, step: int) -> Tensor:
        """This rank's style images of ``step``: ``[B, K]`` indices, each row K images of one class.

        A pure function of (seed, step): the first column is an epoch permutation stream of its own
        (offset seed), the other K - 1 are drawn from the same class with a generator seeded by
        (seed, step); the global batch is drawn, then this rank's rows are taken.
        """
        n, shots = len(self.data), self.cfg.style_shots
        anchors = global_batch_indices(step, n, self.ctx.global_batch, self.ctx.seed + STYLE_STREAM)  # [G]
        rows = [anchors[:, None]]
        if shots > 1:
            gen = torch.Generator().manual_seed((self.ctx.seed + STYLE_STREAM) * 1_000_003 + step)
            members = [self.data.members[int(c)] for c in self.data.labels[anchors]]
            picks = torch.rand(anchors.shape[0], shots - 1, generator=gen, dtype=torch.float64)  # [G, K - 1]
            rows.append(torch.stack([m[(p * len(m)).long().clamp_max(len(m) - 1)] for m, p in zip(members, picks)]))
        styles = torch.cat(rows, dim=1)  # [G, K]
        mine = rank_share(torch.arange(styles.shape[0]), self.ctx.env.rank, self.ctx.env.world_size)
        return styles[mine]

    def train_batch(self, step: int) -> dict[str, Tensor]:
        """``content [B, C, H, W]``, ``content_label [B]``, ``style [B, K, C, H, W]``, ``style_label [B]``;
        images in [-1, 1], on the device."""
        self._step = step  # for the adversarial warm-up of the G step
        content_idx = self.ctx.batch_indices(step, len(self.data))  # [B]
        style_idx = self.style_indices(step)  # [B, K]
        b, shots = style_idx.shape
        style = self.data.images(style_idx)  # [B*K, C, H, W]
        style = style.view(b, shots, *style.shape[1:])
        batch = {
            "content": self.data.images(content_idx) * 2 - 1,
            "content_label": self.data.labels[content_idx],
            "style": style * 2 - 1,
            "style_label": self.data.labels[style_idx[:, 0]],
        }
        return {k: v.to(self.ctx.device) for k, v in batch.items()}

    # -- updates ------------------------------------------------------------------------------
    def discriminator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Hinge: real style images (label b) vs the detached translation (label b), one D call."""
        content, style, b = batch["content"], batch["style"], batch["style_label"]
        shots = style.shape[1]
        with torch.no_grad():
            translation = self.generator(content, style)  # [B, C, H, W]
        real = style.flatten(0, 1)  # [B*K, C, H, W]
        gamma = self.cfg.loss.r1
        if gamma > 0:
            real = real.detach().requires_grad_(True)
        logits, _ = self.discriminator(torch.cat([real, translation]), torch.cat([b.repeat_interleave(shots), b]))
        real_part, fake_part = d_loss_terms("hinge", logits[: real.shape[0]], logits[real.shape[0]:])
        logs = {"d_real": float(real_part.detach()), "d_fake": float(fake_part.detach())}
        loss = real_part + fake_part
        if gamma > 0:  # one D pass: the penalty differentiates the real rows' logits of the call above
            penalty = squared_gradient_norm_penalty(real, logits[: real.shape[0]].flatten(1).mean(1), gamma)
            loss, logs = loss + penalty, logs | {"r1": float(penalty.detach())}
        return loss, logs

    def generator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Hinge on translation and reconstruction, feature matching, reconstruction L1."""
        w = self.cfg.loss
        content, style, a, b = batch["content"], batch["style"], batch["content_label"], batch["style_label"]
        bsz, shots = style.shape[:2]
        # one G call, the content encoded once: rows 0..B-1 translate (style b), rows B..2B-1
        # reconstruct (the content is its own style); codes [2B, S] are the style codes of both halves
        images, codes = self.generator(content, style, reconstruct=True)  # [2B, C, H, W], [2B, S]
        reconstruction = images[bsz:]  # the translation x_ab is images[:bsz]
        with torch.no_grad():  # feature-matching target: D's pooled features of the style images
            _, real_features = self.discriminator(style.flatten(0, 1), b.repeat_interleave(shots))
            real_features = real_features.view(bsz, shots, -1).mean(dim=1)  # [B, F]
        logits, features = self.discriminator(images, torch.cat([b, a]))
        gan = 0.5 * (g_loss("hinge", logits[:bsz]) + g_loss("hinge", logits[bsz:]))
        matching = feature_matching_loss(real_features, features[:bsz])
        recon = F.l1_loss(reconstruction, content)
        ramp = w.adversarial_scale(self._step)
        loss = ramp * (w.gan * gan + w.feature_matching * matching) + w.reconstruction * recon
        logs = {"g_gan": gan, "feature_matching": matching, "reconstruction": recon}
        out = {k: float(v.detach()) for k, v in logs.items()} | {"adversarial_scale": ramp}
        return loss, out | collapse_monitor(images.detach(), codes.detach())

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        # 1. D step (G's output detached).
        logs = self.ctx.update("discriminator", self.optimizers["discriminator"], batch, self.discriminator_loss,
                               self.schedulers.get("discriminator"))
        # 2. G step with D frozen (no D gradients, nor DDP syncs of them).
        with frozen(self.discriminator):
            logs |= self.ctx.update("generator", self.optimizers["generator"], batch, self.generator_loss,
                                    self.schedulers.get("generator"))
        # 3. EMA of G.
        if self.ema is not None:
            self.ema.update(unwrap(self.generator))
        return logs

    # -- using it -----------------------------------------------------------------------------
    @property
    def eval_generator(self) -> COCOFUNITGenerator:
        """The EMA generator when there is one (evaluation, samples, translate), else the trained one."""
        net = self.ema.module if self.ema is not None else unwrap(self.generator)
        assert isinstance(net, COCOFUNITGenerator)
        return net

    @torch.no_grad()
    def translate(self, content: Tensor, style: Tensor, batch_size: int = 64) -> Tensor:
        """Few-shot translation with the evaluation generator, in batches.

        Args:
            content: ``[N, C, H, W]`` in [0, 1].
            style: ``[N, C, H, W]`` or ``[N, K, C, H, W]`` in [0, 1]; K examples are averaged in the
                raw style space.
            batch_size: translations per forward pass.

        Returns:
            ``[N, C, H, W]`` in [0, 1], on the CPU.
        """
        net, device = self.eval_generator, self.ctx.device
        out = [(net(c.to(device) * 2 - 1, s.to(device) * 2 - 1).float().cpu() + 1) / 2
               for c, s in zip(content.split(batch_size), style.split(batch_size))]
        return torch.cat(out).clamp(0, 1)

    def sample(self) -> dict[str, Tensor]:
        """A grid: content rows (seen classes) x style columns (one image per unseen class), the content
        images in the first column and the style images in the first row; and the content images over
        their reconstructions."""
        from imaginate.systems.coco_funit.evaluation import sample_pairs

        content, style = sample_pairs(self, rows=4, columns=5)  # [R, C, H, W], [S, C, H, W]
        rows, cols = content.shape[0], style.shape[0]
        translations = self.translate(content.repeat_interleave(cols, 0), style.repeat(rows, 1, 1, 1))
        blank = torch.ones_like(content[:1])
        tiles = [blank, style]
        for r in range(rows):
            tiles += [content[r:r + 1], translations[r * cols:(r + 1) * cols]]
        # same-image reconstruction G(x, x): check it resembles x before judging any translation
        reconstruction = self.translate(content, content)
        return {"content_by_style": make_grid(torch.cat(tiles), nrow=cols + 1),
                "reconstruction": make_grid(torch.cat([content, reconstruction]), nrow=rows)}

    def evaluate(self) -> dict[str, float]:
        from imaginate.systems.coco_funit.evaluation import evaluate_system

        return evaluate_system(self)
