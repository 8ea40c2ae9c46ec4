"""Typed run configuration: dataclasses are the source of truth, YAML presets and ``key=value`` overrides
are merged onto them with OmegaConf, and every mistake becomes one :class:`ConfigError` line naming the key.

A system's config is a dataclass whose fields are nested dataclasses (``train``, ``data``, ``model``,
``optim``...). ``train`` is always a :class:`TrainConfig`: the engine's own settings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    ConfigTypeError,
    GrammarParseError,
    OmegaConfBaseException,
    ValidationError,
)

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"

T = TypeVar("T")


class ConfigError(ValueError):
    """A wrong key, type, value or preset. The message is one line that names the key."""


@dataclass
class TrainConfig:
    """Settings of the engine's training loop, shared by every system.

    Args:
        steps: optimisation steps (each step is one call to the system's ``train_step``).
        batch_size: global batch size, split evenly over ranks under torchrun.
        grad_accum: micro-batches per step; each rank's share of the batch is split into this many.
        amp: mixed precision (bf16 autocast on CPU, fp16 with a gradient scaler on CUDA).
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N".
        seed: seeds weights, data order and every random draw of the run.
        log_every / eval_every / ckpt_every / sample_every: cadence in steps; 0 disables (the end of
            the run always evaluates, checkpoints and samples).
        num_threads: torch intra-op threads per process; 0 keeps torch's default.
        keep_checkpoints: how many step checkpoints to keep on disk (the newest ones).
        stop_on_nonfinite: stop with an error naming the step when a loss turns NaN/inf (before the
            optimizer step) or a checkpoint would hold NaN/inf weights; the last good checkpoint stays.
        sync_batchnorm: under torchrun, batch-norm statistics are computed over the global batch (all
            ranks), so N processes train like one; no effect in one process or without batch norm.
    """

    steps: int = 1000
    batch_size: int = 64
    grad_accum: int = 1
    amp: bool = False
    device: str = "auto"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    ckpt_every: int = 0
    sample_every: int = 0
    num_threads: int = 0
    keep_checkpoints: int = 2
    stop_on_nonfinite: bool = True
    sync_batchnorm: bool = True

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "keep_checkpoints": self.keep_checkpoints}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"train.{name}: must be >= 1, got {value}")
        for name in ("log_every", "eval_every", "ckpt_every", "sample_every", "num_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}: must be >= 0 (0 disables), got {getattr(self, name)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"train.device: '{self.device}' is not one of auto, cpu, cuda, cuda:N")


@dataclass
class GANOptimConfig:
    """Adam for a generator and a discriminator (two learning rates, shared betas); systems subclass it
    to change the defaults.

    Args:
        lr_g / lr_d: learning rates of G and D (> 0).
        beta1 / beta2: Adam's betas, in [0, 1).
    """

    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.999

    def __post_init__(self) -> None:
        for key in ("lr_g", "lr_d"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"optim.{key}: must be > 0, got {getattr(self, key)}")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"optim.{key}: must be in [0, 1), got {getattr(self, key)}")


def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise a ConfigError naming ``key`` when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(allowed)}")


def available_presets(system: str) -> list[str]:
    folder = CONFIG_ROOT / system
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _fields_of(node: Any, path: list[str]) -> list[str]:
    """The keys allowed at ``path`` inside a structured config (for error messages)."""
    for key in path:
        node = node[key]
    return list(node.keys()) if OmegaConf.is_dict(node) else []


def _explain(exc: OmegaConfBaseException, schema: Any) -> str:
    key = getattr(exc, "full_key", None) or ""
    msg = str(exc).splitlines()[0]
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)):
        parent = key.split(".")[:-1]
        try:
            allowed = _fields_of(schema, parent)
        except Exception:  # the parent itself is unknown: keep OmegaConf's message
            allowed = []
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"{key}: unknown key{hint}"
    if isinstance(exc, (ValidationError, ConfigTypeError)):
        return f"{key}: {msg}" if key else msg
    if isinstance(exc, GrammarParseError):
        return f"cannot parse override: {msg}"
    return f"{key}: {msg}" if key else msg


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not key=value (e.g. train.steps=100)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if raw.strip().lower() in ("null", "none", "~"):
        value = None
    return key, value


def _read_yaml(path: Path) -> Any:
    """A YAML file's contents; an unreadable or malformed file is a ConfigError naming it and the line."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({type(exc).__name__})") from None


def build_config(schema_cls: type[T], *, preset: str | None, system: str, overrides: list[str] = (),
                 preset_file: Path | None = None, base: T | None = None) -> T:
    """Merge ``configs/<system>/<preset>.yaml`` (or ``preset_file``) and overrides onto ``schema_cls``
    (or onto ``base``, a config already built, e.g. the one a run saved).

    Raises:
        ConfigError: one line naming the key for an unknown key, wrong type, impossible value or preset.
    """
    schema = OmegaConf.structured(schema_cls if base is None else base)
    if preset_file is None and preset is not None:
        preset_file = CONFIG_ROOT / system / f"{preset}.yaml"
        if not preset_file.is_file():
            allowed = ", ".join(available_presets(system)) or "none"
            raise ConfigError(f"--preset: '{preset}' is not a preset of {system} (allowed: {allowed})")
    try:
        merged = schema
        if preset_file is not None:
            loaded = _read_yaml(preset_file)
            if not isinstance(loaded, dict):
                raise ConfigError(f"{preset_file}: a preset must be a YAML mapping")
            merged = OmegaConf.merge(merged, loaded)
        for text in overrides:
            key, value = _parse_override(text)
            OmegaConf.update(merged, key, value, merge=True, force_add=False)
        built = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(_explain(exc, schema)) from None
    except (ValueError, TypeError) as exc:  # raised by a dataclass __post_init__
        raise ConfigError(str(exc).splitlines()[0]) from None
    _reject_nan(built, "")
    return built


def _reject_nan(node: Any, prefix: str) -> None:
    """No config value may be NaN (``x < 0`` checks let NaN through; nothing wants it): a ConfigError naming
    the key otherwise."""
    if is_dataclass(node):
        for f in fields(node):
            _reject_nan(getattr(node, f.name), f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(node, dict):
        for key, value in node.items():
            _reject_nan(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _reject_nan(value, f"{prefix}[{i}]")
    elif isinstance(node, float) and math.isnan(node):
        raise ConfigError(f"{prefix}: must be a number, got nan")


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


_SAVED_HEADER = re.compile(r"# imaginate run config: (\d+) lines below")


def saved_config_text(cfg: Any) -> str:
    """The text of a run's ``config.yaml``: the resolved config under a first line that counts the lines,
    so that a file cut short (a crash, a full disk, a bad copy) is told apart from one a user edited."""
    body = to_yaml(cfg)
    return f"# imaginate run config: {len(body.splitlines())} lines below\n{body}"


def load_saved_config(schema_cls: type[T], path: Path) -> T:
    """Read the resolved config a run saved next to its checkpoints (see ``saved_config_text``)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no saved config (is this a run directory?)")
    try:
        first, _, rest = path.read_text().partition("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({type(exc).__name__})") from None
    header = _SAVED_HEADER.fullmatch(first.strip())
    if header and len(rest.splitlines()) < int(header.group(1)):
        raise ConfigError(f"{path}: cut short ({len(rest.splitlines())} of {header.group(1)} lines; a damaged run config)")
    loaded = _read_yaml(path)
    if not isinstance(loaded, dict) or not loaded:
        raise ConfigError(f"{path}: empty or not a YAML mapping of config keys (a damaged run config)")
    try:
        return build_config(schema_cls, preset=None, system="", preset_file=path)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if str(path) in message else f"{path}: {message}") from None

