"""Make (or re-make) a zoo entry: train it from its recipe, export the weights, evaluate them as loaded.

    python scripts/train_zoo.py NAME                       # train runs/zoo/NAME from the entry's recipe
    python scripts/train_zoo.py NAME --from-run RUN_DIR    # adopt a finished run trained with the recipe
    python scripts/train_zoo.py --all                      # every entry, one after another
    python scripts/train_zoo.py NAME --evaluate-only       # re-measure the committed weights' metrics

The entry file ``imaginate/zoo/entries/NAME.json`` must exist with its recipe (preset, overrides, threads);
this script writes everything else in it (steps, CPU/wall seconds, sha256, bytes, shapes, config, metrics) and
``weights/NAME.safetensors`` and ``curves/NAME.jsonl``. The metrics are the system's own evaluation of the
weights *after* the round trip through the zoo file, so ``tests/zoo`` can re-measure them exactly.
A run adopted with ``--from-run`` must have been trained with exactly the recipe's config (checked key by key).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from imaginate import zoo
from imaginate.config import ConfigError, build_config, load_saved_config
from imaginate.data import DataError
from imaginate.engine.checkpoint import CheckpointError, list_checkpoints
from imaginate.engine.logging import read_metrics, wall_seconds
from imaginate.registry import get_system

CURVE_POINTS = 300  # training rows kept per curve file (every eval row is kept)


def recipe_config(entry: zoo.ZooEntry):
    spec = get_system(entry.system)
    overrides = [str(o) for o in entry.recipe.get("overrides", [])]
    return spec, build_config(spec.config_cls, preset=entry.recipe.get("preset"), system=spec.name,
                              overrides=overrides)


def _config_lines(cfg) -> dict[str, str]:
    """Flattened ``key: value`` lines of a config, without the device (a run may have been made anywhere)."""
    from omegaconf import OmegaConf

    flat: dict[str, str] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = repr(node)

    walk("", OmegaConf.to_container(OmegaConf.structured(cfg)))
    flat.pop("train.device", None)
    return flat


def check_same_config(recipe_cfg, run_dir: Path) -> None:
    spec_cfg = load_saved_config(type(recipe_cfg), run_dir / "config.yaml")
    want, got = _config_lines(recipe_cfg), _config_lines(spec_cfg)
    diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    if diff:
        details = "; ".join(f"{k}: recipe {want.get(k)} vs run {got.get(k)}" for k in diff[:6])
        raise ConfigError(f"{run_dir}: was not trained with the recipe's config ({details})")


def write_curves(entry: zoo.ZooEntry, rows: list[dict]) -> None:
    train = [r for r in rows if r.get("split") == "train"]
    stride = max(1, len(train) // CURVE_POINTS)
    kept = train[::stride] + [r for r in rows if r.get("split") != "train"]
    kept.sort(key=lambda r: (r["step"], r.get("split") != "train"))
    entry.curves_path.parent.mkdir(parents=True, exist_ok=True)
    entry.curves_path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def export_weights(entry: zoo.ZooEntry, run_dir: Path) -> int:
    """The run's newest checkpoint -> ``weights/NAME.safetensors`` (chosen modules, the entry's dtype)."""
    from safetensors.torch import save_file

    from imaginate.engine import load_run
    from imaginate.engine.system import unwrap

    _, _, system, step = load_run(run_dir, device="cpu")
    names = entry.modules if entry.modules is not None else sorted(system.modules)
    missing = set(names) - set(system.modules)
    if missing:
        raise ConfigError(f"{entry.entry_path}: 'modules' names modules the system lacks ({', '.join(sorted(missing))})")
    dtype = getattr(torch, entry.dtype)
    tensors = {}
    for name in names:
        for key, value in unwrap(system.modules[name]).state_dict().items():
            value = value.detach().cpu()
            tensors[f"{name}.{key}"] = (value.to(dtype) if value.is_floating_point() else value).contiguous().clone()
    entry.weights_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(entry.weights_path), metadata={"system": entry.system, "zoo": entry.name, "step": str(step)})
    return step


def record_metrics(entry: zoo.ZooEntry, threads: int) -> float:
    """Evaluate the entry's file in a fresh process with empty caches, write metrics and eval_seconds; the seconds."""
    entry.metrics, seconds = zoo.evaluate_entry(entry.name, threads, cold_caches=True)
    entry.eval_seconds = round(seconds, 2)
    entry.write()
    return seconds


