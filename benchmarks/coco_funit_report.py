"""The report of ``benchmarks/coco_funit.py``: tables, per-seed rows, pose strata, seen vs unseen targets and
the verdict, from the runs' metrics (kept apart from the script that trains and evaluates them)."""

from __future__ import annotations

from common import machine_line, mean_std

from imaginate.systems.coco_funit.evaluation import EMPTY_OUTPUT

MODELS = {
    "coco_funit": ("COCO-FUNIT (content-conditioned style code)", ["model.content_conditioned=true"]),
    "funit": ("FUNIT (style encoder only)", ["model.content_conditioned=false"]),
}
BASELINES = {"copy_content": "reference: copy the content image", "copy_style": "reference: copy the style example"}
POSE_BINS = (("lt30", "< 30°"), ("30to90", "30–90°"), ("gt90", "> 90°"))


LONG_COLUMNS = (("l1_gt", "L1 to truth ↓", 3), ("l1_fg", "L1 on creatures ↓", 3), ("psnr_gt", "PSNR dB ↑", 2),
                ("pacc", "PAcc ↑", 3), ("iou_target", "target IoU ↑", 3), ("style_leak", "style leak ↓", 3),
                ("style_sensitivity", "style sensitivity", 3))


def long_section(long: dict, results: list[dict], short_steps: int, grids: dict[str, str]) -> list[str]:
    """The report's section on the longer run, beside the short runs' COCO-FUNIT mean and the copying baselines."""
    m = long["metrics"]
    lines = ["## A longer run (the zoo entry `coco_funit_cpu`)", "",
             f"COCO-FUNIT at the cpu preset, seed {long['seed']}, {long['steps']} steps "
             f"({long['seconds'] / 60:.0f} wall minutes on one thread of the shared machine), with "
             f"{', '.join(long['changed']) or 'the preset unchanged'}; same evaluation as above (K = 1). "
             "Reconstruction: G(x, x) of the evaluation's held-out seen-species contents.", "",
             "| model | " + " | ".join(c[1] for c in LONG_COLUMNS) + " | L1 on creatures > 90° ↓ | style leak > 90° ↓ "
             "| reconstruction L1 on creatures ↓ | collapsed |", "|---|" + "---|" * (len(LONG_COLUMNS) + 4)]

    def cell(value: float | None, digits: int = 3) -> str:
        return "–" if value is None or value != value else f"{value:.{digits}f}"

    lines.append(f"| COCO-FUNIT, {long['steps']} steps | " + " | ".join(cell(m.get(f"{k}_k1"), d) for k, _, d in LONG_COLUMNS)
                 + f" | {cell(m.get('l1_fg_k1_pose_gt90'))} | {cell(m.get('style_leak_k1_pose_gt90'))} | "
                 f"{cell(long['rec_l1_fg'])} | {'yes' if m.get('collapsed') else 'no'} |")
    short = counted(results, "coco_funit")
    rec_short = [r["rec_l1_fg"] for r in short if "rec_l1_fg" in r]
    lines.append(f"| COCO-FUNIT, {short_steps} steps (mean of {len(short)} seeds above) | "
                 + " | ".join(fmt(stats(results, "coco_funit", f"{k}_k1"), d) for k, _, d in LONG_COLUMNS)
                 + f" | {fmt(stats(results, 'coco_funit', 'l1_fg_k1_pose_gt90'))} | "
                 f"{fmt(stats(results, 'coco_funit', 'style_leak_k1_pose_gt90'))} | "
                 f"{fmt(mean_std(rec_short, 0.0)) if rec_short else '–'} | |")
    for name, label in BASELINES.items():
        lines.append(f"| {label} | " + " | ".join(fmt(stats(results, name, f"{k}_k1"), d) for k, _, d in LONG_COLUMNS)
                     + f" | {fmt(stats(results, name, 'l1_fg_k1_pose_gt90'))} | "
                     f"{fmt(stats(results, name, 'style_leak_k1_pose_gt90'))} | 0 | |")
    short_pacc, short_rec = stats(results, "coco_funit", "pacc_k1"), mean_std(rec_short, 0.0) if rec_short else None
    copy_style = stats(results, "copy_style", "l1_fg_k1")
    lines += ["", f"Against the {short_steps}-step runs: PAcc {m.get('pacc_k1', float('nan')):.3f} vs "
              f"{short_pacc[0] if short_pacc else float('nan'):.3f} (chance 1/24 = 0.042), reconstruction L1 on the "
              f"creatures {long['rec_l1_fg']:.3f} vs {short_rec[0] if short_rec else float('nan'):.3f}, style "
              f"sensitivity {m.get('style_sensitivity_k1', float('nan')):.3f} vs "
              f"{stats(results, 'coco_funit', 'style_sensitivity_k1')[0]:.3f}; its L1 on the creatures "
              f"({m.get('l1_fg_k1', float('nan')):.3f}) is "
              + ("below" if copy_style and m.get("l1_fg_k1", 1.0) < copy_style[0] else "still above")
              + f" that of copying the style example ({copy_style[0] if copy_style else float('nan'):.3f})."]
    lines.append("")
    if "long_samples" in grids:
        lines += ["The same contents and examples as the grid above, translated by the longer run, beside the ground "
                  "truth:", "", f"![longer run samples]({grids['long_samples']})", "",
                  "Its same-image reconstructions G(x, x) (contents over reconstructions):", "",
                  f"![longer run reconstruction]({grids['long_reconstruction']})", ""]
    return lines


