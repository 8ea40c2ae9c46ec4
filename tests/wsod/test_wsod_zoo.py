"""The wsod zoo entries in use: the demo part on zoo weights (no training) and ``train.init_from=zoo:NAME``."""

from __future__ import annotations

import importlib
import shutil

import pytest
import torch
from safetensors.torch import load_file

from imaginate import zoo
from imaginate.cli import main
from imaginate.config import ConfigError, build_config
from imaginate.engine.distributed import DistEnv
from imaginate.engine.loop import build_system
from imaginate.registry import get_system

wsod_demo = importlib.import_module("imaginate.systems.wsod.demo")  # the package exports the function `demo`


def _tiny_system(overrides: list[str]):
    spec = get_system("wsod")
    cfg = build_config(spec.config_cls, preset="tiny", system="wsod", overrides=["train.device=cpu", *overrides])
    return build_system(spec, cfg, DistEnv(0, 1, 0, torch.device("cpu")))


def test_zoo_demo_evaluates_the_zoo_detectors_without_training(tmp_path, monkeypatch):
    import imaginate.engine
    import imaginate.engine.loop

    def no_training(*args, **kwargs):
        raise AssertionError("the zoo-mode demo must not train")

    monkeypatch.setattr(imaginate.engine, "run_training", no_training)
    monkeypatch.setattr(imaginate.engine.loop, "run_training", no_training)
    monkeypatch.setattr(wsod_demo, "EVAL_SCENES", 12)
    monkeypatch.setattr(wsod_demo, "PICTURE_SCENES", 4)
    torch.set_num_threads(1)
    part = wsod_demo.demo(tmp_path, train=False)
    torch.set_num_threads(1)
    results, provenance = part.tables
    rows = {row[0]: row for row in results.rows}
    baseline = float(rows["baseline: a random proposal per TRUE tag"][1])
    for name in wsod_demo.ZOO_ENTRIES:
        map50, corloc = float(rows[f"zoo:{name}"][1]), float(rows[f"zoo:{name}"][2])
        # trained weights find the objects of held-out scenes; a fresh detector scores ~0 here
        assert map50 > max(0.15, baseline + 0.1), (name, map50, baseline)
        assert corloc > 0.3, (name, corloc)
    assert [r[0] for r in provenance.rows] == [f"zoo:{n}" for n in wsod_demo.ZOO_ENTRIES]
    assert provenance.rows[0][5] == zoo.get_entry("wsod_mist_tiny").sha256[:12]
    assert len(part.images) == 4
    for _, path in part.images:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "wsod" / "tiny").exists()  # no run folder: nothing trained


def test_init_from_zoo_entry_loads_its_detector_weights():
    stored = load_file(str(zoo.zoo_weights_file("zoo:wsod_mist_tiny")))
    fresh = _tiny_system([]).net.state_dict()
    loaded = _tiny_system(["train.init_from=zoo:wsod_mist_tiny"]).net.state_dict()
    detector = {k[len("detector."):]: v for k, v in stored.items() if k.startswith("detector.")}
    assert set(detector) == set(loaded)
    for key, value in detector.items():
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key
    changed = [k for k, v in detector.items() if v.is_floating_point() and not torch.equal(fresh[k], v)]
    assert len(changed) > len(detector) // 2  # the trained weights, not the seeded initialisation


def test_init_from_altered_zoo_file_names_the_key_and_file(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    copy = weights / "wsod_mist_tiny.safetensors"
    shutil.copy(zoo.get_entry("wsod_mist_tiny").weights_path, copy)
    with open(copy, "r+b") as f:  # one byte flipped in the tensor data
        f.seek(-5, 2)
        byte = f.read(1)
        f.seek(-5, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", weights)
    with pytest.raises(ConfigError, match=r"train\.init_from: .*wsod_mist_tiny\.safetensors.*sha256"):
        _tiny_system(["train.init_from=zoo:wsod_mist_tiny"])


def test_init_from_unknown_zoo_entry_is_one_line_exit_2(tmp_path, capsys):
    code = main(["train", "wsod", "--out", str(tmp_path / "run"), "--no-progress", "train.init_from=zoo:no_such_entry",
                 "train.steps=1", "train.device=cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "train.init_from" in err[0] and "zoo:no_such_entry" in err[0]


def test_drawn_box_accuracy_sorts_each_drawn_box_into_one_kind():
    from types import SimpleNamespace

    split = SimpleNamespace(boxes=[torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])],
                            labels=[torch.tensor([0, 1])])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0],    # right (class 0)
                          [0.0, 0.0, 10.0, 9.0],     # duplicate of it
                          [20.0, 20.0, 30.0, 30.0],  # class 0 on the class-1 object: wrong class
                          [0.0, 0.0, 4.0, 4.0],      # a part of the class-0 object: loose
                          [40.0, 40.0, 50.0, 50.0],  # nothing there
                          [20.0, 20.0, 30.0, 30.0]])  # class 1, right, but under the threshold: not drawn
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.2])
    labels = torch.tensor([0, 0, 0, 0, 0, 1])
    drawn = wsod_demo.drawn_box_accuracy([(boxes, scores, labels)], split, [0], threshold=0.3)
    assert drawn == pytest.approx({"precision": 0.2, "recall": 0.5, "duplicate": 0.2, "mislocated": 0.2,
                                   "wrong_class": 0.2, "background": 0.2})
