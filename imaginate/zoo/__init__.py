"""The model zoo: weights the project trained itself, with the record of how (issue #20).

One entry per file, ``imaginate/zoo/entries/NAME.json``; its weights are ``weights/NAME.safetensors`` and its
training curves ``curves/NAME.jsonl``. An entry holds its *recipe* (preset, overrides, threads: the exact
``imaginate train`` command) and what ``scripts/train_zoo.py`` recorded when it made the file: steps, CPU and
wall seconds, sha256, bytes, tensor shapes, the full config and the metrics the system's own evaluation gives
on the weights *as loaded from the zoo file*. Nothing in an entry but the recipe is typed by hand.

Everywhere a run folder is accepted, ``zoo:NAME`` is accepted too: ``engine.load_run`` hands such names to
:func:`load_zoo`, and ``init_from``-style options call :func:`zoo_weights_file`. The file is checked against
its recorded sha256 before anything is loaded; a missing or altered file is one line naming it (exit 2).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaginate.config import ConfigError
from imaginate.metrics.feature_net import sha256_of_file as sha256_file  # one home for file digests

ZOO_DIR = Path(__file__).resolve().parent
ENTRIES_DIR = ZOO_DIR / "entries"
WEIGHTS_DIR = ZOO_DIR / "weights"
CURVES_DIR = ZOO_DIR / "curves"
PREFIX = "zoo:"
MAX_FILE_BYTES = 10 * 2**20  # per entry (issue #20: aim ≤ 10 MB each, ≤ 60 MB in all)
MAX_TOTAL_BYTES = 60 * 2**20
DTYPES = ("float32", "float16", "bfloat16")


class ZooError(ConfigError):
    """A zoo name is unknown, or its weights file is missing or differs from the registry (exit 2)."""


@dataclass
class ZooEntry:
    name: str
    system: str
    summary: str
    recipe: dict[str, Any]
    modules: list[str] | None = None
    dtype: str = "float32"
    # Recorded by scripts/train_zoo.py:
    steps: int | None = None
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    threads: int | None = None
    sha256: str | None = None
    bytes: int | None = None
    shapes: dict[str, list[int]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    eval_seconds: float | None = None
    made_with: dict[str, str] = field(default_factory=dict)

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"

    @property
    def curves_path(self) -> Path:
        return CURVES_DIR / f"{self.name}.jsonl"

    @property
    def entry_path(self) -> Path:
        return ENTRIES_DIR / f"{self.name}.json"

    @property
    def trained(self) -> bool:
        return self.sha256 is not None

    @property
    def command(self) -> str:
        """The ``imaginate train`` command that made the weights (``--out`` aside)."""
        parts = ["imaginate", "train", self.system, "--preset", str(self.recipe.get("preset", "tiny"))]
        return shlex.join(parts + [str(o) for o in self.recipe.get("overrides", [])])

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def write(self) -> None:
        """Write the entry file: one key per line, the small records indented, shapes and config on one line."""
        lines = []
        for key, value in self.to_json().items():
            compact = key in ("shapes", "config")
            text = json.dumps(value) if compact else json.dumps(value, indent=1).replace("\n", "\n ")
            lines.append(f" {json.dumps(key)}: {text}")
        self.entry_path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def _read_entry(path: Path) -> ZooEntry:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZooError(f"{path}: not a readable zoo entry ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ZooError(f"{path}: a zoo entry must be a JSON object")
    for key in ("name", "system", "summary", "recipe"):
        if key not in raw:
            raise ZooError(f"{path}: missing key '{key}'")
    unknown = set(raw) - set(ZooEntry.__dataclass_fields__)
    if unknown:
        raise ZooError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    entry = ZooEntry(**raw)
    if entry.name != path.stem:
        raise ZooError(f"{path}: 'name' is {entry.name!r}, expected the file's stem {path.stem!r}")
    if not isinstance(entry.recipe, dict) or not isinstance(entry.recipe.get("overrides", []), list):
        raise ZooError(f"{path}: 'recipe' must be an object with 'preset' and a list of 'overrides'")
    if entry.dtype not in DTYPES:
        raise ZooError(f"{path}: 'dtype' must be one of {', '.join(DTYPES)}, got {entry.dtype!r}")
    return entry


def list_entries(trained_only: bool = False) -> list[ZooEntry]:
    entries = [_read_entry(p) for p in sorted(ENTRIES_DIR.glob("*.json"))]
    return [e for e in entries if e.trained] if trained_only else entries


def get_entry(name: str) -> ZooEntry:
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    path = ENTRIES_DIR / f"{name}.json"
    if not name or "/" in name or not path.is_file():
        known = ", ".join(e.name for e in list_entries()) or "none"
        raise ZooError(f"zoo:{name}: no such zoo entry (known: {known}; `imaginate zoo list`)")
    return _read_entry(path)


def is_zoo_ref(value: object) -> bool:
    return isinstance(value, str | Path) and str(value).startswith(PREFIX)


def verify(entry: ZooEntry) -> Path:
    """The entry's weights file after checking it exists and its sha256 matches the registry."""
    path = entry.weights_path
    if not entry.trained:
        raise ZooError(f"zoo:{entry.name}: not trained yet (run scripts/train_zoo.py {entry.name})")
    if not path.is_file():
        raise ZooError(f"{path}: weights file of zoo:{entry.name} is missing")
    if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
        raise ZooError(f"{path}: weights file of zoo:{entry.name} differs from the registry (sha256 mismatch; "
                       f"restore it with git or re-make it with scripts/train_zoo.py {entry.name})")
    return path


