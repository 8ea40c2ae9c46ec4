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
        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

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


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
