"""The coco_funit demo part on zoo weights: it runs without training, shows its pictures, and what it measures
comes from the trained zoo weights (a freshly initialised generator reconstructs worse)."""

from __future__ import annotations

import importlib

import pytest
import torch

import imaginate.engine
import imaginate.engine.loop

demo_module = importlib.import_module("imaginate.systems.coco_funit.demo")


@pytest.fixture
def small_batch(monkeypatch):
    """Fewer held-out images than the report's, so the test stays fast; the code path is the same."""
    monkeypatch.setattr(demo_module, "SEEN_TARGET_COUNT", 2)
    monkeypatch.setattr(demo_module, "GRID_CONTENTS", 2)


def test_zoo_demo_runs_without_training_and_shows_its_parts(tmp_path, monkeypatch, small_batch) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("the zoo-mode demo trained a model")

    monkeypatch.setattr(imaginate.engine, "run_training", no_training)
    monkeypatch.setattr(imaginate.engine.loop, "run_training", no_training)
    part = demo_module.demo(tmp_path, train=False)
    from PIL import Image

    assert [p.name for _, p in part.images] == ["zoo_reconstruction.png", "zoo_translation.png", "zoo_curves.png"]
    for _, path in part.images:
        with Image.open(path) as image:
            assert image.width > 200 and image.height > 100
    captions = [t.caption for t in part.tables]
    assert any("Zoo weights used here" in c for c in captions)  # the provenance table
    provenance = next(t for t in part.tables if "Zoo weights used here" in t.caption)
    assert provenance.rows[0][0] == f"zoo:{demo_module.ZOO_NAME}"
    assert not (tmp_path / "coco_funit" / "tiny").exists()  # no run folder written
    # the pictures come from the trained weights: held-out reconstruction L1 on the creatures is ~0.16-0.18 with
    # them and 0.31-0.40 with a freshly initialised generator (the slow test below compares the two directly)
    reconstruction = next(t for t in part.tables if t.caption.startswith("Same-image reconstruction"))
    assert all(float(row[2]) < 0.25 for row in reconstruction.rows), reconstruction.rows


@pytest.mark.slow  # ~30 s single-threaded: every measurement twice
def test_zoo_measurements_come_from_the_trained_weights(small_batch) -> None:
    from imaginate.zoo import load_zoo

    torch.manual_seed(0)
    _, cfg, trained, _ = load_zoo(demo_module.ZOO_NAME, device="cpu")
    _, _, fresh, _ = load_zoo(demo_module.ZOO_NAME, device="cpu")
    fresh.eval_generator.load_state_dict(type(fresh.eval_generator).from_config(cfg.model).state_dict())
    got, base = demo_module.measure(trained), demo_module.measure(fresh)
    for images, metrics in got["reconstruction"].items():
        assert metrics["l1_fg"] < 0.8 * base["reconstruction"][images]["l1_fg"], images
    # the translations: closer to the ground truth than an untrained generator's, on seen and unseen targets
    for group in ("seen", "unseen"):
        assert got["translation"][group]["model"]["l1_fg"] < base["translation"][group]["model"]["l1_fg"]
    # the baselines do not depend on the model
    assert got["translation"]["unseen"]["copy content"] == base["translation"]["unseen"]["copy content"]
