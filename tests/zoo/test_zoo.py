"""The model zoo: registry entries agree with their files, weights reproduce their recorded metrics,
``zoo:NAME`` resolves where run folders are taken, and a missing or altered file is one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from imaginate import zoo
from imaginate.cli import main

ROOT = Path(__file__).resolve().parents[2]
TRAINED = zoo.list_entries(trained_only=True)


def _train_zoo_module():
    spec = importlib.util.spec_from_file_location("train_zoo", ROOT / "scripts" / "train_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def private_zoo(tmp_path, monkeypatch):
    """A copy of the zoo's folders under tmp_path (entries, weights, curves) the test may alter."""
    for name in ("entries", "weights", "curves"):
        src = getattr(zoo, f"{name.upper()}_DIR")
        dst = tmp_path / name
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.mkdir()
        monkeypatch.setattr(zoo, f"{name.upper()}_DIR", dst)
    return tmp_path


def test_there_are_trained_entries_and_every_entry_file_parses():
    entries = zoo.list_entries()
    assert TRAINED, "no trained zoo entry"
    assert len({e.name for e in entries}) == len(entries)


@pytest.mark.parametrize("entry", TRAINED, ids=lambda e: e.name)
def test_entry_agrees_with_its_files(entry):
    path = zoo.verify(entry)  # sha256 and size
    assert path.stat().st_size <= zoo.MAX_FILE_BYTES
    assert zoo.file_shapes(path) == entry.shapes
    from imaginate.registry import get_system

    spec = get_system(entry.system)
    cfg = zoo.entry_config(entry, spec)
    assert cfg.train.steps == entry.steps
    assert entry.curves_path.is_file() and zoo.read_curves(entry)
    assert entry.metrics and all(math.isfinite(v) for v in entry.metrics.values())


def test_all_weights_together_fit_the_budget():
    total = sum(e.weights_path.stat().st_size for e in TRAINED)
    assert total <= zoo.MAX_TOTAL_BYTES


def _reproduce(entry):
    # as scripts/train_zoo.py measured them: a fresh process with torch's AVX2 kernels on x86-64
    _, _, _, step = zoo.load_zoo(entry.name, device="cpu")
    assert step == entry.steps
    got, _ = zoo.evaluate_entry(entry.name, entry.threads or 1)
    assert set(got) == set(entry.metrics)
    for key, want in entry.metrics.items():
        assert got[key] == pytest.approx(want, rel=1e-3, abs=1e-5), key


FAST = [e for e in TRAINED if (e.eval_seconds or 1e9) < 20]
SLOW = [e for e in TRAINED if e not in FAST]


@pytest.mark.parametrize("entry", FAST, ids=lambda e: e.name)
def test_weights_reproduce_the_recorded_metrics(entry):
    _reproduce(entry)


@pytest.mark.slow
@pytest.mark.parametrize("entry", SLOW, ids=lambda e: e.name)
def test_weights_reproduce_the_recorded_metrics_slow(entry):
    _reproduce(entry)


