"""The classify system end to end at its tiny preset, and its pieces."""

import json
import subprocess
import sys

import pytest
import torch

from imaginate.config import build_config
from imaginate.engine import DistEnv, RunContext
from imaginate.registry import get_system
from imaginate.systems.classify.system import ClassifySystem


def test_tiny_preset_reaches_90_percent_on_digits(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "imaginate", "train", "classify", "--preset", "tiny",
                           "--out", str(tmp_path / "run"), "--no-progress", "train.num_threads=2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["test_acc"] >= 0.90
    # `imaginate eval` on the run reproduces the final evaluation
    ev = subprocess.run([sys.executable, "-m", "imaginate", "eval", str(tmp_path / "run")],
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout.strip().splitlines()[-1])["test_acc"] == pytest.approx(result["test_acc"])


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet18"])
@pytest.mark.parametrize("optim", ["sgd", "adam", "adamw", "madam", "integer_madam"])
def test_every_model_and_optimizer_builds_and_steps_finitely(model, optim):
    cfg = build_config(ClassifyConfig := get_system("classify").config_cls, preset="tiny", system="classify",
                       overrides=[f"model.name={model}", f"optim.name={optim}", "train.batch_size=8",
                                  "model.width=8" if model != "mlp" else "model.width=16"])
    assert isinstance(cfg, ClassifyConfig)
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0, global_batch=8)
    system = ClassifySystem(cfg, ctx)
    before = [p.detach().clone() for p in system.net.parameters()]
    logs = system.train_step(system.train_batch(0))
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    moved = sum(not torch.equal(a, b) for a, b in zip(before, system.net.parameters()))
    assert moved > 0
    image = system.sample()["predictions"]
    assert image.shape[0] == 3 and 0 <= image.min() and image.max() <= 1


def test_zero_biases_are_reinitialised_for_madam_only():
    """BatchNorm biases start at exactly 0: Madam could never move them, so they are re-drawn for it."""
    for optim, expect_zero in (("madam", False), ("adam", True)):
        cfg = build_config(get_system("classify").config_cls, preset="tiny", system="classify",
                           overrides=[f"optim.name={optim}", "model.name=cnn", "model.width=8"])
        ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0, global_batch=8)
        system = ClassifySystem(cfg, ctx)
        biases = [m.bias for m in system.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert biases and all(bool((b == 0).all()) == expect_zero for b in biases), optim
