"""Every `paper` preset, built as `imaginate train SYSTEM --preset paper` builds it, timed for a few steps on
the device at hand -> docs/results/paper_presets.md (+ .json).

Each preset runs in its own process (a crash, an out-of-memory or a hang costs that row only): build the
config from the preset file (plus the overrides listed per row: procedural data where the preset names a
data set that is not shipped, shorter one-off stages such as GANcraft's pseudo-GT translator, and with
--small-data fewer procedural clips / worlds), build the system through the engine, run ``--warmup``
steps, then time ``--steps`` steps (device synchronised after each). Reported per row: parameters, the
median step time and its projection to the preset's full step count, peak device memory, whether AMP was
on, whether every logged loss stayed finite, and the set-up time (data generation + one-off stages).

    python benchmarks/paper_presets.py                      # all rows on the default device
    python benchmarks/paper_presets.py --only gan wsod      # some rows
    python benchmarks/paper_presets.py --smoke              # CPU plumbing check: batch 2, 1 + 1 steps
    python benchmarks/paper_presets.py --merge a.json b.json  # one table from several runs (later rows win)

Absolute figures are the point on a GPU; on a CPU with --smoke the table only says the presets start.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results" / "paper_presets.md"

# (row name, system, overrides). The trained networks, batch sizes, resolutions and losses are the preset's.
ROWS: list[tuple[str, str, list[str]]] = [
    ("classify (ResNet-18, Madam)", "classify", []),
    ("lns_madam (ResNet-18, LNS-Madam B=16)", "lns_madam", []),
    ("charlm (transformer)", "charlm", []),
    ("gan (CBN ResNet, batch 256)", "gan", []),
    ("coco_funit (COCO-FUNIT, 256 px)", "coco_funit", ["data.name=species"]),
    ("coco_funit (FUNIT, 256 px)", "coco_funit", ["data.name=species", "model.content_conditioned=false"]),
    ("face_vid2vid (256 px)", "face_vid2vid", []),
    ("gancraft (128 px)", "gancraft", ["data.translator_steps=20"]),
    ("vid2vid (512x1024)", "vid2vid", ["model.mode=vid2vid"]),
    ("wc_vid2vid (512x1024)", "vid2vid", []),
    ("wsod (VGG16 MIST + CDB)", "wsod", ["data.name=scenes", "model.num_classes=6"]),
    ("styled_text", "styled_text", ["judge.lm_steps=20"]),
]
# --small-data: fewer procedural clips / worlds / views, for presets whose data set is rendered up front
SMALL_DATA = {"face_vid2vid": ["data.train_clips=16", "data.eval_clips=4"],
              "gancraft": ["data.translator_worlds=2", "data.translator_views_per_world=8", "data.photo_worlds=2",
                           "data.photos_per_world=16"],
              "vid2vid": ["data.train_worlds=2", "data.videos_per_world=1", "data.test_worlds=1"],
              "coco_funit": ["data.images_per_species=8"]}
SMOKE = ["train.batch_size=2"]


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_row(system_name: str, overrides: list[str], warmup: int, steps: int, device: str) -> dict:
    """Build one preset and time it (runs in a child process)."""
    import torch

    from imaginate.config import build_config
    from imaginate.engine.distributed import init_distributed
    from imaginate.engine.loop import build_system
    from imaginate.registry import get_system

    spec = get_system(system_name)
    cfg = build_config(spec.config_cls, preset="paper", system=system_name,
                       overrides=overrides + [f"train.device={device}"])
    env = init_distributed(cfg.train.device)
    if env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(env.device)
    t0 = time.perf_counter()
    system = build_system(spec, cfg, env)
    build_s = time.perf_counter() - t0
    print(f"built in {build_s:.1f} s", file=sys.stderr, flush=True)
    params = sum(p.numel() for m in system.modules.values() for p in m.parameters())
    system.train(True)
    times, finite, first_batch_s = [], True, 0.0
    for step in range(warmup + steps):
        _sync(env.device)
        t = time.perf_counter()
        batch = system.train_batch(step)
        logs = system.train_step(batch)
        _sync(env.device)
        dt = time.perf_counter() - t
        if step == 0:
            first_batch_s = dt
        print(f"step {step}: {dt:.2f} s", file=sys.stderr, flush=True)
        if step >= warmup:
            times.append(dt)
        finite &= all(math.isfinite(float(v)) for k, v in logs.items() if k.endswith("loss"))
    median = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(env.device) / 2**30 if env.device.type == "cuda" else float("nan")
    return {"device": torch.cuda.get_device_name(env.device) if env.device.type == "cuda" else "cpu",
            "torch": torch.__version__, "params_m": params / 1e6, "batch": int(cfg.train.batch_size),
            "amp": bool(cfg.train.amp), "build_s": build_s, "first_step_s": first_batch_s,
            "step_s": median, "step_s_min": min(times), "full_steps": int(cfg.train.steps),
            "full_hours": median * int(cfg.train.steps) / 3600, "peak_gib": peak, "losses_finite": finite,
            "logged": sorted(logs)}


def _child(args: argparse.Namespace) -> None:
    row = run_row(args.child, json.loads(args.overrides), args.warmup, args.steps, args.device)
    print("ROW " + json.dumps(row), flush=True)


def _fmt(v: float, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}g}"


def write_table(rows: list[dict], out: Path, header: str) -> None:
    lines = ["# Paper presets on one device", "", header, "",
             "Written by `benchmarks/paper_presets.py`. Each row builds `imaginate train SYSTEM --preset paper` "
             "plus the row's overrides (procedural data instead of a data set that is not shipped, shorter "
             "one-off stages, fewer procedural clips / worlds with --small-data, a local Fashion-MNIST "
             "subset) in its own process and times training "
             "steps after a warm-up; *full run* = median step × the preset's `train.steps` (training only: "
             "no evaluation, sampling or checkpoints). *set-up* = building the system (data generation, "
             "one-off stages) + the first step.", "",
             "| preset | overrides | params (M) | batch | AMP | step (s) | full run (h) | peak memory (GiB) "
             "| set-up (s) | losses finite | status |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        ov = " ".join(f"`{o}`" for o in r.get("overrides", []) if not o.startswith("data.root=")) or "—"
        if "error" in r:
            lines.append(f"| {r['name']} | {ov} | | | | | | | | | FAILED: {r['error']} |")
            continue
        lines.append(f"| {r['name']} | {ov} | {r['params_m']:.1f} | {r['batch']} | {'yes' if r['amp'] else 'no'} | "
                     f"{_fmt(r['step_s'])} | {_fmt(r['full_hours'])} | {_fmt(r['peak_gib'])} | "
                     f"{r['build_s'] + r['first_step_s']:.0f} | {'yes' if r['losses_finite'] else 'NO'} | ok |")
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help="systems (or row names) to run")
    p.add_argument("--fmnist-root", help="data.root for the Fashion-MNIST rows (classify, lns_madam, gan)")
    p.add_argument("--device", default="auto")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per row")
    p.add_argument("--smoke", action="store_true", help="batch 2, one warm-up and one timed step")
    p.add_argument("--small-data", action="store_true", help="fewer procedural clips/worlds (SMALL_DATA)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--merge", nargs="*", help="rebuild the table from these .json files (later rows win)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="[]", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    if args.merge:
        by_name = {}
        for f in args.merge:
            for r in json.loads(Path(f).read_text()):
                by_name[r["name"]] = r
        order = [name for name, _, _ in ROWS]
        rows = sorted(by_name.values(), key=lambda r: order.index(r["name"]) if r["name"] in order else 99)
        dev = next((r["device"] for r in rows if "device" in r), "?")
        torch_v = next((r["torch"] for r in rows if "torch" in r), "?")
        write_table(rows, Path(args.out), f"Device: {dev}; torch {torch_v}; merged from {len(args.merge)} runs "
                                          f"(each row's overrides and timings are in the .json).")
        return
    if args.smoke:
        args.warmup, args.steps = 1, 1
    rows = []
    for name, system, overrides in ROWS:
        if args.only and system not in args.only and name not in args.only:
            continue
        fm = [f"data.root={args.fmnist_root}"] if args.fmnist_root and system in ("classify", "lns_madam", "gan") else []
        ov = overrides + fm + (SMOKE if args.smoke else []) + (SMALL_DATA.get(system, []) if args.small_data else [])
        cmd = [sys.executable, __file__, "--child", system, "--overrides", json.dumps(ov), "--device", args.device,
               "--warmup", str(args.warmup), "--steps", str(args.steps)]
        start = time.time()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
            found = [ln for ln in done.stdout.splitlines() if ln.startswith("ROW ")]
            if found:
                row = {"name": name, "overrides": ov, **json.loads(found[-1][4:])}
            else:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                row = {"name": name, "overrides": ov, "error": tail[:160].replace("|", "/")}
                print(done.stderr[-3000:], file=sys.stderr)
        except subprocess.TimeoutExpired as exc:
            row = {"name": name, "overrides": ov, "error": f"over {args.timeout:.0f} s"}
            partial = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            print(partial[-2000:], file=sys.stderr)
        row["wall_s"] = round(time.time() - start, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        dev = next((r["device"] for r in rows if "device" in r), "?")
        torch_v = next((r["torch"] for r in rows if "torch" in r), "?")
        header = (f"Device: {dev}; torch {torch_v}; {args.warmup} warm-up + {args.steps} timed steps per row"
                  + (" (smoke: batch 2)" if args.smoke else "")
                  + (" (--small-data: fewer procedural clips / worlds, see the overrides in the .json)"
                     if args.small_data else "") + f"; {time.strftime('%Y-%m-%d')}.")
        write_table(rows, Path(args.out), header)  # after every row: a run cut short keeps what it measured


if __name__ == "__main__":
    main()
