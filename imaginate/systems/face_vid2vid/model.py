"""face-vid2vid (arXiv 2011.15126): one-shot talking heads driven by unsupervised 3D keypoints, and the
FOMM-like 2D-keypoint ablation (``kind=keypoints2d``: no pose decomposition, 2D keypoints, 2D flow).

Networks (sizes from ``FaceModelConfig``; the ``paper`` preset gives the notes' 256 px sizes):

- F ``appearance``: 2D convs -> reshape -> 3D residual blocks: image ``[B, 3, H, W]`` -> volume ``[B, C, D, H/4, W/4]``.
- L ``canonical``: image at ``kp_scale`` -> 2D encoder -> reshape -> 3D decoder -> K heatmaps -> softmax
  (temperature 0.1) -> 3D soft-argmax: canonical keypoints ``x_c`` ``[B, K, 3]`` (identity-specific).
- H ``pose``: yaw / pitch / roll as 66-bin classifiers (angle = expected bin * 3 - 99 degrees),
  translation ``t`` ``[B, 3]`` and expression deformation ``delta`` ``[B, K, 3]``.
- Keypoints of a frame: ``x_k = R x_c,k + t + delta_k``.
- M ``motion_field``: flows ``w_k(v) = R_s R_d^-1 (v - x_d,k) + x_s,k`` (+ identity), soft masks, occlusion.
- G: trilinear warp of F's volume, reshape to 2D, x occlusion, residual blocks, upsampling -> RGB in [0, 1].

Rotation convention: ``motion.rotation_matrix`` (shared with the procedural heads): ``Rz(roll) Ry(yaw) Rx(pitch)``
in degrees, built in the renderer's frame and expressed in the image-grid frame (x right, y down, z away).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.config import ConfigError, check_choice
from imaginate.systems.face_vid2vid.motion import Motion, rotation_matrix
from imaginate.systems.face_vid2vid.networks import (
    DownBlock,
    Hourglass,
    ImageDecoder,
    ImageEncoder2D,
    MotionFieldEstimator,
    ResBlock,
    UpBlock,
    conv,
    norm,
    soft_argmax,
    use_batch_norm,
    warp,
)

NUM_BINS = 66  # yaw / pitch / roll bins of 3 degrees: angle = E[bin] * 3 - 99


@dataclass
class FaceModelConfig:
    """Args:
        kind: ``fv2v`` (3D keypoints with pose decomposition) or ``keypoints2d`` (the FOMM-like ablation).
        image_size: input / output size in pixels (multiple of ``4 * 2**motion_blocks``).
        num_keypoints: K.
        feature_channels: F's first conv width (doubled by each of its two downsamples).
        volume_channels / volume_depth: the feature volume ``[C, D, H/4, W/4]`` (paper: 32, 16).
        feature_res_blocks: 3D residual blocks in F.
        kp_scale: the keypoint detector sees the image scaled by this (paper: 1/4).
        kp_channels / kp_depth / kp_blocks / kp_max_channels: its 3D decoder width, heatmap depth, levels, cap.
        kp_temperature: softmax temperature of the heatmaps (paper: 0.1).
        pose_channels / pose_stages: H's first width and stride-2 stages.
        motion_compressed / motion_channels / motion_blocks / motion_max_channels: M's compression and hourglass.
        generator_channels / generator_res_blocks: G's 2D width and residual blocks.
        norm: ``batch`` (the paper's; the presets) or ``group`` (batch-size independent; runs saved before this
            option existed used it, so it stays the default of configs that do not name one).
    """

    kind: str = "fv2v"
    image_size: int = 64
    num_keypoints: int = 10
    feature_channels: int = 16
    volume_channels: int = 8
    volume_depth: int = 8
    feature_res_blocks: int = 1
    kp_scale: float = 0.5
    kp_channels: int = 8
    kp_depth: int = 8
    kp_blocks: int = 2
    kp_max_channels: int = 64
    kp_temperature: float = 0.1
    pose_channels: int = 16
    pose_stages: int = 4
    motion_compressed: int = 4
    motion_channels: int = 8
    motion_blocks: int = 2
    motion_max_channels: int = 64
    generator_channels: int = 32
    generator_res_blocks: int = 2
    norm: str = "group"

    def __post_init__(self) -> None:
        check_choice("model.kind", self.kind, ("fv2v", "keypoints2d"))
        check_choice("model.norm", self.norm, ("batch", "group"))
        for key in ("num_keypoints", "feature_channels", "volume_channels", "volume_depth", "kp_channels",
                    "kp_depth", "kp_blocks", "kp_max_channels", "pose_channels", "pose_stages", "motion_compressed",
                    "motion_channels", "motion_blocks", "motion_max_channels", "generator_channels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("feature_res_blocks", "generator_res_blocks"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key}: must be >= 0, got {getattr(self, key)}")
        if not 0 < self.kp_scale <= 1:
            raise ConfigError(f"model.kp_scale: must be in (0, 1], got {self.kp_scale}")
        if not self.kp_temperature > 0:
            raise ConfigError(f"model.kp_temperature: must be > 0, got {self.kp_temperature}")
        factor = 4 * 2 ** self.motion_blocks
        kp_size = round(self.image_size * self.kp_scale)
        if self.image_size % factor or kp_size % 2 ** self.kp_blocks:
            raise ConfigError(f"model.image_size: must be a multiple of {factor} (4 * 2**motion_blocks) with "
                              f"image_size * kp_scale a multiple of {2 ** self.kp_blocks}, got {self.image_size}")


def bins_to_degrees(logits: Tensor) -> Tensor:
    """``[B, 66]`` bin logits -> ``[B]`` degrees: ``E[bin] * 3 - 99`` under the softmax."""
    idx = torch.arange(logits.shape[-1], device=logits.device, dtype=logits.dtype)
    return (F.softmax(logits, dim=-1) * idx).sum(-1) * 3 - 99


def transform_keypoints(canonical: Tensor, motion: Motion) -> Tensor:
    """``x_k = R x_c,k + t + delta_k``: canonical ``[B, K, 3]`` -> ``[B, K, 3]``."""
    rot = rotation_matrix(motion.yaw, motion.pitch, motion.roll)  # [B, 3, 3]
    return canonical @ rot.transpose(1, 2) + motion.translation.unsqueeze(1) + motion.expression


def repose(motion: Motion, yaw: float | None = None, pitch: float | None = None, roll: float | None = None,
           d_yaw: float = 0.0, d_pitch: float = 0.0, d_roll: float = 0.0,
           translation: Tensor | list[float] | None = None) -> Motion:
    """Free view: a copy of ``motion`` with yaw / pitch / roll set (degrees) or offset (``d_*``) and the
    translation replaced (``[3]`` or ``[B, 3]``); expression is kept."""
    def angle(value: Tensor, absolute: float | None, delta: float) -> Tensor:
        return (torch.full_like(value, absolute) if absolute is not None else value) + delta

    t = motion.translation
    if translation is not None:
        t = torch.as_tensor(translation, dtype=t.dtype, device=t.device).expand_as(t).clone()
    return Motion(angle(motion.yaw, yaw, d_yaw), angle(motion.pitch, pitch, d_pitch),
                  angle(motion.roll, roll, d_roll), t, motion.expression)


class AppearanceExtractor(nn.Module):
    """F: ``[B, 3, H, W] -> [B, C, D, H/4, W/4]`` (2D convs, reshape to a volume, 3D residual blocks)."""

    def __init__(self, cfg: FaceModelConfig) -> None:
        super().__init__()
        self.channels, self.depth = cfg.volume_channels, cfg.volume_depth
        self.encoder = ImageEncoder2D(cfg.feature_channels, 2, cfg.volume_channels * cfg.volume_depth)
        self.res = nn.Sequential(*[ResBlock(3, cfg.volume_channels) for _ in range(cfg.feature_res_blocks)])

    def forward(self, image: Tensor) -> Tensor:
        x = self.encoder(image)  # [B, C*D, h, w]
        return self.res(x.view(x.shape[0], self.channels, self.depth, *x.shape[2:]))


class CanonicalKeypointDetector(nn.Module):
    """L: image (scaled by ``kp_scale``) -> 2D down blocks -> reshape each level to 3D -> 3D up blocks with
    skips -> K heatmaps ``[B, K, D, h, w]`` -> softmax / temperature -> soft-argmax ``[B, K, 3]`` in [-1, 1]."""

    def __init__(self, cfg: FaceModelConfig) -> None:
        super().__init__()
        self.scale, self.depth, self.temperature = cfg.kp_scale, cfg.kp_depth, cfg.kp_temperature
        n = cfg.kp_blocks
        widths = [min(cfg.kp_max_channels, cfg.kp_channels * 2 ** (i + 1)) for i in range(n)]  # 3D widths
        self.down = nn.ModuleList(DownBlock(2, 3 if i == 0 else widths[i - 1] * self.depth, widths[i] * self.depth)
                                  for i in range(n))
        ups = []
        for i in reversed(range(n)):
            inp = widths[i] * (1 if i == n - 1 else 2)
            ups.append(UpBlock(3, inp, widths[i - 1] if i > 0 else cfg.kp_channels))
        self.up = nn.ModuleList(ups)
        self.heatmap = conv(3, cfg.kp_channels, cfg.num_keypoints)

    def forward(self, image: Tensor) -> Tensor:
        if self.scale != 1:
            image = F.interpolate(image, scale_factor=self.scale, mode="bilinear", align_corners=False)
        feats = [image]
        for block in self.down:
            feats.append(block(feats[-1]))
        volumes = [f.view(f.shape[0], -1, self.depth, *f.shape[2:]) for f in feats[1:]]  # [B, w_i, D, h_i, w_i]
        out = volumes.pop()
        for block in self.up:
            out = block(out)
            if volumes:
                out = torch.cat([out, volumes.pop()], dim=1)
        coords, _ = soft_argmax(self.heatmap(out), self.temperature)  # [B, K, 3]
        return coords


class HeadPoseEstimator(nn.Module):
    """H: a small ResNet -> yaw / pitch / roll bin logits ``[B, 66]`` each, translation ``[B, 3]``,
    expression deformation ``[B, K, 3]``."""

    def __init__(self, cfg: FaceModelConfig) -> None:
        super().__init__()
        c = cfg.pose_channels
        layers: list[nn.Module] = [nn.Conv2d(3, c, 7, stride=2, padding=3), norm(c), nn.ReLU()]
        for _ in range(cfg.pose_stages):
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), norm(2 * c), nn.ReLU(), ResBlock(2, 2 * c)]
            c *= 2
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.k = cfg.num_keypoints
        self.angles = nn.Linear(c, 3 * NUM_BINS)
        self.translation = nn.Linear(c, 3)
        self.expression = nn.Linear(c, 3 * cfg.num_keypoints)
        for head in (self.translation, self.expression):
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)

    def forward(self, image: Tensor) -> tuple[Tensor, Motion]:
        """-> (angle logits ``[B, 3, 66]`` for yaw, pitch, roll; the Motion with expected angles)."""
        h = self.body(image)  # [B, c]
        logits = self.angles(h).view(-1, 3, NUM_BINS)
        yaw, pitch, roll = bins_to_degrees(logits).unbind(1)
        return logits, Motion(yaw, pitch, roll, self.translation(h), self.expression(h).view(-1, self.k, 3))


class FaceVid2Vid(nn.Module):
    """The face-vid2vid generator (F, L, H, M, G). ``estimate_motion``, ``canonical_keypoints`` and ``animate``
    are what the codec and ``imaginate talk`` use; ``reconstruct`` is the training forward pass.

    Args:
        cfg: sizes (``FaceModelConfig``; ``kind`` must be ``fv2v``).
    """

    def __init__(self, cfg: FaceModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.appearance = AppearanceExtractor(cfg)
        self.canonical = CanonicalKeypointDetector(cfg)
        self.pose = HeadPoseEstimator(cfg)
        self.motion_field = MotionFieldEstimator(3, cfg.volume_channels, cfg.num_keypoints, cfg.motion_compressed,
                                                 cfg.motion_channels, cfg.motion_blocks, cfg.motion_max_channels,
                                                 depth=cfg.volume_depth)
        self.decoder = ImageDecoder(cfg.volume_channels * cfg.volume_depth, cfg.generator_channels,
                                    cfg.generator_res_blocks, num_up=2)

    def canonical_keypoints(self, source: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> canonical keypoints ``[B, K, 3]``."""
        return self.canonical(source)

    def estimate_motion(self, images: Tensor) -> Motion:
        """``[B, 3, H, W]`` in [0, 1] -> Motion (degrees, translation ``[B, 3]``, expression ``[B, K, 3]``)."""
        return self.pose(images)[1]

    def generate(self, volume: Tensor, canonical: Tensor, source_motion: Motion, driving_motion: Motion) -> dict:
        """Synthesis from F's ``volume`` and canonical keypoints: ``{"image", "kp_source", "kp_driving",
        "occlusion", "flow", "masks"}``."""
        kp_s = transform_keypoints(canonical, source_motion)  # [B, K, 3]
        kp_d = transform_keypoints(canonical, driving_motion)
        rot_s = rotation_matrix(source_motion.yaw, source_motion.pitch, source_motion.roll)
        rot_d = rotation_matrix(driving_motion.yaw, driving_motion.pitch, driving_motion.roll)
        flow, occlusion, masks = self.motion_field(volume, kp_s, kp_d, rot_s @ rot_d.transpose(1, 2))
        warped = warp(volume, flow)  # [B, C, D, h, w]
        image = self.decoder(warped.flatten(1, 2), occlusion)
        return {"image": image, "kp_source": kp_s, "kp_driving": kp_d, "occlusion": occlusion, "flow": flow,
                "masks": masks}

    def animate(self, source: Tensor, source_motion: Motion, driving_motion: Motion) -> Tensor:
        """The source person in the driving motion: ``[B, 3, H, W]`` in [0, 1]."""
        return self.generate(self.appearance(source), self.canonical(source), source_motion, driving_motion)["image"]

    def forward(self, source: Tensor, driving: Tensor) -> dict:
        return self.reconstruct(source, driving)

    def reconstruct(self, source: Tensor, driving: Tensor) -> dict:
        """Training pass: the source re-rendered in the driving frame's motion, plus what the losses need
        (``canonical``, ``source_motion``, ``driving_motion``, ``driving_logits`` ``[B, 3, 66]``, ...)."""
        canonical = self.canonical(source)
        logits_s, motion_s = self.pose(source)
        logits_d, motion_d = self.pose(driving)
        out = self.generate(self.appearance(source), canonical, motion_s, motion_d)
        out |= {"canonical": canonical, "source_motion": motion_s, "driving_motion": motion_d,
                "source_logits": logits_s, "driving_logits": logits_d}
        return out

    def driving_keypoints(self, canonical: Tensor, images: Tensor) -> Tensor:
        """Keypoints ``[B, K, 3]`` of ``images`` with a given canonical set (for the equivariance loss)."""
        return transform_keypoints(canonical, self.estimate_motion(images))


