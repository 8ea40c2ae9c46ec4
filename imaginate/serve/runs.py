"""The runs folder as the app sees it: finished runs per system, looked up by an id, never by a client's path.

A run folder is one that holds ``run.json`` (written by ``imaginate train`` / ``imaginate demo``); it is
*finished* when training exported ``final.safetensors`` and a checkpoint is there to rebuild it from.
The app lists the finished runs of each system (newest first, by the time ``final.safetensors`` was
written) and hands the browser their ids: the path relative to the runs folder. A request names a run
by id; :meth:`RunCatalog.resolve` only answers with a folder it found itself by walking the runs folder,
so a crafted id (``../../etc``, an absolute path) never reaches ``open``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MAX_DEPTH = 4  # runs/<group>/<system>/<name>/run.json is the deepest layout the project writes


class RunNotFound(Exception):
    """The run id is not one the catalog listed (a message for the page)."""


@dataclass(frozen=True)
class RunInfo:
    """One finished run.

    Args:
        system: the system name from ``run.json``.
        path: the run folder (absolute).
        run_id: ``path`` relative to the runs folder, with ``/`` separators (what the browser sees).
        finished_at: modification time of ``final.safetensors`` (seconds since the epoch).
        preset: the preset from ``run.json`` (None for demo runs built from overrides).
    """

    system: str
    path: Path
    run_id: str
    finished_at: float
    preset: str | None
    zoo: str | None = None  # a zoo entry's name: ``path`` is then ``zoo:NAME``, which load_run accepts

    @property
    def label(self) -> str:
        if self.zoo is not None:
            return f"{self.run_id}  (project-trained weights)"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.finished_at))
        return f"{self.run_id}  ({when})"

    def metrics_rows(self) -> list[dict]:
        """The run's ``metrics.jsonl`` records (a zoo entry's recorded training curves)."""
        from imaginate.engine.logging import read_metrics

        if self.zoo is not None:
            from imaginate.zoo import get_entry, read_curves

            return read_curves(get_entry(self.zoo))
        return read_metrics(self.path)

    def config_text(self) -> str:
        """The run's saved ``config.yaml`` (a zoo entry's recorded config); "" when there is none."""
        if self.zoo is not None:
            import yaml

            from imaginate.zoo import get_entry

            return yaml.safe_dump(get_entry(self.zoo).config, sort_keys=False)
        path = self.path / "config.yaml"
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def _read_info(run_json: Path) -> dict | None:
    try:
        info = json.loads(run_json.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("system"), str) else None


def _has_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / "checkpoints"
    return folder.is_dir() and any(p.suffix == ".pt" for p in folder.iterdir())


def find_runs(runs_dir: Path) -> dict[str, list[RunInfo]]:
    """Finished runs under ``runs_dir`` by system, newest first (symlinks are not followed)."""
    root = Path(runs_dir).resolve()
    found: dict[str, list[RunInfo]] = {}
    if not root.is_dir():
        return found
    for folder, dirs, files in os.walk(root, followlinks=False):
        depth = len(Path(folder).relative_to(root).parts)
        if depth >= MAX_DEPTH:
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("checkpoints", "samples", "tb"))
        if "run.json" not in files:
            continue
        run_dir = Path(folder)
        final = run_dir / "final.safetensors"
        if not final.is_file() or not _has_checkpoint(run_dir):
            continue
        info = _read_info(run_dir / "run.json")
        if info is None:
            continue
        run_id = run_dir.relative_to(root).as_posix()
        preset = info.get("preset") if isinstance(info.get("preset"), str) else None
        found.setdefault(info["system"], []).append(
            RunInfo(info["system"], run_dir, run_id, final.stat().st_mtime, preset))
    for runs in found.values():
        runs.sort(key=lambda r: (-r.finished_at, r.run_id))
    return found


def zoo_runs() -> dict[str, list[RunInfo]]:
    """The trained zoo entries by system, as runs the app can pick (ids ``zoo:NAME``)."""
    from imaginate.zoo import ZooError, list_entries

    found: dict[str, list[RunInfo]] = {}
    try:
        entries = list_entries(trained_only=True)
    except ZooError:  # a damaged entry file: the app still serves the runs folder
        return found
    for e in entries:
        ref = f"zoo:{e.name}"
        found.setdefault(e.system, []).append(RunInfo(e.system, Path(ref), ref, 0.0, e.recipe.get("preset"), e.name))
    return found


class RunCatalog:
    """The finished runs of one runs folder, re-scanned on :meth:`refresh` (thread-safe)."""

    def __init__(self, runs_dir: Path, include_zoo: bool = True) -> None:
        self.runs_dir = Path(runs_dir).resolve()
        self.include_zoo = include_zoo  # the project-trained weights (zoo:NAME) after the folder's runs
        self._lock = threading.Lock()
        self._runs: dict[str, list[RunInfo]] = {}
        self.refresh()

    def refresh(self) -> dict[str, list[RunInfo]]:
        runs = find_runs(self.runs_dir)
        for system, entries in (zoo_runs() if self.include_zoo else {}).items():  # after the folder's own runs
            runs.setdefault(system, []).extend(entries)
        with self._lock:
            self._runs = runs
        return runs

    def runs(self, system: str) -> list[RunInfo]:
        with self._lock:
            return list(self._runs.get(system, []))

    def all_runs(self) -> list[RunInfo]:
        with self._lock:
            return sorted((r for runs in self._runs.values() for r in runs), key=lambda r: -r.finished_at)

    def newest(self, system: str) -> RunInfo | None:
        runs = self.runs(system)
        return runs[0] if runs else None

    def choices(self, system: str) -> list[tuple[str, str]]:
        """``(label, run id)`` pairs for a dropdown, newest first."""
        return [(r.label, r.run_id) for r in self.runs(system)]

    def resolve(self, system: str | None, run_id: str | None) -> RunInfo:
        """The listed run with this id (of ``system`` when given; the newest of ``system`` when the id is empty).

        Raises:
            RunNotFound: the id is not a listed run of that system (the message names no path on the server).
        """
        if not run_id:
            if system is None or self.newest(system) is None:
                raise RunNotFound(f"no finished {system or ''} run in the runs folder: train one first".replace("  ", " "))
            return self.newest(system)  # type: ignore[return-value]
        pool = self.runs(system) if system else self.all_runs()
        for run in pool:
            if run.run_id == run_id:
                return run
        self.refresh()  # a run may have finished since the page was drawn
        pool = self.runs(system) if system else self.all_runs()
        for run in pool:
            if run.run_id == run_id:
                return run
        shown = run_id if len(run_id) <= 80 and run_id.isprintable() else "(unprintable)"
        raise RunNotFound(f"run '{shown}' is not a finished {system or ''} run of the runs folder".replace("  ", " "))
