"""GANcraft training (arXiv 2104.07659): a neural renderer of one block world, with no paired photos.

Data (built in memory on first use, from the config alone):

- the training world (``data.world_file`` or a procedural world of ``data.world_seed``);
- training views: with ``data.view_sampling=fresh`` (default, the paper's) every step draws new random
  valid cameras, ray casts them (first ``model.max_hits`` hits) and makes their pseudo-GT with a new random
  style (``views.ViewSampler``; nothing kept between steps); ``fixed`` casts ``data.num_views`` views once
  and keeps them. ``eval_views`` fixed views serve the samples, the style mean and the evaluation;
- pseudo ground truth: a frozen SPADE translator (``pseudo_gt.py``) applied to each view's segmentation.
  The translator is read from ``data.translator_file``, or trained at the start of the run on
  (segmentation, photo) pairs of other procedural worlds (``data.translator_steps``) and kept as the
  frozen module ``translator`` in the checkpoints (``data.translator_cache`` also writes / reuses a file);
- "real" photos: photo-shader renders of OTHER procedural worlds (seeds from ``PHOTO_WORLD_SEED_BASE``)
  with random lighting, unpaired with the training views.

One step: D step then G step (D frozen), Adam betas (0, 0.999), G 1e-4 (voxel features 1e-3), D 4e-4.

- Style: the style encoder on the view's pseudo-GT gives (mu, logvar); z is reparameterised; KL 0.05.
- G: 10 * L2(render, pseudo-GT) + 10 * "perceptual" + (0.5 + 0.5) * OASIS G loss + 0.05 * KL. The
  perceptual term has no VGG19 offline: ``loss.perceptual_net=gradients`` (default) is an L1 distance of
  the images and their horizontal / vertical finite differences at 3 scales (``imaginate.nn.PerceptualLoss``
  with a fixed gradient "feature net"); ``vgg19`` uses real VGG19 features when the user has the weights.
- D: the OASIS (N+1)-class segmentation discriminator (``discriminator.py``); its real set is the photos
  (weight ``loss.gan_photo``) and the pseudo-GT (``loss.gan_pseudo_gt``), the fake set the renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.config import TrainConfig, check_choice
from imaginate.data.blockworld import (
    BlockWorld,
    PhotoStyle,
    generate_world,
    label_map,
    orbit,
    random_valid_poses,
    ray_voxel_intersections,
    render_photo,
)
from imaginate.data.blockworld.minecraft import hollow, load_any_world
from imaginate.data.blockworld.world import LAYOUTS
from imaginate.engine import RunContext, System, make_grid, unwrap
from imaginate.engine.batching import global_batch_indices, rank_share
from imaginate.engine.system import frozen
from imaginate.nn import PerceptualLoss
from imaginate.nn.perceptual import ImageGradients, offline_perceptual_loss  # noqa: F401 (old name kept)
from imaginate.systems.gancraft.discriminator import (
    FPSEDiscriminator,
    SegmentationDiscriminator,
    discriminator_loss,
    fpse_losses,
    oasis_real_loss,
)
from imaginate.systems.gancraft.model import GANcraftGenerator, GANcraftModelConfig
from imaginate.systems.gancraft.networks import gaussian_kl, reparameterize
from imaginate.systems.gancraft.pseudo_gt import (
    PseudoGTConfig,
    SegPhotoPairs,
    SPADETranslator,
    apply_pseudo_gt,
    load_translator,
    save_translator,
    style_vector,
    train_pseudo_gt,
)
from imaginate.systems.gancraft.views import ViewSampler, cast_views, hits_of, render_views

REFERENCE_VGG_LAYERS = ("relu3_1", "relu4_1", "relu5_1")  # imaginaire's gancraft perceptual_loss
REFERENCE_VGG_WEIGHTS = (0.125, 0.25, 1.0)
PHOTO_WORLD_SEED_BASE = 900_000  # "real photo" worlds; training worlds stay below, translator pairs above 1e6
PHOTO_STREAM = 7919  # offsets the photo batch stream's seed from the view stream's


@dataclass
class GANcraftDataConfig:
    """Args:
        world_size: ``[X, Y, Z]`` of the procedural training world (ignored with ``world_file``).
        world_seed: its seed (0 .. 899999).
        world_file: a world to train on instead of a procedural one: a ``.npy`` block grid
            (``imaginate.data.blockworld.load_world``), a Sponge ``.schem``, a Java world folder or one
            ``.mca`` region file (``imaginate.data.blockworld.minecraft``; the ``minecraft`` extra).
        world_layout: the ``.npy`` file's axis order (``yzx`` for the reference's files).
        world_box: ``[x0, y0, z0, x1, y1, z1]`` the crop of a Minecraft world (Minecraft coordinates, half-open).
        block_labels: a ``block,label`` CSV mapping Minecraft block ids to labels (default the shipped table).
        hollow: air in place of solid blocks farther than this many blocks from air (0: keep interiors;
            the reference erodes by 2).
        view_sampling: ``fresh``: new random views every step (the paper); ``fixed``: ``num_views`` views cast
            once and kept (336 bytes per pixel).
        num_views: the fixed views (``view_sampling=fixed``).
        image_size: view, photo and pseudo-GT size in pixels.
        photo_worlds / photos_per_world: the unpaired "real" photos (other worlds, random lighting).
        photo_seed: picks the photo worlds and views.
        pseudo_gt_style: ``random``: each view's pseudo-GT gets a random lighting code; ``mean``: all the
            translator's mean style.
        translator_file: a saved translator (``save_translator``) to use; empty: train one.
        translator_cache: where to save the trained translator, reused when the file exists.
        translator_steps / translator_worlds / translator_views_per_world: its training.
        translator: its sizes and optimisation.
    """

    world_size: list[int] = field(default_factory=lambda: [64, 32, 64])
    world_seed: int = 1
    world_file: str = ""
    world_layout: str = "xyz"
    world_box: list[int] = field(default_factory=list)
    block_labels: str = ""
    hollow: int = 0
    view_sampling: str = "fresh"
    num_views: int = 256
    image_size: int = 64
    photo_worlds: int = 8
    photos_per_world: int = 32
    photo_seed: int = 0
    pseudo_gt_style: str = "random"
    translator_file: str = ""
    translator_cache: str = ""
    translator_steps: int = 400
    translator_worlds: int = 4
    translator_views_per_world: int = 32
    translator: PseudoGTConfig = field(default_factory=PseudoGTConfig)

    def __post_init__(self) -> None:
        if len(self.world_size) != 3 or min(self.world_size) < 4 or self.world_size[1] < 8:
            raise ValueError(f"data.world_size: must be [X, Y, Z], each >= 4 and Y >= 8, got {list(self.world_size)}")
        if not 0 <= self.world_seed < PHOTO_WORLD_SEED_BASE:
            raise ValueError(f"data.world_seed: must be in 0..{PHOTO_WORLD_SEED_BASE - 1}, got {self.world_seed}")
        for key in ("num_views", "image_size", "photo_worlds", "photos_per_world", "translator_worlds",
                    "translator_views_per_world"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("photo_seed", "translator_steps"):
            if getattr(self, key) < 0:
                raise ValueError(f"data.{key}: must be >= 0, got {getattr(self, key)}")
        check_choice("data.pseudo_gt_style", self.pseudo_gt_style, ("random", "mean"))
        check_choice("data.view_sampling", self.view_sampling, ("fresh", "fixed"))
        check_choice("data.world_layout", self.world_layout, LAYOUTS)
        if self.world_box and (len(self.world_box) != 6 or any(
                hi <= lo for lo, hi in zip(self.world_box[:3], self.world_box[3:]))):
            raise ValueError(f"data.world_box: must be [x0, y0, z0, x1, y1, z1] with x1 > x0, y1 > y0, z1 > z0, "
                             f"got {list(self.world_box)}")
        if self.hollow < 0:
            raise ValueError(f"data.hollow: must be >= 0, got {self.hollow}")


@dataclass
class GANcraftLossConfig:
    """Weights of the G objective (the paper's: 10, 10, 0.5, 0.5, 0.05) and the perceptual features."""

    l2: float = 10.0
    perceptual: float = 10.0
    gan_photo: float = 0.5
    gan_pseudo_gt: float = 0.5
    kl: float = 0.05
    perceptual_net: str = "gradients"
    vgg19_weights: str = ""

    def __post_init__(self) -> None:
        for key in ("l2", "perceptual", "gan_photo", "gan_pseudo_gt", "kl"):
            if getattr(self, key) < 0:
                raise ValueError(f"loss.{key}: must be >= 0, got {getattr(self, key)}")
        if self.gan_photo + self.gan_pseudo_gt <= 0:
            raise ValueError("loss.gan_photo: gan_photo + gan_pseudo_gt must be > 0 (the discriminator needs reals)")
        check_choice("loss.perceptual_net", self.perceptual_net, ("gradients", "vgg19"))


@dataclass
class GANcraftOptimConfig:
    lr_g: float = 1e-4
    lr_voxel_features: float = 1e-3
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.999

    def __post_init__(self) -> None:
        for key in ("lr_g", "lr_voxel_features", "lr_d"):
            if not getattr(self, key) > 0:
                raise ValueError(f"optim.{key}: must be > 0, got {getattr(self, key)}")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"optim.{key}: must be in [0, 1), got {getattr(self, key)}")


