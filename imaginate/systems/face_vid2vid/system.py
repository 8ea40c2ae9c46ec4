"""face-vid2vid training (arXiv 2011.15126) on procedural talking heads, and its held-out evaluation.

Data: ``data.train_clips`` clips of TRAIN identities (``IDENTITY_SPLIT.train``), each ``data.clip_frames``
frames taken every ``data.frame_stride`` frames of a smooth head motion (so a clip spans several seconds of
pose change), rendered once and kept in memory with their true yaw / pitch / roll. A training pair is a
source and a driving frame of the same clip. Evaluation uses clips of TEST identities (never trained on).

One step: D step (hinge, multi-scale PatchGAN on the driving frame vs the reconstruction), then G step with
D frozen: perceptual 10 + GAN 1 + feature matching 10 + equivariance 20 + keypoint prior 10 + head pose 20 +
deformation prior 5 (the paper's weights; ``loss.*``). The perceptual term uses VGG19 when
``loss.perceptual_net=vgg19`` (weights from ``loss.vgg19_weights`` or the torch hub cache); the default
``gradients`` is the weight-free substitute (image + finite-difference L1 at 3 scales), not the paper's loss.
``model.kind=keypoints2d`` trains the 2D-keypoint ablation with the same losses minus pose and deformation.

Failure modes logged every step: ``kp_spread`` (mean pairwise keypoint distance; -> 0 is a collapse),
``pose_err_deg`` (estimated vs true angles of the driving frames), ``d_acc`` (share of D decisions right;
-> 1 means D wins outright), ``occlusion_mean``, ``expression_abs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from imaginate.config import ConfigError, GANOptimConfig, TrainConfig, check_choice
from imaginate.engine import RunContext, System, make_grid, unwrap
from imaginate.engine.system import frozen
from imaginate.nn import MultiScalePatchDiscriminator, d_loss, feature_matching_loss, g_loss
from imaginate.nn.perceptual import PerceptualLoss, offline_perceptual_loss
from imaginate.systems.face_vid2vid.losses import (
    RandomTPS,
    deformation_prior_loss,
    equivariance_loss,
    keypoint_prior_loss,
    keypoint_spread,
    pose_error_degrees,
    pose_loss,
)
from imaginate.systems.face_vid2vid.model import (
    FaceModelConfig,
    FaceVid2Vid,
    Keypoints2DModel,
    build_model,
    repose,
)

EVAL_CLIP_SEED_BASE = 500_000  # clip seeds of evaluation clips (training clips use 0 .. train_clips - 1)
FREE_VIEW_OFFSETS = (-20.0, 20.0)  # yaw offsets (degrees) of the free-view evaluation
KP_COLLAPSE_SPREAD = 0.05  # mean pairwise keypoint distance (in [-1, 1] units) below which keypoints collapsed


@dataclass
class FaceDataConfig:
    """Args:
        image_size: frame size in pixels (must equal ``model.image_size``).
        train_clips: clips of train identities (identity ``i`` of the split, clip seed ``i``).
        clip_frames / frame_stride: frames kept per clip and the motion frames between them (30 fps motion).
        eval_clips / eval_frames: held-out (test identity) clips and frames per clip for ``evaluate``.
        video_folder: train on a user's folder of talking-head ``.mp4`` clips instead (VoxCeleb /
            TalkingHead-1KH layout, ``imaginate.data.video_folder``); no true angles exist there, so the pose
            loss is off for those pairs. Evaluation stays on procedural test identities.
        video_crops: a crop box file for the folder (default ``crops.json`` / ``crops.csv`` inside it).
        video_max_frames: frames decoded per clip (0: all).
    """

    image_size: int = 64
    train_clips: int = 48
    clip_frames: int = 24
    frame_stride: int = 5
    eval_clips: int = 8
    eval_frames: int = 12
    video_folder: str = ""
    video_crops: str = ""
    video_max_frames: int = 0

    def __post_init__(self) -> None:
        if self.video_max_frames < 0:
            raise ConfigError(f"data.video_max_frames: must be >= 0 (0: all), got {self.video_max_frames}")
        for key in ("image_size", "train_clips", "frame_stride", "eval_clips"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("clip_frames", "eval_frames"):
            if getattr(self, key) < 2:
                raise ConfigError(f"data.{key}: must be >= 2, got {getattr(self, key)}")


@dataclass
class FaceLossConfig:
    """Loss weights (the paper's by default) and the perceptual features / equivariance warp."""

    perceptual: float = 10.0
    gan: float = 1.0
    feature_matching: float = 10.0
    equivariance: float = 20.0
    keypoint_prior: float = 10.0
    pose: float = 20.0
    deformation: float = 5.0
    perceptual_net: str = "gradients"
    vgg19_weights: str = ""
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    tps_points: int = 5

    def __post_init__(self) -> None:
        for key in ("perceptual", "gan", "feature_matching", "equivariance", "keypoint_prior", "pose",
                    "deformation", "sigma_affine", "sigma_tps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"loss.{key}: must be >= 0, got {getattr(self, key)}")
        if self.tps_points < 2:
            raise ConfigError(f"loss.tps_points: must be >= 2, got {self.tps_points}")
        check_choice("loss.perceptual_net", self.perceptual_net, ("gradients", "vgg19"))


@dataclass
class FaceOptimConfig(GANOptimConfig):
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999


@dataclass
class FaceVid2VidConfig:
    """Args:
        disc_scales / disc_layers / disc_channels: the multi-scale PatchGAN.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100000, batch_size=8, eval_every=10000))
    data: FaceDataConfig = field(default_factory=FaceDataConfig)
    model: FaceModelConfig = field(default_factory=FaceModelConfig)
    loss: FaceLossConfig = field(default_factory=FaceLossConfig)
    optim: FaceOptimConfig = field(default_factory=FaceOptimConfig)
    disc_scales: int = 2
    disc_layers: int = 4
    disc_channels: int = 64

    def __post_init__(self) -> None:
        for key in ("disc_scales", "disc_layers", "disc_channels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if self.data.image_size != self.model.image_size:
            raise ConfigError(f"data.image_size: must equal model.image_size ({self.model.image_size}), "
                              f"got {self.data.image_size}")


def render_clips(identity_seeds: list[int], clip_seeds: list[int], frames: int, stride: int, size: int) -> dict:
    """``frames`` frames every ``stride`` of ``head_motion(clip_seed)`` per identity: ``{"frames" [N, T, 3, H, W],
    "yaw" / "pitch" / "roll" [N, T], "translation" [N, T, 3], "expression" [N, T, E], "identity" [N]}``."""
    from imaginate.data.heads import HeadIdentity, head_motion, render_heads

    out: dict[str, list[Tensor]] = {k: [] for k in ("frames", "yaw", "pitch", "roll", "translation", "expression")}
    for identity_seed, clip_seed in zip(identity_seeds, clip_seeds):
        motion = {k: v[::stride][:frames] for k, v in head_motion(clip_seed, frames * stride).items()}
        identity = HeadIdentity.random(identity_seed)
        out["frames"].append(render_heads(identity, motion["yaw"], motion["pitch"], motion["roll"],
                                          motion["translation"], motion["expression"], size))
        for k in ("yaw", "pitch", "roll", "translation", "expression"):
            out[k].append(motion[k])
    result = {k: torch.stack(v) for k, v in out.items()}
    result["identity"] = torch.tensor(identity_seeds)
    return result


def check_train_clips_fit(cfg: FaceDataConfig, total: int | None = None) -> None:
    """Refuse (one line naming the keys) training clips that would not fit in memory: they are rendered up
    front as float32 frames, and the per-clip list and its stacked copy coexist while stacking."""
    from imaginate.data.memory import check_fits

    frames = cfg.train_clips * cfg.clip_frames
    check_fits(f"training clips ({frames} frames at {cfg.image_size} px)", 2 * frames * 3 * cfg.image_size ** 2 * 4,
               "data.train_clips / data.clip_frames / data.image_size", total=total)


def train_clip_data(cfg: FaceDataConfig) -> dict:
    from imaginate.data.heads import IDENTITY_SPLIT

    check_train_clips_fit(cfg)

    ids = [IDENTITY_SPLIT.train[i] for i in range(cfg.train_clips)]
    return render_clips(ids, list(range(cfg.train_clips)), cfg.clip_frames, cfg.frame_stride, cfg.image_size)


def eval_clip_data(cfg: FaceDataConfig) -> dict:
    from imaginate.data.heads import IDENTITY_SPLIT

    ids = [IDENTITY_SPLIT.test[i] for i in range(cfg.eval_clips)]
    seeds = [EVAL_CLIP_SEED_BASE + i for i in range(cfg.eval_clips)]
    return render_clips(ids, seeds, cfg.eval_frames, cfg.frame_stride, cfg.image_size)


def region_l1(output: Tensor, truth: Tensor, source: Tensor, threshold: float = 0.05) -> tuple[float, float, float]:
    """L1 over the pixels where ``truth`` and ``source`` differ by more than ``threshold`` in some channel (the
    moved head), all ``[N, 3, H, W]``: ``(output vs truth, source vs truth, output vs source)``. Copying the
    source scores its full difference in the first; an output that follows the motion is closer to the truth
    than to the source there (a blur halfway between the two is equally far from both)."""
    region = ((truth - source).abs().amax(1, keepdim=True) > threshold).float()  # [N, 1, H, W]
    count = 3 * region.sum() + 1e-8

    def l1(a: Tensor, b: Tensor) -> float:
        return float(((a - b).abs() * region).sum() / count)

    return l1(output, truth), l1(source, truth), l1(output, source)


class FaceVid2VidSystem(System):
    """face-vid2vid (or the 2D-keypoint ablation) + a multi-scale PatchGAN.

    Args:
        cfg: the run's config.
        ctx: the engine's run context.
    """

    def __init__(self, cfg: FaceVid2VidConfig, ctx: RunContext) -> None:
        super().__init__(cfg, ctx)
        model = build_model(cfg.model)
        disc = MultiScalePatchDiscriminator(3, cfg.disc_scales, cfg.disc_layers, cfg.disc_channels)
        self.generator = ctx.prepare(model)
        self.discriminator = ctx.prepare(disc)
        self.modules = {"generator": self.generator, "discriminator": self.discriminator}
        o = cfg.optim
        self.optimizers = {
            "discriminator": torch.optim.Adam(disc.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2)),
            "generator": torch.optim.Adam(model.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2)),
        }
        if cfg.loss.perceptual_net == "vgg19":
            self.perceptual = PerceptualLoss(cfg.loss.vgg19_weights or None, input_range=(0.0, 1.0), num_scales=3)
        else:
            self.perceptual = offline_perceptual_loss(num_scales=3)
        self.perceptual.to(ctx.device)
        self._train: dict | None = None
        self._eval: dict | None = None
        if cfg.data.video_folder:
            _ = self.train_data  # a bad folder or crop file is a one-line DataError before training starts

    @property
    def model(self) -> FaceVid2Vid | Keypoints2DModel:
        return unwrap(self.generator)

    @property
    def is_fv2v(self) -> bool:
        return self.cfg.model.kind == "fv2v"

    # -- data ---------------------------------------------------------------------------------
    @property
    def train_data(self) -> dict:
        if self._train is None:
            d = self.cfg.data
            if d.video_folder:
                from imaginate.data.video_folder import VideoFolder

                self._train = {"folder": VideoFolder(d.video_folder, d.image_size, d.video_crops or None,
                                                     d.video_max_frames or None, seed=self.ctx.seed)}
            else:
                self._train = train_clip_data(d)
        return self._train

    @property
    def eval_data(self) -> dict:
        if self._eval is None:
            self._eval = eval_clip_data(self.cfg.data)
        return self._eval

    def train_batch(self, step: int) -> dict[str, Tensor]:
        """``source`` / ``driving`` ``[B, 3, H, W]`` from the same clip, their true angles ``[B]`` (``*_yaw`` ...)
        and a ``warp_seed`` for the equivariance warp."""
        data = self.train_data
        gen = torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + step * 7 + self.ctx.env.rank)
        if "folder" in data:  # a user's videos: frame pairs, no true angles
            folder = data["folder"]
            items = [folder[int(i)] for i in self.ctx.batch_indices(step, len(folder))]
            batch = {k: torch.stack([item[k] for item in items]).to(self.ctx.device) for k in ("source", "driving")}
            batch["warp_seed"] = torch.randint(0, 2**31 - 1, (len(items),), generator=gen).to(self.ctx.device)
            return batch
        clips = self.ctx.batch_indices(step, data["frames"].shape[0])  # [B]
        frames = torch.randint(0, data["frames"].shape[1], (2, clips.shape[0]), generator=gen)
        batch = {}
        for name, idx in (("source", frames[0]), ("driving", frames[1])):
            batch[name] = data["frames"][clips, idx]
            for angle in ("yaw", "pitch", "roll"):
                batch[f"{name}_{angle}"] = data[angle][clips, idx]
        batch = {k: v.to(self.ctx.device) for k, v in batch.items()}
        batch["warp_seed"] = torch.randint(0, 2**31 - 1, (clips.shape[0],), generator=gen).to(self.ctx.device)
        return batch

    # -- updates ------------------------------------------------------------------------------
    def discriminator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        fake = batch["fake"]  # [B, 3, H, W] the G step's reconstructions, detached
        real_out, fake_out = self.discriminator(batch["driving"]), self.discriminator(fake)
        right = [(r > 0).float().mean() for r in real_out.logits] + [(f < 0).float().mean() for f in fake_out.logits]
        return d_loss("hinge", real_out.logits, fake_out.logits), {"d_acc": float(torch.stack(right).mean())}

    def generator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        w, model = self.cfg.loss, self.model
        source, driving = batch["source"], batch["driving"]
        out = self.generator(source, driving)  # model.reconstruct (through DDP when distributed)
        image = out["image"]
        terms: dict[str, Tensor] = {"perceptual": self.perceptual(image, driving)}
        if w.gan > 0 or w.feature_matching > 0:
            fake_out = self.discriminator(image)
            with torch.no_grad():
                real_out = self.discriminator(driving)
            terms["gan"] = g_loss("hinge", fake_out.logits)
            terms["feature_matching"] = feature_matching_loss(real_out.features, fake_out.features)
        if w.equivariance > 0:
            gen = torch.Generator().manual_seed(int(batch["warp_seed"][0]))
            tps = RandomTPS(driving.shape[0], w.sigma_affine, w.sigma_tps, w.tps_points, gen, driving.device)
            warped_kp = model.driving_keypoints(out.get("canonical"), tps.warp_image(driving))
            terms["equivariance"] = equivariance_loss(out["kp_driving"], warped_kp, tps)
        terms["keypoint_prior"] = keypoint_prior_loss(out["kp_driving"])
        logs: dict[str, float] = {"kp_spread": float(keypoint_spread(out["kp_driving"]).detach()),
                                  "occlusion_mean": float(out["occlusion"].mean().detach())}
        if self.is_fv2v:
            motion_s, motion_d = out["source_motion"], out["driving_motion"]
            if "driving_yaw" in batch:  # true angles (procedural heads)
                terms["pose"] = (pose_loss(motion_s, batch["source_yaw"], batch["source_pitch"], batch["source_roll"])
                                 + pose_loss(motion_d, batch["driving_yaw"], batch["driving_pitch"],
                                             batch["driving_roll"])) / 2
                logs["pose_err_deg"] = float(pose_error_degrees(motion_d, batch["driving_yaw"], batch["driving_pitch"],
                                                                batch["driving_roll"]).mean().detach())
            terms["deformation"] = (deformation_prior_loss(motion_s.expression)
                                    + deformation_prior_loss(motion_d.expression)) / 2
            logs["expression_abs"] = float(motion_d.expression.abs().mean().detach())
        batch["fake"] = image.detach()  # reused by the D step (one generator forward per step)
        loss = sum(getattr(w, name) * value for name, value in terms.items())
        logs |= {name: float(value.detach()) for name, value in terms.items()}
        return loss, logs

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        # 1. G step with D frozen: perceptual, GAN, feature matching, equivariance, priors, pose.
        with frozen(self.discriminator):
            logs = self.ctx.update("generator", self.optimizers["generator"], batch, self.generator_loss)
        # 2. D step (FOMM's order): driving frames (real) vs the G step's reconstructions (fake), hinge loss.
        if self.cfg.loss.gan > 0 or self.cfg.loss.feature_matching > 0:
            if self.ctx.grad_accum > 1:  # micro-batches: the stash holds the last one only; recompute
                with torch.no_grad():
                    batch["fake"] = self.generator(batch["source"], batch["driving"])["image"]
            logs |= self.ctx.update("discriminator", self.optimizers["discriminator"], batch, self.discriminator_loss)
        batch.pop("fake", None)
        return logs

    # -- using it -----------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct_clip(self, frames: Tensor) -> Tensor:
        """``[T, 3, H, W]`` -> the clip re-synthesised from its first frame: ``[T, 3, H, W]``."""
        model = self.model.eval()
        dev = self.ctx.device
        frames = frames.to(dev)
        source = frames[:1].expand(frames.shape[0], -1, -1, -1)
        return model.reconstruct(source, frames)["image"].cpu()

    def sample(self) -> dict[str, Tensor]:
        """Held-out identities, rows: source | driving | output | re-posed (driving yaw + 20)."""
        data, model = self.eval_data, self.model.eval()
        dev = self.ctx.device
        source = data["frames"][:4, 0].to(dev)
        driving = data["frames"][:4, -1].to(dev)
        with torch.no_grad():
            output = model.reconstruct(source, driving)["image"]
            if self.is_fv2v:
                reposed = model.animate(source, model.estimate_motion(source),
                                        repose(model.estimate_motion(driving), d_yaw=20.0))
            else:
                reposed = torch.zeros_like(output)
        tiles = torch.stack([source, driving, output, reposed], dim=1).flatten(0, 1).cpu()  # [16, 3, H, W]
        return {"source_driving_output_reposed": make_grid(tiles, nrow=4)}

    def evaluate(self) -> dict[str, float]:
        """Held-out identities: reconstruction from each clip's first frame (L1, PSNR, SSIM; copying the
        source as a baseline), pose error (fv2v), and free view: the output re-posed by a yaw offset vs the
        true render at that pose, beside the source image's error against the same render."""
        from imaginate.data.heads import HeadIdentity, render_heads
        from imaginate.metrics.image_quality import psnr, ssim

        data, model, dev = self.eval_data, self.model.eval(), self.ctx.device
        frames = data["frames"]  # [N, T, 3, H, W]
        n, t = frames.shape[:2]
        outputs = torch.stack([self.reconstruct_clip(frames[i]) for i in range(n)])  # [N, T, 3, H, W]
        flat_out, flat_true = outputs.flatten(0, 1), frames.flatten(0, 1)
        copy = frames[:, :1].expand(-1, t, -1, -1, -1).flatten(0, 1)
        moving = region_l1(flat_out, flat_true, copy)  # where the head moved: what copying cannot get right
        metrics = {"l1": float((flat_out - flat_true).abs().mean()), "psnr": float(psnr(flat_out, flat_true).mean()),
                   "motion_region_l1": moving[0], "motion_region_copy_l1": moving[1],
                   "motion_region_to_source_l1": moving[2],
                   "ssim": float(ssim(flat_out, flat_true).mean()),
                   "copy_l1": float((copy - flat_true).abs().mean()), "copy_psnr": float(psnr(copy, flat_true).mean()),
                   "copy_ssim": float(ssim(copy, flat_true).mean())}
        with torch.no_grad():  # failure mode: keypoints collapsing onto one point
            sources = frames[:, 0].to(dev)
            keypoints = model.canonical_keypoints(sources) if self.is_fv2v else model.keypoints(sources)
            metrics["kp_spread"] = float(keypoint_spread(keypoints))
            metrics["kp_collapsed"] = float(metrics["kp_spread"] < KP_COLLAPSE_SPREAD)
        if not self.is_fv2v:
            return metrics
        with torch.no_grad():
            motion = model.estimate_motion(flat_true.to(dev))
            errors = pose_error_degrees(motion, *(data[k].flatten().to(dev) for k in ("yaw", "pitch", "roll")))
            metrics["pose_err_deg"] = float(errors.mean())
            # Free view: driving = the last frame's motion with yaw offset; truth rendered at that pose.
            free: dict[str, list[Tensor]] = {"output": [], "source": [], "output_region": [], "source_region": []}
            for offset in FREE_VIEW_OFFSETS:
                last = {k: data[k][:, -1] for k in ("yaw", "pitch", "roll", "translation", "expression")}
                target_yaw = (last["yaw"] + offset).clamp(-40, 40)
                truth = render_heads([HeadIdentity.random(int(s)) for s in data["identity"]], target_yaw,
                                     last["pitch"], last["roll"], last["translation"], last["expression"],
                                     self.cfg.data.image_size)
                source = frames[:, 0].to(dev)
                driving_motion = model.estimate_motion(frames[:, -1].to(dev))
                driving_motion = repose(driving_motion, d_yaw=0.0)._replace(  # per-item offset (clamped target)
                    yaw=driving_motion.yaw + (target_yaw - last["yaw"]).to(dev))
                output = model.animate(source, model.estimate_motion(source), driving_motion).cpu()
                # the head region: pixels the re-posing changes (truth vs the un-offset last frame)
                region = ((truth - frames[:, -1]).abs().amax(1, keepdim=True) > 0.05).float()  # [N, 1, H, W]
                for name, image in (("output", output), ("source", frames[:, 0])):
                    error = (image - truth).abs()
                    free[name].append(error.flatten(1).mean(1))
                    free[f"{name}_region"].append((error * region).flatten(1).sum(1) / (3 * region.flatten(1).sum(1) + 1))
            metrics["freeview_l1"] = float(torch.cat(free["output"]).mean())
            metrics["freeview_source_l1"] = float(torch.cat(free["source"]).mean())
            metrics["freeview_region_l1"] = float(torch.cat(free["output_region"]).mean())
            metrics["freeview_region_source_l1"] = float(torch.cat(free["source_region"]).mean())
        return metrics
