"""Consistency and fidelity measures of synthesized videos (all frames ``[T, 3, H, W]`` in [0, 1])."""

from __future__ import annotations

import math

from torch import Tensor

from imaginate.nn.flow_warp import backward_warp


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two image stacks in [0, 1] (mean squared error over everything)."""
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse <= 1e-10 else 10 * math.log10(1.0 / mse)


def revisit_error(frames: Tensor, pairs: list[tuple[int, int]], min_gap: int = 0) -> tuple[float, float]:
    """``(L1, PSNR)`` between the frames rendered at the same pose on the way out and on the way back, over
    the pairs at least ``min_gap`` frames apart (close pairs only measure short-term consistency)."""
    pairs = [p for p in pairs if p[1] - p[0] >= min_gap]
    if not pairs:
        return float("nan"), float("nan")
    out = frames[[p[0] for p in pairs]]
    back = frames[[p[1] for p in pairs]]
    return float((out - back).abs().mean()), psnr(out, back)


def warping_error(frames: Tensor, flow: Tensor, valid: Tensor) -> float:
    """Mean L1 between frame t and frame t-1 warped by the exact backward ``flow [T, 2, H, W]``, on pixels
    visible in both (``valid [T, 1, H, W]``), over t >= 1."""
    warped = backward_warp(frames[:-1], flow[1:].to(frames.dtype))  # [T-1, 3, H, W]
    weight = valid[1:].to(frames.dtype).expand_as(warped)
    return float((weight * (warped - frames[1:]).abs()).sum() / weight.sum().clamp_min(1.0))
