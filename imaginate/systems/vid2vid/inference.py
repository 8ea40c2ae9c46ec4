"""Autoregressive synthesis over label videos of any length, with memory flat in the length.

Only the last ``num_prev`` frames (labels and outputs) and, in ``wc_vid2vid`` mode, the point store are
kept between frames; every frame is generated under ``torch.no_grad`` and moved to the CPU as it is
done. ``per_frame_spade`` is the baseline that draws every frame with the single-image SPADE generator.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.nn import functional as F

from imaginate.systems.vid2vid.model import Vid2VidGenerator


def one_hot(labels: Tensor, num_labels: int) -> Tensor:
    """``[B, H, W]`` int -> ``[B, L, H, W]`` float (ids >= L are clamped into the last class)."""
    return F.one_hot(labels.long().clamp(0, num_labels - 1), num_labels).permute(0, 3, 1, 2).float()


class SynthesisTimer:
    """Seconds spent in the generator and in the guidance renderer (the cost table)."""

    def __init__(self) -> None:
        self.generator = 0.0
        self.guidance = 0.0
        self.frames = 0


@torch.no_grad()
def synthesize_frames(generator: Vid2VidGenerator, labels: Tensor, geometry: dict[str, Tensor] | None = None,
                      use_guidance: bool | None = None, first_frame: Tensor | None = None,
                      guidance_mode: str = "first", timer: SynthesisTimer | None = None,
                      voxel_faces: bool = True) -> Iterator[Tensor]:
    """Yield the output frames ``[3, H, W]`` in [0, 1] (on the CPU) one by one.

    Args:
        generator: a trained generator (used in eval mode).
        labels: ``[T, H, W]`` integer labels (any T >= 1).
        geometry: ``{"depth": [T, H, W], "intrinsics": [T, 3, 3], "cam_to_world": [T, 4, 4]}`` for guidance.
        use_guidance: colour and read the point store (default: the generator's mode); needs ``geometry``.
        first_frame: ``[3, H, W]`` in [0, 1] to start from instead of the SPADE first frame.
        guidance_mode: the point store's ``first`` or ``average`` colouring.
        timer: accumulates generator and guidance seconds.
        voxel_faces: the geometry shows a block world (points snap to block-face cells; False for others).
    """
    cfg = generator.config
    use_guidance = cfg.uses_guidance if use_guidance is None else use_guidance
    if use_guidance and not cfg.uses_guidance:
        raise ValueError("this generator was built without guidance (mode vid2vid)")
    if use_guidance and geometry is None:
        raise ValueError("guidance needs depth, intrinsics and cam_to_world for every frame")
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    store = None
    if use_guidance:
        from imaginate.data.blockworld.guidance import PointStore

        store = PointStore(1, mode=guidance_mode, voxel_faces=voxel_faces, device=device)
    timer = timer or SynthesisTimer()
    prev_labels: deque[Tensor] = deque(maxlen=cfg.num_prev)
    prev_images: deque[Tensor] = deque(maxlen=cfg.num_prev)
    height, width = labels.shape[-2:]

    def geo(t: int) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(geometry[k][t:t + 1].to(device) for k in ("depth", "intrinsics", "cam_to_world"))

    try:
        for t in range(labels.shape[0]):
            label = one_hot(labels[t:t + 1].to(device), cfg.num_labels)  # [1, L, H, W]
            guidance = mask = None
            if store is not None and t > 0:
                start = time.perf_counter()
                guidance, mask = store.render(*geo(t), [(height, width)])[0]  # [1, 3, H, W] [0, 1], [1, 1, H, W]
                guidance = guidance * 2 - 1
                timer.guidance += time.perf_counter() - start
            start = time.perf_counter()
            if t == 0:
                image = (first_frame[None].to(device) * 2 - 1 if first_frame is not None
                         else generator.generate_first(label))
            else:
                out = generator(label, torch.stack(list(prev_labels), 1), torch.stack(list(prev_images), 1),
                                guidance, mask)
                image = out["image"]
            timer.generator += time.perf_counter() - start
            if t == 0:  # pad the history with the first frame
                for _ in range(cfg.num_prev):
                    prev_labels.append(label)
                    prev_images.append(image)
            else:
                prev_labels.append(label)
                prev_images.append(image)
            if store is not None:
                start = time.perf_counter()
                store.update((image + 1) / 2, *geo(t))
                timer.guidance += time.perf_counter() - start
            timer.frames += 1
            yield ((image[0] + 1) / 2).clamp(0, 1).cpu()
    finally:
        generator.train(was_training)


def synthesize(generator: Vid2VidGenerator, labels: Tensor, geometry: dict[str, Tensor] | None = None,
               use_guidance: bool | None = None, first_frame: Tensor | None = None,
               guidance_mode: str = "first", timer: SynthesisTimer | None = None, voxel_faces: bool = True) -> Tensor:
    """All frames of ``synthesize_frames`` stacked: ``[T, 3, H, W]`` in [0, 1]."""
    return torch.stack(list(synthesize_frames(generator, labels, geometry, use_guidance, first_frame,
                                              guidance_mode, timer, voxel_faces)))


@torch.no_grad()
def per_frame_spade(generator: Vid2VidGenerator, labels: Tensor, batch: int = 8) -> Tensor:
    """Every frame from the single-image SPADE generator alone: ``[T, 3, H, W]`` in [0, 1]."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        frames = [generator.generate_first(one_hot(labels[i:i + batch].to(device), generator.config.num_labels))
                  for i in range(0, labels.shape[0], batch)]
    finally:
        generator.train(was_training)
    return ((torch.cat(frames) + 1) / 2).clamp(0, 1).cpu()


def video_geometry(video) -> dict[str, Tensor] | None:
    """The guidance geometry of a ``LabelVideo`` (None when it has no depth or poses)."""
    if getattr(video, "depth", None) is None or getattr(video, "cam_to_world", None) is None:
        return None
    return {"depth": video.depth, "intrinsics": video.intrinsics, "cam_to_world": video.cam_to_world}
