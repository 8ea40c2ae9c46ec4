"""Procedural talking heads with known pose and expression, for face-vid2vid on a CPU.

A head is a handful of analytic surfaces in its own frame (x to the person's left = image right at
zero yaw, y up, z out of the face; the skull's centre at the origin, about 1 unit tall per half):
an ellipsoid skull and jaw, an ellipsoid nose and ears, two eyeballs (iris, pupil, upper and lower
lids that close with a blink), a hair shell clipped by a hairline with an optional fringe and long
hair behind, and optionally glasses (frames on a plane in front of the eyes) and earrings. Brows,
mouth (lips, opening with the jaw, teeth), nostrils and blush are painted on the skin by their
position in the head's frame. A neck and shoulders sit below in the camera's frame. Rays from a
pinhole camera are intersected with every surface (pure PyTorch, batched over heads and pixels),
the nearest hit is shaded (Lambert with one light plus ambient), and the picture is box-filtered
from ``supersample``**2 rays per pixel, over a background that is plain, a gradient or a smooth
texture (fixed per identity, like the room of a video call).

Pose (degrees) follows :mod:`imaginate.systems.face_vid2vid.motion`'s convention: positive yaw turns
the nose toward the image's right, positive pitch nods it down, positive roll tilts the head
counter-clockwise on screen. Translation is in head units in the camera frame (x right, y up, z toward
the camera: a positive z makes the head larger). Expression is ``[E]`` in ``EXPRESSION_NAMES`` order:
jaw opening (0..1), blink of the person's left and right eye (0 open .. 1 closed), left and right
brow raise (-1..1) and smile (-1..1). Everything is a deterministic function of the seeds.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from imaginate.data.head_render import CAMERA_DISTANCE, render_primitives

EXPRESSION_NAMES = ("jaw", "blink_left", "blink_right", "brow_left", "brow_right", "smile")
EXPRESSION_DIM = len(EXPRESSION_NAMES)
POSE_LIMITS = {"yaw": 40.0, "pitch": 20.0, "roll": 15.0}  # degrees: head_clip stays inside +-these
DEFAULT_FPS = 30.0
BACKGROUNDS = ("plain", "gradient", "texture")
_CACHE_VERSION = 1  # bump when the renderer's pictures change


@dataclass(frozen=True)
class IdentitySplit:
    """Disjoint identity seeds for training and held-out evaluation."""

    train: range
    test: range


IDENTITY_SPLIT = IdentitySplit(train=range(0, 100_000), test=range(1_000_000, 1_001_000))


def _colour(rng: np.random.Generator, base: Sequence[float], jitter: float) -> tuple[float, float, float]:
    value = np.clip(np.asarray(base) + rng.normal(0.0, jitter, 3), 0.0, 1.0)
    return tuple(float(v) for v in value)


_SKIN_TONES = ((0.96, 0.80, 0.69), (0.90, 0.70, 0.56), (0.80, 0.58, 0.43), (0.62, 0.42, 0.30),
               (0.45, 0.30, 0.21), (0.98, 0.86, 0.76))
_HAIR_COLOURS = ((0.08, 0.06, 0.05), (0.25, 0.15, 0.08), (0.45, 0.28, 0.14), (0.75, 0.58, 0.30),
                 (0.55, 0.20, 0.08), (0.60, 0.60, 0.62), (0.15, 0.12, 0.10))
_IRIS_COLOURS = ((0.30, 0.18, 0.08), (0.20, 0.35, 0.55), (0.25, 0.45, 0.30), (0.12, 0.08, 0.05))


@dataclass(frozen=True)
class HeadIdentity:
    """Everything about one person and their room that does not change during a clip.

    Lengths are in head units (the skull's vertical half-axis is ~1), colours RGB in [0, 1].
    Build one with :meth:`random`; the fields are public so tests can vary one at a time.
    """

    seed: int
    skull: tuple[float, float, float]  # half-axes x, y, z of the skull ellipsoid
    jaw_width: float  # half-width of the jaw ellipsoid
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hairline_front: float  # forehead hairline height (y); > 1 is bald
    hairline_back: float  # hairline height at the back of the head
    fringe: float  # depth of a fringe below the front hairline (0: none)
    long_hair: bool
    eye_spacing: float  # |x| of each eye's centre
    eye_height: float  # y of the eyes
    eye_radius: float
    iris: tuple[float, float, float]
    brow_thickness: float
    nose_length: float  # half-axis in y
    nose_width: float  # half-axis in x
    mouth_width: float  # half-width of the lips
    mouth_height: float  # y of the mouth
    lips: tuple[float, float, float]
    glasses: bool
    glasses_colour: tuple[float, float, float]
    earrings: bool
    shirt: tuple[float, float, float]
    background: str  # one of BACKGROUNDS
    background_colours: tuple[tuple[float, float, float], tuple[float, float, float]]

    @classmethod
    def random(cls, seed: int) -> HeadIdentity:
        """The identity of ``seed`` (any int >= 0): the same seed gives the same person."""
        if seed < 0:
            raise ValueError(f"identity seed must be >= 0, got {seed}")
        rng = np.random.default_rng([seed, 0x4EAD])
        width = rng.uniform(0.70, 0.84)
        skin = _colour(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 0.03)
        hair = _colour(rng, _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], 0.03)
        bald = rng.random() < 0.08
        long_hair = (not bald) and rng.random() < 0.35
        wall = rng.uniform(0.25, 0.95, 3)
        background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
        return cls(
            seed=int(seed),
            skull=(float(width), float(rng.uniform(0.95, 1.05)), float(rng.uniform(0.82, 0.92))),
            jaw_width=float(width * rng.uniform(0.62, 0.80)),
            skin=skin,
            hair=hair,
            hairline_front=float(1.5 if bald else rng.uniform(0.42, 0.62)),
            hairline_back=float(1.5 if bald else rng.uniform(-0.75, -0.35)),
            fringe=float(0.0 if bald or rng.random() < 0.6 else rng.uniform(0.08, 0.22)),
            long_hair=bool(long_hair),
            eye_spacing=float(rng.uniform(0.27, 0.33)),
            eye_height=float(rng.uniform(0.08, 0.16)),
            eye_radius=float(rng.uniform(0.10, 0.125)),
            iris=_colour(rng, _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], 0.04),
            brow_thickness=float(rng.uniform(0.025, 0.05)),
            nose_length=float(rng.uniform(0.17, 0.25)),
            nose_width=float(rng.uniform(0.08, 0.12)),
            mouth_width=float(rng.uniform(0.20, 0.27)),
            mouth_height=float(rng.uniform(-0.50, -0.42)),
            lips=_colour(rng, np.asarray(skin) * np.array([0.85, 0.55, 0.55]) + np.array([0.1, 0.0, 0.02]), 0.03),
            glasses=bool(rng.random() < 0.3),
            glasses_colour=_colour(rng, (0.12, 0.10, 0.10) if rng.random() < 0.7 else (0.6, 0.45, 0.2), 0.05),
            earrings=bool(rng.random() < 0.25),
            shirt=_colour(rng, rng.uniform(0.1, 0.9, 3), 0.0),
            background=background,
            background_colours=(tuple(float(v) for v in wall),
                                tuple(float(v) for v in np.clip(wall * rng.uniform(0.5, 1.3, 3), 0, 1))),
        )

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _background(identity: HeadIdentity, size: int) -> Tensor:
    """``[3, size, size]`` the identity's room: plain, a vertical gradient or a smooth texture."""
    first, second = (torch.tensor(c, dtype=torch.float32) for c in identity.background_colours)
    if identity.background == "plain":
        return first[:, None, None].expand(3, size, size).clone()
    rows = torch.linspace(0.0, 1.0, size)[:, None].expand(size, size)  # [H, W]
    if identity.background == "gradient":
        return first[:, None, None] * (1 - rows) + second[:, None, None] * rows
    generator = torch.Generator().manual_seed(int(identity.seed) * 7919 + 17)
    coarse = torch.rand(1, 1, 6, 6, generator=generator)  # a size-independent pattern, bilinearly upsampled
    fine = torch.rand(1, 1, 16, 16, generator=generator)
    noise = (F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True) * 0.8
             + F.interpolate(fine, size=(size, size), mode="bilinear", align_corners=True) * 0.2)[0, 0]
    weight = noise.clamp(0, 1)
    return first[:, None, None] * (1 - weight) + second[:, None, None] * weight


