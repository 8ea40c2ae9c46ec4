"""GAN losses and regularisers at a fixed CPU budget -> docs/results/gan.md + sample grids.

The class-conditional GAN of ``imaginate train gan --preset tiny`` on Fashion-MNIST, trained for the
same number of steps under each setting: four adversarial losses (hinge, non-saturating, least
squares, WGAN-GP) and the hinge baseline with R1, without spectral norm, without EMA and with
DiffAugment. Two seeds each. Metrics use the project's own Fashion-MNIST feature network.

    python benchmarks/gan_losses.py             # ~40 min on 1 CPU core
    python benchmarks/gan_losses.py --quick     # 1 seed, 3 settings, 60 steps (smoke test)
    python benchmarks/gan_losses.py --from-json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, mean_std, run_pool, train_or_reuse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
STEPS = 600
SEEDS = (0, 1)
FEATURES = "Fashion-MNIST features"

# name -> (description, overrides on top of the tiny preset)
SETTINGS = {
    "hinge": ("hinge loss, SN, EMA (the tiny preset)", []),
    "non_saturating": ("non-saturating loss, SN, EMA", ["gan.loss=non_saturating"]),
    "least_squares": ("least-squares loss, SN, EMA", ["gan.loss=least_squares"]),
    "wgan_gp": ("Wasserstein loss + GP 10, no SN, EMA", ["gan.loss=wasserstein", "gan.gp_weight=10",
                                                          "model.spectral_norm=false"]),
    "hinge_r1": ("hinge + R1 (gamma 1, every 16 steps)", ["gan.r1_gamma=1", "gan.r1_interval=16"]),
    "hinge_no_sn": ("hinge without spectral norm", ["model.spectral_norm=false"]),
    "hinge_no_ema": ("hinge without EMA (raw generator evaluated)", ["gan.ema_beta=0"]),
    "hinge_diffaug": ("hinge + DiffAugment (color, translation, cutout)",
                      ["gan.diffaugment=color,translation,cutout"]),
}
METRICS = [("fid", "FID", False), ("kid", "KID", False), ("precision", "precision", True),
           ("recall", "recall", True), ("class_acc", "class accuracy", True)]


def job(args: tuple) -> dict:
    name, seed, steps, work, collect_only = args
    run_dir = Path(work) / f"{name}_seed{seed}"
    overrides = SETTINGS[name][1] + [f"train.seed={seed}", "eval.num_samples=2000"]
    done = train_or_reuse("gan", "tiny", overrides, run_dir, steps, collect_only)
    if done is None:
        return {"setting": name, "seed": seed, "missing": True}
    samples = sorted((run_dir / "samples").glob("class_by_seed_*.png"))
    return {"setting": name, "seed": seed, "metrics": done[0], "seconds": done[1],
            "samples": str(samples[-1]) if samples else None}


def summary(results, name, key, higher):
    vals = [r["metrics"][key] if r["metrics"] else None for r in results if r["setting"] == name]
    return mean_std(vals, 0.0 if higher else float("inf")) if vals else None


def write_markdown(results, meta, path: Path, images: dict[str, str], tiny: tuple | None = None) -> None:
    lines = ["# GAN toolkit: losses and regularisers at a fixed CPU budget", "",
             "Written by `benchmarks/gan_losses.py` (do not edit by hand).", "",
             f"Setup: the class-conditional GAN of `configs/gan/tiny.yaml` on Fashion-MNIST (conditional-BN "
             f"residual G, projection D, TTUR Adam 2e-4 / 4e-4 betas (0, 0.999), batch 32), {meta['steps']} steps "
             f"per run, seeds {meta['seeds']}, {meta['machine']}; {meta['runs']} runs in {meta['minutes']:.1f} min. "
             f"Metrics on 2000 generated samples (classes balanced) vs the first 2000 test images, in the "
             f"project's own **{FEATURES}** (`imaginate/metrics/weights/`): they are not Inception FIDs and only "
             "compare with each other. Class accuracy: the feature network's classifier reads the intended class "
             "of each sample. Mean ± std over seeds."
             + (f" Not run (out of time): {', '.join(meta['missing'])}." if meta.get("missing") else ""), "",
             "| setting | " + " | ".join(f"{label} ({FEATURES})" if k in ("fid", "kid") else label
                                        for k, label, _ in METRICS) + " | s / run |",
             "|---" * (len(METRICS) + 2) + "|"]
    for name, (desc, _) in SETTINGS.items():
        cells = []
        for key, _, higher in METRICS:
            s = summary(results, name, key, higher)
            if s is None:
                cells.append("—")
            elif s[2]:
                cells.append(f"diverged ({s[2]})")
            else:
                cells.append(f"{s[0]:.1f} ± {s[1]:.1f}" if key == "fid" else
                             f"{100 * s[0]:.1f} ± {100 * s[1]:.1f} %" if key == "class_acc" else f"{s[0]:.3f} ± {s[1]:.3f}")
        secs = [r["seconds"] for r in results if r["setting"] == name]
        lines.append(f"| {desc} | " + " | ".join(cells) + f" | {sum(secs) / max(1, len(secs)):.0f} |")
    fids = {n: summary(results, n, "fid", False) for n in SETTINGS}
    ranked = sorted((s[0], n) for n, s in fids.items() if s is not None and not s[2])
    lines += ["", "## Findings (computed from the table)", ""]
    if ranked:
        base = fids["hinge"][0] if fids.get("hinge") else None
        lines.append(f"- Lowest FID: {SETTINGS[ranked[0][1]][0]} ({ranked[0][0]:.1f}); highest: "
                     f"{SETTINGS[ranked[-1][1]][0]} ({ranked[-1][0]:.1f}).")
        if base is not None:
            for n in ("hinge_r1", "hinge_no_sn", "hinge_no_ema", "hinge_diffaug"):
                if fids.get(n) and not fids[n][2]:
                    d = fids[n][0] - base
                    within = abs(d) <= fids[n][1] + fids["hinge"][1]
                    lines.append(f"- {SETTINGS[n][0]}: FID {'+' if d >= 0 else ''}{d:.1f} vs the hinge baseline"
                                 + (" (within the seed spread)" if within else "") + ".")
    if tiny is not None:
        m, steps, seconds = tiny
        lines += ["", f"## The tiny preset at its full length ({steps} steps)", "",
                  f"`imaginate train gan --preset tiny`, EMA generator, same metrics ({seconds / 60:.1f} min of wall "
                  "time as logged by the run; with this script's runs sharing the cores it is longer than alone):", "",
                  "| " + " | ".join(f"{label} ({FEATURES})" if k in ("fid", "kid") else label for k, label, _ in METRICS)
                  + " |", "|---" * len(METRICS) + "|",
                  "| " + " | ".join(f"{m[k]:.1f}" if k == "fid" else f"{100 * m[k]:.1f} %" if k == "class_acc"
                                    else f"{m[k]:.3f}" for k, _, _ in METRICS) + " |", "",
                  "![tiny preset samples](gan_tiny_preset.png)", ""]
    lines += ["", "## Samples (seed 0; one row per class, one column per latent)", ""]
    for name, img in images.items():
        lines += [f"**{SETTINGS[name][0]}**", "", f"![{name}]({img})", ""]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--from-json", action="store_true")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--collect-only", action="store_true",
                   help="report only the runs already finished in runs/bench_gan (missing ones are listed)")
    p.add_argument("--tiny-run", default=None, help="a finished `imaginate train gan --preset tiny` run to report too")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "gan_losses.json"
    if args.from_json:
        saved = json.loads(raw.read_text())
        results, meta = saved["results"], saved["meta"]
    else:
        names = list(SETTINGS)[:3] if args.quick else list(SETTINGS)
        seeds, steps = ((0,), 60) if args.quick else (SEEDS, STEPS)
        start = time.time()
        work = ROOT / "runs" / "bench_gan"  # the runs (samples copied next to the table; not committed)
        jobs = [(n, s, steps, str(work), args.collect_only) for n in names for s in seeds]
        results = run_pool(job, jobs, 1 if args.collect_only else args.workers, "gan")
        missing = [f"{r['setting']} seed {r['seed']}" for r in results if r.get("missing")]
        results = [r for r in results if not r.get("missing")]
        minutes = sum(r["seconds"] for r in results) / 60 / args.workers if args.collect_only else \
            (time.time() - start) / 60
        meta = {"runs": len(results), "minutes": minutes, "machine": machine_line(args.workers),
                "steps": steps, "seeds": list(seeds), "missing": missing}
        for r in results:  # keep one sample grid per setting next to the table
            if r["seed"] == seeds[0] and r["samples"]:
                shutil.copy(r["samples"], out / f"gan_samples_{r['setting']}.png")
        raw.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    images = {r["setting"]: f"gan_samples_{r['setting']}.png" for r in results
              if r["seed"] == meta["seeds"][0] and (out / f"gan_samples_{r['setting']}.png").is_file()}
    tiny = None
    if args.tiny_run:
        from imaginate.engine.logging import read_metrics

        rows = read_metrics(Path(args.tiny_run))
        evals = [r for r in rows if r["split"] == "eval"]
        if not evals:
            raise SystemExit(f"--tiny-run {args.tiny_run}: no evaluation in its metrics.jsonl")
        grid = sorted((Path(args.tiny_run) / "samples").glob("class_by_seed_*.png"))[-1]
        shutil.copy(grid, out / "gan_tiny_preset.png")
        tiny = (evals[-1], evals[-1]["step"], evals[-1]["time"])
    write_markdown([r for r in results if r["setting"] in SETTINGS], meta, out / "gan.md", images, tiny)
    print(f"wrote {out / 'gan.md'}, {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
