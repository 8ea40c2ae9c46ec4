"""Run the reliability suite (tests/reliability, slow parts included) and write docs/results/reliability.md.

    python benchmarks/reliability.py            # ~10 CPU-min on one thread: every suite, then the report
    python benchmarks/reliability.py --fast     # the CI part only (no kill -9 chains, no 2-process DDP)

The tests record what they tried as JUnit properties (``record_property``); this script runs pytest once
with a JUnit XML report, reads it back and counts: faults injected and survived, bad inputs tried and
rejected cleanly (exit 2, one line naming the file, no traceback, nothing written over), bytes of user
data lost. Every number in the report comes from that run; a failing case is listed, never dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_MD = ROOT / "docs" / "results" / "reliability.md"
OUT_JSON = ROOT / "docs" / "results" / "reliability.json"


def run_suite(fast: bool) -> tuple[list[dict], float, int]:
    """Run pytest on tests/reliability; returns (cases, wall seconds, exit code)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        cmd = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider",
               "-o", "junit_family=xunit1", f"--junitxml={report}", "-m", "not slow" if fast else "slow or not slow"]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", IMAGINATE_TEST_THREADS="1")
        start = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.time() - start
        if not report.is_file():
            sys.exit(f"pytest wrote no report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        cases = []
        for case in ET.parse(report).getroot().iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = tag
                    message = (node.get("message") or "").splitlines()[0][:200] if node.get("message") else ""
                    break
            else:
                message = ""
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            cases.append({"file": case.get("classname", "").rsplit(".", 1)[-1], "name": case.get("name"),
                          "time": float(case.get("time", 0)), "outcome": outcome, "message": message, **props})
    return cases, seconds, proc.returncode


def _param(name: str) -> str:
    return name[name.index("[") + 1: -1] if "[" in name else ""


def summarise(cases: list[dict]) -> dict:
    ok = [c for c in cases if c["outcome"] == "passed"]
    matrix = [c for c in cases if c["file"] == "test_broken_files"]
    fuzz = [c for c in cases if c.get("category") == "config_fuzz"]
    kill = [c for c in cases if c["file"] == "test_kill9"]
    nonfinite = [c for c in cases if c["file"] == "test_nonfinite"]
    resume = [c for c in cases if c["file"] == "test_resume_and_bad_files"]
    ddp = [c for c in cases if c["file"] == "test_ddp_equivalence" and "gap_sync" in c]
    cli_config = [c for c in cases if c["file"] == "test_config_fuzz" and c["name"].startswith("test_the_cli")]
    fuzz_counts = ({k: int(fuzz[0].get(f"fuzz_{k}", 0)) for k in ("tried", "rejected", "accepted", "known")}
                   if fuzz else {})
    damaged_ckpt = [c for c in resume if "broken_newest" in c["name"] or "no_readable" in c["name"]]
    faults = {
        "kill -9 at a random step and phase, then --resume (bit-identical weights)":
            (sum(int(c.get("kills", 0)) for c in kill), sum(int(c.get("kills", 0)) for c in kill if c in ok)),
        "newest checkpoint damaged during the kill chains, resume from the previous one":
            (sum(int(c.get("faults", 0)) - int(c.get("kills", 0)) for c in kill),
             sum(int(c.get("faults", 0)) - int(c.get("kills", 0)) for c in kill if c in ok)),
        "newest checkpoint truncated / zeroed / bit-flipped, or none readable": (len(damaged_ckpt),
                                                                                 len([c for c in damaged_ckpt if c in ok])),
        "NaN / inf injected into a loss or the weights mid-run": (len(nonfinite), len([c for c in nonfinite if c in ok])),
        "disk full while saving; another run's checkpoint; damaged run folder; cuda without CUDA":
            (len(resume) - len(damaged_ckpt), len([c for c in resume if c not in damaged_ckpt and c in ok])),
    }
    inputs = {
        "broken files fed to the verbs (matrix)": (len(matrix), len([c for c in matrix if c in ok])),
        "fuzzed config overrides (hypothesis)": (fuzz_counts.get("tried", 0),
                                                 fuzz_counts.get("rejected", 0) + fuzz_counts.get("accepted", 0)),
        "config mistakes through the CLI": (len(cli_config), len([c for c in cli_config if c in ok])),
    }
    lost = sum(int(c.get("bytes_lost", 0)) for c in cases)
    grid: dict[str, dict[str, str]] = defaultdict(dict)
    for c in matrix:
        slot, kind = _param(c["name"]).rsplit("-", 1)
        grid[slot][kind] = "ok" if c in ok else "FAIL"
    return {"faults": faults, "inputs": inputs, "bytes_lost": lost, "grid": grid, "fuzz": fuzz_counts,
            "ddp": [(_param(c["name"]), c.get("gap_sync"), c.get("gap_per_rank"), c["outcome"]) for c in ddp],
            "kill_schedules": [(_param(c["name"]), c.get("schedule", ""), c.get("tensors"), c["outcome"]) for c in kill],
            "failures": [(c["file"], c["name"], ("known, in a file another helper owns (xfail): " if
                                                 c["outcome"] == "skipped" else "") + c["message"])
                         for c in cases if c["outcome"] in ("failure", "error", "skipped")],
            "cases": len(cases), "passed": len(ok)}


def write_report(s: dict, seconds: float, fast: bool) -> str:
    kinds = ["empty", "truncated", "wrong_type", "random", "huge", "nan"]
    lines = ["# Reliability, measured", "",
             "Written by `benchmarks/reliability.py` from one run of `tests/reliability`"
             f"{' (fast part only: no kill -9 chains, no 2-process DDP)' if fast else ' (slow parts included)'}: "
             f"{s['cases']} test cases, {s['passed']} passed, {seconds / 60:.1f} min wall-clock on "
             f"{platform.machine()} ({os.cpu_count()} cores, one torch thread, shared with other jobs).", "",
             "## Faults injected", "", "| fault | injected | survived |", "|---|---:|---:|"]
    for name, (tried, survived) in s["faults"].items():
        lines.append(f"| {name} | {tried} | {survived} |")
    total_f = sum(t for t, _ in s["faults"].values())
    total_s = sum(v for _, v in s["faults"].values())
    lines += [f"| **all** | **{total_f}** | **{total_s}** |", "",
              "Survived means: the run resumed and ended with weights bit-identical to an uninterrupted run "
              "(kill -9), resumed from the newest readable checkpoint naming the skipped one, or stopped with "
              "one line naming the step and kept the last good checkpoint (NaN/inf).", "",
              "## Bad inputs", "", "| input | tried | rejected cleanly |", "|---|---:|---:|"]
    for name, (tried, clean) in s["inputs"].items():
        lines.append(f"| {name} | {tried} | {clean} |")
    lines += [f"| **all** | **{sum(t for t, _ in s['inputs'].values())}** | "
              f"**{sum(c for _, c in s['inputs'].values())}** |", "",
              f"**Bytes of user data lost: {s['bytes_lost']}** (files a failed command must not change, compared "
              "by SHA-256 before and after: the broken input, the `--out` file that existed, every file of a "
              "run folder that `--resume` refused).", "",
              "Rejected cleanly means exit status 2, exactly one `imaginate: error:` line that names the file, no "
              "traceback. A fuzzed override is rejected cleanly when it is a one-line ConfigError naming the "
              f"key; of {s['fuzz'].get('tried', 0)} fuzzed overrides {s['fuzz'].get('rejected', 0)} were "
              f"rejected, {s['fuzz'].get('accepted', 0)} were valid values (in range, right type) that built "
              f"a config without NaN, and {s['fuzz'].get('known', 0)} were one-line errors that did not name the "
              "key (`gan.diffaugment`, gancraft's `data.translator.gan_loss`: the messages name the policy or the "
              "loss, not the key; in systems/gan and systems/gancraft, not this suite's to edit).", "",
              "### Each verb x each kind of broken file", "",
              "`-` = the kind does not exist for that format (a PNG holds no NaN; half a text file is a text file).",
              "", "| file (verb) | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for slot in sorted(s["grid"]):
        lines.append(f"| {slot} | " + " | ".join(s["grid"][slot].get(k, "-") for k in kinds) + " |")
    if s["ddp"]:
        lines += ["", "## 2 processes (gloo) vs 1 process, same global batch", "",
                  "| system | max loss gap, sync batch norm | same, per-rank batch norm | result |", "|---|---:|---:|---|"]
        for system, gap, per_rank, outcome in s["ddp"]:
            lines.append(f"| {system} | {float(gap):.2e} | {float(per_rank):.2e} | {outcome} |" if gap else
                         f"| {system} | - | - | {outcome} |")
        lines += ["", "Gap: the largest |loss_2 - loss_1| / max(1, |loss_1|) over the 8 logged steps (tolerance 1e-4)."]
    if s["kill_schedules"]:
        lines += ["", "## kill -9 schedules (step:phase)", ""]
        for system, schedule, tensors, outcome in s["kill_schedules"]:
            lines.append(f"- {system} ({tensors} tensors compared, {outcome}): {schedule}")
    lines += ["", "## Failures", ""]
    lines += [f"- {f} {n}: {m}" for f, n, m in s["failures"]] or ["None in this run."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="only the CI part of the suite")
    args = parser.parse_args()
    cases, seconds, code = run_suite(args.fast)
    summary = summarise(cases)
    OUT_MD.write_text(write_report(summary, seconds, args.fast))
    OUT_JSON.write_text(json.dumps({"seconds": round(seconds, 1), "pytest_exit": code, "fast": args.fast,
                                    **{k: v for k, v in summary.items() if k != "grid"},
                                    "grid": summary["grid"]}, indent=1, default=str) + "\n")
    print(f"wrote {OUT_MD} ({summary['passed']}/{summary['cases']} cases passed, {seconds / 60:.1f} min)")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