def render_heads(identities: HeadIdentity | Sequence[HeadIdentity], yaw: Tensor, pitch: Tensor, roll: Tensor,
                 translation: Tensor, expression: Tensor, size: int = 64, supersample: int | None = None) -> Tensor:
    """Render B heads.

    Args:
        identities: one identity for all B frames, or a sequence of B identities.
        yaw, pitch, roll: ``[B]`` degrees.
        translation: ``[B, 3]`` head units (x right, y up, z toward the camera).
        expression: ``[B, E]`` in EXPRESSION_NAMES order.
        size: output side in pixels (square images).
        supersample: rays per pixel side (default 2 up to 128 px, else 1).

    Returns:
        ``[B, 3, size, size]`` float32 in [0, 1].
    """
    yaw, pitch, roll = (torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in (yaw, pitch, roll))
    batch = yaw.shape[0]
    translation = torch.as_tensor(translation, dtype=torch.float32).reshape(batch, 3)
    expression = torch.as_tensor(expression, dtype=torch.float32).reshape(batch, EXPRESSION_DIM)
    if isinstance(identities, HeadIdentity):
        identities = [identities] * batch
    if len(identities) != batch:
        raise ValueError(f"got {len(identities)} identities for {batch} poses")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    supersample = (2 if size <= 128 else 1) if supersample is None else int(supersample)
    rays = size * supersample
    colour, hit = render_primitives(identities, yaw, pitch, roll, translation, expression, rays)  # [B,3,r,r],[B,1,r,r]
    if supersample > 1:
        colour = F.avg_pool2d(colour, supersample)
        hit = F.avg_pool2d(hit, supersample)
    backgrounds = {}
    for identity in identities:
        if identity.seed not in backgrounds:
            backgrounds[identity.seed] = _background(identity, size)
    background = torch.stack([backgrounds[identity.seed] for identity in identities])
    # colour is premultiplied by coverage: composite over the room
    return (colour + (1 - hit) * background).clamp(0.0, 1.0)


