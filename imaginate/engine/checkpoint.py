"""Atomic checkpoints that load without unpickling code, RNG capture, and safetensors export."""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CKPT_PATTERN = re.compile(r"step_(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt or does not match the system."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    folder = run_dir / "checkpoints"
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = CKPT_PATTERN.search(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_partial_checkpoints(run_dir: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a crash interrupted (``.step_XXXXXXXX.pt.*``,
    never renamed into place, so never a checkpoint); returns what was removed."""
    folder = run_dir / "checkpoints"
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".step_") and re.match(r"\.step_\d{8}\.pt\.", p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    for _, p in list_checkpoints(run_dir)[:-keep]:
        p.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True`` (no code is unpickled); a corrupt file raises CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None


def newest_readable_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any], list[str]] | None:
    """The newest checkpoint of ``run_dir`` that loads, with the reasons the newer ones were skipped.

    A crash or a full disk can leave the newest file truncated while an intact older one sits beside it;
    resuming continues from the older one and says which were skipped. None when there is no checkpoint.

    Raises:
        CheckpointError: checkpoints exist but none is readable (the message lists each one's problem).
    """
    found = list_checkpoints(run_dir)
    if not found:
        return None
    skipped: list[str] = []
    for _, path in reversed(found):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:
            skipped.append(str(exc))
            continue
        if not isinstance(ckpt, dict) or "step" not in ckpt or "modules" not in ckpt:
            skipped.append(f"{path}: not a training checkpoint (no step or modules)")
            continue
        return path, ckpt, skipped
    raise CheckpointError(f"{run_dir / 'checkpoints'}: no readable checkpoint ({'; '.join(skipped)})")


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``atomic_torch_save`` with a disk-full or permission failure turned into a CheckpointError; the
    previous checkpoints stay intact because the new file only replaces its name once fully written."""
    try:
        atomic_torch_save(state, path)
    except OSError as exc:
        raise CheckpointError(f"{path}: could not write checkpoint ({exc.strerror or exc}); "
                              "the previous checkpoints are intact") from None


def export_safetensors(modules: dict[str, torch.nn.Module], path: Path, metadata: dict[str, str]) -> None:
    """All modules' state dicts flattened to ``<module>.<key>`` in one safetensors file (atomic)."""
    from safetensors.torch import save_file

    tensors = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().clone()  # clone: no shared storage
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
