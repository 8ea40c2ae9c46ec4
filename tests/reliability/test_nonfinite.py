"""NaN / inf injected mid-run: a clean stop naming the step (exit 1, one line), the last good checkpoint
intact and resumable, no final export; with ``train.stop_on_nonfinite=false`` the run goes on."""

from __future__ import annotations

import hashlib

import pytest
import torch

from imaginate.cli import main
from imaginate.engine import RunContext, load_checkpoint
from imaginate.engine.checkpoint import list_checkpoints

COMMON = {"classify": ["train.ckpt_every=4", "train.eval_every=0", "train.sample_every=0", "train.log_every=1",
                       "train.batch_size=16"],
          "gan": ["train.ckpt_every=4", "train.eval_every=0", "train.sample_every=0", "train.log_every=1",
                  "train.batch_size=8", "data.name=digits", "model.g_width=8", "model.d_width=8", "model.d_blocks=2"]}


def _inject(monkeypatch, after_calls: int, value: float, name: str | None = None) -> None:
    """From update call ``after_calls`` + 1 on, the loss of optimizer ``name`` (any when None) is ``value``."""
    original = RunContext.update
    calls = {"n": 0}

    def update(self, opt_name, optimizer, batch, loss_fn, scheduler=None):
        if name is None or opt_name == name:
            calls["n"] += 1
        if calls["n"] > after_calls and (name is None or opt_name == name):
            def poisoned(mb):
                out = loss_fn(mb)
                loss, logs = out if isinstance(out, tuple) else (out, {})
                return loss * 0 + value, logs
            return original(self, opt_name, optimizer, batch, poisoned, scheduler)
        return original(self, opt_name, optimizer, batch, loss_fn, scheduler)

    monkeypatch.setattr(RunContext, "update", update)


def _digests(run):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for _, p in list_checkpoints(run)}


@pytest.mark.parametrize("system,value,optimizer,calls_per_step",
                         [("classify", float("nan"), None, 1), ("classify", float("inf"), None, 1),
                          ("gan", float("nan"), "generator", 1), ("gan", -float("inf"), "discriminator", 1)])
def test_injected_nonfinite_loss_stops_cleanly_and_keeps_the_checkpoint(system, value, optimizer, calls_per_step,
                                                                        tmp_path, monkeypatch, capsys,
                                                                        record_property):
    record_property("category", "fault_nonfinite")
    run = tmp_path / "run"
    _inject(monkeypatch, 9 * calls_per_step, value, optimizer)  # step 10 is poisoned; checkpoints at 4, 8
    code = main(["train", system, "--out", str(run), "--no-progress", "train.steps=12", *COMMON[system]])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1, err
    assert "step 10" in err[0] and "step_00000008.pt" in err[0] and str(value).lstrip("-") in err[0], err[0]
    assert [s for s, _ in list_checkpoints(run)] == [4, 8]
    ckpt = load_checkpoint(list_checkpoints(run)[-1][1])
    assert all(torch.isfinite(t).all() for m in ckpt["modules"].values() for t in m.values() if t.is_floating_point())
    assert not (run / "final.safetensors").exists()
    before = _digests(run)
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["train", system, "--out", str(run), "--resume", "--no-progress", "train.steps=12",
                 *COMMON[system]]) == 0  # the last good checkpoint resumes
    assert "(step 8)" in capsys.readouterr().out
    assert (run / "final.safetensors").exists()
    assert before["step_00000008.pt"] == _digests(run).get("step_00000008.pt", before["step_00000008.pt"])
    record_property("bytes_lost", 0)


def test_nonfinite_weights_never_replace_a_good_checkpoint(tmp_path, monkeypatch, capsys, record_property):
    """A weight turns NaN after a finite loss (e.g. an optimizer bug, or an EMA copy off the loss path): the
    checkpoint at step 8 is not written, step 4's stays."""
    from imaginate.systems.classify.system import ClassifySystem

    record_property("category", "fault_nonfinite")
    original = ClassifySystem.train_step
    calls = {"n": 0}

    def train_step(self, batch):
        calls["n"] += 1
        logs = original(self, batch)
        if calls["n"] == 8:  # after step 8's (finite) update, before its checkpoint
            with torch.no_grad():
                next(iter(self.modules.values())).state_dict(keep_vars=True)[
                    next(iter(next(iter(self.modules.values())).state_dict()))].fill_(float("nan"))
        return logs

    monkeypatch.setattr(ClassifySystem, "train_step", train_step)
    code = main(["train", "classify", "--out", str(tmp_path / "r"), "--no-progress", "train.steps=12",
                 *COMMON["classify"]])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1 and "step 8" in err[0] and "NaN" in err[0], err
    assert [s for s, _ in list_checkpoints(tmp_path / "r")] == [4]


def test_stop_on_nonfinite_false_lets_the_run_go_on(tmp_path, monkeypatch, capsys):
    _inject(monkeypatch, 9, float("nan"))
    code = main(["train", "classify", "--out", str(tmp_path / "r"), "--no-progress", "train.steps=12",
                 "train.stop_on_nonfinite=false", *COMMON["classify"]])
    assert code == 0
    assert (tmp_path / "r" / "final.safetensors").exists()


def test_a_nonfinite_logged_loss_outside_update_stops_too(tmp_path, monkeypatch, capsys, record_property):
    """A loss a system computes and logs itself (not through ctx.update) is checked each step as well."""
    from imaginate.systems.classify.system import ClassifySystem

    record_property("category", "fault_nonfinite")
    original = ClassifySystem.train_step
    calls = {"n": 0}

    def train_step(self, batch):
        calls["n"] += 1
        logs = original(self, batch)
        return {**logs, "aux_loss": float("inf")} if calls["n"] >= 6 else logs

    monkeypatch.setattr(ClassifySystem, "train_step", train_step)
    code = main(["train", "classify", "--out", str(tmp_path / "r"), "--no-progress", "train.steps=12",
                 *COMMON["classify"]])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1 and "step 6: aux_loss is inf" in err[0] and "step_00000004.pt" in err[0], err