def render_head(identity: HeadIdentity, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
                translation: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
                expression: Sequence[float] | Tensor | None = None, size: int = 64,
                supersample: int | None = None) -> Tensor:
    """One head: ``[3, size, size]`` in [0, 1] (see :func:`render_heads`; expression defaults to neutral)."""
    expression = torch.zeros(EXPRESSION_DIM) if expression is None else torch.as_tensor(expression, dtype=torch.float32)
    return render_heads(identity, torch.tensor([float(yaw)]), torch.tensor([float(pitch)]),
                        torch.tensor([float(roll)]), torch.as_tensor(translation, dtype=torch.float32)[None],
                        expression[None], size, supersample)[0]


@dataclass
class HeadClip:
    """A rendered clip and its true motion.

    Fields:
        frames: ``[T, 3, H, W]`` float32 in [0, 1].
        yaw, pitch, roll: ``[T]`` degrees.
        translation: ``[T, 3]``.
        expression: ``[T, E]``.
        identity_seed, clip_seed: what made it; fps: the clip's nominal frame rate.
    """

    frames: Tensor
    yaw: Tensor
    pitch: Tensor
    roll: Tensor
    translation: Tensor
    expression: Tensor
    identity_seed: int
    clip_seed: int
    fps: float = DEFAULT_FPS

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _smooth(rng: np.random.Generator, times: np.ndarray, max_hz: float, parts: int = 3) -> np.ndarray:
    """``[T]`` a smooth signal in [-1, 1]: a random sum of ``parts`` sinusoids below ``max_hz``."""
    freqs = rng.uniform(0.05, max_hz, parts)
    phases = rng.uniform(0, 2 * math.pi, parts)
    amps = rng.dirichlet(np.ones(parts))
    return (amps[:, None] * np.sin(2 * math.pi * freqs[:, None] * times[None] + phases[:, None])).sum(0)


