"""The vid2vid part of ``imaginate demo``: short vid2vid and wc-vid2vid runs at 32x64, their revisit and
warping errors on an unseen world in an unseen style, a picture strip and a side-by-side video written by
the ``imaginate synthesize`` code path."""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

DEMO_STEPS = 40  # label colours and some use of the guidance; docs/results/vid2vid.md trains 300 steps
OVERRIDES = ["model.height=32", "model.width=64", "data.train_worlds=2", "data.videos_per_world=2", "data.frames=8",
             "data.seq_len_start=4", "data.seq_len_max=8", "data.seq_len_double_every=30", "eval_videos=1",
             "eval_frames=16", "train.ckpt_every=0", "train.sample_every=0", "train.num_threads=2",
             "train.log_every=20", f"train.steps={DEMO_STEPS}"]


def demo(out_dir: Path) -> ReportPart:
    import torch

    from imaginate.engine import load_run, run_training
    from imaginate.engine.images import save_png
    from imaginate.registry import get_system
    from imaginate.systems.vid2vid.evaluation import revisit_error, warping_error
    from imaginate.systems.vid2vid.inference import synthesize, video_geometry
    from imaginate.systems.vid2vid.synthesize import label_colours, synthesize_video

    spec = get_system("vid2vid")
    start = time.time()
    folder = out_dir / "vid2vid"
    runs, metrics = {}, {}
    for mode in ("vid2vid", "wc_vid2vid"):
        cfg = build_config(spec.config_cls, preset="tiny", system="vid2vid", overrides=[*OVERRIDES, f"model.mode={mode}"])
        run_dir = folder / mode
        metrics[mode] = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir(), progress=False)
        runs[mode] = run_dir
    _, cfg, system, _ = load_run(runs["wc_vid2vid"], device="cpu")
    _, _, baseline, _ = load_run(runs["vid2vid"], device="cpu")
    video = system.test_videos[0]
    frames = {"vid2vid": synthesize(baseline.eval_generator, video.labels),
              "wc-vid2vid": synthesize(system.eval_generator, video.labels, video_geometry(video))}
    rows = []
    for name, f in frames.items():
        l1, db = revisit_error(f, video.revisit_pairs, min_gap=video.num_frames // 2)
        rows.append([name, f"{l1:.4f}", f"{db:.2f}", f"{warping_error(f, video.flow, video.flow_valid):.4f}"])
    pick = [p for pair in video.revisit_pairs[:2] for p in pair]
    strip = torch.cat([torch.cat(list(r[pick]), dim=-1) for r in
                       (label_colours(video.labels), video.photo, frames["vid2vid"], frames["wc-vid2vid"])], dim=-2)
    save_png(strip, folder / "strip.png")
    mp4, _ = synthesize_video(str(runs["wc_vid2vid"]), str(folder / "revisit.mp4"), path="revisit",
                              side_by_side=str(runs["vid2vid"]), frames=16, device="cpu")
    table = Table(f"vid2vid vs wc-vid2vid after {DEMO_STEPS} steps (unseen world and style, 32x64)",
                  ["method", "revisit L1 (lower = consistent)", "revisit PSNR dB", "warping error L1"], rows)
    text = (f"Two tiny runs of {DEMO_STEPS} steps at 32x64 on block-world label videos: vid2vid (flow-warped "
            "previous frame) and world-consistent vid2vid (also a guidance image from the colours already drawn "
            "on the 3D points in view). The table follows an out-and-back path over an unseen world in an unseen "
            "photo style: the revisit error compares frames at the same pose on the way out and back. The video "
            f"{mp4} (labels | wc-vid2vid | vid2vid, a revisit path) comes from `imaginate synthesize`. The measured "
            "comparison over 2 seeds is in docs/results/vid2vid.md.")
    return ReportPart("vid2vid", "vid2vid and world-consistent vid2vid (arXiv 2007.08509)", text, [table],
                      [("labels | photo | vid2vid | wc-vid2vid at revisit pairs (out, back)", folder / "strip.png")],
                      time.time() - start)
