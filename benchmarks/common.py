"""Shared by the benchmark scripts: one training run in a worker process, and a pool of them."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

QUIET = ["train.eval_every=0", "train.ckpt_every=0", "train.sample_every=0", "train.log_every=0",
         "train.device=cpu"]


def train_metrics(system: str, preset: str, overrides: list[str], run_dir: Path | None = None,
                  threads: int = 1) -> tuple[dict[str, float] | None, float]:
    """Train ``system`` at ``preset`` + overrides through the engine: (final metrics, or None when the run
    diverged; seconds). ``run_dir`` keeps the run (samples, weights); otherwise a temporary folder."""
    import torch

    torch.set_num_threads(threads)
    from imaginate.config import build_config
    from imaginate.engine import TrainingDiverged, run_training
    from imaginate.registry import get_system

    spec = get_system(system)
    cfg = build_config(spec.config_cls, preset=preset, system=system, overrides=overrides + QUIET)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            metrics = run_training(spec, cfg, run_dir or Path(tmp) / "run", progress=False)
        except TrainingDiverged:
            metrics = None
    return metrics, round(time.time() - start, 2)


def train_once(system: str, preset: str, overrides: list[str], metric: str, run_dir: Path | None = None,
               threads: int = 1) -> tuple[float | None, float]:
    """As ``train_metrics`` but only ``metric`` (None when the run diverged or the value is not finite)."""
    metrics, seconds = train_metrics(system, preset, overrides, run_dir, threads)
    score = None if metrics is None else metrics[metric]
    return (score if score is not None and math.isfinite(score) else None), seconds


def finished_run(run_dir: Path, steps: int) -> tuple[dict, float] | None:
    """(final eval metrics, training seconds) of a run that finished ``steps`` steps, else None."""
    from imaginate.engine.logging import read_metrics, wall_seconds

    rows = read_metrics(run_dir) if (run_dir / "final.safetensors").is_file() else []
    evals = [r for r in rows if r["split"] == "eval" and r["step"] == steps]
    if not evals:
        return None
    upto = rows[:rows.index(evals[-1]) + 1]  # every resumed segment's time up to that evaluation
    return {k: v for k, v in evals[-1].items() if k not in ("step", "split", "time")}, wall_seconds(upto)


def train_or_reuse(system: str, preset: str, overrides: list[str], run_dir: Path, steps: int,
                   collect_only: bool) -> tuple[dict | None, float] | None:
    """A finished run's (metrics, seconds) if ``run_dir`` holds one (an interrupted benchmark restarts
    without redoing finished runs), else None with ``collect_only``, else train it afresh."""
    import shutil

    finished = finished_run(run_dir, steps)
    if finished is not None or collect_only:
        return finished
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return train_metrics(system, preset, overrides + [f"train.steps={steps}"], run_dir=run_dir)


def run_pool(fn: Callable[[Any], dict], jobs: Iterable[Any], workers: int, desc: str) -> list[dict]:
    """``fn`` over ``jobs`` in ``workers`` spawned processes (1 torch thread each), with a progress bar."""
    from tqdm import tqdm

    jobs = list(jobs)
    if workers <= 1:
        return [fn(j) for j in tqdm(jobs, desc=desc)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(tqdm(pool.map(fn, jobs), total=len(jobs), desc=desc))


def mean_std(values: list[float | None], worst: float) -> tuple[float, float, int]:
    """(mean, sample std, number diverged); a diverged run counts as ``worst``."""
    import statistics

    vals = [worst if v is None else v for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), sum(v is None for v in values)


def machine_line(workers: int) -> str:
    import platform

    import torch

    return f"CPU ({platform.machine()}), {workers} worker processes × 1 thread, torch {torch.__version__}"
