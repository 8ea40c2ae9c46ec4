"""Loading a trained face_vid2vid run for synthesis (``imaginate talk``, the keypoint codec, benchmarks)."""

from __future__ import annotations

from pathlib import Path

import torch

from imaginate.systems.face_vid2vid.model import FaceVid2Vid, Keypoints2DModel


def load_model(run_dir: str | Path, device: str = "auto") -> FaceVid2Vid | Keypoints2DModel:
    """The generator of a face_vid2vid run's newest checkpoint, in eval mode with gradients off.

    Raises:
        imaginate.cli.UserError: ``run_dir`` is missing or holds another system's run (one line).
        imaginate.config.ConfigError / imaginate.engine.CheckpointError: not a run / a damaged checkpoint.
    """
    from imaginate.cli import UserError
    from imaginate.engine import load_run

    if not str(run_dir).startswith("zoo:") and not Path(run_dir).is_dir():  # zoo:NAME: the project's weights
        raise UserError(f"--checkpoint {run_dir}: no such run folder")
    spec, _, system, _ = load_run(Path(run_dir), device=device)
    if spec.name != "face_vid2vid":
        raise UserError(f"--checkpoint {run_dir}: a {spec.name} run, not a face_vid2vid one")
    model = system.model.eval()
    model.requires_grad_(False)
    return model


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``[T, 3, h, w]`` -> ``[T, 3, size, size]`` (bilinear, antialiased); a no-op at the right size."""
    if frames.shape[-2:] == (size, size):
        return frames
    return torch.nn.functional.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True).clamp(0, 1)


__all__ = ["load_model", "resize_frames"]