def fmt(stats: tuple[float, float, int] | None, digits: int = 3) -> str:
    if stats is None:
        return "–"
    mean, std, _ = stats
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def counted(results: list[dict], name: str) -> list[dict]:
    """The finished, non-collapsed runs of a model."""
    return [r for r in results if r["model"] == name and not failed_run(r)]


def failed_run(r: dict) -> bool:
    """Diverged, or collapsed on the unseen or on the seen targets (ignores the style, or draws no creature)."""
    return not r.get("metrics") or bool(r["metrics"].get("collapsed") or (r.get("seen") or {}).get("collapsed"))


def stats(results: list[dict], name: str, key: str, part: str = "metrics") -> tuple[float, float, int] | None:
    """Mean, std and count of ``key`` over a model's counted runs; ``part="seen"``: of the seen-target metrics."""
    vals = [(r.get(part) or {}).get(key) for r in counted(results, name)]
    vals = [v for v in vals if v is not None and v == v]  # NaN = an empty pose bin
    return mean_std(vals, 0.0) if vals else None


SEEN_COLUMNS = (("pacc", "PAcc ↑", 3), ("l1_fg", "L1 on creatures ↓", 3), ("iou_target", "target IoU ↑", 3),
                ("style_leak", "style leak ↓", 3))
COLUMNS = (("l1_gt", "L1 to truth ↓", 3), ("l1_fg", "L1 on creatures ↓", 3), ("psnr_gt", "PSNR dB ↑", 2), ("pacc", "PAcc ↑", 3),
           ("iou_target", "target IoU ↑", 3), ("iou_content", "content IoU", 3), ("style_leak", "style leak ↓", 3))