def reevaluate(name: str) -> zoo.ZooEntry:
    """Re-measure an entry's metrics from its committed weights (after a change to the evaluation or its data)."""
    entry = zoo.get_entry(name)
    seconds = record_metrics(entry, int(entry.threads or entry.recipe.get("threads", 1)))
    print(f"zoo:{name}: eval {seconds:.1f} s, metrics {json.dumps({k: round(v, 4) for k, v in entry.metrics.items()})}")
    return entry


def make(name: str, from_run: Path | None, out_root: Path) -> zoo.ZooEntry:
    entry = zoo.get_entry(name)
    spec, cfg = recipe_config(entry)
    threads = int(entry.recipe.get("threads", 1))
    cpu_seconds = None
    if from_run is None:
        from imaginate.engine import run_training

        run_dir = out_root / name
        torch.set_num_threads(threads)
        cpu0 = time.process_time()
        run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir(), progress=sys.stderr.isatty())
        cpu_seconds = time.process_time() - cpu0
    else:
        run_dir = from_run
        check_same_config(cfg, run_dir)
    done = list_checkpoints(run_dir)
    if not done or done[-1][0] != cfg.train.steps:
        raise ConfigError(f"{run_dir}: not finished (newest checkpoint step {done[-1][0] if done else 'none'}, "
                          f"recipe trains {cfg.train.steps} steps)")
    step = export_weights(entry, run_dir)
    size = entry.weights_path.stat().st_size
    if size > zoo.MAX_FILE_BYTES:
        entry.weights_path.unlink()
        raise ConfigError(f"{entry.entry_path}: weights would be {size / 2**20:.1f} MB (limit "
                          f"{zoo.MAX_FILE_BYTES / 2**20:.0f} MB): set \"dtype\": \"float16\" or leave modules out")
    rows = read_metrics(run_dir)
    write_curves(entry, rows)
    from omegaconf import OmegaConf

    entry.steps = step
    entry.cpu_seconds = None if cpu_seconds is None else round(cpu_seconds, 1)
    entry.wall_seconds = round(wall_seconds(rows), 1)
    entry.threads = threads
    entry.sha256 = zoo.sha256_file(entry.weights_path)
    entry.bytes = size
    entry.shapes = zoo.file_shapes(entry.weights_path)
    entry.config = OmegaConf.to_container(OmegaConf.structured(cfg))
    entry.made_with = {"torch": torch.__version__, "python": platform.python_version(),
                       "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                       "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                       "run": "trained by this script" if from_run is None else f"adopted from {from_run}"}
    entry.write()  # sha256 first: load_zoo verifies
    seconds = record_metrics(entry, threads)
    total = sum(p.stat().st_size for p in zoo.WEIGHTS_DIR.glob("*.safetensors"))
    print(f"zoo:{name}: {size / 2**20:.2f} MB, step {step}, wall {entry.wall_seconds:.0f} s, "
          f"eval {seconds:.1f} s, metrics {json.dumps({k: round(v, 4) for k, v in entry.metrics.items()})}")
    if total > zoo.MAX_TOTAL_BYTES:
        print(f"warning: the zoo's weights now total {total / 2**20:.1f} MB (> {zoo.MAX_TOTAL_BYTES / 2**20:.0f} MB)")
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="a zoo entry (imaginate/zoo/entries/NAME.json)")
    parser.add_argument("--all", action="store_true", help="every entry in turn")
    parser.add_argument("--from-run", type=Path, default=None, help="adopt this finished run instead of training")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="only re-measure the metrics of the committed weights (no training)")
    parser.add_argument("--out-root", type=Path, default=Path("runs/zoo"), help="where runs are trained")
    args = parser.parse_args(argv)
    if bool(args.name) == args.all:
        parser.error("give one entry NAME or --all")
    if args.all and args.from_run:
        parser.error("--from-run needs one NAME")
    if args.evaluate_only and args.from_run:
        parser.error("--evaluate-only takes no --from-run")
    names = [e.name for e in zoo.list_entries()] if args.all else [args.name]
    try:
        for name in names:
            if args.evaluate_only:
                reevaluate(name)
            else:
                make(name, args.from_run, args.out_root)
    except (ConfigError, DataError, CheckpointError) as exc:  # ZooError, bad recipes, unfinished or mismatched runs: one line, exit 2
        print(f"train_zoo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
