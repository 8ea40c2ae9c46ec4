"""The vid2vid demo part on zoo weights: no training, the models as recorded, the consistency table on a fixed
path, provenance and curves; ``imaginate synthesize`` takes ``zoo:NAME``."""

import importlib
import math

import pytest
import torch

import imaginate.engine
import imaginate.engine.loop
from imaginate import zoo
from imaginate.cli import main
from imaginate.engine.video import read_mp4

vid2vid_demo = importlib.import_module("imaginate.systems.vid2vid.demo")  # the package exports the function


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the zoo demo must not train")

    monkeypatch.setattr(imaginate.engine, "run_training", refuse)
    monkeypatch.setattr(imaginate.engine.loop, "run_training", refuse)


def test_zoo_demo_uses_the_recorded_weights_without_training(tmp_path, monkeypatch, no_training):
    monkeypatch.setattr(vid2vid_demo, "FIXED_SEEDS", (0,))  # one fixed path keeps the test fast
    torch.set_num_threads(1)  # on a shared test box a second thread only spins (conftest restores the count)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the part asks for 2
    part = vid2vid_demo.demo(tmp_path, train=False)
    trained = [n for n in ("vid2vid_tiny", "wc_vid2vid_tiny") if zoo.get_entry(n).trained]
    assert "wc_vid2vid_tiny" in trained
    metrics = {row[0]: [float(x) for x in row[1:]] for row in part.tables[0].rows}
    shown = {"vid2vid_tiny": "vid2vid", "wc_vid2vid_tiny": "wc-vid2vid"}
    assert set(metrics) == {"per-frame SPADE"} | {shown[n] for n in trained}
    assert metrics["per-frame SPADE"][0] == 0.0  # deterministic in the labels: the floor
    for name in (shown[n] for n in trained):  # recurrent: they drift, but trained weights stay close
        l1, _, warp = metrics[name]
        assert 0.0 < l1 < 0.2 and math.isfinite(warp)
    provenance = part.tables[1].rows
    for row, name in zip(provenance, trained, strict=True):
        entry = zoo.get_entry(name)
        assert row[0] == f"zoo:{name}" and row[5] == entry.sha256[:12] and str(entry.steps) == row[1]
    for _, path in part.images:
        assert path.is_file() and path.stat().st_size > 1000
    frames = read_mp4(tmp_path / "vid2vid" / "revisit.mp4")
    assert frames.shape[0] == vid2vid_demo.VIDEO_FRAMES and frames.shape[-1] == (1 + len(trained)) * 64  # labels | wc-vid2vid [| vid2vid]


def test_synthesize_accepts_zoo_names(tmp_path, capsys):
    torch.set_num_threads(1)  # small frames: a second thread only spins on a shared box
    out = tmp_path / "v.mp4"
    side = ["--side-by-side", "zoo:vid2vid_tiny"] if zoo.get_entry("vid2vid_tiny").trained else []
    assert main(["synthesize", "--checkpoint", "zoo:wc_vid2vid_tiny", *side, "--frames", "6", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert read_mp4(out).shape[0] == 6
    assert main(["synthesize", "--checkpoint", "zoo:no_such_entry", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_entry" in err[0]
