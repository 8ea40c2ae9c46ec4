"""COCO-FUNIT vs FUNIT at the same budget on the procedural species -> docs/results/coco_funit.md
(``--preset cpu``; another preset writes docs/results/coco_funit_PRESET.md).

Both models are ``imaginate train coco_funit --preset cpu`` (32 px, plain grey backgrounds), FUNIT with
``model.content_conditioned=false``, trained for the same steps from the same seeds, one process at a
time. Few-shot evaluation on the 5 unseen species (see ``imaginate/systems/coco_funit/evaluation.py``):
L1 / PSNR against the ground truth (the unseen species drawn in the content's pose), PAcc, target IoU,
content IoU, style leak (the output's mask against the style example's), style sensitivity, for
K = 1 and 5, and the same stratified by how different the content and style poses are (the paper's
content-loss claim). A run whose style code collapsed is reported as failed and not averaged.
Also: a sample grid of both models and the ground truth on the same content / style pairs, and the
training step time of both, interleaved step by step in one process.

    python benchmarks/coco_funit.py             # 2 models x 3 seeds at the cpu preset, one process at a time
    python benchmarks/coco_funit.py --quick     # 1 seed, 60 steps (smoke test)
    python benchmarks/coco_funit.py --preset cpu_simple --work runs/bench_coco_funit_cpu_simple --workers 2
    python benchmarks/coco_funit.py --collect-only
    python benchmarks/coco_funit.py --collect-only --reuse-timing --long runs/zoo/coco_funit_cpu
                                               # also report a finished longer cpu-preset run (the zoo entry's)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coco_funit_report import MODELS, counted, write_report  # noqa: E402
from common import QUIET, finished_run, run_pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
PRESET = os.environ.get("IMAGINATE_BENCH_PRESET", "cpu")  # --preset sets it (spawned workers inherit it)
SEEDS = (0, 1, 2)


def preset_config():
    """The coco_funit config of the benchmark's preset, without overrides."""
    from imaginate.config import build_config
    from imaginate.registry import get_system

    spec = get_system("coco_funit")
    return build_config(spec.config_cls, preset=PRESET, system="coco_funit", overrides=[])


def preset_steps() -> int:
    return preset_config().train.steps


def job(args: tuple) -> dict:
    name, seed, steps, work, collect_only = args
    run_dir = Path(work) / f"{name}_seed{seed}"
    overrides = MODELS[name][1] + [f"train.seed={seed}", f"eval.cache_dir={Path(work) / 'eval_helpers'}",
                                   "train.ckpt_every=0"]
    done = train_logged(overrides, run_dir, steps, collect_only)
    if done is None:
        return {"model": name, "seed": seed, "missing": True}
    from imaginate.engine.logging import read_metrics

    seen = reevaluate(str(run_dir), targets="seen")  # held-out images of seen species as the examples
    train_rows = [r for r in read_metrics(run_dir) if r["split"] == "train"]
    monitor = {key: [r.get(key) for r in train_rows] for key in ("dead_style_code", "style_sensitivity",
                                                                  "reconstruction")}
    return {"model": name, "seed": seed, "metrics": done[0], "seen": seen, "seconds": done[1], "run_dir": str(run_dir),
            "monitor_last": {k: v[-1] for k, v in monitor.items() if v and v[-1] is not None},
            "monitor_max_dead": max((v for v in monitor["dead_style_code"] if v is not None), default=None)}


def train_logged(overrides: list[str], run_dir: Path, steps: int, collect_only: bool) -> tuple[dict, float] | None:
    """A finished run's (metrics, seconds), else None with ``collect_only``, else a fresh run at the preset
    that logs its training scalars (the collapse monitor) every 25 steps and samples every 100."""
    import shutil

    import torch

    from imaginate.config import build_config
    from imaginate.engine import run_training
    from imaginate.registry import get_system

    finished = finished_run(run_dir, steps)
    if finished is not None or collect_only:
        return finished
    if run_dir.exists():
        shutil.rmtree(run_dir)
    torch.set_num_threads(1)
    spec = get_system("coco_funit")
    cfg = build_config(spec.config_cls, preset=PRESET, system="coco_funit",
                       overrides=overrides + QUIET + [f"train.steps={steps}", "train.log_every=25",
                                                      "train.sample_every=100"])
    start = time.time()
    metrics = run_training(spec, cfg, run_dir, progress=False)
    return metrics, round(time.time() - start, 2)


