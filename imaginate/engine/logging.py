"""Run logs: ``metrics.jsonl`` (one JSON object a line), TensorBoard scalars and images, PNG files."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch

from imaginate.engine.images import save_png


class RunLogger:
    """Writes on rank 0 only; other ranks get a logger whose methods do nothing.

    Args:
        run_dir: the run's folder.
        enabled: false on ranks other than 0.
        tensorboard: also write TensorBoard event files under ``run_dir/tb``.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = run_dir
        self.enabled = enabled
        self._tb = None
        self._start = time.time()
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                warnings.warn("tensorboard is not installed: only metrics.jsonl is written", stacklevel=2)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines that a crashed run logged after the checkpoint it resumes from."""
        if not self.enabled or not self.metrics_path.is_file():
            return
        try:
            lines = self.metrics_path.read_text(errors="replace").splitlines()
        except OSError:
            return
        kept = [line for line in lines if line.strip() and _step_of(line) <= step]  # damaged lines are kept
        tmp = self.metrics_path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(self.metrics_path)

    def scalars(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "split": split, "time": round(time.time() - self._start, 3), **values}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", v, step)

    def images(self, step: int, images: dict[str, torch.Tensor]) -> dict[str, Path]:
        """Save each image [3, H, W] in [0, 1] as ``samples/<name>_<step>.png`` (and to TensorBoard)."""
        paths = {}
        if not self.enabled:
            return paths
        for name, img in images.items():
            path = self.run_dir / "samples" / f"{name}_{step:08d}.png"
            save_png(img, path)
            paths[name] = path
            if self._tb is not None:
                self._tb.add_image(f"samples/{name}", img.clamp(0, 1), step)
        return paths

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _parse(line: str) -> dict | None:
    """One metrics line as a dict, or None for a damaged line (a crash mid-write, a stray edit)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _step_of(line: str) -> float:
    """The step of a metrics line; a damaged one counts as step 0, so that resuming never deletes it."""
    record = _parse(line)
    step = record.get("step", 0) if record else 0
    return step if isinstance(step, (int, float)) else 0


def wall_seconds(rows: list[dict]) -> float:
    """A run's wall-clock training time from its records' ``time`` column, which restarts at 0 on every
    resume: the segments are summed."""
    total, last = 0.0, 0.0
    for row in rows:
        t = float(row.get("time", 0.0))
        if t < last:
            total += last
        last = t
    return total + last


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of ``metrics.jsonl``; damaged lines are left out."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    records = (_parse(line) for line in path.read_text(errors="replace").splitlines() if line.strip())
    return [r for r in records if r is not None]
