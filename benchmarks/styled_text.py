"""Style-example-guided text generation, measured -> docs/results/styled_text.md.

Five variants of ``imaginate train styled_text --preset tiny`` on Debian's fortunes (5 categories), each
for the same steps from the same seeds, all judged by ONE set of judges fitted on the training split
(``judge.cache``): the full model with each code injection (adaln, prefix, add), the adaln model without the
adversarial term, and an unconditional LM of the same size. Context from a held-out paragraph of style A,
reference from a held-out paragraph of style B != A; see imaginate/systems/styled_text/evaluation.py.

    python benchmarks/styled_text.py                # 5 variants x 2 seeds; CPU time is reported
    python benchmarks/styled_text.py --quick        # 1 seed, 30 steps, bundled data (smoke test)
    python benchmarks/styled_text.py --collect-only # rewrite the page from finished runs
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, mean_std, run_pool, train_or_reuse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
STEPS = 300
SEEDS = (0, 1)
VARIANTS = {
    "adaln": ("full objective, adaln injection", []),
    "prefix": ("full objective, prefix injection", ["model.injection=prefix"]),
    "add": ("full objective, add injection", ["model.injection=add"]),
    "no_adv": ("adaln, no adversarial term (LM + style term)", ["loss.adversarial=0"]),
    "uncond": ("unconditional LM, same size (baseline)", ["model.injection=unconditional", "loss.adversarial=0",
                                                          "loss.style=0"]),
}
MAIN = "adaln"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_variant(name: str, seed: int, steps: int, work: Path, common: list[str], collect_only: bool) -> dict:
    overrides = VARIANTS[name][1] + common + [f"train.seed={seed}", "train.num_threads=1",
                                               f"judge.cache={work / 'judges.safetensors'}"]
    run_dir = work / f"{name}_seed{seed}"
    start = cpu_seconds()
    done = train_or_reuse("styled_text", "tiny", overrides, run_dir, steps, collect_only)
    if done is None:
        return {"name": name, "seed": seed, "missing": True}
    metrics, seconds = done
    if metrics is None:
        return {"name": name, "seed": seed, "diverged": True}
    cpu_file = run_dir / "bench_cpu.json"  # CPU seconds of the training process (judge fitting included)
    if not cpu_file.is_file():
        cpu_file.write_text(json.dumps({"cpu_seconds": cpu_seconds() - start}))
    cpu = json.loads(cpu_file.read_text())["cpu_seconds"]
    return {"name": name, "seed": seed, "metrics": metrics, "seconds": seconds, "cpu": cpu, "run_dir": str(run_dir)}


def job(args: tuple) -> dict:
    import torch

    torch.set_num_threads(1)
    return run_variant(*args)


def prepare_judges(work: Path, common: list[str]) -> float:
    """Fit the shared judges once (training split only) into ``work/judges.safetensors``; CPU seconds."""
    import torch

    from imaginate.config import build_config
    from imaginate.engine import RunContext
    from imaginate.engine.distributed import DistEnv
    from imaginate.registry import get_system

    if (work / "judges.safetensors").is_file():
        return 0.0
    start = cpu_seconds()
    spec = get_system("styled_text")
    cfg = build_config(spec.config_cls, preset="tiny", system="styled_text",
                       overrides=common + [f"judge.cache={work / 'judges.safetensors'}", "train.device=cpu"])
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0, global_batch=16)
    spec.system_cls(cfg, ctx).ensure_judges()
    seconds = cpu_seconds() - start
    (work / "judges_cpu.json").write_text(json.dumps({"cpu_seconds": seconds}))
    return seconds


def samples(run_dir: Path, n: int, seed: int) -> list:
    """Readable continuations of the main run: context A + reference B."""
    import torch

    from imaginate.engine import load_run
    from imaginate.systems.styled_text.evaluation import transfer_items

    _, cfg, system, _ = load_run(run_dir, device="cpu")
    system.train(False)
    with torch.no_grad():
        items = transfer_items(system, n, seed + 7, cfg.eval_temperature, cfg.eval_len)
    judged = system.style_judge.predict([it.continuation for it in items])
    return [(it, system.corpus.styles, int(j)) for it, j in zip(items, judged)]


def fmt(values: list[float], digits: int = 3, scale: float = 1.0) -> str:
    m, s, _ = mean_std([v * scale for v in values], worst=float("nan"))
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def one_line(text: str, limit: int = 160) -> str:
    flat = " ⏎ ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    flat = flat.replace("|", "/")
    return flat[:limit] + ("…" if len(flat) > limit else "")


def write_page(results: list[dict], steps: int, seeds: tuple[int, ...], styles: list[str], sample_rows: list,
               source: str, total_cpu: float, eval_pairs: int, out: Path) -> None:
    ok = [r for r in results if "metrics" in r]
    by = {name: [r for r in ok if r["name"] == name] for name in VARIANTS}
    first = ok[0]["metrics"]
    judge_acc = first["judge_accuracy"]
    lines = [
        "# Style-example-guided text generation (arXiv 2003.00674): measured",
        "",
        "Written by `benchmarks/styled_text.py`; do not edit by hand.",
        "",
        f"Data: Debian fortunes ({source}), styles {', '.join(styles)}; paragraphs split into a context "
        "sentence and its continuation; held-out paragraphs only in evaluation. Each variant trains "
        f"`--preset tiny` for {steps} steps from seeds {', '.join(map(str, seeds))} (mean ± std over seeds). "
        "Evaluation: context from a held-out paragraph of style A, reference from another of style B ≠ A, "
        f"{eval_pairs} pairs cycling over the ordered style pairs, continuations sampled "
        "at temperature 0.7.",
        "",
        f"**Judge accuracy on held-out real continuations: {judge_acc:.3f}** (the style judge: hashed character "
        "1–4-gram TF-IDF + logistic regression fitted on the training split only; the same judge for every "
        "row). " + ("It clears the 90 % bar, so the transfer numbers below are reported." if judge_acc >= 0.9 else
                    "It does NOT clear the 90 % bar the issue sets; the transfer numbers below are shown for "
                    "completeness but must be read with that judge error in mind."),
        "",
        "| variant | transfer acc. (judged B) | context leakage (judged A) | fluency bits/byte | real text bits/byte "
        "| fluency ratio | relevance own ctx | relevance shuffled ctx | held-out LM nats | code cos same / other style "
        "| repeated 3-grams | train s (wall, loaded) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (label, _) in VARIANTS.items():
        rows = by[name]
        if not rows:
            lines.append(f"| {label} | missing |" + " |" * 10)
            continue
        m = [r["metrics"] for r in rows]
        ratio = [x["fluency_bpb"] / x["real_bpb"] for x in m]
        codes = (f"{fmt([x['code_same_style_cos'] for x in m], 2)} / {fmt([x['code_other_style_cos'] for x in m], 2)}"
                 if "code_same_style_cos" in m[0] else "—")
        lines.append(
            f"| {label} | {fmt([x['transfer_accuracy'] for x in m])} | {fmt([x['context_leakage'] for x in m])} "
            f"| {fmt([x['fluency_bpb'] for x in m], 2)} | {fmt([x['real_bpb'] for x in m], 2)} | {fmt(ratio, 2)} "
            f"| {fmt([x['relevance_own'] for x in m])} | {fmt([x['relevance_shuffled'] for x in m])} "
            f"| {fmt([x['val_lm_nats'] for x in m], 2)} | {codes} | {fmt([x['repetition_rate'] for x in m])} "
            f"| {fmt([r['seconds'] for r in rows], 0)} |")
    main = [r["metrics"] for r in by[MAIN]]
    base = {k: [r["metrics"]["transfer_accuracy"] for r in by[k]] for k in ("uncond", "no_adv")}
    if main and all(base.values()):
        t = sum(x["transfer_accuracy"] for x in main) / len(main)
        u = sum(base["uncond"]) / len(base["uncond"])
        n = sum(base["no_adv"]) / len(base["no_adv"])
        f = sum(x["fluency_bpb"] / x["real_bpb"] for x in main) / len(main)
        verdict = [
            f"- transfer accuracy ≥ 60 %: {'yes' if t >= 0.6 else 'no'} ({t:.1%});",
            f"- ≥ 20 points above the unconditional LM: {'yes' if t - u >= 0.2 else 'no'} ({(t - u) * 100:+.1f} points);",
            f"- ≥ 20 points above the model without the adversarial term: {'yes' if t - n >= 0.2 else 'no'} "
            f"({(t - n) * 100:+.1f} points);",
            f"- fluency within 1.25× of real text's bits per byte: {'yes' if f <= 1.25 else 'no'} ({f:.2f}×).",
        ]
        lines += ["", "## The issue's targets, for the main variant (adaln, full objective)", "", *verdict]
    conditional = [r for r in ok if r["name"] != "uncond"]
    dead = sum(r["metrics"]["code_same_style_cos"] - r["metrics"]["code_other_style_cos"] < 0.02 for r in conditional)
    lines += ["", "## Failure modes (logged while training, read back here)", "",
              f"- dead style code (codes of same-style and other-style paragraphs equally alike, cos gap < 0.02): "
              f"{dead} of {len(conditional)} conditional runs."
              + (" The decoder then cannot follow the reference, and transfer stays at or below chance "
                 f"(1/{len(styles) - 1} of the other styles would be {1 / (len(styles) - 1):.0%} if the judge "
                 "picked uniformly among them)." if dead else ""),
              "", "| run | code std (train) | D real acc. | D fake acc. | distinct tokens in rollouts | style term |",
              "|---|---|---|---|---|---|"]
    from imaginate.engine.logging import read_metrics

    for r in ok:
        rows = [x for x in read_metrics(Path(r["run_dir"])) if x["split"] == "train"]
        last = rows[-1] if rows else {}

        # with train.log_every=0 the one logged row averages over all steps; the adversarial scalars exist only
        # after loss.adversarial_start, so rescale them to the mean over the adversarial steps
        import yaml

        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        adv_steps = max(1, cfg["train"]["steps"] - cfg["loss"]["adversarial_start"])
        factor = cfg["train"]["steps"] / adv_steps

        def cell(key: str, row: dict = last, factor: float = factor) -> str:
            scale = 1.0 if key == "code_std" else factor
            return f"{row[key] * scale:.3f}" if key in row else "—"

        lines.append(f"| {r['name']} seed {r['seed']} | {cell('code_std')} | {cell('d_real_accuracy')} "
                     f"| {cell('d_fake_accuracy')} | {cell('fake_distinct_tokens')} | {cell('style_term')} |")
    k = len(styles)
    lines += ["", "## Confusion matrix of the main variant (rows: reference style B; columns: judged style; "
                  "mean over seeds)", "", "| B \\ judged | " + " | ".join(styles) + " |", "|---" * (k + 1) + "|"]
    for b in range(k):
        cells = [sum(x[f"confusion_{b}_{c}"] for x in main) / max(len(main), 1) for c in range(k)]
        lines.append(f"| {styles[b]} | " + " | ".join(f"{v:.2f}" for v in cells) + " |")
    lines += ["", "Reading the columns: relevance is the TF-IDF cosine (the judge's character n-gram space) of a "
                  "continuation with its own context and with another context of the same style; a model that "
                  "uses its context scores higher on the first. Code cos same/other: mean cosine between style "
                  "codes of held-out paragraphs of the same / of different styles (equal values = a dead code that "
                  "ignores the reference). Fluency ratio = generated bits/byte ÷ real held-out bits/byte under "
                  "the judge LM.", ""]
    lines += ["## Samples (main variant, seed 0; context from style A, reference from style B)", "",
              "| A → B | judged | context | continuation |", "|---|---|---|---|"]
    for it, names, judged in sample_rows:
        lines.append(f"| {names[it.context_style]} → {names[it.reference_style]} | {names[judged]} "
                     f"| {one_line(it.context, 80)} | {one_line(it.continuation)} |")
    lines += ["", f"Machine: {machine_line(1)} per run, up to 8 runs at once, shared with other jobs (load 10–27 on 2 cores), so wall-clock "
                  f"seconds are inflated; total CPU time of this benchmark (training, judges, evaluation, samples): "
                  f"{total_cpu / 60:.1f} CPU-minutes.", ""]
    out.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--source", default="fortunes", help="fortunes | bundled | a folder")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench_styled_text"))
    parser.add_argument("--out", default=str(RESULTS / "styled_text.md"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--workers", type=int, default=3, help="training processes at once (1 thread each)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 30 steps, bundled data")
    parser.add_argument("--collect-only", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.quick:
        args.steps, args.seeds, args.source = 30, [0], "bundled"
        args.work = str(Path(args.work) / "quick")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    eval_pairs = 40 if args.quick else 200
    common = [f"data.source={args.source}", f"eval_pairs={eval_pairs}"] + (
        ["judge.lm_steps=30", "loss.adversarial_start=10"] if args.quick else [])
    start, cpu0 = time.time(), cpu_seconds()
    if not args.collect_only:
        prepare_judges(work, common)
    cpu0 = cpu_seconds()  # the judges' CPU time is counted from judges_cpu.json
    jobs = [(name, seed, args.steps, work, common, args.collect_only) for seed in args.seeds for name in args.variants]
    results = run_pool(job, jobs, 1 if args.collect_only else args.workers, "styled_text runs")
    for r in results:
        shown = {k: round(v, 3) for k, v in r.get("metrics", {}).items() if not k.startswith("confusion")}
        print(r["name"], r["seed"], f"cpu={r.get('cpu', 0):.0f}s", shown, flush=True)
    main_run = work / f"{MAIN}_seed{args.seeds[0]}"
    sample_rows = samples(main_run, 12, 0) if (main_run / "final.safetensors").is_file() else []
    from imaginate.data.styled_corpus import DEFAULT_STYLES

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    judges_cpu = work / "judges_cpu.json"
    total_cpu = sum(r.get("cpu", 0.0) for r in results) + cpu_seconds() - cpu0 + (
        json.loads(judges_cpu.read_text())["cpu_seconds"] if judges_cpu.is_file() else 0.0)
    write_page(results, args.steps, tuple(args.seeds), list(DEFAULT_STYLES), sample_rows, args.source, total_cpu,
               eval_pairs, out)
    print(f"wrote {out} ({time.time() - start:.0f} s wall, {total_cpu / 60:.1f} CPU-min)")


if __name__ == "__main__":
    main()