def reevaluate(run_dir: str, targets: str = "unseen") -> dict:
    """A finished run's few-shot metrics recomputed with the current evaluation code (cached helpers);
    ``targets="seen"``: with held-out examples of seen species instead of the unseen ones (K = 1)."""
    import torch

    from imaginate.engine.loop import load_run

    torch.set_num_threads(1)
    system = load_run(Path(run_dir), device="cpu")[2]
    if targets != "unseen":
        system.cfg.eval.targets, system.cfg.eval.shots = targets, [1]
    with torch.no_grad():
        return system.evaluate()


def baselines(work: str, targets: str = "unseen") -> list[dict]:
    """The metrics of two reference translators on the same evaluation data: copying the content image
    (keeps the pose, ignores the style) and copying the (first) style example (the content loss)."""
    import torch

    from imaginate.config import build_config
    from imaginate.registry import get_system
    from imaginate.systems.coco_funit.evaluation import few_shot_metrics, helper_networks, species_eval_data

    spec = get_system("coco_funit")
    cfg = build_config(spec.config_cls, preset=PRESET, system="coco_funit",
                       overrides=[f"eval.cache_dir={Path(work) / 'eval_helpers'}"])
    e, m = cfg.eval, cfg.model
    data = species_eval_data(m.image_size, cfg.data.seed, e.translations_per_class, e.real_per_class,
                             e.helper_images_per_class, cfg.data.plain_background, cfg.data.variant, targets)
    classifier, mask_net = helper_networks(data, e.classifier_steps, e.mask_net_steps, cfg.data.seed,
                                           torch.device("cpu"), e.cache_dir)
    translators = {"copy_content": lambda c, s: c, "copy_style": lambda c, s: s[:, 0]}
    with torch.no_grad():
        shots = list(e.shots) if targets == "unseen" else [1]
        return [{"model": name, "seed": 0, "metrics": few_shot_metrics(fn, data, classifier, shots,
                                                                        e.translations_per_class, None, mask_net,
                                                                        e.batch_size, seed=0, mfid=False)}
                for name, fn in translators.items()]


INIT_VARIANTS = {
    "reference init (CSB ~ N(0, 1), ReLU-ended MLPs)": ["model.style_bias_init=1.0", "model.code_last_relu=true"],
    "CSB ~ 0.03 N(0, 1), ReLU-ended MLPs": ["model.style_bias_init=0.03", "model.code_last_relu=true"],
    "cpu preset (CSB ~ 0.03 N(0, 1), no last ReLU)": [],
}


def init_dead_shares(seeds: list[int]) -> dict[str, list[float]]:
    """Share of dead style-code dimensions of a freshly initialised COCO-FUNIT generator at the cpu preset's
    widths, on 64 training contents with 64 other training images as styles, per init variant and seed."""
    import torch

    from imaginate.config import build_config
    from imaginate.data import load_species
    from imaginate.registry import get_system
    from imaginate.systems.coco_funit.model import COCOFUNITGenerator, dead_share

    spec = get_system("coco_funit")
    images = load_species("seen", 8, 32, 0, plain_background=True).prerender().images * 2 - 1  # [152, 3, 32, 32]
    out: dict[str, list[float]] = {}
    for label, overrides in INIT_VARIANTS.items():
        cfg = build_config(spec.config_cls, preset=PRESET, system="coco_funit", overrides=overrides)
        out[label] = []
        for seed in seeds:
            torch.manual_seed(seed)
            net = COCOFUNITGenerator.from_config(cfg.model)
            with torch.no_grad():
                codes = net.style_code(net.encode_content(images[:64]), images[64:128])
            out[label].append(dead_share(codes))
    return out


