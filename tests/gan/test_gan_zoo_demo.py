"""The gan demo part on zoo weights (issue #20): no training, the zoo generator's metrics re-measured equal the
entry's record, one row of samples per class (slow: about 45 s on 2 cores)."""

import pytest

from imaginate.registry import get_system
from imaginate.zoo import get_entry

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not get_entry("gan_fmnist").trained, reason="zoo:gan_fmnist not trained yet")]


def test_gan_zoo_demo_samples_every_class_without_training(tmp_path, monkeypatch):
    from PIL import Image

    import imaginate.engine as engine

    def no_training(*args, **kwargs):
        raise AssertionError("the zoo demo must not train")

    monkeypatch.setattr(engine, "run_training", no_training)
    part = get_system("gan").demo(tmp_path, train=False)
    assert not [p for p in tmp_path.rglob("*") if p.name in ("checkpoints", "metrics.jsonl", "run.json")]
    entry = get_entry("gan_fmnist")
    metrics = part.tables[0]
    fid_row = next(r for r in metrics.rows if r[0].startswith("FID"))
    assert float(fid_row[1]) == pytest.approx(entry.metrics["fid"], rel=1e-3)
    per_class = next(t for t in part.tables if t.caption.startswith("Feature classifier"))
    assert len(per_class.rows[0]) == 11 and sum(float(v) for v in per_class.rows[0][1:]) / 10 > 30
    grid = Image.open(part.images[0][1])
    assert grid.size == (2 * (12 * 30 + 2), 2 * (10 * 30 + 2))  # 10 classes x (2 real + 10 samples), 28 px + pad
    assert any(t.caption.startswith("Zoo weights used here") for t in part.tables)
