"""GANcraft's pseudo ground truth: a SPADE translator from segmentation maps to "photos".

GANcraft has no paired real images of its block worlds, so it supervises each rendered view with
the output of a frozen image-space translator applied to the view's segmentation. The reference
uses a SPADE model pretrained on real landscapes; offline, this module trains one on (segmentation,
photo) pairs rendered from procedural worlds by the block-world photo shader:

- ``SegPhotoPairs``: the pairs, from random valid views of worlds whose seeds start at
  ``PAIR_WORLD_SEED_BASE`` (keep GANcraft's own training worlds below it), each view lit by a
  random ``PhotoStyle`` (sun direction, sky colours, haze) summarised by ``style_vector``;
- ``SPADETranslator``: segmentation (+ style code) -> RGB in [-1, 1] (``imaginate.nn.SPADEGenerator``);
- ``train_pseudo_gt``: L1 to the photos + a conditional multi-scale PatchGAN;
- ``apply_pseudo_gt``: the frozen translator on a view's segmentation;
- ``save_translator`` / ``load_translator``: safetensors files that GANcraft training reuses.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from imaginate.data.blockworld.camera import random_valid_poses
from imaginate.data.blockworld.raycast import ray_voxel_intersections
from imaginate.data.blockworld.render import PhotoStyle, label_map, render_photo
from imaginate.data.blockworld.world import generate_world
from imaginate.engine.checkpoint import CheckpointError, export_safetensors
from imaginate.engine.system import NonFiniteLossError
from imaginate.nn import MultiScalePatchDiscriminator
from imaginate.nn.gan_losses import check_gan_loss, d_loss, g_loss
from imaginate.nn.spade import SPADEGenerator, segmentation_one_hot

STYLE_DIM = 16  # length of style_vector
PAIR_WORLD_SEED_BASE = 1_000_000  # pair worlds use seeds from here on; GANcraft's worlds stay below
_FORMAT = "imaginate.gancraft.pseudo_gt.v1"


def style_vector(style: PhotoStyle) -> Tensor:
    """``[STYLE_DIM]`` float32 summary of a photo style: unit sun direction, sun colour, ambient,
    sky zenith and horizon colours (3 each) and ``100 / fog_distance``."""
    sun = torch.tensor(style.sun_direction, dtype=torch.float32)
    parts = [sun / sun.norm(), *(torch.tensor(c, dtype=torch.float32) for c in
                                 (style.sun_color, style.ambient, style.sky_zenith, style.sky_horizon))]
    return torch.cat([*parts, torch.tensor([100.0 / style.fog_distance])])


# --------------------------------------------------------------------------------------------
# Training pairs
# --------------------------------------------------------------------------------------------


class PairBatch(NamedTuple):
    segmentation: Tensor  # [B, L, H, W] one-hot
    photo: Tensor  # [B, 3, H, W] in [0, 1]
    style: Tensor  # [B, STYLE_DIM] style_vector of each photo's PhotoStyle


class SegPhotoPairs:
    """(segmentation, photo) pairs rendered from procedural worlds, held in memory.

    World ``i`` has seed ``PAIR_WORLD_SEED_BASE + 1000 * seed + i``; its views come from
    ``random_valid_poses`` (seeded by the world seed) and view ``v`` is lit by
    ``PhotoStyle.random(1000 * world_seed + v)`` (or the default style). The same arguments give the
    same pairs.

    Args:
        num_worlds: number of worlds (1..1000).
        views_per_world: views rendered per world.
        image_size: ``S`` or ``(H, W)`` of the views.
        world_size: ``(X, Y, Z)`` of each generated world.
        seed: picks the worlds, views and styles.
        vary_style: random lighting and sky per view; False uses ``PhotoStyle()`` everywhere.

    Attributes:
        labels: ``[N, H, W]`` uint8 first-hit block ids (0 = sky), N = worlds * views.
        photos: ``[N, 3, H, W]`` float32 photos in [0, 1].
        styles: ``[N, STYLE_DIM]`` float32 style vectors.
        world_seeds: the seeds of the worlds.
        num_labels: L, the label-table length of the worlds.
    """

    def __init__(self, num_worlds: int = 4, views_per_world: int = 16, image_size: int | tuple[int, int] = 64,
                 world_size: tuple[int, int, int] = (48, 24, 48), seed: int = 0, vary_style: bool = True) -> None:
        if not 1 <= num_worlds <= 1000 or views_per_world < 1 or seed < 0:
            raise ValueError("need 1 <= num_worlds <= 1000, views_per_world >= 1 and seed >= 0, got "
                             f"{num_worlds}, {views_per_world}, {seed}")
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        if height < 1 or width < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.world_seeds = tuple(PAIR_WORLD_SEED_BASE + 1000 * seed + i for i in range(num_worlds))
        labels, photos, styles = [], [], []
        for world_seed in self.world_seeds:
            world = generate_world(world_size, seed=world_seed)
            for view, camera in enumerate(random_valid_poses(world, views_per_world, width, height, seed=world_seed)):
                style = PhotoStyle.random(1000 * world_seed + view) if vary_style else PhotoStyle()
                origins, directions = camera.rays()  # [H, W, 3] each
                hits = ray_voxel_intersections(world.blocks, origins, directions, max_hits=1)
                labels.append(label_map(hits).to(torch.uint8))  # [H, W]
                photos.append(render_photo(world, hits, origins, directions, style).permute(2, 0, 1))
                styles.append(style_vector(style))
        self.num_labels = len(world.labels)
        self.labels = torch.stack(labels)  # [N, H, W]
        self.photos = torch.stack(photos).contiguous()  # [N, 3, H, W]
        self.styles = torch.stack(styles)  # [N, STYLE_DIM]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """``(segmentation [L, H, W] one-hot, photo [3, H, W] in [0, 1])``."""
        return segmentation_one_hot(self.labels[index], self.num_labels), self.photos[index]

    def batch(self, indices: Tensor) -> PairBatch:
        """The pairs at ``indices [B]`` (integer), stacked."""
        return PairBatch(segmentation_one_hot(self.labels[indices], self.num_labels), self.photos[indices],
                         self.styles[indices])


# --------------------------------------------------------------------------------------------
# Translator
# --------------------------------------------------------------------------------------------


# The translator is the shared single-image SPADE generator (one home: imaginate/nn/spade.py); the
# name stays for GANcraft's code and files (same state-dict keys and constructor arguments).
SPADETranslator = SPADEGenerator


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class PseudoGTConfig:
    """Translator size, discriminator and optimisation of ``train_pseudo_gt``.

    Args:
        base_channels: the translator's full-resolution channels.
        spade_hidden: channels of each SPADE's hidden map.
        num_upsamples: the translator's upsampling blocks.
        use_style: condition on the pairs' style vectors (False: no style code).
        disc_channels: channels of each PatchGAN's first layer.
        disc_scales: scales of the multi-scale PatchGAN.
        disc_layers: layers per PatchGAN.
        l1_weight: weight of the L1 loss to the photo (both in [-1, 1]).
        gan_weight: weight of the generator's GAN loss; 0 trains with L1 only (no discriminator).
        gan_loss: one of ``imaginate.nn.GAN_LOSSES``.
        batch_size: pairs per step (sampled with replacement).
        lr_generator: Adam learning rate of the translator.
        lr_discriminator: Adam learning rate of the discriminator.
        beta1: Adam's first beta (the second is 0.999).
        seed: initialisation and batch sampling.
    """

    base_channels: int = 16
    spade_hidden: int = 32
    num_upsamples: int = 3
    use_style: bool = True
    disc_channels: int = 32
    disc_scales: int = 2
    disc_layers: int = 3
    l1_weight: float = 10.0
    gan_weight: float = 0.3  # 1.0 gave visible artefacts at 64x64 after 400 steps; 0.3 sharper than L1 alone
    gan_loss: str = "hinge"
    batch_size: int = 8
    lr_generator: float = 2e-3
    lr_discriminator: float = 2e-3
    beta1: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("base_channels", "spade_hidden", "disc_channels", "disc_scales", "disc_layers", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"PseudoGTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_upsamples < 0:
            raise ValueError(f"PseudoGTConfig.num_upsamples must be >= 0, got {self.num_upsamples}")
        for name in ("l1_weight", "gan_weight"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"PseudoGTConfig.{name} must be finite and >= 0, got {getattr(self, name)}")
        if self.l1_weight == 0 and self.gan_weight == 0:
            raise ValueError("PseudoGTConfig: l1_weight and gan_weight are both 0, nothing to train")
        for name in ("lr_generator", "lr_discriminator"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PseudoGTConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.beta1 < 1.0:
            raise ValueError(f"PseudoGTConfig.beta1 must lie in [0, 1), got {self.beta1}")
        try:
            check_gan_loss(self.gan_loss)
        except ValueError as e:
            raise ValueError(f"PseudoGTConfig.gan_loss: {e}") from None

    def build_translator(self, num_labels: int, image_size: int) -> SPADETranslator:
        return SPADETranslator(num_labels, self.base_channels, image_size, STYLE_DIM if self.use_style else 0,
                               self.num_upsamples, self.spade_hidden)


def train_pseudo_gt(pairs: SegPhotoPairs, config: PseudoGTConfig, steps: int,
                    device: torch.device | str = "cpu", progress: bool = True,
                    translator: SPADETranslator | None = None,
                    history: list[dict[str, float]] | None = None) -> SPADETranslator:
    """Train a translator on the pairs with L1 + a segmentation-conditioned multi-scale PatchGAN.
    (128 pairs at 64x64, default config, 400 steps: ~2 CPU-minutes on one thread, L1 ~0.08.)

    Args:
        pairs: the training pairs.
        config: the training configuration.
        steps: optimisation steps (0 returns the initialised translator).
        device: where to train.
        progress: show a progress bar.
        translator: continue training this one (default: a new one from ``config``).
        history: if given, one ``{"l1", "g_gan", "d"}`` dict per step is appended to it.

    Returns:
        the translator in eval mode, on ``device``, its ``default_style`` the pairs' mean style.
    """
    from tqdm.auto import tqdm

    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    height = int(pairs.labels.shape[-2])
    use_gan = config.gan_weight > 0

    # Models and optimisers, initialised from config.seed without touching the global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = translator or config.build_translator(pairs.num_labels, height)
        discriminator = MultiScalePatchDiscriminator(
            3 + pairs.num_labels, config.disc_scales, config.disc_layers, config.disc_channels)
    if generator.num_labels != pairs.num_labels:
        raise ValueError(f"translator has {generator.num_labels} labels, the pairs {pairs.num_labels}")
    generator.to(device).train()
    discriminator.to(device).train()
    betas = (config.beta1, 0.999)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_generator, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_discriminator, betas=betas)
    sampler = torch.Generator().manual_seed(config.seed)

    for _ in tqdm(range(steps), desc="pseudo-GT translator", disable=not progress):
        # 1. Sample a batch; photos to the translator's [-1, 1].
        batch = pairs.batch(torch.randint(len(pairs), (config.batch_size,), generator=sampler))
        segmentation = batch.segmentation.to(device)  # [B, L, H, W]
        real = batch.photo.to(device) * 2 - 1  # [B, 3, H, W]
        style = batch.style.to(device) if generator.style_dim else None
        d_value = 0.0

        # 2. Discriminator step on (photo, segmentation) vs (translation, segmentation).
        if use_gan:
            discriminator.requires_grad_(True)
            with torch.no_grad():
                fake = generator(segmentation, style)
            loss_d = d_loss(config.gan_loss, discriminator(real, segmentation).logits,
                            discriminator(fake, segmentation).logits)
            if not torch.isfinite(loss_d.detach()):
                raise NonFiniteLossError("discriminator", float(loss_d))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            d_value = float(loss_d.detach())

        # 3. Translator step: L1 to the photo + fooling the discriminator.
        fake = generator(segmentation, style)
        l1 = (fake - real).abs().mean()
        loss_g = config.l1_weight * l1
        g_gan = torch.zeros((), device=fake.device)
        if use_gan:
            discriminator.requires_grad_(False)
            g_gan = g_loss(config.gan_loss, discriminator(fake, segmentation).logits)
            loss_g = loss_g + config.gan_weight * g_gan
        if not torch.isfinite(loss_g):
            raise NonFiniteLossError("translator", float(loss_g))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        # 4. Log (L1 reported on the [0, 1] scale of the photos).
        if history is not None:
            history.append({"l1": float(l1.detach()) / 2, "g_gan": float(g_gan.detach()), "d": d_value})

    if generator.style_dim:
        generator.default_style.copy_(pairs.styles.mean(dim=0).to(generator.default_style))
    return generator.eval()


# --------------------------------------------------------------------------------------------
# Inference, evaluation, files
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def apply_pseudo_gt(translator: SPADETranslator, segmentation: Tensor, style: Tensor | None = None) -> Tensor:
    """The frozen translator's pseudo ground truth of one view or a batch (no gradients).

    Args:
        translator: a trained translator (its train/eval mode is restored afterwards).
        segmentation: integer label ids ``[B, H, W]`` / ``[H, W]``, or a float one-hot map
            ``[B, L, H, W]`` / ``[L, H, W]``; H, W multiples of ``2**num_upsamples``.
        style: ``[B, S]`` or ``[S]`` style code (default the translator's ``default_style``).

    Returns:
        ``[B, 3, H, W]`` (``[3, H, W]`` for an unbatched input) RGB in [-1, 1], on the translator's device.
    """
    device = translator.default_style.device
    floating = segmentation.dtype.is_floating_point
    unbatched = segmentation.ndim == (3 if floating else 2)
    if segmentation.ndim not in ((3, 4) if floating else (2, 3)):
        raise ValueError("segmentation must be integer ids [B, H, W] / [H, W] or a float one-hot map "
                         f"[B, L, H, W] / [L, H, W], got {segmentation.dtype} {list(segmentation.shape)}")
    if unbatched:
        segmentation = segmentation[None]
    if not floating:
        segmentation = segmentation_one_hot(segmentation, translator.num_labels)
    if style is not None and style.ndim == 1:
        style = style[None].expand(segmentation.shape[0], -1)
    was_training = translator.training
    translator.eval()
    try:
        rgb = translator(segmentation.to(device), None if style is None else style.to(device))
    finally:
        translator.train(was_training)
    return rgb[0] if unbatched else rgb


def evaluate_l1(translator: SPADETranslator, pairs: SegPhotoPairs, batch_size: int = 32,
                use_pair_styles: bool = True) -> float:
    """Mean absolute error, on the photos' [0, 1] scale, between the pseudo ground truth of every
    pair and its photo (with each pair's own style code, or the default one)."""
    total = 0.0
    for start in range(0, len(pairs), batch_size):
        batch = pairs.batch(torch.arange(start, min(start + batch_size, len(pairs))))
        style = batch.style if use_pair_styles and translator.style_dim else None
        rgb = apply_pseudo_gt(translator, batch.segmentation, style).cpu()
        total += float(((rgb + 1) / 2 - batch.photo).abs().mean(dim=(1, 2, 3)).sum())
    return total / len(pairs)


def save_translator(translator: SPADETranslator, path: str | os.PathLike) -> Path:
    """Write the translator's weights and constructor arguments to one safetensors file (atomic)."""
    path = Path(path)
    metadata = {"format": _FORMAT, "arguments": json.dumps(translator.arguments, sort_keys=True)}
    export_safetensors({"translator": translator}, path, metadata)
    return path


def load_translator(path: str | os.PathLike, device: torch.device | str = "cpu") -> SPADETranslator:
    """Read a translator written by ``save_translator``, in eval mode on ``device``.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a translator file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: translator file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(error).__name__})") from None
    if metadata.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a pseudo-GT translator file (format {metadata.get('format')!r})")
    prefix = "translator."
    state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
    try:  # the stored arguments build the network on the meta device first: its shapes must be the file's
        arguments = json.loads(metadata["arguments"])
        with torch.device("meta"):
            probe = SPADETranslator(**arguments)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # RuntimeError: sizes beyond any memory
        raise CheckpointError(f"{path}: bad translator arguments ({type(error).__name__})") from None
    expected = {key: tuple(value.shape) for key, value in probe.state_dict().items()}
    if expected != {key: tuple(value.shape) for key, value in state.items()}:
        raise CheckpointError(f"{path}: the stored arguments do not describe the stored weights")
    if any(v.is_floating_point() and not bool(torch.isfinite(v).all()) for v in state.values()):
        raise CheckpointError(f"{path}: holds NaN or infinite weights")
    translator = SPADETranslator(**arguments)
    try:
        translator.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not match the translator ({str(error).splitlines()[0]})") from None
    return translator.to(device).eval()

