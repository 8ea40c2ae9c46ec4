"""Learning-rate sweep of SGD, Adam and Madam on three tasks -> docs/results/madam.md + plot.

Tests the Madam paper's claim (arXiv 2006.14560) that one default learning rate (0.01) works across
tasks while SGD's and Adam's best learning rates move from task to task. Every run goes through the
same engine and systems as ``imaginate train``.

    python benchmarks/madam_lr_sweep.py                 # full sweep (~20 min on 2 CPU cores)
    python benchmarks/madam_lr_sweep.py --quick         # 1 seed, 3 lrs, short runs: a smoke test
    python benchmarks/madam_lr_sweep.py --from-json     # rewrite the tables from the saved raw results
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
OPTIMIZERS = ("sgd", "adam", "madam")
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "madam": 1e-2}
SEEDS = (0, 1, 2)

# task -> (system, overrides, metric, higher_is_better, label)
TASKS = {
    "digits_mlp": ("classify", ["data.name=digits", "model.name=mlp", "train.steps=400", "train.batch_size=64"],
                   "test_acc", True, "digits · MLP (256-256) · 400 steps · top-1"),
    "fmnist_cnn": ("classify", ["data.name=fashion_mnist", "model.name=cnn", "train.steps=400",
                                "train.batch_size=64", "data.limit_test=2000"],
                   "test_acc", True, "Fashion-MNIST · CNN · 400 steps · top-1 (first 2000 test images)"),
    "char_lm": ("charlm", ["model.d_model=64", "model.n_layers=2", "model.n_heads=4", "data.context=64",
                           "train.steps=400", "train.batch_size=32", "data.eval_windows=128"],
                "val_bpc", False, "char transformer LM (2×64) · 400 steps · validation bits/char"),
}


def run_one(job: tuple[str, str, float, int, list[str]]) -> dict:
    """One training run in a worker process (1 thread: two workers fill the two cores)."""
    task, opt, lr, seed, extra = job
    import torch

    torch.set_num_threads(1)
    from imaginate.config import build_config
    from imaginate.engine import TrainingDiverged, run_training
    from imaginate.registry import get_system

    system, overrides, metric, _, _ = TASKS[task]
    spec = get_system(system)
    cfg = build_config(spec.config_cls, preset="tiny", system=system, overrides=overrides + extra + [
        f"optim.name={opt}", f"optim.lr={lr}", f"train.seed={seed}", "train.eval_every=0", "train.ckpt_every=0",
        "train.sample_every=0", "train.log_every=0", "train.device=cpu"])
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            score = run_training(spec, cfg, Path(tmp) / "run", progress=False)[metric]
            if not math.isfinite(score):
                score = None
        except TrainingDiverged:
            score = None
    return {"task": task, "optimizer": opt, "lr": lr, "seed": seed, "score": score,
            "seconds": round(time.time() - start, 2)}


def sweep(lrs, seeds, extra: list[str], workers: int) -> list[dict]:
    jobs = [(t, o, lr, s, extra) for t in TASKS for o in OPTIMIZERS for lr in lrs for s in seeds]
    from tqdm import tqdm

    results = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        for r in tqdm(pool.map(run_one, jobs), total=len(jobs), desc="lr sweep"):
            results.append(r)
    return results


# ---------------------------------------------------------------- analysis
def cell(results, task, opt, lr):
    return [r["score"] for r in results if (r["task"], r["optimizer"], r["lr"]) == (task, opt, lr)]


def summary(scores: list, higher: bool) -> tuple[float, float, int]:
    """(mean, std, diverged) where a diverged seed counts as the worst possible score."""
    worst = 0.0 if higher else 8.0  # accuracy 0 / 8 bits per char (uniform over 256 symbols)
    vals = [worst if s is None else s for s in scores]
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return statistics.fmean(vals), std, sum(s is None for s in scores)


def fmt(mean: float, std: float, div: int, pct: bool, n: int) -> str:
    if div == n:
        return "diverged"
    text = f"{100 * mean:.1f} ± {100 * std:.1f}" if pct else f"{mean:.3f} ± {std:.3f}"
    return text + (f" ({div}/{n} div.)" if div else "")


def analyse(results: list[dict]) -> dict:
    lrs = sorted({r["lr"] for r in results})
    out = {}
    for task, (_, _, _, higher, _) in TASKS.items():
        for opt in OPTIMIZERS:
            stats = {lr: summary(cell(results, task, opt, lr), higher) for lr in lrs if cell(results, task, opt, lr)}
            if not stats:
                continue
            best_lr = (max if higher else min)(stats, key=lambda lr: stats[lr][0])
            default = DEFAULT_LR[opt] if DEFAULT_LR[opt] in stats else None
            out[(task, opt)] = {"stats": stats, "best_lr": best_lr, "default_lr": default}
    return out


def write_plot(results, analysis, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(5 * len(TASKS), 3.6), dpi=110)
    colors = {"sgd": "tab:blue", "adam": "tab:orange", "madam": "tab:green"}
    for ax, (task, (_, _, _, higher, label)) in zip(axes, TASKS.items()):
        for opt in OPTIMIZERS:
            a = analysis.get((task, opt))
            if not a:
                continue
            lrs = sorted(a["stats"])
            mean = [a["stats"][lr][0] * (100 if higher else 1) for lr in lrs]
            std = [a["stats"][lr][1] * (100 if higher else 1) for lr in lrs]
            ax.errorbar(lrs, mean, yerr=std, marker="o", ms=3, capsize=2, color=colors[opt], label=opt)
            if a["default_lr"] is not None:
                d = a["default_lr"]
                ax.plot([d], [a["stats"][d][0] * (100 if higher else 1)], marker="*", ms=14, color=colors[opt],
                        markeredgecolor="k")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (★ = the optimizer's default)")
        ax.set_ylabel("test top-1 %" if higher else "val bits/char (lower is better)")
        if not higher:  # diverged seeds (8 bits/char) make huge error bars: show the useful range
            best = min(v[0] for o in OPTIMIZERS if (task, o) in analysis for v in analysis[(task, o)]["stats"].values())
            ax.set_ylim(bottom=max(0.0, best - 0.5), top=8.0)
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_markdown(results, analysis, path: Path, plot: Path, meta: dict) -> None:
    seeds = sorted({r["seed"] for r in results})
    lrs = sorted({r["lr"] for r in results})
    n = len(seeds)
    lines = [
        "# Madam: does one learning rate work across tasks?",
        "",
        "Written by `benchmarks/madam_lr_sweep.py` (do not edit by hand). Claim under test (arXiv 2006.14560): "
        "Madam trains well at its default lr 0.01 without tuning, while SGD's and Adam's best lr moves from "
        "task to task.",
        "",
        f"Setup: {len(lrs)} learning rates from {lrs[0]:g} to {lrs[-1]:g}, seeds {seeds}, constant lr, "
        f"{meta['machine']}; {meta['runs']} runs in {meta['minutes']:.1f} min. SGD uses momentum 0.9; "
        "Adam betas (0.9, 0.999); Madam p_scale 3, g_bound 10, zero-initialised tensors re-drawn from N(0, 0.01²). "
        "Scores are mean ± std over seeds; a diverged seed (NaN/inf loss) counts as accuracy 0 or 8 bits/char.",
        "",
        "## Best learning rate and score per optimizer",
        "",
        "| task | optimizer | best lr | score at best lr | default lr | score at default lr | cost of not tuning |",
        "|---|---|---|---|---|---|---|",
    ]
    findings = []
    for task, (_, _, _, higher, label) in TASKS.items():
        for opt in OPTIMIZERS:
            a = analysis.get((task, opt))
            if not a:
                continue
            best = a["stats"][a["best_lr"]]
            d = a["default_lr"]
            if d is None:
                dtext, gap = "—", "—"
            else:
                ds = a["stats"][d]
                dtext = fmt(*ds, higher, n)
                # what not tuning costs: how much worse the default lr is than the best (>= 0)
                gap = f"{100 * (best[0] - ds[0]):.1f} pts" if higher else f"{ds[0] - best[0]:.3f} bpc"
            lines.append(f"| {label.split(' · ')[0]} | {opt} | {a['best_lr']:g} | {fmt(*best, higher, n)} | "
                         f"{d if d is not None else '—'} | {dtext} | {gap} |")
    for opt in OPTIMIZERS:
        best_lrs = [f"{analysis[(t, opt)]['best_lr']:g}" for t in TASKS if (t, opt) in analysis]
        findings.append(f"- **{opt}**: best lr per task = {', '.join(best_lrs)} "
                        f"({'the same on every task' if len(set(best_lrs)) == 1 else 'it moves between tasks'}).")
    for opt in OPTIMIZERS:
        costs = []
        for task, (_, _, _, higher, _) in TASKS.items():
            a = analysis.get((task, opt))
            if a and a["default_lr"] is not None:
                best, ds = a["stats"][a["best_lr"]][0], a["stats"][a["default_lr"]][0]
                costs.append(f"{100 * (best - ds):.1f} pts" if higher else f"{ds - best:.3f} bpc")
        findings.append(f"- cost of using **{opt}**'s default lr ({DEFAULT_LR[opt]:g}) instead of its best, per task: "
                        f"{', '.join(costs)}.")
    lines += ["", "## Findings (computed from the table)", ""] + findings
    for task, (_, _, _, higher, label) in TASKS.items():
        a = analysis.get((task, "madam"))
        if not a or a["default_lr"] is None:
            continue
        best, ds = a["stats"][a["best_lr"]], a["stats"][a["default_lr"]]
        rank = sorted(a["stats"], key=lambda lr: a["stats"][lr][0], reverse=higher).index(a["default_lr"]) + 1
        others = [analysis[(task, o)]["stats"][analysis[(task, o)]["best_lr"]][0] for o in OPTIMIZERS
                  if o != "madam" and (task, o) in analysis]
        vs = ("beats" if (ds[0] > max(others) if higher else ds[0] < min(others)) else "does not beat") if others else ""
        unit = (lambda v: f"{100 * v:.1f}%") if higher else (lambda v: f"{v:.3f} bpc")
        findings_line = (f"- {label.split(' · ')[0]}: Madam at lr 0.01 scores {unit(ds[0])} vs {unit(best[0])} at its "
                         f"best lr {a['best_lr']:g} (rank {rank} of {len(a['stats'])} lrs); it {vs} the best-tuned "
                         "SGD and Adam.")
        lines.append(findings_line)
    lines += ["", f"![lr sweep]({plot.name})", "", "## Every cell", ""]
    for task, (_, _, _, higher, label) in TASKS.items():
        lines += [f"**{label}**", "", "| lr | " + " | ".join(OPTIMIZERS) + " |", "|---" * (len(OPTIMIZERS) + 1) + "|"]
        for lr in lrs:
            row = [fmt(*analysis[(task, o)]["stats"][lr], higher, n) if (task, o) in analysis and lr in
                   analysis[(task, o)]["stats"] else "—" for o in OPTIMIZERS]
            lines.append(f"| {lr:g} | " + " | ".join(row) + " |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 3 lrs, 60 steps: a smoke test (writes to --out)")
    p.add_argument("--from-json", action="store_true", help="re-analyse the saved raw results, no training")
    p.add_argument("--workers", type=int, default=2, help="worker processes, 1 torch thread each")
    p.add_argument("--out", default=str(RESULTS), help="folder for madam.md, the plot and the raw JSON")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "madam_lr_sweep.json"
    if args.from_json:
        saved = json.loads(raw.read_text())
        results, meta = saved["results"], saved["meta"]
    else:
        lrs, seeds, extra = (LRS, SEEDS, []) if not args.quick else ((1e-3, 1e-2, 1e-1), (0,), ["train.steps=60"])
        start = time.time()
        results = sweep(lrs, seeds, extra, args.workers)
        import platform

        import torch

        meta = {"runs": len(results), "minutes": (time.time() - start) / 60, "quick": args.quick,
                "machine": f"CPU ({platform.processor() or platform.machine()}), {args.workers} workers × 1 thread, "
                           f"torch {torch.__version__}"}
        raw.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    analysis = analyse(results)
    plot = out / "madam_lr_sweep.png"
    write_plot(results, analysis, plot)
    write_markdown(results, analysis, out / "madam.md", plot, meta)
    print(f"wrote {out / 'madam.md'}, {plot}, {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