def test_zoo_list_show_verify(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for e in zoo.list_entries():
        assert f"zoo:{e.name}" in out
    name = TRAINED[0].name
    assert main(["zoo", "verify", f"zoo:{name}"]) == 0
    assert main(["zoo", "show", name]) == 0
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert shown["sha256"] == TRAINED[0].sha256 and shown["command"].startswith("imaginate train ")


def test_unknown_name_is_one_line_exit_2(capsys):
    assert main(["eval", "zoo:no_such_entry"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "zoo:no_such_entry" in err and "no such zoo entry" in err


def test_missing_weights_file_is_one_line_exit_2(private_zoo, capsys):
    entry = TRAINED[0]
    entry.weights_path.unlink()  # the private copy
    assert main(["eval", f"zoo:{entry.name}", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{entry.name}.safetensors" in err and "missing" in err


def test_altered_weights_file_is_refused_before_loading(private_zoo, capsys):
    entry = zoo.get_entry(TRAINED[0].name)
    data = bytearray(entry.weights_path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor: same size, different content
    entry.weights_path.write_bytes(bytes(data))
    assert main(["zoo", "verify", entry.name]) == 2
    assert main(["eval", f"zoo:{entry.name}", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("differs from the registry" in line and entry.name in line for line in err)


def test_damaged_entry_file_is_one_line(private_zoo, capsys):
    name = TRAINED[0].name
    (zoo.ENTRIES_DIR / f"{name}.json").write_text('{"name": "x"')
    assert main(["eval", f"zoo:{name}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{name}.json" in err


def _classify_entry(name: str, steps: int) -> zoo.ZooEntry:
    entry = zoo.ZooEntry(name=name, system="classify", summary="test entry",
                         recipe={"preset": "tiny", "threads": 1,
                                 "overrides": ["data.name=digits", "model.name=mlp", f"train.steps={steps}",
                                               "train.eval_every=0", "train.log_every=5", "train.seed=3"]})
    entry.write()
    return entry


def test_train_zoo_makes_an_entry_that_reproduces_itself(private_zoo, tmp_path):
    """The reproduction path end to end on a 30-step classify run: train, export, record, reload, re-measure."""
    tz = _train_zoo_module()
    _classify_entry("t_classify", 30)
    made = tz.make("t_classify", None, tmp_path / "runs")
    entry = zoo.get_entry("t_classify")
    assert entry.sha256 == made.sha256 == zoo.sha256_file(entry.weights_path)
    assert entry.steps == 30 and entry.cpu_seconds > 0 and entry.metrics["test_acc"] > 0.3
    assert entry.config["train"]["steps"] == 30 and zoo.read_curves(entry)
    _reproduce(entry)
    # The trained run's own evaluation equals the zoo's: the round trip loses nothing.
    from imaginate.engine import evaluate_run

    assert evaluate_run(tmp_path / "runs" / "t_classify", device="cpu") == pytest.approx(entry.metrics, rel=1e-6)
    # Adopting a run trained with another config is refused, naming the differing key.
    _classify_entry("t_other", 40)
    assert tz.main(["t_other", "--from-run", str(tmp_path / "runs" / "t_classify")]) == 2


def test_zoo_weights_serve_as_init_from(private_zoo, tmp_path):
    """lns_madam's init_from takes zoo:NAME and starts from exactly those weights."""
    from imaginate.config import build_config
    from imaginate.engine.distributed import DistEnv
    from imaginate.engine.loop import build_system
    from imaginate.registry import get_system

    tz = _train_zoo_module()
    _classify_entry("t_init", 20)
    tz.make("t_init", None, tmp_path / "runs")
    spec = get_system("lns_madam")
    cfg = build_config(spec.config_cls, preset="tiny", system="lns_madam",
                       overrides=["data.name=digits", "model.name=mlp", "init_from=zoo:t_init", "quant.enabled=false",
                                  "optim.name=madam"])
    system = build_system(spec, cfg, DistEnv(0, 1, 0, torch.device("cpu")))
    from safetensors.torch import load_file

    want = load_file(str(zoo.get_entry("t_init").weights_path))
    got = {f"classifier.{k}": v for k, v in system.modules["classifier"].state_dict().items()}
    shared = [k for k in want if k in got]
    assert shared and all(torch.equal(got[k].float(), want[k].float()) for k in shared)


def test_evaluation_env_pins_avx2_and_empties_only_the_data_caches(tmp_path, monkeypatch):
    import platform

    from torch.utils.cpp_extension import get_default_build_root

    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    warm, cold = zoo.child_env(), zoo.child_env(str(tmp_path))
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert warm == zoo.BASELINE_ISA and warm["ATEN_CPU_CAPABILITY"] == "avx2"
    assert "XDG_CACHE_HOME" not in warm and cold["XDG_CACHE_HOME"] == str(tmp_path)
    # the compiled kernels stay where they are (else a cold evaluation would time their ~40 s build)
    assert cold["TORCH_EXTENSIONS_DIR"] == get_default_build_root()
    assert not cold["TORCH_EXTENSIONS_DIR"].startswith(str(tmp_path))
