"""COCO-FUNIT vs FUNIT at the same budget on the procedural species -> docs/results/coco_funit.md.

Both models are ``imaginate train coco_funit --preset tiny`` (32 px), FUNIT with
``model.content_conditioned=false``, trained for the same steps from the same seeds. Few-shot
evaluation on the 5 unseen species (see ``imaginate/systems/coco_funit/evaluation.py``): PAcc,
content IoU, target IoU and mFID for K = 1 and 5, and the content-preservation numbers stratified by
how different the content pose and the style examples' poses are (the paper's content-loss claim).
Also: a sample grid of both models on the same content / style pairs and the training step time of
both at a mid-size config (64 px).

    python benchmarks/coco_funit.py             # 2 models x 2 seeds x 3000 steps: ~25 min on 2 cores
    python benchmarks/coco_funit.py --quick     # 1 seed, 100 steps (smoke test)
    python benchmarks/coco_funit.py --collect-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, mean_std, run_pool, train_or_reuse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
STEPS = 3000
SEEDS = (0, 1)
MODELS = {
    "coco_funit": ("COCO-FUNIT (content-conditioned style code)", ["model.content_conditioned=true"]),
    "funit": ("FUNIT (style encoder only)", ["model.content_conditioned=false"]),
}
POSE_BINS = (("lt30", "< 30°"), ("30to90", "30–90°"), ("gt90", "> 90°"))
# the mid-size config of the step-time measurement (64 px, twice the tiny widths)
MID_SIZE = ["model.image_size=64", "model.num_filters=32", "model.num_filters_mlp=128", "model.style_dims=32",
            "model.usb_dims=256", "model.num_downsamples_content=3", "model.num_downsamples_style=4",
            "model.d_num_filters=32", "model.d_max_num_filters=256", "model.d_num_layers=4"]


def job(args: tuple) -> dict:
    name, seed, steps, work, collect_only = args
    run_dir = Path(work) / f"{name}_seed{seed}"
    overrides = MODELS[name][1] + [f"train.seed={seed}", f"eval.cache_dir={Path(work) / 'eval_helpers'}",
                                   "train.ckpt_every=0"]
    done = train_or_reuse("coco_funit", "tiny", overrides, run_dir, steps, collect_only)
    if done is None:
        return {"model": name, "seed": seed, "missing": True}
    return {"model": name, "seed": seed, "metrics": done[0], "seconds": done[1], "run_dir": str(run_dir)}


def step_time(overrides: list[str], steps: int = 12, warmup: int = 3, threads: int = 2) -> tuple[float, int, int]:
    """(seconds per training step, G parameters, D parameters) at the tiny preset + ``overrides``."""
    import torch

    from imaginate.config import build_config
    from imaginate.engine import RunContext, unwrap
    from imaginate.engine.distributed import DistEnv
    from imaginate.registry import get_system

    torch.set_num_threads(threads)
    spec = get_system("coco_funit")
    cfg = build_config(spec.config_cls, preset="tiny", system="coco_funit", overrides=overrides + ["train.device=cpu"])
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0,
                     global_batch=cfg.train.batch_size)
    system = spec.system_cls(cfg, ctx)
    for step in range(warmup):
        system.train_step(system.train_batch(step))
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        system.train_step(system.train_batch(step))
    seconds = (time.perf_counter() - start) / steps
    count = lambda m: sum(p.numel() for p in unwrap(m).parameters())  # noqa: E731
    return seconds, count(system.generator), count(system.discriminator)


def style_sensitivity(run_dir: str, count: int = 100) -> tuple[float, float]:
    """(model, ideal): mean |G(c, s_u) - G(c, s_v)| over ``count`` seen-species contents and pairs of
    different unseen species u != v (one example each, random poses); the ideal is the same
    difference between u and v drawn in the content's pose. 0 means the output ignores the style."""
    import torch

    from imaginate.data import SPLIT, render_species_batch
    from imaginate.data.species import sample_contents
    from imaginate.engine.loop import load_run

    _, cfg, system, _ = load_run(Path(run_dir), device="cpu")
    size, gen = cfg.model.image_size, torch.Generator().manual_seed(4242)
    seen = torch.tensor(SPLIT.seen)[torch.randint(len(SPLIT.seen), (count,), generator=gen)]
    pair = torch.stack([torch.randperm(len(SPLIT.unseen), generator=gen)[:2] for _ in range(count)])
    u, v = torch.tensor(SPLIT.unseen)[pair[:, 0]], torch.tensor(SPLIT.unseen)[pair[:, 1]]
    poses, backgrounds = sample_contents(count, gen)
    content, _ = render_species_batch(seen, poses, backgrounds, size)
    ideal_u, _ = render_species_batch(u, poses, backgrounds, size)
    ideal_v, _ = render_species_batch(v, poses, backgrounds, size)
    styles = [render_species_batch(k, *sample_contents(count, gen), size)[0] for k in (u, v)]
    out_u, out_v = (system.translate(content, st) for st in styles)
    return float((out_u - out_v).abs().mean()), float((ideal_u - ideal_v).abs().mean())