def file_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header (no tensor data read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}


def zoo_weights_file(ref: str) -> Path:
    """``zoo:NAME`` -> its verified weights file (for ``init_from``-style options)."""
    return verify(get_entry(ref))


def entry_config(entry: ZooEntry, spec: Any) -> Any:
    """The entry's recorded config as the system's config dataclass (validated as a run's saved config is)."""
    from omegaconf import OmegaConf

    if not entry.config:
        raise ZooError(f"{entry.entry_path}: has no recorded config (run scripts/train_zoo.py {entry.name})")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(spec.config_cls), OmegaConf.create(entry.config))
        return OmegaConf.to_object(merged)
    except Exception as exc:  # OmegaConf's several error types, or a __post_init__ ConfigError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ZooError(f"{entry.entry_path}: recorded config does not fit system '{spec.name}' ({first})") from None


def load_state_into(system: Any, tensors: dict[str, Any], source: Path) -> list[str]:
    """Load ``<module>.<key>`` tensors into the system's modules; returns the modules that were loaded.

    Every module named in the file must take its weights completely (strict); modules absent from the file
    keep their initialisation. Weights are cast to each parameter's dtype.
    """
    from imaginate.engine.checkpoint import CheckpointError
    from imaginate.engine.system import unwrap

    by_module: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        module, _, rest = key.partition(".")
        by_module.setdefault(module, {})[rest] = value
    unknown = set(by_module) - set(system.modules)
    if unknown:
        raise CheckpointError(f"{source}: holds weights for modules this system lacks ({', '.join(sorted(unknown))})")
    for name, state in by_module.items():
        module = unwrap(system.modules[name])
        own = module.state_dict()
        state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v for k, v in state.items()}
        try:
            module.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as exc:
            lines = str(exc).strip().splitlines()
            detail = lines[1].strip() if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
            raise CheckpointError(f"{source}: weights of module '{name}' do not fit ({detail})") from None
    return sorted(by_module)


