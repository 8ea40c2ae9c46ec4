"""Per-frame SPADE vs vid2vid vs world-consistent vid2vid on unseen worlds in unseen styles -> docs/results/vid2vid.md.

Trains (or reuses) ``imaginate train vid2vid --preset tiny`` twice per seed (``model.mode=vid2vid`` and
``wc_vid2vid``, 64x128), then on held-out label videos (test worlds AND test photo styles, out-and-back and
revisit paths) synthesizes every video autoregressively from its labels (the first frame from each run's
single-image SPADE generator) and measures:

- revisit error: L1 and PSNR between the frames at the same pose on the way out and on the way back;
- short-term warping error: L1 between frame t and frame t-1 warped by the exact flow, on pixels visible in both;
- fidelity: PSNR to the photo target (the style is unknown to the model: low for all methods), pixel accuracy
  of a small segmenter (trained here on photo renders of the training videos) on the outputs, and Fréchet /
  kernel distances in a 19-number colour-statistics space (gancraft's ``ColourStatistics``, NOT Inception);
- cost: guidance (render + colour the point store) vs generator seconds per frame, and frames/s at 64x128 and
  128x256 (torch.utils.benchmark, 1 thread, generator and guidance interleaved).

Writes docs/results/vid2vid.md, vid2vid.json, vid2vid_strip.png and vid2vid_revisit.mp4.

    python benchmarks/vid2vid.py                 # train 2 seeds x 2 modes + measure
    python benchmarks/vid2vid.py --collect-only  # measure finished runs only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_pool, train_or_reuse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
MODES = ("vid2vid", "wc_vid2vid")
METHODS = ("per-frame SPADE", "vid2vid", "wc-vid2vid")
# The shared 2-core machine runs ~7 jobs at once: the benchmark trains at 32x64 (the preset's 64x128 costs 4x);
# windows of 4 frames double to 8 at step 200.
BENCH_OVERRIDES = ("model.height=32", "model.width=64", "data.seq_len_double_every=200")


def train_job(job: tuple) -> dict:
    """One training run (a worker process): ``(mode, seed, steps, runs folder, extra overrides, collect_only)``."""
    import torch as _torch

    _torch.set_num_threads(1)
    import imaginate.systems  # noqa: F401  (registers vid2vid in the spawned worker)

    mode, seed, steps, runs, extra, collect_only = job
    run_dir = Path(runs) / f"{mode}_s{seed}"
    done = train_or_reuse("vid2vid", "tiny", [f"model.mode={mode}", f"train.seed={seed}", *extra], run_dir, steps,
                          collect_only)
    return {"name": f"{mode}_s{seed}", "seconds": None if done is None else done[1]}


def test_videos(cfg, seed: int, count: int, frames: int) -> list:
    from imaginate.systems.vid2vid.data import render_videos

    return render_videos(cfg.data, "test", seed, cfg.model.height, cfg.model.width, frames=frames,
                         paths=["out_and_back", "revisit"], num_sequences=count, num_worlds=count)


def train_segmenter(videos: list, num_labels: int, steps: int, seed: int) -> torch.nn.Module:
    """A small fully-convolutional segmenter trained on photo renders (labels as targets)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 24, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(24, 24, 3, padding=2, dilation=2), torch.nn.ReLU(),
                              torch.nn.Conv2d(24, 24, 3, padding=4, dilation=4), torch.nn.ReLU(),
                              torch.nn.Conv2d(24, num_labels, 1))
    photos = torch.cat([v.photo for v in videos])  # [N, 3, H, W]
    labels = torch.cat([v.labels for v in videos])  # [N, H, W]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(photos), (8,), generator=gen)
        loss = torch.nn.functional.cross_entropy(net(photos[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def label_accuracy(segmenter, frames: torch.Tensor, labels: torch.Tensor) -> float:
    return float((segmenter(frames).argmax(1) == labels).float().mean())


def measure_cost(cfg, sizes=((64, 128), (128, 256)), frames: int = 6) -> dict:
    """Generator vs guidance seconds per frame and frames/s, with torch.utils.benchmark (1 thread)."""
    from torch.utils.benchmark import Timer

    from imaginate.data.blockworld.guidance import PointStore
    from imaginate.systems.vid2vid.model import Vid2VidGenerator, Vid2VidModelConfig

    torch.set_num_threads(1)
    out = {}
    for height, width in sizes:
        model_cfg = Vid2VidModelConfig(**{**vars(cfg.model), "height": height, "width": width, "mode": "wc_vid2vid"})
        net = Vid2VidGenerator(model_cfg).eval()
        video = test_videos(cfg, 0, 1, frames)[0] if (height, width) == (cfg.model.height, cfg.model.width) else None
        if video is None:
            from imaginate.systems.vid2vid.data import render_videos

            video = render_videos(cfg.data, "test", 0, height, width, frames=frames, paths=["out_and_back"],
                                  num_sequences=1, num_worlds=1)[0]
        onehot = torch.nn.functional.one_hot(video.labels[1:2], model_cfg.num_labels).permute(0, 3, 1, 2).float()
        prev_l = onehot[:, None].expand(-1, model_cfg.num_prev, -1, -1, -1)
        prev_i = (video.photo[0:1, None] * 2 - 1).expand(-1, model_cfg.num_prev, -1, -1, -1)
        store = PointStore(1, voxel_faces=True)
        geo = [video.depth[0:1], video.intrinsics[0:1], video.cam_to_world[0:1]]
        store.update(video.photo[0:1], *geo)
        nxt = [video.depth[1:2], video.intrinsics[1:2], video.cam_to_world[1:2]]
        guidance, mask = store.render(*nxt, [(height, width)])[0]
        scope = {"net": net, "l": onehot, "pl": prev_l, "pi": prev_i, "g": guidance * 2 - 1, "m": mask,
                 "store": store, "geo": geo, "nxt": nxt, "photo": video.photo[0:1], "hw": [(height, width)],
                 "torch": torch}
        gen_t = Timer("with torch.no_grad(): net(l, pl, pi, g, m)", globals=scope, num_threads=1)
        guide_t = Timer("store.render(*nxt, hw); store.update(photo, *geo)", globals=scope, num_threads=1)
        gen_s, guide_s = [], []
        for _ in range(3):  # interleaved
            gen_s.append(gen_t.timeit(2).median)
            guide_s.append(guide_t.timeit(2).median)
        g, q = statistics.median(gen_s), statistics.median(guide_s)
        out[f"{height}x{width}"] = {"generator_s": g, "guidance_s": q, "guidance_share": q / g,
                                    "fps_vid2vid": 1 / g, "fps_wc_vid2vid": 1 / (g + q)}
    return out


def evaluate_seed(runs: dict, cfg, seed: int, videos: list, segmenter) -> tuple[dict, dict]:
    """Metrics per method on the test videos (mean over videos), and the frames of the first revisit video."""
    from imaginate.systems.vid2vid.evaluation import psnr, revisit_error, warping_error
    from imaginate.systems.vid2vid.inference import (
        SynthesisTimer,
        per_frame_spade,
        synthesize,
        video_geometry,
    )

    results: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}
    shown = {}
    outputs: dict[str, list[torch.Tensor]] = {m: [] for m in METHODS}
    for vi, video in enumerate(videos):
        frames = {"per-frame SPADE": per_frame_spade(runs["vid2vid"], video.labels),
                  "vid2vid": synthesize(runs["vid2vid"], video.labels, None, use_guidance=False)}
        timer = SynthesisTimer()
        frames["wc-vid2vid"] = synthesize(runs["wc_vid2vid"], video.labels, video_geometry(video), timer=timer)
        for method, f in frames.items():
            rl1, rpsnr = revisit_error(f, video.revisit_pairs, min_gap=video.num_frames // 2)
            row = {"revisit_l1": rl1, "revisit_psnr": rpsnr,
                   "warping_error": warping_error(f, video.flow, video.flow_valid),
                   "psnr_to_photo": psnr(f, video.photo), "label_accuracy": label_accuracy(segmenter, f, video.labels)}
            for k, v in row.items():
                results[method].setdefault(k, []).append(v)
            outputs[method].append(f)
        results["wc-vid2vid"].setdefault("guidance_share_in_synthesis", []).append(timer.guidance / timer.generator)
        if vi == len(videos) - 1:
            shown = {"video": video, **frames}
    from imaginate.metrics import compute_gan_metrics
    from imaginate.systems.gancraft.evaluation import ColourStatistics

    reals = torch.cat([v.photo for v in videos])
    for method in METHODS:
        fakes = torch.cat(outputs[method])
        m = compute_gan_metrics(reals, fakes, ColourStatistics(), kid_subsets=20, kid_subset_size=min(len(reals), 64))
        results[method]["fid_colour"] = [m["fid"]]
        results[method]["kid_colour"] = [m["kid_mean"]]
    return {m: {k: statistics.fmean(v) for k, v in r.items()} for m, r in results.items()}, shown


def strip_and_video(shown: dict, out_png: Path, out_mp4: Path) -> None:
    from imaginate.engine.images import save_png
    from imaginate.engine.video import write_mp4
    from imaginate.systems.vid2vid.synthesize import label_colours

    video = shown["video"]
    pairs = video.revisit_pairs
    pick = sorted({pairs[len(pairs) // 2][0], pairs[len(pairs) // 2][1], pairs[0][0], pairs[0][1]})
    rows = [label_colours(video.labels[pick]), video.photo[pick]] + [shown[m][pick] for m in METHODS]
    grid = torch.cat([torch.cat(list(r), dim=-1) for r in rows], dim=-2)  # rows: labels, photo, methods
    save_png(torch.nn.functional.interpolate(grid[None], scale_factor=3, mode="nearest")[0], out_png)
    side = torch.cat([label_colours(video.labels), shown["vid2vid"], shown["wc-vid2vid"]], dim=-1)
    write_mp4(side, out_mp4, fps=6, crf=28)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--test-videos", type=int, default=4)
    parser.add_argument("--test-frames", type=int, default=16)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench_vid2vid"))
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="training processes (1 thread each)")
    parser.add_argument("--extra", nargs="*", default=list(BENCH_OVERRIDES), help="overrides for every run")
    parser.add_argument("--from-json", action="store_true",
                        help="rewrite vid2vid.md from vid2vid.json and the runs' logs (no re-measuring)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from imaginate.config import build_config
    from imaginate.engine import load_run
    from imaginate.registry import get_system
    from imaginate.systems.vid2vid.evaluation import warping_error

    if args.from_json:
        summary = json.loads((RESULTS / "vid2vid.json").read_text())
        _, cfg, _, _ = load_run(Path(args.runs) / f"vid2vid_s{summary['seeds'][0]}", device="cpu")
        for seed, metrics in zip(summary["seeds"], summary["per_seed"]):
            if "warping_error" not in metrics["photo (target)"]:
                videos = test_videos(cfg, seed, summary["test_videos"], summary["test_frames"])
                metrics["photo (target)"]["warping_error"] = statistics.fmean(
                    warping_error(v.photo, v.flow, v.flow_valid) for v in videos)
        summary["training_logs"] = training_logs(Path(args.runs), summary["seeds"])
        (RESULTS / "vid2vid.json").write_text(json.dumps(summary, indent=1))
        write_markdown(summary, cfg)
        return

    start = time.time()
    spec = get_system("vid2vid")
    jobs = [(mode, seed, args.steps, args.runs, args.extra, args.collect_only) for seed in args.seeds for mode in MODES]
    trained = run_pool(train_job, jobs, args.workers, "vid2vid runs")
    train_seconds = {r["name"]: r["seconds"] for r in trained}
    if any(v is None for v in train_seconds.values()):
        raise SystemExit(f"unfinished runs under {args.runs}: {train_seconds} (drop --collect-only)")
    per_seed, shown = [], {}
    for seed in args.seeds:
        runs, cfg = {}, None
        for mode in MODES:
            _, cfg, system, _ = load_run(Path(args.runs) / f"{mode}_s{seed}", device="cpu")
            runs[mode] = system.eval_generator.eval()
        cfg = cfg or build_config(spec.config_cls, preset="tiny", system="vid2vid")
        train_videos = system.train_videos
        from types import SimpleNamespace

        seg_videos = [SimpleNamespace(photo=train_videos["photo"][i], labels=train_videos["labels"][i])
                      for i in range(train_videos["labels"].shape[0])]
        segmenter = train_segmenter(seg_videos, cfg.model.num_labels, 300, seed)
        videos = test_videos(cfg, seed, args.test_videos, args.test_frames)
        ref_acc = statistics.fmean(label_accuracy(segmenter, v.photo, v.labels) for v in videos)
        metrics, shown_seed = evaluate_seed(runs, cfg, seed, videos, segmenter)
        # the floor of the warping error: the photos themselves (texture near the pixel scale, resampling)
        ref_warp = statistics.fmean(warping_error(v.photo, v.flow, v.flow_valid) for v in videos)
        metrics["photo (target)"] = {"label_accuracy": ref_acc, "warping_error": ref_warp}
        per_seed.append(metrics)
        if not shown:
            shown = shown_seed
    cost = measure_cost(cfg)
    RESULTS.mkdir(parents=True, exist_ok=True)
    strip_and_video(shown, RESULTS / "vid2vid_strip.png", RESULTS / "vid2vid_revisit.mp4")
    summary = {"per_seed": per_seed, "cost": cost, "train_seconds": train_seconds, "steps": args.steps,
               "seeds": args.seeds, "test_videos": args.test_videos, "test_frames": args.test_frames,
               "total_seconds": time.time() - start}
    summary["training_logs"] = training_logs(Path(args.runs), args.seeds)
    (RESULTS / "vid2vid.json").write_text(json.dumps(summary, indent=1))
    write_markdown(summary, cfg)


LOGGED = ("guidance_coverage", "guidance_loss", "flow_epe", "occlusion_mask_mean", "d_real_acc", "d_fake_acc",
          "temporal_d_fake_acc")


def training_logs(runs: Path, seeds: list[int]) -> dict:
    """Failure-mode scalars of each run: the mean over its last 50 logged training steps."""
    from imaginate.engine.logging import read_metrics

    out = {}
    for seed in seeds:
        for mode in MODES:
            rows = [r for r in read_metrics(runs / f"{mode}_s{seed}") if r["split"] == "train"][-50:]
            out[f"{mode}_s{seed}"] = {k: statistics.fmean(r[k] for r in rows) for k in LOGGED if rows and k in rows[0]}
    return out


def _ms(values: list[float], digits: int) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def write_markdown(summary: dict, cfg) -> None:
    per_seed = summary["per_seed"]
    keys = [("revisit_l1", "revisit L1 ↓", 4), ("revisit_psnr", "revisit PSNR dB ↑", 2),
            ("warping_error", "warping error L1 ↓", 4), ("psnr_to_photo", "PSNR to photo dB ↑", 2),
            ("label_accuracy", "segmenter pixel acc. ↑", 3), ("fid_colour", "FID (colour stats) ↓", 3),
            ("kid_colour", "KID (colour stats) ↓", 4)]
    lines = ["# vid2vid vs world-consistent vid2vid (arXiv 2007.08509)", "",
             f"Written by `benchmarks/vid2vid.py`. Tiny preset ({cfg.model.height}x{cfg.model.width}, "
             f"{summary['steps']} steps per run, windows of {cfg.data.seq_len_start} frames doubling to "
             f"{cfg.data.seq_len_max}), seeds {summary['seeds']} (mean ± std over seeds). Test: "
             f"{summary['test_videos']} label videos per seed of {summary['test_frames']} frames over worlds "
             "AND photo styles never seen in training (out-and-back and revisit paths). Every method starts "
             "from its single-image SPADE frame 0; the model never sees the test style.", "",
             "| method | " + " | ".join(k[1] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for method in (*METHODS, "photo (target)"):
        cells = []
        for key, _, digits in keys:
            vals = [s[method][key] for s in per_seed if key in s.get(method, {})]
            cells.append(_ms(vals, digits))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    v = [s["vid2vid"]["revisit_l1"] for s in per_seed]
    w = [s["wc-vid2vid"]["revisit_l1"] for s in per_seed]
    better = sum(b < a for a, b in zip(v, w))
    per = ", ".join(f"seed {s}: {b:.4f} vs {a:.4f}" for s, a, b in zip(summary["seeds"], v, w))
    if better == len(v):
        verdict = (f"wc-vid2vid's revisit L1 is below vid2vid's in every seed ({per}; wc-vid2vid vs vid2vid), "
                   f"{100 * (1 - statistics.fmean(w) / statistics.fmean(v)):.0f} % lower on average.")
    else:
        verdict = (f"wc-vid2vid's revisit L1 is NOT measurably below vid2vid's: lower in {better} of {len(v)} seeds "
                   f"({per}; wc-vid2vid vs vid2vid). The paper's claim did not reproduce at this scale; see the "
                   "failure-mode scalars below for why.")
    lines += ["", "**Long-term consistency.** " + verdict, "",
              "Per-frame SPADE is deterministic given the label map, and a revisit path returns to bit-identical "
              "poses, so its revisit error is ~0 by construction (identical labels in, identical frame out); "
              "it is the floor, not a competitor. What matters is whether the recurrent models, whose output "
              "depends on everything drawn before, come back to what they drew: vid2vid only sees the last "
              "frames, wc-vid2vid also the guidance image of the 3D points coloured so far.", "",
              "PSNR to the photo is low for every method: each test video has its own unseen photo style "
              "(block tints, light, sky) that no label reveals. FID/KID here are Fréchet / kernel distances of "
              "19 colour statistics (no offline landscape feature network exists), not Inception FID.", "",
              "## Cost (CPU, 1 thread, torch.utils.benchmark, generator and guidance interleaved; shared "
              "loaded machine)", "",
              "| size | generator s/frame | guidance s/frame | guidance / generator | fps vid2vid | fps wc-vid2vid |",
              "|---|---|---|---|---|---|"]
    for size, c in summary["cost"].items():
        lines.append(f"| {size} | {c['generator_s']:.4f} | {c['guidance_s']:.4f} | {100 * c['guidance_share']:.1f} % "
                     f"| {c['fps_vid2vid']:.1f} | {c['fps_wc_vid2vid']:.1f} |")
    logs = summary.get("training_logs", {})
    if logs:
        lines += ["", "## Failure-mode scalars at the end of training (mean of the last logged steps)", "",
                  "| run | " + " | ".join(LOGGED) + " |", "|---" * (len(LOGGED) + 1) + "|"]
        for run, values in logs.items():
            lines.append(f"| {run} | " + " | ".join(f"{values.get(k, float('nan')):.3f}" for k in LOGGED) + " |")
        cover = [v["guidance_coverage"] for k, v in logs.items() if k.startswith("wc_") and "guidance_coverage" in v]
        epe = [v["flow_epe"] for v in logs.values() if "flow_epe" in v]
        if cover and epe:
            lines += ["", f"Guidance covers {100 * statistics.fmean(cover):.0f} % of the pixels of a training frame "
                      "on average (sky has no 3D point and the first frames of a window see little that was "
                      f"coloured before); the flow branch's end-point error is still {statistics.fmean(epe):.1f} px "
                      "after these few steps, so both models lean on hallucination."]
        guide = [v["guidance_loss"] / 2 for k, v in logs.items() if k.startswith("wc_") and "guidance_loss" in v]
        if guide:
            lines += ["", "Diagnosis: at the end of training the masked L1 between wc-vid2vid's output and its own "
                      f"guidance image is {statistics.fmean(guide):.3f} ([0, 1] units), about as large as the revisit "
                      "errors being compared: in this many steps the generator has not learned to copy its guidance "
                      "closely (the paper trains for days at 512x1024). Remembering the sky by viewing direction "
                      "(`PointStore(sky=True)`, beyond the paper) would also raise the coverage."]
    lines += ["", "Target: guidance under 20 % of the generator's time per frame. The warping error of the photo targets "
              "themselves is the floor of that column (block textures near the pixel scale and bilinear resampling).",
              "",
              "## Pictures", "",
              "Rows: labels, photo target, per-frame SPADE, vid2vid, wc-vid2vid; columns: frames on the way out "
              "and, at the same poses, on the way back (an unseen world and style).", "",
              "![strip](vid2vid_strip.png)", "",
              "[Side-by-side MP4 of the revisit path: labels | vid2vid | wc-vid2vid](vid2vid_revisit.mp4)", "",
              f"Training seconds per run (loaded 2-core machine): {summary['train_seconds']}; whole benchmark "
              f"{summary['total_seconds'] / 60:.1f} min wall."]
    (RESULTS / "vid2vid.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
