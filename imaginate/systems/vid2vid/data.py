"""Label videos for vid2vid training and evaluation: block-world camera paths rendered once, kept in memory.

Train and test never share a world or a photo style (``label_video_specs`` draws them from disjoint
seed ranges); every video has its own style.
Each video holds labels, photo, depth, camera, exact backward flow and its visibility (``LabelVideo``
from ``imaginate.data.blockworld.label_video``); a training batch is ``B`` windows of ``T`` consecutive
frames, drawn from (seed, step) alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from imaginate.config import ConfigError

PATHS = ("out_and_back", "loop", "revisit")
FIELDS = ("labels", "photo", "depth", "intrinsics", "cam_to_world", "flow", "flow_valid")


@dataclass
class Vid2VidDataConfig:
    """Args:
        world_size: ``[X, Y, Z]`` of each procedural world.
        train_worlds: worlds in the training split; videos_per_world: videos (paths x styles) per world.
        test_worlds: held-out worlds (unseen styles too) for evaluation.
        frames: frames per rendered video (the longest training window).
        paths: camera-path kinds to draw from, cycled over the videos.
        seq_len_start / seq_len_max / seq_len_double_every: the window length starts at ``seq_len_start``
            frames and doubles every ``seq_len_double_every`` steps up to ``seq_len_max`` (0: never grows).
        guidance_mode: ``first`` (first colouring wins) or ``average`` for the point store.
    """

    world_size: list[int] = field(default_factory=lambda: [48, 24, 48])
    train_worlds: int = 4
    videos_per_world: int = 3
    test_worlds: int = 2
    frames: int = 16
    paths: list[str] = field(default_factory=lambda: list(PATHS))
    seq_len_start: int = 4
    seq_len_max: int = 8
    seq_len_double_every: int = 1000
    guidance_mode: str = "first"

    def __post_init__(self) -> None:
        if len(self.world_size) != 3 or min(self.world_size) < 8:
            raise ConfigError(f"data.world_size: must be [X, Y, Z] with each >= 8, got {list(self.world_size)}")
        for key in ("train_worlds", "videos_per_world", "test_worlds"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}: must be >= 1, got {getattr(self, key)}")
        if not self.paths or any(p not in PATHS for p in self.paths):
            raise ConfigError(f"data.paths: each must be one of {', '.join(PATHS)}, got {list(self.paths)}")
        if self.seq_len_start < 3:
            raise ConfigError(f"data.seq_len_start: must be >= 3 (a temporal window), got {self.seq_len_start}")
        if self.seq_len_max < self.seq_len_start:
            raise ConfigError(f"data.seq_len_max: must be >= seq_len_start, got {self.seq_len_max}")
        if self.frames < self.seq_len_max:
            raise ConfigError(f"data.frames: must be >= seq_len_max={self.seq_len_max}, got {self.frames}")
        if self.seq_len_double_every < 0:
            raise ConfigError(f"data.seq_len_double_every: must be >= 0, got {self.seq_len_double_every}")
        if self.guidance_mode not in ("first", "average"):
            raise ConfigError(f"data.guidance_mode: '{self.guidance_mode}' is not one of first, average")

    def seq_len(self, step: int) -> int:
        """Frames per training window at ``step``: start, doubling every ``seq_len_double_every`` steps."""
        if self.seq_len_double_every == 0:
            return self.seq_len_start
        return min(self.seq_len_max, self.seq_len_start * 2 ** (step // self.seq_len_double_every))


# bytes per pixel per frame of a rendered training video as stacked: labels int64 (8), photo float32 x3 (12),
# depth (4), flow x2 (8), flow_valid (4); tests/vid2vid checks it against a real render
VIDEO_BYTES_PER_PIXEL = 36


def check_train_set_fits(cfg: Vid2VidDataConfig, height: int, width: int, total: int | None = None) -> None:
    """Refuse (one line naming the keys) a training set that would not fit in memory: it is rendered up
    front, and the rendered list and its stacked copy coexist while stacking."""
    from imaginate.data.memory import check_fits

    frames = cfg.train_worlds * cfg.videos_per_world * cfg.frames
    check_fits(f"training videos ({frames} frames at {height}x{width})",
               2 * frames * height * width * VIDEO_BYTES_PER_PIXEL,
               "data.train_worlds / data.videos_per_world / data.frames", total=total)


def render_videos(cfg: Vid2VidDataConfig, split: str, seed: int, height: int, width: int,
                  frames: int | None = None, paths: list[str] | None = None, num_sequences: int | None = None,
                  num_worlds: int | None = None) -> list:
    """The ``LabelVideo`` list of a split (``train`` or ``test``; disjoint worlds and styles), deterministic."""
    from imaginate.data.blockworld.label_video import LabelVideoDataset, label_video_specs

    worlds = num_worlds or (cfg.train_worlds if split == "train" else cfg.test_worlds)
    count = num_sequences or worlds * cfg.videos_per_world
    specs = label_video_specs(split, count, frames or cfg.frames, height, width, tuple(paths or cfg.paths),
                              seed=seed % 1000, num_worlds=worlds, world_size=tuple(cfg.world_size))
    dataset = LabelVideoDataset(specs, keep_in_memory=False)
    return [dataset[i] for i in range(len(dataset))]


def stack_videos(videos: list) -> dict[str, Tensor]:
    """``{field: [N, T, ...]}`` of equally long videos (labels int64, photo [0, 1], flow in pixels...)."""
    out = {}
    for name in FIELDS:
        out[name] = torch.stack([getattr(v, name) for v in videos])
    out["flow_valid"] = out["flow_valid"].float()
    return out


def window_batch(videos: dict[str, Tensor], indices: Tensor, length: int, generator: torch.Generator) -> dict[str, Tensor]:
    """``B`` windows of ``length`` consecutive frames from the videos at ``indices [B]``: ``{field: [B, length, ...]}``."""
    total = videos["labels"].shape[1]
    starts = torch.randint(0, total - length + 1, (len(indices),), generator=generator)
    frames = starts[:, None] + torch.arange(length)[None]  # [B, length]
    return {k: v[indices[:, None], frames] for k, v in videos.items()}