def comparison_grid(runs: dict[str, str], out: Path) -> None:
    """Both models' content-by-style grids (same pairs, EMA generators) side by side, captioned."""
    import torch
    from PIL import Image, ImageDraw

    from imaginate.engine.images import to_uint8
    from imaginate.engine.loop import load_run

    panels = []
    for name, run_dir in runs.items():
        _, _, system, _ = load_run(Path(run_dir), device="cpu")
        torch.manual_seed(0)
        grid = system.sample()["content_by_style"]  # [3, H, W]
        img = Image.fromarray(to_uint8(grid)).resize((grid.shape[2] * 3, grid.shape[1] * 3), Image.NEAREST)
        canvas = Image.new("RGB", (img.width, img.height + 18), (255, 255, 255))
        canvas.paste(img, (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), MODELS[name][0], fill=(0, 0, 0))
        panels.append(canvas)
    total = Image.new("RGB", (sum(p.width for p in panels) + 12 * (len(panels) - 1), max(p.height for p in panels)),
                      (255, 255, 255))
    left = 0
    for p in panels:
        total.paste(p, (left, 0))
        left += p.width + 12
    total.save(out)


def fmt(stats: tuple[float, float, int] | None, digits: int = 3) -> str:
    if stats is None:
        return "–"
    mean, std, _ = stats
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def stats(results: list[dict], name: str, key: str) -> tuple[float, float, int] | None:
    vals = [r["metrics"].get(key) for r in results if r["model"] == name and r.get("metrics")]
    vals = [v for v in vals if v is not None and v == v]  # NaN = an empty pose bin
    return mean_std(vals, 0.0) if vals else None