def load_zoo(name: str, device: str = "auto") -> tuple[Any, Any, Any, int]:
    """Build the entry's system from its recorded config and load its verified weights.

    Returns the same ``(spec, cfg, system, step)`` tuple as :func:`imaginate.engine.load_run`.
    """
    from safetensors.torch import load_file

    from imaginate.engine.distributed import DistEnv, resolve_device
    from imaginate.engine.loop import build_system
    from imaginate.registry import get_system

    entry = get_entry(name)
    path = verify(entry)
    spec = get_system(entry.system)
    cfg = entry_config(entry, spec)
    cfg.train.device = device
    env = DistEnv(0, 1, 0, resolve_device(device))
    system = build_system(spec, cfg, env, source=entry.entry_path)
    load_state_into(system, load_file(str(path)), path)
    return spec, cfg, system, int(entry.steps or 0)


def read_curves(entry: ZooEntry) -> list[dict[str, Any]]:
    """The entry's logged scalars (``metrics.jsonl`` rows of its training run, subsampled)."""
    path = entry.curves_path
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _evaluate_here(name: str, threads: int, dirs: tuple[str, str, str]) -> tuple[dict[str, float], float]:
    import time

    import torch

    from imaginate.engine.loop import _evaluate

    global ENTRIES_DIR, WEIGHTS_DIR, CURVES_DIR
    ENTRIES_DIR, WEIGHTS_DIR, CURVES_DIR = (Path(d) for d in dirs)  # the parent's (a test's private copy)
    torch.set_num_threads(threads)
    _, cfg, system, _ = load_zoo(name, device="cpu")
    start = time.perf_counter()
    metrics = _evaluate(system, cfg.train.seed)
    return {k: float(v) for k, v in metrics.items()}, time.perf_counter() - start


# On x86-64 the recorded metrics are measured with torch's and oneDNN's AVX2 kernels, which every machine of
# this project's kind has: an evaluation that trains networks (COCO-FUNIT's species classifier and mask net)
# ends with other networks under AVX-512's rounding (PAcc 0.135 instead of 0.10 for the same weights).
BASELINE_ISA = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def child_env(cold_cache_dir: str | None = None) -> dict[str, str]:
    """The environment variables an evaluation process gets: ``BASELINE_ISA`` on x86-64, and with
    ``cold_cache_dir`` an empty cache home (``XDG_CACHE_HOME``: no cached proposals), torch's C++ extensions
    staying where they were built (``TORCH_EXTENSIONS_DIR``)."""
    import os
    import platform

    env = dict(BASELINE_ISA) if platform.machine().lower() in ("x86_64", "amd64") else {}
    if cold_cache_dir is not None:
        from torch.utils.cpp_extension import get_default_build_root

        env["TORCH_EXTENSIONS_DIR"] = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
        env["XDG_CACHE_HOME"] = cold_cache_dir
    return env


def evaluate_entry(name: str, threads: int = 1, cold_caches: bool = False) -> tuple[dict[str, float], float]:
    """The system's own evaluation of ``zoo:NAME`` as loaded from its file, and its seconds, in a fresh process.

    Fresh, because a process that has just trained keeps evaluation helpers in memory (COCO-FUNIT's species
    classifier and mask net take minutes to train): its timing would say seconds where a user waits minutes,
    and ``eval_seconds`` decides which entries the fast test suite re-measures. On x86-64 the process runs
    torch's AVX2 kernels (``BASELINE_ISA``), so the metrics reproduce on any such machine, AVX-512 or not.
    ``cold_caches``: the process starts from an empty disk cache (what ``scripts/train_zoo.py`` records: a
    fresh clone's cost, e.g. the detectors' proposals computed, not read).
    """
    import multiprocessing
    import os
    import tempfile

    dirs = (str(ENTRIES_DIR), str(WEIGHTS_DIR), str(CURVES_DIR))
    with tempfile.TemporaryDirectory(prefix="zoo-eval-cache-") as cold:
        env = child_env(cold if cold_caches else None)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the spawned child reads them when it imports torch
        try:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                return pool.apply(_evaluate_here, (name, threads, dirs))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


__all__ = ["ZooEntry", "ZooError", "child_env", "evaluate_entry", "file_shapes", "get_entry", "is_zoo_ref", "list_entries", "load_zoo",
           "read_curves", "sha256_file", "verify", "zoo_weights_file"]
