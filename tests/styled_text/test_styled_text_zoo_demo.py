"""The styled_text demo part on zoo weights: no training, the judges and generator as recorded, continuations
for every style's example; ``imaginate write`` takes ``zoo:NAME``."""

import importlib

import pytest
import torch

import imaginate.engine
import imaginate.engine.loop
from imaginate import zoo
from imaginate.cli import main

styled_demo = importlib.import_module("imaginate.systems.styled_text.demo")  # the package exports the function


def test_zoo_demo_uses_the_recorded_weights_without_training(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the zoo demo must not train")

    monkeypatch.setattr(imaginate.engine, "run_training", refuse)
    monkeypatch.setattr(imaginate.engine.loop, "run_training", refuse)
    monkeypatch.setattr(styled_demo, "FIXED_PAIRS", 20)
    torch.set_num_threads(1)  # on a shared test box a second thread only spins (conftest restores the count)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the part asks for 2
    entry = zoo.get_entry(styled_demo.ZOO_NAME)
    part = styled_demo.demo(tmp_path, train=False)
    metrics = dict(part.tables[0].rows)
    # the judge is the fitted one from the zoo file (a fresh judge would not reach the recorded accuracy)
    assert float(metrics["style judge accuracy on held-out real continuations"]) == pytest.approx(
        entry.metrics["judge_accuracy"], abs=1e-3)
    same, other = (float(x) for x in metrics["style code cosine, same style / other style (equal = a dead code)"]
                   .split(" / "))
    assert same - other > 0.1  # the zoo model's style code follows its reference
    samples = part.tables[1].rows
    styles = {row[0] for row in samples}
    assert len(styles) == 5 and len(samples) == 5 * len(styled_demo.CONTEXTS)
    assert all(len(row[2]) > len(context) + 5 for row, context in
               zip(samples, styled_demo.CONTEXTS * 5, strict=True))
    assert part.tables[2].rows[0][0] == f"zoo:{styled_demo.ZOO_NAME}"
    assert part.tables[2].rows[0][5] == entry.sha256[:12]
    assert all(path.is_file() for _, path in part.images)


def test_write_accepts_zoo_names(tmp_path, capsys):
    example = tmp_path / "poem.txt"
    example.write_text("Roses are red,\nviolets are blue,\nsugar is sweet,\nand so are you.\n")
    argv = ["write", "--checkpoint", f"zoo:{styled_demo.ZOO_NAME}", "--context", "The compiler said no.",
            "--style-example", str(example), "--num", "2", "--seed", "3", "--device", "cpu"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first and first.count("The compiler said no.") == 2
    assert main([*argv[:2], "zoo:missing_entry", *argv[3:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing_entry" in err[0]
