"""Tiny finished runs of each system for the web app's tests: a few steps each, one thread, on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COMMON = ["train.device=cpu", "train.num_threads=1", "train.log_every=1", "train.sample_every=0"]
TINY = {
    "classify": ["train.steps=30", "train.eval_every=15", "train.ckpt_every=30", "train.sample_every=30"],
    "gan": ["data.name=digits", "train.steps=2", "train.ckpt_every=2", "train.eval_every=0", "eval.num_samples=50",
            "train.batch_size=8"],
    "lns_madam": ["train.steps=4", "train.eval_every=4", "train.ckpt_every=4"],
    "coco_funit": ["data.images_per_species=4", "train.batch_size=4", "train.steps=1", "train.ckpt_every=1",
                   "eval.shots=[1,2]", "eval.translations_per_class=3", "eval.real_per_class=3",
                   "eval.helper_images_per_class=2", "eval.classifier_steps=2", "eval.mask_net_steps=2"],
    "wsod": ["data.num_train=12", "data.num_test=6", "eval.corloc_images=6", "model.width=8", "model.neck_dim=32",
             "data.proposal_method=sliding_window", "data.max_proposals=40", "train.batch_size=2", "train.steps=1",
             "train.ckpt_every=1"],
    "styled_text": ["train.steps=2", "train.batch_size=8", "train.ckpt_every=2", "loss.adversarial_start=10",
                    "loss.rollout_len=4", "loss.rollout_batch=4", "judge.lm_steps=2", "judge.lm_batch=4",
                    "judge.lm_context=64", "eval_pairs=4", "eval_len=6", "model.d_model=32", "model.style_dim=16",
                    "data.vocab_size=400"],
    "face_vid2vid": ["train.steps=1", "data.train_clips=2", "data.clip_frames=2", "data.eval_clips=1",
                     "data.eval_frames=2", "train.ckpt_every=1"],
    "vid2vid": ["model.height=32", "model.width=64", "data.world_size=[32,16,32]", "data.train_worlds=1",
                "data.videos_per_world=1", "data.frames=4", "data.seq_len_start=3", "data.seq_len_max=3",
                "eval_videos=1", "eval_frames=4", "train.batch_size=1", "model.mode=vid2vid", "train.steps=1",
                "train.ckpt_every=1"],
    "gancraft": ["data.world_size=[24,16,24]", "data.num_views=6", "data.image_size=16", "data.photo_worlds=1",
                 "data.photos_per_world=6", "data.translator_steps=3", "data.translator_worlds=1",
                 "data.translator_views_per_world=4", "train.batch_size=2", "eval_views=4", "eval_path_frames=3",
                 "train.steps=1", "train.ckpt_every=1"],
}


def train_tiny(system: str, runs_dir: Path, name: str | None = None, extra: list[str] = ()) -> Path:
    """Train ``system``'s tiny preset shrunk to a few steps into ``runs_dir/name``; returns the run folder."""
    from imaginate.config import build_config
    from imaginate.engine import run_training
    from imaginate.registry import get_system

    spec = get_system(system)
    run_dir = runs_dir / (name or f"{system}-tiny")
    overrides = [*COMMON, *TINY[system], *extra]
    if system == "wsod":
        overrides.append(f"data.proposal_cache={runs_dir / '.proposals'}")
    cfg = build_config(spec.config_cls, preset="tiny", system=system, overrides=overrides)
    run_training(spec, cfg, run_dir, progress=False)
    return run_dir


def save_image(path: Path, pixels: np.ndarray) -> Path:
    """``[H, W]`` or ``[H, W, 3]`` floats in [0, 1] (or uint8) as a PNG."""
    from PIL import Image

    array = pixels if pixels.dtype == np.uint8 else (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


if __name__ == "__main__":  # time each: python tests/serve/serve_tiny_runs.py OUT
    import sys
    import time

    import torch

    torch.set_num_threads(1)
    for system in sys.argv[2:] or TINY:
        start = time.time()
        try:
            train_tiny(system, Path(sys.argv[1]))
            print(f"{system}: {time.time() - start:.1f} s", flush=True)
        except Exception as exc:
            print(f"{system}: FAILED {type(exc).__name__}: {exc}", flush=True)
