"""The gancraft part of ``imaginate demo``: a short GANcraft run on a procedural world (its pseudo-GT
translator trained first), the view-consistency numbers against per-frame SPADE, a picture strip of
training views and an orbit video written by the ``imaginate render`` code path."""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

DEMO_STEPS = 120  # geometry and label colours, little texture (see docs/results/gancraft.md for 1000 steps)
TRANSLATOR_STEPS = 100


def demo(out_dir: Path) -> ReportPart:
    from imaginate.engine import run_training
    from imaginate.registry import get_system
    from imaginate.systems.gancraft.render import render_video

    spec = get_system("gancraft")
    start = time.time()
    folder = out_dir / "gancraft"
    overrides = [f"train.steps={DEMO_STEPS}", "train.ckpt_every=60", "train.sample_every=0", "train.num_threads=2",
                 f"data.translator_steps={TRANSLATOR_STEPS}", "data.translator_worlds=2", "data.num_views=32",
                 "data.photo_worlds=2",
                 f"data.translator_cache={folder / 'translator.safetensors'}", "eval_views=16"]
    cfg = build_config(spec.config_cls, preset="tiny", system="gancraft", overrides=overrides)
    run_dir = folder / "tiny"
    metrics = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir(), progress=False)
    strip = sorted((run_dir / "samples").glob("segmentation_pseudo_gt_gancraft_*.png"))[-1]
    video, _ = render_video(str(run_dir), str(folder / "orbit.mp4"), path="orbit", frames=24, size=64,
                            samples=cfg.model.samples_per_ray)

    def ratio(name: str) -> str:
        return f"{metrics[f'view_std_{name}'] / max(metrics[f'view_contrast_{name}'], 1e-12):.3f}"

    rows = [["cross-view colour std of surface cells, GANcraft (lower = more consistent)",
             f"{metrics['view_std_gancraft']:.4f}"],
            ["cross-view colour std of surface cells, per-frame SPADE pseudo-GT", f"{metrics['view_std_spade']:.4f}"],
            ["std / contrast (contrast = colour std across cells), GANcraft", ratio("gancraft")],
            ["std / contrast, per-frame SPADE", ratio("spade")],
            ["mean squared error to the pseudo-GT on training views ([0, 1] units)", f"{metrics['l2_to_pseudo_gt']:.4f}"],
            ["FID in colour-statistics space vs photos (not Inception), GANcraft", f"{metrics['fid_colour_gancraft']:.3f}"],
            ["FID in colour-statistics space vs photos (not Inception), SPADE", f"{metrics['fid_colour_spade']:.3f}"]]
    text = (f"GANcraft (voxel-corner features, style-modulated render MLP, sky MLP, render CNN, style encoder) "
            f"trained for {cfg.train.steps} steps at {cfg.data.image_size} px on one procedural "
            f"{'x'.join(map(str, cfg.data.world_size))} world, supervised by a frozen SPADE translator "
            f"({TRANSLATOR_STEPS} steps on other worlds) applied to each view's segmentation, plus an OASIS N+1-class "
            f"discriminator against photo renders of other worlds. The view-consistency numbers follow "
            f"{cfg.eval_path_frames} orbit frames of the training world; a low std with a low contrast only means a "
            f"flat image, so both are given. An orbit video from `imaginate render` is at {video}. A run this short "
            f"is blurry; the longer tiny run is in docs/results/gancraft.md.")
    table = Table(f"GANcraft vs per-frame SPADE after {cfg.train.steps} steps", ["metric", "value"], rows)
    return ReportPart("gancraft", "GANcraft neural rendering of block worlds (arXiv 2104.07659)", text, [table],
                      [("training views: segmentation | pseudo-GT (SPADE) | GANcraft render", strip)],
                      time.time() - start)