def build_system(overrides: list[str]):
    import torch

    from imaginate.config import build_config
    from imaginate.engine import RunContext
    from imaginate.engine.distributed import DistEnv
    from imaginate.registry import get_system

    spec = get_system("coco_funit")
    cfg = build_config(spec.config_cls, preset=PRESET, system="coco_funit",
                       overrides=overrides + ["train.device=cpu", "data.images_per_species=20"])
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0,
                     global_batch=cfg.train.batch_size)
    return spec.system_cls(cfg, ctx)


def step_time(rounds: int = 12, warmup: int = 2) -> dict:
    """Seconds per training step of both models at the cpu preset, 1 thread, measured interleaved
    (A, B, A, B, ...) in one process so that load changes hit both alike; median over rounds."""
    import torch

    from imaginate.engine import unwrap

    torch.set_num_threads(1)
    systems = {name: build_system(overrides) for name, (_, overrides) in MODELS.items()}
    times: dict[str, list[float]] = {name: [] for name in systems}
    for step in range(warmup + rounds):
        for name, system in systems.items():
            batch = system.train_batch(step)
            start = time.perf_counter()
            system.train_step(batch)
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
    count = lambda m: sum(p.numel() for p in unwrap(m).parameters())  # noqa: E731
    out: dict = {"rounds": rounds, "warmup": warmup}
    for name, system in systems.items():
        out[name] = {"seconds": statistics.median(times[name]), "g_params": count(system.generator),
                     "d_params": count(system.discriminator)}
    ratios = [a / b for a, b in zip(times["coco_funit"], times["funit"])]
    out["ratio_median"] = statistics.median(ratios)
    return out


def comparison_grid(runs: dict[str, str], out: Path, captions: dict[str, str] | None = None,
                    targets: str = "unseen") -> None:
    """Content rows x style columns (one example of each unseen species, or with ``targets="seen"`` of the
    five seen target species) for each model (EMA generators, same pairs) and the ground truth (the
    style's species drawn in the content's pose), captioned panels side by side."""
    import torch

    from imaginate.data import SPLIT, SpeciesDataset, render_species_batch
    from imaginate.engine.images import captioned_panel, make_grid, side_by_side
    from imaginate.engine.loop import load_run
    from imaginate.systems.coco_funit.evaluation import CONTENT_SEED, SEEN_TARGETS

    systems = {name: load_run(Path(run_dir), device="cpu")[2] for name, run_dir in runs.items()}
    cfg = next(iter(systems.values())).cfg
    size, look = cfg.model.image_size, (cfg.data.plain_background, cfg.data.variant)
    # contents facing one way, style examples the other: large pose differences by construction
    pool = SpeciesDataset(SPLIT.seen, 2, size, cfg.data.seed + CONTENT_SEED, *look)
    rows = [i for i in range(len(pool)) if pool.poses[i, 1] < 0.5][:5]
    content_poses, content_bg = pool.poses[rows], pool.background_seeds[rows]
    content, _ = render_species_batch(pool.species[rows], content_poses, content_bg, size, *look)
    style_poses = torch.tensor([[-25.0, 1.0, 0.0, 0.0, 0.6], [20.0, 1.0, 0.05, 0.0, 0.55]]).repeat(3, 1)[:5]
    ids = list(SPLIT.unseen if targets == "unseen" else SEEN_TARGETS)
    style, _ = render_species_batch(ids, style_poses[: len(ids)], torch.arange(len(ids)), size, *look)
    r, c = content.shape[0], style.shape[0]
    pairs_content, pairs_style = content.repeat_interleave(c, 0), style.repeat(r, 1, 1, 1)
    truth, _ = render_species_batch(torch.tensor(ids).repeat(r), content_poses.repeat_interleave(c, 0),
                                    content_bg.repeat_interleave(c, 0), size, *look)
    outputs = {(captions or {}).get(name, MODELS[name][0].split(" (")[0]): system.translate(pairs_content, pairs_style)
               for name, system in systems.items()}
    outputs["ground truth (style species in the content's pose)"] = truth
    panels = []
    for caption, images in outputs.items():
        tiles = [torch.ones_like(content[:1]), style]
        for i in range(r):
            tiles += [content[i:i + 1], images[i * c:(i + 1) * c]]
        panels.append(captioned_panel(make_grid(torch.cat(tiles), nrow=c + 1), caption))
    side_by_side(panels, out)


