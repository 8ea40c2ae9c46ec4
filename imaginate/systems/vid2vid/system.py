"""vid2vid / world-consistent vid2vid training (arXiv 1808.06601, 2007.08509) on block-world label videos.

Data: label videos of procedural worlds (``data.py``), each in its own photo style; a batch is ``B``
windows of ``T`` consecutive frames, ``T`` doubling during training (``data.seq_len_*``).

One step (G first, then D on the detached frames G produced):

1. Frame 0: the single-image SPADE generator draws it from the labels (trained with the image GAN,
   feature matching and perceptual losses to the photo); the sequence itself starts from the REAL
   frame 0 (teacher forcing: the model learns to carry a look forward, not to guess the style).
2. Frames 1..T-1, in order: the generator reads the current labels, the last ``num_prev`` labels and
   outputs (detached) and, in ``wc_vid2vid`` mode, the guidance image rendered by a point store that
   was coloured with the real frame 0 and every generated frame so far (detached).
   Losses: hinge GAN (image D, labels as condition) 1, feature matching 10, perceptual 10, flow 10 (L1
   to the exact flow on visible pixels + occlusion-mask L1 to visibility), warp 10 (real previous
   frame warped by the predicted flow vs the real frame), guidance 20 (masked L1 to the guidance
   image), temporal GAN 1 + feature matching over windows of K frames with their exact flows.
3. D step: image D on (real, fake) frames with labels; temporal D on real / fake windows.

Failure modes logged every step: D accuracy on real and fake (``d_real_acc``, ``d_fake_acc``),
guidance-mask coverage, flow end-point error on visible pixels, mean occlusion mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from imaginate.config import ConfigError, GANOptimConfig, TrainConfig
from imaginate.engine import RunContext, System, make_grid, unwrap
from imaginate.engine.system import frozen
from imaginate.nn import MultiScalePatchDiscriminator, PerceptualLoss, d_loss, feature_matching_loss, g_loss
from imaginate.nn.perceptual import offline_perceptual_loss
from imaginate.systems.vid2vid.data import (
    Vid2VidDataConfig,
    check_train_set_fits,
    render_videos,
    stack_videos,
    window_batch,
)
from imaginate.systems.vid2vid.evaluation import psnr, revisit_error, warping_error
from imaginate.systems.vid2vid.inference import one_hot, per_frame_spade, synthesize, video_geometry
from imaginate.systems.vid2vid.losses import Vid2VidLossConfig, flow_loss, guidance_loss, warp_loss
from imaginate.systems.vid2vid.model import TemporalDiscriminator, Vid2VidGenerator, Vid2VidModelConfig


@dataclass
class Vid2VidDiscConfig:
    """Args:
        channels / scales / layers: the image multi-scale PatchGAN (vid2vid: 64, 2, 3).
        temporal_frames: K consecutive frames seen by the temporal discriminator.
        temporal_channels / temporal_scales / temporal_layers: its size.
        spectral: spectral norm in both discriminators.
    """

    channels: int = 64
    scales: int = 2
    layers: int = 3
    temporal_frames: int = 3
    temporal_channels: int = 64
    temporal_scales: int = 2
    temporal_layers: int = 3
    spectral: bool = True

    def __post_init__(self) -> None:
        for key in ("channels", "scales", "layers", "temporal_channels", "temporal_scales", "temporal_layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"disc.{key}: must be >= 1, got {getattr(self, key)}")
        if self.temporal_frames < 2:
            raise ConfigError(f"disc.temporal_frames: must be >= 2, got {self.temporal_frames}")


@dataclass
class Vid2VidOptimConfig(GANOptimConfig):
    """The reference's Adam: G 1e-4, D 4e-4, betas (0, 0.999)."""