@dataclass
class GANcraftConfig:
    """Args:
        disc_type: ``oasis``: a full-resolution U-Net with class-balanced cross-entropy; ``fpse``: the
            reference's feature-pyramid network at 1/4 resolution (``FPSEDiscriminator``, image size a
            multiple of 32; the reference's width is 128).
        disc_channels / disc_depth: the discriminator's first width and (oasis) U-Net depth.
        eval_path_frames: orbit frames of the view-consistency evaluation.
        eval_views: training views rendered for the realism statistics.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100000, batch_size=8, eval_every=10000))
    data: GANcraftDataConfig = field(default_factory=GANcraftDataConfig)
    model: GANcraftModelConfig = field(default_factory=GANcraftModelConfig)
    loss: GANcraftLossConfig = field(default_factory=GANcraftLossConfig)
    optim: GANcraftOptimConfig = field(default_factory=GANcraftOptimConfig)
    disc_type: str = "oasis"
    disc_channels: int = 64
    disc_depth: int = 4
    eval_path_frames: int = 12
    eval_views: int = 32

    def __post_init__(self) -> None:
        for key in ("disc_channels", "disc_depth", "eval_views"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if self.eval_path_frames < 2:
            raise ValueError(f"eval_path_frames: must be >= 2, got {self.eval_path_frames}")
        check_choice("disc_type", self.disc_type, ("oasis", "fpse"))
        depth = self.disc_depth if self.disc_type == "oasis" else 5
        factor = 2 ** max(depth, self.data.translator.num_upsamples)
        if self.data.image_size % factor:
            raise ValueError(f"data.image_size: must be a multiple of {factor} (2**disc_depth, 32 for the fpse "
                             f"discriminator, and 2**data.translator.num_upsamples), got {self.data.image_size}")


class FrozenTranslator(nn.Module):
    """The pseudo-GT translator, frozen, with a ``ready`` flag saved in checkpoints (0 until trained)."""

    def __init__(self, translator: SPADETranslator, ready: bool) -> None:
        super().__init__()
        self.translator = translator.requires_grad_(False).eval()
        self.register_buffer("ready", torch.tensor(int(ready)))


def build_world(cfg: GANcraftDataConfig) -> BlockWorld:
    """The training world: ``data.world_file`` (a one-line ``DataError`` when malformed) or procedural."""
    if cfg.world_file:
        return load_any_world(cfg.world_file, cfg.world_layout, cfg.world_box or None, cfg.block_labels or None,
                              cfg.hollow)
    world = generate_world(tuple(cfg.world_size), seed=cfg.world_seed)
    return BlockWorld(hollow(world.blocks, cfg.hollow), world.labels) if cfg.hollow else world


class GANcraftTrainData:
    """Fixed views (rays, hits, labels, pseudo-GT) and the unpaired photos, in memory.

    Args:
        cfg: the data config.
        world: the training world.
        translator: the trained, frozen translator.
        max_hits: hits kept per ray.
        num_views: how many fixed views (``data.num_views`` for fixed-view training, ``eval_views`` for the
            samples and evaluation of fresh-view training).
    """

    def __init__(self, cfg: GANcraftDataConfig, world: BlockWorld, translator: SPADETranslator, max_hits: int,
                 num_views: int) -> None:
        size = cfg.image_size
        cameras = random_valid_poses(world, num_views, size, size, seed=cfg.world_seed)
        self.views = cast_views(world, cameras, max_hits)  # [N, ...]
        self.labels = label_map(hits_of(self.views))  # [N, H, W]
        styles = None
        if cfg.pseudo_gt_style == "random" and translator.style_dim:
            styles = torch.stack([style_vector(PhotoStyle.random(cfg.world_seed * 1000 + i))
                                  for i in range(num_views)])
        self.pseudo_gt = torch.cat([apply_pseudo_gt(translator, self.labels[i:i + 32],
                                                    None if styles is None else styles[i:i + 32]).cpu()
                                    for i in range(0, num_views, 32)])  # [N, 3, H, W] in [-1, 1]
        photos, photo_labels = [], []
        for w in range(cfg.photo_worlds):
            seed = PHOTO_WORLD_SEED_BASE + 100 * cfg.photo_seed + w
            other = generate_world(tuple(cfg.world_size), seed=seed)
            for v, camera in enumerate(random_valid_poses(other, cfg.photos_per_world, size, size, seed=seed)):
                o, d = camera.rays()
                hits = ray_voxel_intersections(other.blocks, o, d, max_hits=1)
                photos.append(render_photo(other, hits, o, d, PhotoStyle.random(seed * 1000 + v)).permute(2, 0, 1))
                photo_labels.append(label_map(hits))
        self.photos = torch.stack(photos) * 2 - 1  # [M, 3, H, W] in [-1, 1]
        self.photo_labels = torch.stack(photo_labels)  # [M, H, W]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class GANcraftSystem(System):
    """GANcraft generator + OASIS segmentation discriminator, with a frozen pseudo-GT translator.

    Args:
        cfg: the run's config.
        ctx: the engine's run context.
    """

    def __init__(self, cfg: GANcraftConfig, ctx: RunContext) -> None:
        super().__init__(cfg, ctx)
        d = cfg.data
        self.world = build_world(d)
        generator = GANcraftGenerator(cfg.model, self.world)
        if cfg.disc_type == "fpse":
            discriminator = FPSEDiscriminator(cfg.model.num_labels, cfg.disc_channels, cfg.model.image_channels)
        else:
            discriminator = SegmentationDiscriminator(cfg.model.num_labels, cfg.disc_channels, cfg.disc_depth,
                                                      cfg.model.image_channels)
        if d.translator_file:
            translator, ready = load_translator(d.translator_file), True
        else:
            translator, ready = d.translator.build_translator(cfg.model.num_labels, d.image_size), False
        self.generator = ctx.prepare(generator)
        self.discriminator = ctx.prepare(discriminator)
        self.translator = ctx.prepare(FrozenTranslator(translator, ready), ddp=False)
        self.modules = {"generator": self.generator, "discriminator": self.discriminator,
                        "translator": self.translator}
        o = cfg.optim
        features = [generator.voxel_features.features]
        rest = [p for n, p in generator.named_parameters() if not n.startswith("voxel_features.")]
        self.optimizers = {
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2)),
            "generator": torch.optim.Adam([{"params": rest}, {"params": features, "lr": o.lr_voxel_features}],
                                          lr=o.lr_g, betas=(o.beta1, o.beta2)),
        }
        if cfg.loss.perceptual_net == "vgg19":
            self.perceptual = PerceptualLoss(cfg.loss.vgg19_weights or None, layers=REFERENCE_VGG_LAYERS,
                                             layer_weights=REFERENCE_VGG_WEIGHTS)
        else:
            self.perceptual = offline_perceptual_loss(num_scales=3)
        self.perceptual.to(ctx.device)
        self._data: GANcraftTrainData | None = None
        self._sampler: ViewSampler | None = None

    # -- data ---------------------------------------------------------------------------------
    def ensure_translator(self) -> SPADETranslator:
        """The pseudo-GT translator: from the checkpoint / file, the cache file, or trained now."""
        holder: FrozenTranslator = unwrap(self.translator)
        d = self.cfg.data
        if not int(holder.ready):
            cache = Path(d.translator_cache) if d.translator_cache else None
            if cache is not None and cache.is_file():
                trained = load_translator(cache)
            else:
                pairs = SegPhotoPairs(d.translator_worlds, d.translator_views_per_world, d.image_size,
                                      tuple(d.world_size), seed=d.translator.seed)
                trained = train_pseudo_gt(pairs, d.translator, d.translator_steps, self.ctx.device, progress=False)
                if cache is not None:
                    save_translator(trained, cache)
            holder.translator.load_state_dict(trained.state_dict())
            holder.ready.fill_(1)
        return holder.translator.eval()

    @property
    def data(self) -> GANcraftTrainData:
        if self._data is None:
            d = self.cfg.data
            count = d.num_views if d.view_sampling == "fixed" else self.cfg.eval_views
            self._data = GANcraftTrainData(d, self.world, self.ensure_translator(), self.cfg.model.max_hits, count)
        return self._data

    @property
    def sampler(self) -> ViewSampler:
        if self._sampler is None:
            d = self.cfg.data
            self._sampler = ViewSampler(self.world, d.image_size, self.cfg.model.max_hits, self.ensure_translator(),
                                        d.pseudo_gt_style == "random", self.ctx.seed)
        return self._sampler

    def train_batch(self, step: int) -> dict[str, Tensor]:
        """Views (rays, hits, ``labels``, ``pseudo_gt``) and unpaired ``photo`` / ``photo_labels``, ``[B, ...]``."""
        data = self.data
        photo = global_batch_indices(step, len(data.photos), self.ctx.global_batch, self.ctx.seed + PHOTO_STREAM)
        photo = rank_share(photo, self.ctx.env.rank, self.ctx.env.world_size)
        if self.cfg.data.view_sampling == "fresh":
            share = rank_share(torch.arange(self.ctx.global_batch), self.ctx.env.rank, self.ctx.env.world_size)
            batch = self.sampler.views(step, share.tolist())
        else:
            view = self.ctx.batch_indices(step, len(data))  # [B]
            batch = {k: v[view] for k, v in data.views.items()}
            batch |= {"labels": data.labels[view], "pseudo_gt": data.pseudo_gt[view]}
        batch |= {"photo": data.photos[photo], "photo_labels": data.photo_labels[photo]}
        return {k: v.to(self.ctx.device) for k, v in batch.items()}

    # -- updates ------------------------------------------------------------------------------
    def render_batch(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Render the batch's views in the style encoded from their pseudo-GT: (outputs, mu, logvar)."""
        net: GANcraftGenerator = unwrap(self.generator)
        mu, logvar = net.encode_style(batch["pseudo_gt"])
        out = self.generator(hits_of(batch), batch["origins"], batch["directions"], z=reparameterize(mu, logvar))
        return out, mu, logvar

    def discriminator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        w = self.cfg.loss
        with torch.no_grad():
            fake = self.render_batch(batch)[0]["rgb"]
        n_photo, n_view = batch["photo"].shape[0], batch["pseudo_gt"].shape[0]
        logits = self.discriminator(torch.cat([batch["photo"], batch["pseudo_gt"], fake]))
        photo, pseudo, fake_logits = logits.split([n_photo, n_view, n_view])
        if self.cfg.disc_type == "fpse":  # the reference: each real set against the fakes, weighted
            real = (w.gan_photo * fpse_losses(photo, batch["photo_labels"], True)
                    + w.gan_pseudo_gt * fpse_losses(pseudo, batch["labels"], True)) / (w.gan_photo + w.gan_pseudo_gt)
            fake = fpse_losses(fake_logits, batch["labels"], False)
            return real + fake, {"d_real": float(real.detach()), "d_fake": float(fake.detach())}
        return discriminator_loss([photo, pseudo], [batch["photo_labels"], batch["labels"]],
                                  [w.gan_photo, w.gan_pseudo_gt], fake_logits)

    def generator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        w = self.cfg.loss
        out, mu, logvar = self.render_batch(batch)
        rgb, target = out["rgb"], batch["pseudo_gt"]
        l2 = F.mse_loss(rgb, target)
        perceptual = self.perceptual(rgb, target)
        if self.cfg.disc_type == "fpse":
            gan = fpse_losses(self.discriminator(rgb), batch["labels"], True)
        else:
            gan = oasis_real_loss(self.discriminator(rgb), batch["labels"])
        kl = gaussian_kl(mu, logvar)
        loss = w.l2 * l2 + w.perceptual * perceptual + (w.gan_photo + w.gan_pseudo_gt) * gan + w.kl * kl
        # failure modes: render_sky_fraction -> 1 = the blocks went transparent; view_sky_fraction: sky-heavy views
        logs = {"l2": l2, "perceptual": perceptual, "g_gan": gan, "kl": kl,
                "render_sky_fraction": out["sky_fraction"].mean(),
                "view_sky_fraction": (batch["labels"] == 0).float().mean()}
        return loss, {k: float(v.detach()) for k, v in logs.items()}

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        # 1. D step on photos + pseudo-GT (real, their label maps) vs renders (fake).
        logs = self.ctx.update("discriminator", self.optimizers["discriminator"], batch, self.discriminator_loss)
        # 2. G step with D frozen: L2 + perceptual to the pseudo-GT, OASIS G loss, KL of the style encoder.
        with frozen(self.discriminator):
            logs |= self.ctx.update("generator", self.optimizers["generator"], batch, self.generator_loss)
        return logs

    # -- using it -----------------------------------------------------------------------------
    @property
    def eval_generator(self) -> GANcraftGenerator:
        return unwrap(self.generator)

    @torch.no_grad()
    def mean_style_code(self) -> Tensor:
        """``[1, C]`` the style code of the mean encoder ``mu`` over the first 32 training pseudo-GT images."""
        net = self.eval_generator
        mu, _ = net.encode_style(self.data.pseudo_gt[:32].to(self.ctx.device))
        return net.style_code(mu.mean(0, keepdim=True))

    def sample(self) -> dict[str, Tensor]:
        """Rows of training views: segmentation | pseudo-GT | GANcraft render (its own encoded style)."""
        data, net = self.data, self.eval_generator
        views = {k: v[:4] for k, v in data.views.items()}
        segmentation = self.world.label_colors("cpu")[data.labels[:4]].permute(0, 3, 1, 2)
        pseudo = (data.pseudo_gt[:4] + 1) / 2
        mu, _ = net.encode_style(data.pseudo_gt[:4].to(self.ctx.device))
        renders = torch.cat([render_views(net, {k: v[i:i + 1] for k, v in views.items()},
                                          net.style_code(mu[i:i + 1])) for i in range(4)])
        tiles = torch.stack([segmentation, pseudo, renders], dim=1).flatten(0, 1)  # [12, 3, H, W]
        return {"segmentation_pseudo_gt_gancraft": make_grid(tiles, nrow=3)}

    def evaluate(self) -> dict[str, float]:
        from imaginate.metrics import compute_gan_metrics
        from imaginate.systems.gancraft.evaluation import ColourStatistics, cross_view_std, surface_keys

        data, net, cfg = self.data, self.eval_generator, self.cfg
        size = cfg.data.image_size
        # View consistency along an orbit: GANcraft (one style) vs per-frame pseudo-GT SPADE (mean style).
        path = cast_views(self.world, orbit(self.world, cfg.eval_path_frames, size, size), cfg.model.max_hits)
        keys = surface_keys(hits_of(path), path["origins"], path["directions"])
        ours = render_views(net, path, self.mean_style_code())
        spade = (apply_pseudo_gt(self.ensure_translator(), label_map(hits_of(path))).cpu() + 1) / 2
        std_ours, contrast_ours, cells = cross_view_std(ours, keys)
        std_spade, contrast_spade, _ = cross_view_std(spade, keys)
        # Realism statistics of renders of training views (their own styles) vs the photos.
        n = min(cfg.eval_views, len(data))
        mu, _ = net.encode_style(data.pseudo_gt[:n].to(self.ctx.device))
        codes = net.style_code(mu)
        renders = torch.cat([render_views(net, {k: v[i:i + 1] for k, v in data.views.items()}, codes[i:i + 1])
                             for i in range(n)])
        photos, pseudo = (data.photos + 1) / 2, (data.pseudo_gt[:n] + 1) / 2
        kwargs = {"kid_subsets": 20, "kid_subset_size": min(n, len(photos)), "pr_k": 3, "dc_k": 3}
        extractor = ColourStatistics()
        ours_m = compute_gan_metrics(photos, renders, extractor, **kwargs)
        spade_m = compute_gan_metrics(photos, pseudo, extractor, **kwargs)
        return {"view_std_gancraft": std_ours, "view_std_spade": std_spade, "view_cells": float(cells),
                "view_contrast_gancraft": contrast_ours, "view_contrast_spade": contrast_spade,
                "l2_to_pseudo_gt": float(((renders - pseudo) ** 2).mean()),
                "fid_colour_gancraft": ours_m["fid"], "kid_colour_gancraft": ours_m["kid_mean"],
                "fid_colour_spade": spade_m["fid"], "kid_colour_spade": spade_m["kid_mean"]}