def write_report(results: list[dict], steps: int, timing: dict, grids: dict[str, str], workers: int,
                 init_dead: dict[str, list[float]], long: dict | None = None, preset: str = "cpu",
                 extra_species: int = 0) -> str:
    """The markdown report of ``benchmarks/coco_funit.py`` (``preset``: the coco_funit preset of the runs,
    ``extra_species``: its ``data.extra_species``)."""
    seeds = sorted({r["seed"] for r in results if r["model"] in MODELS})
    failed = [r for r in results if r["model"] in MODELS and failed_run(r)]
    lines = [
        "# COCO-FUNIT vs FUNIT on the procedural species",
        "",
        f"Written by `benchmarks/coco_funit.py`. `{preset}` preset (32 px, plain grey backgrounds, 19 seen species"
        f"{f' and {extra_species} extra procedural training species' if extra_species else ''}"
        f"{'; the simple species: few large parts in bold colours' if preset == 'cpu_simple' else ''}), "
        f"{steps} steps, batch 8, seeds {', '.join(map(str, seeds))}; mean ± std over the runs that did not "
        "collapse. Evaluation: the 5 unseen species, K style examples each, the same content images and "
        f"examples for both models. {machine_line(workers)}; the machine was shared with other jobs.",
        "",
        "- **L1 to truth / PSNR**: the translation against its ground truth, the unseen species drawn in the "
        "content image's pose (the procedural data renders it). Copying the content or the style example "
        "both score badly here.",
        "- **PAcc**: share of translations a species classifier (trained on real images of all 24 species) reads "
        "as the target species.",
        "- **target IoU**: the translation's foreground (a small segmentation net) against the ground truth's mask; "
        "**content IoU** against the content image's mask (high also for an output that ignores the style: "
        "read it only beside PAcc and target IoU).",
        "- **style leak**: IoU of the translation's foreground with the *style example's* mask (the output "
        "copying the example's pose); the ground truth itself scores the value in the `ideal` row by chance "
        "overlap.",
        "- **style sensitivity**: mean absolute pixel difference between translations of the same content into "
        "two different unseen species; a run below a tenth of the ground truth's, with every style-code "
        "dimension dead, or whose translations (into unseen or seen species) hold under "
        f"{EMPTY_OUTPUT:.0%} of the true creature area (**foreground ratio**), is **collapsed**: reported below, "
        "not averaged.",
        "- mFID is not reported: with 40 samples per class its seed spread swamped any difference.",
        "",
        "| model | K | " + " | ".join(c[1] for c in COLUMNS) + " | style sensitivity | runs |",
        "|---|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    for name, (label, _) in MODELS.items():
        for k in (1, 5):
            cells = [fmt(stats(results, name, f"{key}_k{k}"), d) for key, _, d in COLUMNS]
            lines.append(f"| {label} | {k} | " + " | ".join(cells) +
                         f" | {fmt(stats(results, name, f'style_sensitivity_k{k}'))} | {len(counted(results, name))} |")
    for name, label in BASELINES.items():
        cells = [fmt(stats(results, name, f"{key}_k1"), d) for key, _, d in COLUMNS]
        lines.append(f"| {label} | 1 | " + " | ".join(cells) + f" | {fmt(stats(results, name, 'style_sensitivity_k1'))} | |")
    ideal_cells = ["0", "0", "∞ (100)", "–", "1", "–", fmt(stats(results, "coco_funit", "style_leak_ideal_k1"))]
    lines.append("| ideal (ground truth) | 1 | " + " | ".join(ideal_cells) +
                 f" | {fmt(stats(results, 'coco_funit', 'style_sensitivity_ideal_k1'))} | |")
    real = stats(results, "coco_funit", "pacc_real"), stats(results, "coco_funit", "iou_real")
    lines += ["", f"Helper networks on real images: classifier accuracy {fmt(real[0])}, mask-net IoU {fmt(real[1])}.",
              "", "## Seen species on held-out images vs unseen species (K = 1)", "",
              "The same contents translated with examples of five *seen* species (images drawn fresh, never trained "
              "on) and with examples of the five unseen ones. Good on seen and poor on unseen: the model translates "
              "but does not generalise to new species from its training species; poor on both: it has not learned "
              "to translate.", "",
              "| model | targets | " + " | ".join(c[1] for c in SEEN_COLUMNS) + " | style sensitivity | runs |",
              "|---|---|" + "---|" * (len(SEEN_COLUMNS) + 2)]
    for name, label in ({n: v[0] for n, v in MODELS.items()} | BASELINES).items():
        for part, text in (("seen", "seen (held-out images)"), ("metrics", "unseen")):
            cells = [fmt(stats(results, name, f"{key}_k1", part), d) for key, _, d in SEEN_COLUMNS]
            runs = len(counted(results, name)) if name in MODELS else ""
            lines.append(f"| {label} | {text} | " + " | ".join(cells)
                         + f" | {fmt(stats(results, name, 'style_sensitivity_k1', part))} | {runs} |")
    if "samples_seen" in grids:
        lines += ["", "Translations into the seen target species (same layout as the unseen grid below):", "",
                  f"![seen samples]({grids['samples_seen']})"]
    lines += ["",
              "## Per seed (K = 1)", "",
              "| model | seed | L1 to truth | PSNR | PAcc | target IoU | style leak | style sensitivity | foreground ratio "
              "(unseen / seen) | dead style code (eval / max in training) | collapsed | minutes |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in results if r["model"] in MODELS), key=lambda r: (r["model"], r["seed"])):
        m = r.get("metrics") or {}
        g = lambda key, d=3, m=m: f"{m[key]:.{d}f}" if m.get(key) is not None else "–"  # noqa: E731
        dead_max = r.get("monitor_max_dead")
        lines.append(f"| {MODELS[r['model']][0].split(' (')[0]} | {r['seed']} | {g('l1_gt_k1')} | {g('psnr_gt_k1', 2)} | "
                     f"{g('pacc_k1')} | {g('iou_target_k1')} | {g('style_leak_k1')} | {g('style_sensitivity_k1')} | "
                     f"{g('foreground_ratio_k1', 2)} / {g('foreground_ratio_k1', 2, r.get('seen') or {})} | "
                     f"{g('dead_style_code', 2)} / {'–' if dead_max is None else f'{dead_max:.2f}'} | "
                     f"{'yes' if failed_run(r) else 'no'} | {r.get('seconds', 0) / 60:.1f} |")
    lines += ["", "## Stratified by pose difference (K = 1)", "",
              "Facing difference between the content image and the style example. The paper's claim: with the "
              "content-conditioned style code the output keeps the content's pose (here: stays close to the "
              "ground truth, leaks less of the example's mask) better than FUNIT when the poses differ strongly.",
              "", "| model | pose diff. | translations / run | " + " | ".join(c[1] for c in COLUMNS) + " |",
              "|---|---|---|" + "---|" * len(COLUMNS)]
    labels = {name: label for name, (label, _) in MODELS.items()} | BASELINES
    for name, label in labels.items():
        for key, text in POSE_BINS:
            count = stats(results, name, f"count_k1_pose_{key}")
            cells = [fmt(stats(results, name, f"{c}_k1_pose_{key}"), d) for c, _, d in COLUMNS]
            lines.append(f"| {label} | {text} | {0 if count is None else count[0]:.0f} | " + " | ".join(cells) + " |")
    lines += ["", "## Verdict", "", verdict(results, failed), ""]
    if "samples" in grids:
        lines += ["## Samples", "", "Seen-species contents (first column, all facing right) translated with one "
                  "example of each unseen species (first row, facing left: more than 90° apart), by each model "
                  "(EMA generators of the best run by L1 to truth) and the ground truth.", "",
                  f"![samples]({grids['samples']})", ""]
    seeds = sorted({r["seed"] for r in results if f"seed{r['seed']}" in grids})
    if seeds:
        lines += ["The same grid for every seed (its COCO-FUNIT and FUNIT runs), so that a seed where the models do "
                  "not translate shows as plainly as the best one:", ""]
        for seed in seeds:
            lines += [f"Seed {seed}:", "", f"![samples seed {seed}]({grids[f'seed{seed}']})", ""]
    if "reconstruction" in grids:
        lines += ["Same-image reconstruction G(x, x) of that COCO-FUNIT run (contents over reconstructions):", "",
                  f"![reconstruction]({grids['reconstruction']})", ""]
    if long is not None:
        lines += long_section(long, results, steps, grids)
    lines += ["## Style-code collapse at initialisation", "",
              "Share of COCO-FUNIT style-code dimensions that are zero for every one of 64 content / style pairs, "
              "freshly initialised at the cpu preset's widths (16-d code, 64-d CSB), per seed. A dimension that is "
              "zero for every input passes no gradient back through the product of the two MLP outputs; when all "
              "are, the output no longer depends on the style image (the tiny preset's seed 0 before this change).",
              "", "| initialisation | dead share per seed |", "|---|---|"]
    for label, shares in init_dead.items():
        lines.append(f"| {label} | {', '.join(f'{v:.2f}' for v in shares)} |")
    lines += [""]
    lines += ["## Training step time", "",
              f"`{preset}` preset, batch 8, 1 thread; both models stepped alternately in one process ({timing['rounds']} "
              f"rounds after {timing['warmup']} warm-up rounds), median seconds per step (one D and one G update); "
              "the machine was shared, so absolute times are inflated, the ratio less so"
              + (" (measured in an earlier run of this script and kept)" if timing.get("reused") else "") + ".", "",
              "| model | G params | D params | seconds / step |", "|---|---|---|---|"]
    for name, (label, _) in MODELS.items():
        t = timing[name]
        lines.append(f"| {label} | {t['g_params']:,} | {t['d_params']:,} | {t['seconds']:.3f} |")
    lines += ["", f"Median per-round ratio COCO-FUNIT / FUNIT: {timing['ratio_median']:.2f}."]
    return "\n".join(lines) + "\n"


def verdict(results: list[dict], failed: list[dict]) -> str:
    parts = []
    for r in failed:
        parts.append(f"{MODELS[r['model']][0].split(' (')[0]} seed {r['seed']} "
                     + ("diverged" if not r.get("metrics") else "collapsed (its output ignores the style example or draws no creature)")
                     + " and is not counted")
    for key, text, higher in (("l1_fg_k1_pose_gt90", "L1 on the creatures at > 90° (K=1)", False),
                              ("l1_gt_k1_pose_gt90", "L1 to the ground truth at > 90° (K=1)", False),
                              ("style_leak_k1_pose_gt90", "style leak at > 90° (K=1)", False),
                              ("l1_gt_k1", "L1 to the ground truth over all poses (K=1)", False),
                              ("pacc_k1", "PAcc (K=1)", True)):
        c, f = stats(results, "coco_funit", key), stats(results, "funit", key)
        if c is None or f is None:
            continue
        n = min(len(counted(results, "coco_funit")), len(counted(results, "funit")))
        diff, noise = c[0] - f[0], max(c[1], f[1])
        better = (diff > 0) == higher
        word = "better" if better else "worse"
        if n < 2:
            how = f"{word} than FUNIT's ({'one run' if n == 1 else 'no runs'} per model, no noise estimate)"
        elif abs(diff) > 2 * noise:
            how = f"clearly {word} than FUNIT's"
        else:
            how = f"{word} than FUNIT's but within seed noise"
        parts.append(f"COCO-FUNIT's {text} is {how} ({c[0]:.3f} vs {f[0]:.3f}, seed std up to {noise:.3f})")
    paccs = [stats(results, m, "pacc_k1") for m in MODELS]
    if all(p is not None and p[0] < 2 / 24 for p in paccs):
        parts.append("both PAcc values are at or near chance (1/24 = 0.042): neither model makes an output the "
                     "classifier reads as the unseen species, so what is compared is how close each gets to the "
                     "ground truth without that (colour and silhouette, see the grid)")
    for name in MODELS:
        model, copy = stats(results, name, "l1_fg_k1"), stats(results, "copy_content", "l1_fg_k1")
        if model is not None and copy is not None:
            parts.append(f"{MODELS[name][0].split(' (')[0]}'s L1 on the creatures is "
                         f"{'below' if model[0] < copy[0] else 'above'} that of copying the content image "
                         f"({model[0]:.3f} vs {copy[0]:.3f})")
    gt90 = stats(results, "coco_funit", "l1_fg_k1_pose_gt90"), stats(results, "funit", "l1_fg_k1_pose_gt90")
    if all(gt90):
        beats = gt90[0][0] + 2 * max(gt90[0][1], gt90[1][1]) < gt90[1][0]
        parts.append("so at this scale COCO-FUNIT " + ("beats" if beats else "does not measurably beat")
                     + " FUNIT at large pose differences")
    return "; ".join(parts) + "." if parts else "No finished runs."