@dataclass
class Vid2VidConfig:
    """Args:
        eval_videos: held-out (unseen world and style) videos measured by ``evaluate``.
        eval_frames: frames of each of them.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100000, batch_size=4))
    data: Vid2VidDataConfig = field(default_factory=Vid2VidDataConfig)
    model: Vid2VidModelConfig = field(default_factory=Vid2VidModelConfig)
    disc: Vid2VidDiscConfig = field(default_factory=Vid2VidDiscConfig)
    loss: Vid2VidLossConfig = field(default_factory=Vid2VidLossConfig)
    optim: Vid2VidOptimConfig = field(default_factory=Vid2VidOptimConfig)
    eval_videos: int = 2
    eval_frames: int = 16

    def __post_init__(self) -> None:
        if self.eval_videos < 1 or self.eval_frames < 3:
            raise ConfigError(f"eval_videos / eval_frames: need >= 1 and >= 3, got {self.eval_videos}, "
                              f"{self.eval_frames}")
        if self.disc.temporal_frames > self.data.seq_len_start:
            raise ConfigError(f"disc.temporal_frames: must be <= data.seq_len_start={self.data.seq_len_start}, "
                              f"got {self.disc.temporal_frames}")


def _accuracy(logits: list[Tensor], real: bool) -> float:
    return float(torch.stack([((x > 0) if real else (x < 0)).float().mean() for x in logits]).mean())


class Vid2VidSystem(System):
    """Generator (with its first-frame SPADE), image and temporal discriminators."""

    def __init__(self, cfg: Vid2VidConfig, ctx: RunContext) -> None:
        super().__init__(cfg, ctx)
        d = cfg.disc
        labels = cfg.model.num_labels
        self.generator = ctx.prepare(Vid2VidGenerator(cfg.model))
        self.image_d = ctx.prepare(MultiScalePatchDiscriminator(3 + labels, d.scales, d.layers, d.channels,
                                                                spectral=d.spectral))
        self.temporal_d = ctx.prepare(TemporalDiscriminator(d.temporal_frames, d.temporal_scales, d.temporal_layers,
                                                            d.temporal_channels, d.spectral))
        self.modules = {"generator": self.generator, "image_d": self.image_d, "temporal_d": self.temporal_d}
        o = cfg.optim
        d_params = list(self.image_d.parameters()) + list(self.temporal_d.parameters())
        self.optimizers = {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2)),
            "discriminator": torch.optim.Adam(d_params, lr=o.lr_d, betas=(o.beta1, o.beta2)),
        }
        if cfg.loss.perceptual_net == "vgg19":
            self.perceptual = PerceptualLoss(cfg.loss.vgg19_weights or None)
        else:
            self.perceptual = offline_perceptual_loss(num_scales=3)
        self.perceptual.to(ctx.device)
        self._train: dict[str, Tensor] | None = None
        self._test: list | None = None
        self._fakes: dict[str, Tensor] | None = None

    # -- data ---------------------------------------------------------------------------------
    @property
    def train_videos(self) -> dict[str, Tensor]:
        if self._train is None:
            m = self.cfg.model
            check_train_set_fits(self.cfg.data, m.height, m.width)
            self._train = stack_videos(render_videos(self.cfg.data, "train", self.ctx.seed, m.height, m.width))
        return self._train

    @property
    def test_videos(self) -> list:
        if self._test is None:
            m = self.cfg.model
            self._test = render_videos(self.cfg.data, "test", self.ctx.seed, m.height, m.width,
                                       frames=self.cfg.eval_frames, num_sequences=self.cfg.eval_videos,
                                       num_worlds=self.cfg.eval_videos, paths=["out_and_back"])
        return self._test

    def train_batch(self, step: int) -> dict[str, Tensor]:
        videos = self.train_videos
        index = self.ctx.batch_indices(step, videos["labels"].shape[0])
        generator = torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + step)
        batch = window_batch(videos, index, self.cfg.data.seq_len(step), generator)
        return {k: v.to(self.ctx.device) for k, v in batch.items()}

    # -- generator pass -----------------------------------------------------------------------
    def run_sequence(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Frames 1..T-1 from the real frame 0 (with graph for the current frame only): per-frame outputs
        stacked ``[B, T-1, ...]`` and the guidance used."""
        net: Vid2VidGenerator = unwrap(self.generator)
        c = net.config
        labels, photo = batch["labels"], batch["photo"] * 2 - 1  # [B, T, H, W], [B, T, 3, H, W]
        num, length, height, width = labels.shape
        onehot = one_hot(labels.flatten(0, 1), c.num_labels).unflatten(0, (num, length))  # [B, T, L, H, W]
        store = None
        if c.uses_guidance:
            from imaginate.data.blockworld.guidance import PointStore

            store = PointStore(num, mode=self.cfg.data.guidance_mode, voxel_faces=True, device=labels.device)

        def geo(t: int) -> tuple[Tensor, Tensor, Tensor]:
            return batch["depth"][:, t], batch["intrinsics"][:, t], batch["cam_to_world"][:, t]

        if store is not None:
            store.update(batch["photo"][:, 0], *geo(0))
        prev_labels = [onehot[:, 0]] * c.num_prev
        prev_images = [photo[:, 0]] * c.num_prev
        outs: dict[str, list[Tensor]] = {k: [] for k in ("image", "flow", "mask", "guidance", "guidance_mask")}
        for t in range(1, length):
            guidance = gmask = None
            if store is not None:
                guidance, gmask = store.render(*geo(t), [(height, width)])[0]
                guidance = guidance * 2 - 1
            out = self.generator(onehot[:, t], torch.stack(prev_labels[-c.num_prev:], 1),
                                 torch.stack(prev_images[-c.num_prev:], 1), guidance, gmask)
            image = out["image"]
            prev_labels.append(onehot[:, t])
            prev_images.append(image.detach())
            if store is not None:
                store.update((image.detach() + 1) / 2, *geo(t))
            for key in ("image", "flow", "mask"):
                outs[key].append(out[key])
            outs["guidance"].append(guidance if guidance is not None else image.new_zeros(image.shape))
            outs["guidance_mask"].append(gmask if gmask is not None else image.new_zeros(num, 1, height, width))
        result = {k: torch.stack(v, 1) for k, v in outs.items()}
        result["onehot"] = onehot
        return result

    def generator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        w = self.cfg.loss
        net: Vid2VidGenerator = unwrap(self.generator)
        seq = self.run_sequence(batch)
        onehot, photo = seq["onehot"], batch["photo"] * 2 - 1
        num, length = photo.shape[:2]
        # Frame 0 from the single-image SPADE generator.
        first = net.generate_first(onehot[:, 0])  # [B, 3, H, W]
        fakes = torch.cat([first, seq["image"].flatten(0, 1)])  # [B T, 3, H, W]
        reals = torch.cat([photo[:, 0], photo[:, 1:].flatten(0, 1)])
        conds = torch.cat([onehot[:, 0], onehot[:, 1:].flatten(0, 1)])
        fake_out = self.image_d(fakes, conds)
        with torch.no_grad():
            real_out = self.image_d(reals, conds)
        gan = g_loss("hinge", fake_out.logits)
        fm = feature_matching_loss(real_out.features, fake_out.features)
        perceptual = self.perceptual(fakes, reals)
        # Flow, warp and guidance terms of frames 1..T-1.
        true_flow, visible = batch["flow"][:, 1:].flatten(0, 1), batch["flow_valid"][:, 1:].flatten(0, 1)
        flow = seq["flow"].flatten(0, 1)
        flow_term = flow_loss(flow, seq["mask"].flatten(0, 1), true_flow, visible)
        warp_term = warp_loss(flow, photo[:, :-1].flatten(0, 1), photo[:, 1:].flatten(0, 1), visible)
        gmask = seq["guidance_mask"].flatten(0, 1)
        guide_term = guidance_loss(seq["image"].flatten(0, 1), seq["guidance"].flatten(0, 1), gmask)
        # Temporal GAN over windows of K frames (real frame 0 + generated ones).
        fake_seq = torch.cat([photo[:, :1], seq["image"]], 1)  # [B, T, 3, H, W]
        t_fake, t_real = self._temporal(fake_seq, batch), None
        with torch.no_grad():
            t_real = self._temporal(photo, batch)
        t_gan = g_loss("hinge", t_fake.logits)
        t_fm = feature_matching_loss(t_real.features, t_fake.features)
        loss = (w.gan * (gan + t_gan) + w.feature_matching * (fm + t_fm) + w.perceptual * perceptual
                + w.flow * flow_term + w.warp * warp_term + w.guidance * guide_term)
        self._fakes = {"fakes": fakes.detach(), "reals": reals, "conds": conds, "fake_seq": fake_seq.detach()}
        epe = ((flow - true_flow).norm(dim=1, keepdim=True) * visible).sum() / visible.sum().clamp_min(1.0)
        logs = {"g_gan": gan, "temporal_g_gan": t_gan, "feature_matching": fm + t_fm, "perceptual": perceptual,
                "flow_loss": flow_term, "warp_loss": warp_term, "guidance_loss": guide_term,
                "flow_epe": epe, "occlusion_mask_mean": seq["mask"].mean(), "guidance_coverage": gmask.mean(),
                "seq_len": torch.tensor(float(length))}
        return loss, {k: float(v.detach()) for k, v in logs.items()}

    def _temporal(self, frames: Tensor, batch: dict[str, Tensor]):
        """Temporal D on every window of K frames of ``frames [B, T, 3, H, W]`` with its exact flows."""
        k = self.cfg.disc.temporal_frames
        starts = range(frames.shape[1] - k + 1)
        windows = torch.cat([frames[:, s:s + k] for s in starts])  # [B W, K, 3, H, W]
        flows = torch.cat([batch["flow"][:, s + 1:s + k] for s in starts])  # [B W, K-1, 2, H, W]
        return self.temporal_d(windows, flows)

    def discriminator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        f = self._fakes
        real_out = self.image_d(f["reals"], f["conds"])
        fake_out = self.image_d(f["fakes"], f["conds"])
        t_real = self._temporal(batch["photo"] * 2 - 1, batch)
        t_fake = self._temporal(f["fake_seq"], batch)
        loss = d_loss("hinge", real_out.logits, fake_out.logits) + d_loss("hinge", t_real.logits, t_fake.logits)
        logs = {"d_real_acc": _accuracy(real_out.logits, True), "d_fake_acc": _accuracy(fake_out.logits, False),
                "temporal_d_real_acc": _accuracy(t_real.logits, True),
                "temporal_d_fake_acc": _accuracy(t_fake.logits, False)}
        return loss, logs

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        # 1. G step (both discriminators frozen); keeps the generated frames, detached, for step 2.
        with frozen(self.image_d), frozen(self.temporal_d):
            logs = self.ctx.update("generator", self.optimizers["generator"], batch, self.generator_loss)
        # 2. D step on real frames / windows vs the frames G just made.
        logs |= self.ctx.update("discriminator", self.optimizers["discriminator"], batch, self.discriminator_loss)
        self._fakes = None
        return logs

    # -- using it -----------------------------------------------------------------------------
    @property
    def eval_generator(self) -> Vid2VidGenerator:
        return unwrap(self.generator)

    def sample(self) -> dict[str, Tensor]:
        """Rows of one held-out out-and-back video: labels | photo | per-frame SPADE | this model (6 frames)."""
        from imaginate.data.blockworld import DEFAULT_LABELS

        video = self.test_videos[0]
        net = self.eval_generator
        frames = synthesize(net, video.labels, video_geometry(video))
        spade = per_frame_spade(net, video.labels)
        palette = torch.tensor([lab.color for lab in DEFAULT_LABELS], dtype=torch.float32) / 255.0  # [L, 3]
        colours = palette[video.labels.cpu().clamp(0, len(palette) - 1)].permute(0, 3, 1, 2)  # [T, 3, H, W]
        pick = torch.linspace(0, video.num_frames - 1, 6).round().long()
        rows = [colours[pick], video.photo[pick].cpu(), spade[pick], frames[pick]]
        return {"labels_photo_spade_model": make_grid(torch.cat(rows), nrow=len(pick))}

    def evaluate(self) -> dict[str, float]:
        """On held-out worlds in unseen styles: revisit error, warping error, PSNR to the photo."""
        net = self.eval_generator
        totals: dict[str, float] = {}
        for video in self.test_videos:
            frames = synthesize(net, video.labels, video_geometry(video))
            l1, rev_psnr = revisit_error(frames, video.revisit_pairs)
            metrics = {"revisit_l1": l1, "revisit_psnr": rev_psnr,
                       "warping_error": warping_error(frames, video.flow, video.flow_valid),
                       "psnr_to_photo": psnr(frames, video.photo.cpu())}
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + v / len(self.test_videos)
        return totals