def reconstruction_grid(run_dir: str, out: Path) -> None:
    """The saved run's content images over their same-image reconstructions G(x, x)."""
    from PIL import Image

    from imaginate.engine.images import to_uint8
    from imaginate.engine.loop import load_run

    grid = load_run(Path(run_dir), device="cpu")[2].sample()["reconstruction"]
    img = Image.fromarray(to_uint8(grid))
    img.resize((img.width * 3, img.height * 3), Image.NEAREST).save(out)


def reconstruction_l1(run_dir: str) -> dict[str, float]:
    """Same-image reconstruction G(x, x) of a saved run on the evaluation's held-out contents (seen species,
    the same images for every run): L1 over the image and inside the creature (in [0, 1] units)."""
    import torch

    from imaginate.engine.loop import load_run
    from imaginate.systems.coco_funit.evaluation import system_eval_data

    torch.set_num_threads(1)
    system = load_run(Path(run_dir), device="cpu")[2]
    data = system_eval_data(system)
    images, masks = data.content_images, data.content_masks[:, None].float()
    err = (system.translate(images, images) - images).abs()
    return {"rec_l1": float(err.mean()), "rec_l1_fg": float((err * masks).sum() / (masks.sum() * 3))}


def long_run(run_dir: str) -> dict | None:
    """A finished longer COCO-FUNIT run at the cpu preset: its final evaluation, its config's departures from
    the preset, steps, training minutes and reconstruction error; None when it has not finished."""
    from imaginate.config import build_config, load_saved_config
    from imaginate.registry import get_system

    spec = get_system("coco_funit")
    cfg = load_saved_config(spec.config_cls, Path(run_dir) / "config.yaml")
    done = finished_run(Path(run_dir), cfg.train.steps)
    if done is None:
        return None
    preset = build_config(spec.config_cls, preset=PRESET, system="coco_funit", overrides=[])
    changed = []
    for group in ("model", "loss", "optim", "data"):
        ours, base = getattr(cfg, group), getattr(preset, group)
        changed += [f"{group}.{k}={getattr(ours, k)}" for k in vars(base) if getattr(ours, k) != getattr(base, k)]
    from imaginate.engine.logging import read_metrics

    seconds, last = 0.0, 0.0  # the logged time restarts at 0 on every resume: add up the segments
    for row in read_metrics(Path(run_dir)):
        if row["time"] < last:
            seconds += last
        last = row["time"]
    return {"run_dir": run_dir, "steps": cfg.train.steps, "seed": cfg.train.seed, "metrics": done[0],
            "seconds": seconds + last, "changed": changed, **reconstruction_l1(run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=PRESET, help="coco_funit preset of both models (cpu, cpu_simple)")
    parser.add_argument("--steps", type=int, default=0, help="0 = the preset's")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench_coco_funit_cpu"))
    parser.add_argument("--quick", action="store_true", help="1 seed, 60 steps; writes to the work folder only")
    parser.add_argument("--collect-only", action="store_true", help="report finished runs, train nothing")
    parser.add_argument("--no-timing", action="store_true", help="skip the step-time measurement")
    parser.add_argument("--reevaluate", action="store_true",
                        help="recompute finished runs' metrics with the current evaluation code")
    parser.add_argument("--out", default=str(RESULTS), help="where the report goes (default: docs/results)")
    parser.add_argument("--reuse-timing", action="store_true",
                        help="keep the step-time measurement of the last report (docs/results/coco_funit[_PRESET].json)")
    parser.add_argument("--long", default="", metavar="RUN_DIR",
                        help="also report this finished longer COCO-FUNIT cpu-preset run (e.g. runs/zoo/coco_funit_cpu)")
    args = parser.parse_args()
    if args.preset != PRESET:  # the module's functions read PRESET, in this process and in the spawned workers
        os.environ["IMAGINATE_BENCH_PRESET"] = args.preset
        globals()["PRESET"] = args.preset
    stem = "coco_funit" if PRESET == "cpu" else f"coco_funit_{PRESET}"  # one report per preset
    steps = args.steps or preset_steps()
    if args.quick:
        steps, args.seeds = 60, [0]
    Path(args.work).mkdir(parents=True, exist_ok=True)
    jobs = [(name, seed, steps, args.work, args.collect_only) for seed in args.seeds for name in MODELS]
    results = [r for r in run_pool(job, jobs, args.workers, "coco_funit runs") if not r.get("missing")]
    if args.reevaluate:
        for r in results:
            if r.get("metrics"):
                r["metrics"] = reevaluate(r["run_dir"])
    seen_baselines = {r["model"]: r["metrics"] for r in baselines(args.work, "seen")}
    results += [r | {"seen": seen_baselines[r["model"]]} for r in baselines(args.work)]
    init_dead = init_dead_shares(list(args.seeds))
    if args.reuse_timing:
        timing = json.loads((RESULTS / f"{stem}.json").read_text())["timing"] | {"reused": True}
    elif args.no_timing:
        timing = {"rounds": 0, "warmup": 0, "ratio_median": float("nan"),
                  **{n: {"seconds": float("nan"), "g_params": 0, "d_params": 0} for n in MODELS}}
    else:
        timing = step_time(4 if args.quick else 12)
    for r in results:
        if r["model"] == "coco_funit" and r.get("run_dir") and r.get("metrics"):
            r.update(reconstruction_l1(r["run_dir"]))
    long = long_run(args.long) if args.long else None
    if args.long and long is None:
        raise SystemExit(f"--long {args.long}: not a finished run")
    out_dir = Path(args.work) if args.quick else Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    best = {}
    for name in MODELS:
        runs = counted(results, name) or [r for r in results if r["model"] == name and r.get("metrics")]
        if runs:
            best[name] = min(runs, key=lambda r: r["metrics"].get("l1_gt_k1", 1.0))["run_dir"]
    grids: dict[str, str] = {}
    if len(best) == len(MODELS):
        comparison_grid(best, out_dir / f"{stem}_samples.png")
        comparison_grid(best, out_dir / f"{stem}_samples_seen.png", targets="seen")
        reconstruction_grid(best["coco_funit"], out_dir / f"{stem}_reconstruction.png")
        grids = {"samples": f"{stem}_samples.png", "samples_seen": f"{stem}_samples_seen.png",
                 "reconstruction": f"{stem}_reconstruction.png"}
        for seed in args.seeds:  # every seed's translations, not only the best run's
            runs = {r["model"]: r["run_dir"] for r in results
                    if r.get("seed") == seed and r["model"] in MODELS and r.get("run_dir") and r.get("metrics")}
            if len(runs) == len(MODELS):
                comparison_grid(runs, out_dir / f"{stem}_samples_seed{seed}.png")
                grids[f"seed{seed}"] = f"{stem}_samples_seed{seed}.png"
    if long is not None:
        comparison_grid({"coco_funit": long["run_dir"]}, out_dir / "coco_funit_long_samples.png",
                        {"coco_funit": f"COCO-FUNIT, {long['steps']} steps"})
        reconstruction_grid(long["run_dir"], out_dir / "coco_funit_long_reconstruction.png")
        grids |= {"long_samples": "coco_funit_long_samples.png",
                  "long_reconstruction": "coco_funit_long_reconstruction.png"}
    report = write_report(results, steps, timing, grids, args.workers, init_dead, long, PRESET,
                          preset_config().data.extra_species)
    (out_dir / f"{stem}.md").write_text(report)
    (out_dir / f"{stem}.json").write_text(json.dumps({"steps": steps, "results": results, "timing": timing,
                                                        "best_runs": best, "long": long}, indent=1))
    print(report)
    print("best runs:", best)


if __name__ == "__main__":
    main()
