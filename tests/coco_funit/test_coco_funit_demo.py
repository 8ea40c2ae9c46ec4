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


def test_train_demo_reports_a_short_run_and_says_when_it_collapsed(tmp_path, monkeypatch) -> None:
    """`imaginate demo --train`'s part on a few steps: its table has no key the evaluation does not write (it
    once asked for mFID, which is only computed with eval.mfid=true) and a collapsed run is called one."""
    monkeypatch.setattr(demo_module, "DEMO_STEPS", 4)
    monkeypatch.setattr(demo_module, "EVAL", ["eval.shots=[1,5]", "eval.translations_per_class=2",
                                              "eval.real_per_class=5", "eval.helper_images_per_class=5",
                                              "eval.classifier_steps=2", "eval.mask_net_steps=2",
                                              "data.images_per_species=6", "train.batch_size=4"])
    part = demo_module.demo(tmp_path, train=True)
    from imaginate.engine.logging import read_metrics
    from imaginate.systems.coco_funit.evaluation import is_collapsed

    final = [r for r in read_metrics(tmp_path / "coco_funit" / "tiny") if r["split"] == "eval"][-1]
    assert ("This run collapsed" in part.text) == is_collapsed(final)
    assert any(row[0] == "dead style-code share" for row in part.tables[0].rows)
    assert len(part.images) == 2 and all(path.is_file() for _, path in part.images)
