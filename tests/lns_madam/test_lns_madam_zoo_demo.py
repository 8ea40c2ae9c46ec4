"""The lns_madam demo part on zoo weights (issue #20): nothing is trained, the zoo models are evaluated,
the packed 8-bit store reproduces the trained weights, and the part carries its provenance and curves."""


import pytest

from imaginate.registry import get_system
from imaginate.zoo import get_entry

pytestmark = pytest.mark.skipif(not (get_entry("lns_madam_tiny").trained and get_entry("lns_madam_tiny_fp32").trained),
                                reason="lns_madam zoo entries not trained yet (scripts/train_zoo.py)")


def test_zoo_demo_trains_nothing_and_shows_the_zoo_models(tmp_path, monkeypatch):
    import imaginate.engine as engine
    import imaginate.engine.loop as loop

    def no_training(*args, **kwargs):
        raise AssertionError("the zoo demo must not train")

    monkeypatch.setattr(engine, "run_training", no_training)
    monkeypatch.setattr(loop, "run_training", no_training)
    part = get_system("lns_madam").demo(tmp_path, train=False)  # (its time is in the demo report, not asserted)
    # no run folder: no checkpoints, metrics or run descriptions anywhere under the demo's output
    assert not [p for p in tmp_path.rglob("*") if p.name in ("checkpoints", "metrics.jsonl", "run.json")]
    assert part.images and all(path.is_file() and path.stat().st_size > 1000 for _, path in part.images)
    tables = {t.caption.split(":")[0]: t for t in part.tables}
    # both zoo models evaluate to the accuracy their entries recorded
    results = next(t for t in part.tables if t.caption.startswith("Digits MLP from the zoo"))
    for row in results.rows:
        entry = get_entry(row[0])
        assert row[2] == str(entry.steps)
        assert float(row[3]) == pytest.approx(100 * entry.metrics["test_acc"], abs=0.051)
    # the LNS model is well above chance and close to its FP32 counterpart
    acc = {row[0]: float(row[3]) for row in results.rows}
    assert acc["zoo:lns_madam_tiny"] > 85 and acc["zoo:lns_madam_tiny"] > acc["zoo:lns_madam_tiny_fp32"] - 5
    # the packed store: one byte per weight, the weights read back unchanged, the same accuracy
    memory = next(t for t in part.tables if "LNS store" in t.caption)
    weights, float_bytes, packed_bytes, _, changed, reread = memory.rows[0]
    assert int(packed_bytes) == int(weights) and int(float_bytes) == 4 * int(weights)
    assert int(changed) == 0
    assert float(reread) == pytest.approx(acc["zoo:lns_madam_tiny"], abs=0.051)
    provenance = next(t for t in part.tables if t.caption.startswith("Zoo weights used here"))
    assert [row[0] for row in provenance.rows] == ["zoo:lns_madam_tiny", "zoo:lns_madam_tiny_fp32"]
    assert "Energy per training iteration" in " ".join(tables)
