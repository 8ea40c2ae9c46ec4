"""Systems by name. A system registers its config dataclass, its class and (optionally) its demo.

Registration happens when ``imaginate.systems`` is imported; a second system under the same name raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imaginate.config import ConfigError, available_presets


@dataclass(frozen=True)
class SystemSpec:
    name: str
    config_cls: type
    system_cls: type
    summary: str
    demo: Callable[..., Any] | None = None  # demo(out_dir: Path) -> imaginate.report.ReportPart

    @property
    def presets(self) -> list[str]:
        return available_presets(self.name)


_SYSTEMS: dict[str, SystemSpec] = {}


def register_system(name: str, config_cls: type, system_cls: type, summary: str,
                    demo: Callable[..., Any] | None = None) -> SystemSpec:
    if name in _SYSTEMS:
        raise ValueError(f"system '{name}' is already registered")
    spec = SystemSpec(name, config_cls, system_cls, summary, demo)
    _SYSTEMS[name] = spec
    return spec


def _load_all() -> None:
    import imaginate.systems  # noqa: F401  (registers every system)


def get_system(name: str) -> SystemSpec:
    _load_all()
    if name not in _SYSTEMS:
        raise ConfigError(f"system '{name}' is unknown (allowed: {', '.join(sorted(_SYSTEMS))})")
    return _SYSTEMS[name]


def list_systems() -> list[SystemSpec]:
    _load_all()
    return [_SYSTEMS[k] for k in sorted(_SYSTEMS)]