class Keypoints2DDetector(nn.Module):
    """The ablation's detector: 2D hourglass on the scaled image -> K heatmaps -> 2D soft-argmax ``[B, K, 2]``."""

    def __init__(self, cfg: FaceModelConfig) -> None:
        super().__init__()
        self.scale, self.temperature = cfg.kp_scale, cfg.kp_temperature
        self.hourglass = Hourglass(2, 3, cfg.kp_channels * 4, cfg.kp_blocks, cfg.kp_max_channels * 4)
        self.heatmap = conv(2, self.hourglass.out_channels, cfg.num_keypoints, 7)

    def forward(self, image: Tensor) -> Tensor:
        if self.scale != 1:
            image = F.interpolate(image, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return soft_argmax(self.heatmap(self.hourglass(image)), self.temperature)[0]


class Keypoints2DModel(nn.Module):
    """The 2D-keypoint warping ablation (FOMM-like, no Jacobians, no pose decomposition): the same detector
    on source and driving, 2D flows ``w_k(v) = v - x_d,k + x_s,k``, 2D features of the same width as F's
    reshaped volume, the same generator."""

    def __init__(self, cfg: FaceModelConfig) -> None:
        super().__init__()
        self.config = cfg
        width = cfg.volume_channels * cfg.volume_depth
        self.encoder = ImageEncoder2D(cfg.feature_channels, 2, width)
        self.res = nn.Sequential(*[ResBlock(2, width) for _ in range(cfg.feature_res_blocks)])
        self.keypoints = Keypoints2DDetector(cfg)
        self.motion_field = MotionFieldEstimator(2, width, cfg.num_keypoints, cfg.motion_compressed,
                                                 cfg.motion_channels * 2, cfg.motion_blocks,
                                                 cfg.motion_max_channels * 2)
        self.decoder = ImageDecoder(width, cfg.generator_channels, cfg.generator_res_blocks, num_up=2)

    def forward(self, source: Tensor, driving: Tensor) -> dict:
        return self.reconstruct(source, driving)

    def reconstruct(self, source: Tensor, driving: Tensor) -> dict:
        kp_s, kp_d = self.keypoints(source), self.keypoints(driving)  # [B, K, 2]
        features = self.res(self.encoder(source))  # [B, C, h, w]
        flow, occlusion, masks = self.motion_field(features, kp_s, kp_d)
        image = self.decoder(warp(features, flow), occlusion)
        return {"image": image, "kp_source": kp_s, "kp_driving": kp_d, "occlusion": occlusion, "flow": flow,
                "masks": masks}

    def driving_keypoints(self, canonical: Tensor | None, images: Tensor) -> Tensor:
        return self.keypoints(images)


def build_model(cfg: FaceModelConfig) -> FaceVid2Vid | Keypoints2DModel:
    model = FaceVid2Vid(cfg) if cfg.kind == "fv2v" else Keypoints2DModel(cfg)
    return use_batch_norm(model) if cfg.norm == "batch" else model


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["NUM_BINS", "FaceModelConfig", "FaceVid2Vid", "Keypoints2DModel", "bins_to_degrees", "build_model",
           "count_parameters", "repose", "rotation_matrix", "transform_keypoints"]