def _blinks(rng: np.random.Generator, num_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """``([T], [T])`` blink closure of the left and right eye: short events every ~2-5 s, a few winks."""
    profile = np.array([0.35, 0.8, 1.0, 1.0, 0.75, 0.4, 0.15])
    left, right = np.zeros(num_frames), np.zeros(num_frames)
    frame = int(rng.uniform(0.0, 2.5) * fps)
    while frame < num_frames:
        span = slice(frame, min(frame + len(profile), num_frames))
        shape = profile[: span.stop - span.start]
        wink = rng.random()
        if wink > 0.06:
            left[span] = np.maximum(left[span], shape)
        if wink < 0.03 or wink > 0.06:
            right[span] = np.maximum(right[span], shape)
        frame += int(rng.uniform(2.0, 5.0) * fps)
    return left, right


def head_motion(clip_seed: int, num_frames: int, fps: float = DEFAULT_FPS) -> dict[str, Tensor]:
    """Smooth, plausible talking-head motion: ``yaw/pitch/roll [T]``, ``translation [T, 3]``, ``expression [T, E]``."""
    rng = np.random.default_rng([clip_seed, 0xC11F])
    times = np.arange(num_frames) / fps
    pose = {}
    for name, centre, amplitude in (("yaw", 18.0, 24.0), ("pitch", 7.0, 12.0), ("roll", 5.0, 9.0)):
        limit = POSE_LIMITS[name]
        value = rng.uniform(-centre, centre) + rng.uniform(0.3, 1.0) * amplitude * _smooth(rng, times, 0.5)
        pose[name] = np.clip(value, -limit, limit)
    translation = np.stack([0.08 * _smooth(rng, times, 0.3), 0.06 * _smooth(rng, times, 0.3),
                            0.25 * _smooth(rng, times, 0.2)], axis=1)
    speaking = np.clip(0.55 + 0.9 * _smooth(rng, times, 0.25), 0.0, 1.0)  # talking vs pausing
    syllables = np.abs(np.sin(math.pi * rng.uniform(2.5, 4.5) * times + rng.uniform(0, math.pi)))
    syllables *= 0.7 + 0.3 * _smooth(rng, times, 1.5)
    jaw = np.clip(speaking * syllables ** 1.5 * rng.uniform(0.6, 1.0), 0.0, 1.0)
    blink_left, blink_right = _blinks(rng, num_frames, fps)
    brows = 0.35 * _smooth(rng, times, 0.6) + 0.3 * speaking * _smooth(rng, times, 1.0)
    brow_left = np.clip(brows + 0.1 * _smooth(rng, times, 0.5), -1, 1)
    brow_right = np.clip(brows + 0.1 * _smooth(rng, times, 0.5), -1, 1)
    smile = np.clip(rng.uniform(-0.3, 0.6) + 0.4 * _smooth(rng, times, 0.3), -1, 1)
    expression = np.stack([jaw, blink_left, blink_right, brow_left, brow_right, smile], axis=1)

    def tensor(array: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).float()

    return {"yaw": tensor(pose["yaw"]), "pitch": tensor(pose["pitch"]), "roll": tensor(pose["roll"]),
            "translation": tensor(translation), "expression": tensor(expression)}


def head_clip(identity_seed: int, clip_seed: int, num_frames: int = 32, size: int = 64,
              fps: float = DEFAULT_FPS, chunk: int = 16, supersample: int | None = None) -> HeadClip:
    """Render ``num_frames`` frames of identity ``identity_seed`` moving as ``head_motion(clip_seed)``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    identity = HeadIdentity.random(identity_seed)
    motion = head_motion(clip_seed, num_frames, fps)
    frames = torch.cat([
        render_heads(identity, motion["yaw"][i:i + chunk], motion["pitch"][i:i + chunk], motion["roll"][i:i + chunk],
                     motion["translation"][i:i + chunk], motion["expression"][i:i + chunk], size, supersample)
        for i in range(0, num_frames, chunk)])
    frames = (frames * 255).round() / 255  # 8-bit frames, as a camera would deliver (and a cache stores)
    return HeadClip(frames=frames, identity_seed=int(identity_seed), clip_seed=int(clip_seed), fps=fps, **motion)


def cached_head_clip(identity_seed: int, clip_seed: int, num_frames: int = 32, size: int = 64,
                     cache_dir: str | os.PathLike | None = None, fps: float = DEFAULT_FPS) -> HeadClip:
    """:func:`head_clip`, stored once under ``cache_dir`` (uint8 frames and float motion; None: no cache).

    The cached clip equals the rendered one exactly (frames are 8-bit either way).
    """
    if cache_dir is None:
        return head_clip(identity_seed, clip_seed, num_frames, size, fps)
    path = Path(cache_dir) / f"head_{identity_seed}_{clip_seed}_{num_frames}x{size}_{fps:g}fps_v{_CACHE_VERSION}.pt"
    if path.is_file():
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            return HeadClip(frames=data["frames"].float() / 255, yaw=data["yaw"], pitch=data["pitch"],
                            roll=data["roll"], translation=data["translation"], expression=data["expression"],
                            identity_seed=identity_seed, clip_seed=clip_seed, fps=fps)
        except (RuntimeError, KeyError, EOFError, OSError):
            path.unlink(missing_ok=True)  # a broken cache entry is rendered again
    clip = head_clip(identity_seed, clip_seed, num_frames, size, fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    torch.save({"frames": (clip.frames * 255).round().to(torch.uint8), "yaw": clip.yaw, "pitch": clip.pitch,
                "roll": clip.roll, "translation": clip.translation, "expression": clip.expression}, tmp)
    os.replace(tmp, path)
    return clip


__all__ = ["cached_head_clip", "BACKGROUNDS", "CAMERA_DISTANCE", "DEFAULT_FPS", "EXPRESSION_DIM", "EXPRESSION_NAMES", "IDENTITY_SPLIT",
           "POSE_LIMITS", "HeadClip", "HeadIdentity", "IdentitySplit", "head_clip", "head_motion", "render_head",
           "render_heads"]
