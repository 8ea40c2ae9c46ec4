"""Config fuzzing (hypothesis) over every registered system's config: unknown keys, wrong types,
out-of-range values and nested junk as ``key=value`` overrides on the tiny preset. Each either builds a
config with no NaN in it, or is one ConfigError line naming the key; any other exception is a traceback a
user would see, and fails the test. The CLI path is checked once per mutation kind through ``main``.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imaginate.cli import main
from imaginate.config import ConfigError, build_config
from imaginate.registry import get_system, list_systems

SYSTEMS = sorted(spec.name for spec in list_systems())


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, annotated type) of every scalar or list field of a config dataclass, nested ones included."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(kind):
            out += _leaves(kind, key + ".")
        else:
            out.append((key, kind))
    return out


def _nodes(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.append(f"{prefix}{f.name}")
            out += _nodes(hints[f.name], f"{prefix}{f.name}.")
    return out


LEAVES = {name: _leaves(get_system(name).config_cls) for name in SYSTEMS}
NODES = {name: _nodes(get_system(name).config_cls) for name in SYSTEMS}

WRONG_TYPE = {int: ["abc", "[1, 2]", "{a: 1}", "1.5"], float: ["abc", "[1, 2]", "{a: 1}"],
              bool: ["maybe", "[true]", "{a: 1}", "2"], str: ["[1, 2]", "{a: 1}"], list: ["{a: 1}"]}
OUT_OF_RANGE = ["-1", "0", "-1000000000", "1000000000000", ".nan", ".inf", "-.inf", "1e308", "-0.5", "2.5"]
JUNK = ["{x: [1, {y: z}]}", "[[[]]]", "{train: {steps: -1}}", "null"]


def _base(kind: object) -> type | None:
    origin = typing.get_origin(kind)
    if origin in (list, tuple, dict):
        return list
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return _base(args[0]) if len(args) == 1 else None
    return kind if kind in (int, float, bool, str) else None


@st.composite
def mutations(draw) -> tuple[str, str, str, str]:
    """(system, kind, key=value override, the name the error must mention)."""
    system = draw(st.sampled_from(SYSTEMS))
    kind = draw(st.sampled_from(["unknown_key", "wrong_type", "out_of_range", "nested_junk"]))
    if kind == "unknown_key":
        key, _ = draw(st.sampled_from(LEAVES[system]))
        parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
        name = draw(st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True))
        bad = f"{parent}{name}_zz"
        return system, kind, f"{bad}=1", bad
    if kind == "nested_junk":
        node = draw(st.sampled_from(NODES[system] or [LEAVES[system][0][0]]))
        return system, kind, f"{node}={draw(st.sampled_from(JUNK))}", node.rsplit(".", 1)[-1]
    key, annotated = draw(st.sampled_from(LEAVES[system]))
    base = _base(annotated)
    if kind == "wrong_type" and base in WRONG_TYPE:
        value = draw(st.sampled_from(WRONG_TYPE[base]))
    else:
        value = draw(st.sampled_from(OUT_OF_RANGE))
    return system, kind, f"{key}={value}", key.rsplit(".", 1)[-1]


def _contains_nan(node: object) -> bool:
    if dataclasses.is_dataclass(node):
        return any(_contains_nan(getattr(node, f.name)) for f in dataclasses.fields(node))
    if isinstance(node, dict):
        return any(_contains_nan(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_contains_nan(v) for v in node)
    return isinstance(node, float) and math.isnan(node)


@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_fuzzed_overrides_build_or_name_the_key(case):
    _check(case)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_many_more_fuzzed_overrides(case):
    """Not derandomized: each run tries 600 new mutations."""
    _check(case)


def _check(case) -> None:
    system, kind, override, named = case
    spec = get_system(system)
    STATS["tried"] += 1
    try:
        cfg = build_config(spec.config_cls, preset="tiny", system=system, overrides=[override])
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message.strip(), message
        if named not in message and override.split("=", 1)[0] in KNOWN_UNNAMED:
            STATS["known"] += 1  # one line, but without the key: listed in the report
            return
        assert named in message, (override, message)
        STATS["rejected"] += 1
        return
    assert kind != "unknown_key", f"{override} was accepted"
    assert not _contains_nan(cfg), f"{override} left a NaN in the config"
    STATS["accepted"] += 1


STATS = {"tried": 0, "rejected": 0, "accepted": 0, "known": 0}
# Keys whose validation message does not name the key: data.translator.gan_loss -> "GAN loss '-1' is not one
# of ..." (systems/gancraft/pseudo_gt.py calls nn.check_gan_loss in __post_init__ without adding the key).
KNOWN_UNNAMED = {"data.translator.gan_loss"}  # gancraft's pseudo_gt config


@pytest.mark.parametrize("override,named", [("train.stepz=3", "train.stepz"), ("optim.lr=abc", "lr"),
                                            ("train.batch_size=-4", "batch_size"), ("optim.lr=.nan", "lr"),
                                            ("data={x: [1, {y: z}]}", "data")])
def test_the_cli_prints_one_line_naming_the_key(override, named, tmp_path, capsys):
    assert main(["train", "classify", "--out", str(tmp_path / "r"), override]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and named in err[0], err
    assert not (tmp_path / "r").exists()  # nothing written for a rejected config


SMALL_OUT_OF_RANGE = ["-1", "0", "-0.5", "2.5", ".inf", "-.inf", "1"]  # no huge sizes: they would allocate


@st.composite
def small_mutations(draw) -> tuple[str, str]:
    system = draw(st.sampled_from([s for s in SYSTEMS if s != "charlm"]))
    key, _ = draw(st.sampled_from([leaf for leaf in LEAVES[system] if not leaf[0].startswith("train.")]))
    return system, f"{key}={draw(st.sampled_from(SMALL_OUT_OF_RANGE))}"


@pytest.mark.slow
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(small_mutations())
def test_accepted_out_of_range_values_build_or_fail_as_one_line(case):
    """A value the config accepts must also build the system (networks, data), or fail as a ConfigError /
    DataError / CheckpointError (one line from the CLI): never another exception."""
    import torch

    from imaginate.data import DataError
    from imaginate.engine import CheckpointError
    from imaginate.engine.distributed import DistEnv
    from imaginate.engine.loop import build_system

    system, override = case
    spec = get_system(system)
    try:
        cfg = build_config(spec.config_cls, preset="tiny", system=system, overrides=[override, "train.device=cpu"])
    except ConfigError:
        return
    try:
        build_system(spec, cfg, DistEnv(0, 1, 0, torch.device("cpu")))
    except (ConfigError, DataError, CheckpointError):  # the CLI prints each of these as one line
        pass


def test_fuzz_counts_are_recorded(record_property):
    """Runs after the fuzz test (file order): hands its counts to benchmarks/reliability.py."""
    if STATS["tried"]:
        record_property("category", "config_fuzz")
        for key, value in STATS.items():
            record_property(f"fuzz_{key}", value)
