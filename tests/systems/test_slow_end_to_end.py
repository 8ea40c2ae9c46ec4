"""Long end-to-end runs (marker `slow`, `make test-slow`): kept out of CI's default run."""

import pytest

from imaginate.config import build_config
from imaginate.engine import run_training
from imaginate.registry import get_system


@pytest.mark.slow
def test_fashion_cnn_preset_reaches_88_percent(tmp_path):
    spec = get_system("classify")
    cfg = build_config(spec.config_cls, preset="fashion_cnn", system="classify")
    assert run_training(spec, cfg, tmp_path / "run", progress=False)["test_acc"] >= 0.88


@pytest.mark.slow
def test_charlm_tiny_preset_learns_the_text(tmp_path):
    spec = get_system("charlm")
    cfg = build_config(spec.config_cls, preset="tiny", system="charlm")
    assert run_training(spec, cfg, tmp_path / "run", progress=False)["val_bpc"] < 3.5


@pytest.mark.slow
def test_classify_demo_writes_a_report(tmp_path):
    from imaginate.cli import main

    assert main(["demo", "--only", "classify", "--out", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64" in html