def write_report(results: list[dict], steps: int, timing: dict, grid: str | None, workers: int) -> str:
    seeds = sorted({r["seed"] for r in results})
    lines = [
        "# COCO-FUNIT vs FUNIT on the procedural species",
        "",
        f"Written by `benchmarks/coco_funit.py`. Tiny preset (32 px), {steps} steps, batch 8, seeds "
        f"{', '.join(map(str, seeds))}; mean ± std over seeds. Training: 19 seen species; evaluation: the 5 "
        "unseen species, K style examples each, the same content images for both models. "
        f"{machine_line(workers)}.",
        "",
        "- **PAcc**: share of translations a species classifier (trained on real images of all 24 species) "
        "reads as the target species (`pacc_real` is its accuracy on real unseen images).",
        "- **content IoU**: IoU between the content image's true mask and the translation's foreground "
        "(a segmentation net trained on species images); **target IoU**: against the mask of the ideal "
        "output (the target species drawn in the content's pose).",
        "- **mFID**: per-class FID in the species classifier's features (small samples: only comparable "
        "within this table).",
        "",
        "- **style sensitivity**: mean absolute pixel difference between translations of the same content "
        "with examples of two different unseen species (0: the output ignores the style); the ideal is the "
        "difference between those two species drawn in the content's pose.",
        "",
        "| model | PAcc K=1 | PAcc K=5 | content IoU K=1 | content IoU K=5 | target IoU K=1 | mFID K=1 | mFID K=5 | style sensitivity | minutes / run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (label, _) in MODELS.items():
        minutes = [r["seconds"] / 60 for r in results if r["model"] == name and r.get("metrics")]
        lines.append(
            f"| {label} | {fmt(stats(results, name, 'pacc_k1'))} | {fmt(stats(results, name, 'pacc_k5'))} | "
            f"{fmt(stats(results, name, 'iou_content_k1'))} | {fmt(stats(results, name, 'iou_content_k5'))} | "
            f"{fmt(stats(results, name, 'iou_target_k1'))} | {fmt(stats(results, name, 'mfid_k1'), 1)} | "
            f"{fmt(stats(results, name, 'mfid_k5'), 1)} | {fmt(stats(results, name, 'style_sensitivity'))} | "
            f"{sum(minutes) / max(1, len(minutes)):.1f} |")
    real = stats(results, "coco_funit", "pacc_real"), stats(results, "coco_funit", "iou_real")
    ideal = stats(results, "coco_funit", "style_sensitivity_ideal")
    lines += ["", f"Helper networks on real images: classifier accuracy {fmt(real[0])}, mask-net IoU {fmt(real[1])}. "
              f"Ideal style sensitivity: {fmt(ideal)}.",
              "", "## Stratified by pose difference (K = 1)", "",
              "Facing difference between the content image and the style example. The paper's claim: with "
              "the content-conditioned style code the output keeps the content's pose better when the style "
              "example's pose differs strongly.", "",
              "| model | pose diff. | translations / seed | content IoU | target IoU | PAcc |", "|---|---|---|---|---|---|"]
    for name, (label, _) in MODELS.items():
        for key, text in POSE_BINS:
            count = stats(results, name, f"count_k1_pose_{key}")
            lines.append(f"| {label} | {text} | {0 if count is None else count[0]:.0f} | "
                         f"{fmt(stats(results, name, f'iou_content_k1_pose_{key}'))} | "
                         f"{fmt(stats(results, name, f'iou_target_k1_pose_{key}'))} | "
                         f"{fmt(stats(results, name, f'pacc_k1_pose_{key}'))} |")
    lines += ["", "## Verdict", "", verdict(results), ""]
    if grid:
        lines += ["## Samples", "", "Content images in the first column (seen species), one style example per "
                  "unseen species in the first row; EMA generators of seed 0.", "", f"![samples]({grid})", ""]
    lines += ["## Training step time at a mid-size config", "",
              f"64 px, `{' '.join(o for o in MID_SIZE)}`, batch 8, CPU, 2 threads, mean over "
              f"{timing['steps']} steps after {timing['warmup']} warm-up steps (one D and one G update each); CPU "
              f"load average {timing['load'][0]:.1f} before and {timing['load'][1]:.1f} after (other processes "
              "sharing the cores slow both models alike).", "",
              "| model | G params | D params | seconds / step |", "|---|---|---|---|"]
    for name, (label, _) in MODELS.items():
        t = timing[name]
        lines.append(f"| {label} | {t['g_params']:,} | {t['d_params']:,} | {t['seconds']:.3f} |")
    return "\n".join(lines) + "\n"


def verdict(results: list[dict]) -> str:
    parts = []
    for key, text in (("iou_content_k1", "content IoU (K=1)"), ("iou_content_k1_pose_gt90", "content IoU at > 90° (K=1)"),
                      ("pacc_k1", "PAcc (K=1)"), ("style_sensitivity", "style sensitivity")):
        c, f = stats(results, "coco_funit", key), stats(results, "funit", key)
        if c is None or f is None:
            continue
        diff, noise = c[0] - f[0], max(c[1], f[1])
        sign = "higher" if diff > 0 else "lower"
        seeds = len({r["seed"] for r in results})
        if seeds < 2:
            how = f"{sign} than FUNIT's (one seed, no noise estimate)"
        elif abs(diff) > 2 * noise:
            how = f"clearly {sign} than FUNIT's"
        else:
            how = f"{sign} than FUNIT's but within seed noise"
        parts.append(f"COCO-FUNIT's {text} is {how} ({c[0]:.3f} vs {f[0]:.3f}, seed std up to {noise:.3f})")
    paccs = [stats(results, m, "pacc_k1") for m in MODELS]
    if all(p is not None and p[0] < 2 / 24 for p in paccs):
        parts.append("both PAcc values are near chance (1/24 = 0.042 for a 24-way classifier): at this budget neither "
                     "model carries the unseen species' identity into the translation, so the content-versus-style "
                     "trade-off the paper measures is not yet in play and its claim is not reproduced here")
    ideal = stats(results, "coco_funit", "style_sensitivity_ideal")
    for r in results:
        value = r.get("metrics", {}).get("style_sensitivity")
        if ideal and value is not None and value < 0.1 * ideal[0]:
            parts.append(f"{MODELS[r['model']][0].split(' (')[0]} seed {r['seed']} ignores the style example "
                         f"(style sensitivity {value:.3f}): its style code collapsed to a constant, so its content "
                         "IoU is that of a reconstruction, not of a translation")
    return "; ".join(parts) + "." if parts else "No finished runs."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench_coco_funit"))
    parser.add_argument("--quick", action="store_true", help="1 seed, 100 steps; writes to the work folder only")
    parser.add_argument("--collect-only", action="store_true", help="report finished runs, train nothing")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds = 100, [0]
    Path(args.work).mkdir(parents=True, exist_ok=True)
    jobs = [(name, seed, args.steps, args.work, args.collect_only) for seed in args.seeds for name in MODELS]
    results = [r for r in run_pool(job, jobs, args.workers, "coco_funit runs") if not r.get("missing")]
    for r in results:
        if r.get("metrics"):
            r["metrics"]["style_sensitivity"], r["metrics"]["style_sensitivity_ideal"] = style_sensitivity(r["run_dir"])

    import os

    timing: dict = {"steps": 12, "warmup": 3, "load": [os.getloadavg()[0]]}
    for name, (_, overrides) in MODELS.items():
        seconds, g, d = step_time(MID_SIZE + overrides, timing["steps"], timing["warmup"])
        timing[name] = {"seconds": seconds, "g_params": g, "d_params": d}
    timing["load"].append(os.getloadavg()[0])
    out_dir = Path(args.work) if args.quick else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    firsts = {r["model"]: r["run_dir"] for r in results if r["seed"] == min(args.seeds) and r.get("metrics")}
    grid = None
    if len(firsts) == len(MODELS):
        comparison_grid(firsts, out_dir / "coco_funit_samples.png")
        grid = "coco_funit_samples.png"
    report = write_report(results, args.steps, timing, grid, args.workers)
    (out_dir / "coco_funit.md").write_text(report)
    (out_dir / "coco_funit.json").write_text(json.dumps({"steps": args.steps, "results": results, "timing": timing},
                                                        indent=1))
    print(report)


if __name__ == "__main__":
    main()
