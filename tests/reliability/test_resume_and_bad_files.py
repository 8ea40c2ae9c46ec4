"""Resume survives a broken newest checkpoint; damaged run files and impossible devices are one-line errors."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imaginate.cli import main
from imaginate.config import build_config
from imaginate.engine import CheckpointError, run_training
from imaginate.engine.checkpoint import list_checkpoints, newest_readable_checkpoint, save_checkpoint
from imaginate.registry import get_system
from imaginate.systems.classify.system import ClassifySystem

OVERRIDES = ["train.steps=30", "train.ckpt_every=5", "train.eval_every=0", "train.sample_every=0",
             "train.keep_checkpoints=3", "optim.name=madam"]


def _cfg(extra=()):
    spec = get_system("classify")
    return spec, build_config(spec.config_cls, preset="tiny", system="classify", overrides=OVERRIDES + list(extra))


def _break(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 3]))
    elif how == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif how == "bitflip":  # flip bits inside the zip directory, where torch.load must notice
        for i in range(len(data) - 200, len(data) - 20, 7):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "zeroed", "bitflip"])
def test_resume_skips_a_broken_newest_checkpoint_and_ends_bit_identical(how, tmp_path, monkeypatch, capsys,
                                                                      crash_after):
    spec, cfg = _cfg()
    run_training(spec, cfg, tmp_path / "full", progress=False)

    original = crash_after(ClassifySystem, 22)  # dies in step 23: checkpoints at 10, 15, 20
    with pytest.raises(KeyboardInterrupt):
        run_training(spec, cfg, tmp_path / "crashed", progress=False)
    monkeypatch.setattr(ClassifySystem, "train_step", original)
    steps = [s for s, _ in list_checkpoints(tmp_path / "crashed")]
    assert steps == [10, 15, 20]
    newest = list_checkpoints(tmp_path / "crashed")[-1][1]
    _break(newest, how)

    capsys.readouterr()
    run_training(spec, cfg, tmp_path / "crashed", resume=True, progress=False)
    out = capsys.readouterr()
    assert "skipping unreadable checkpoint" in out.err and newest.name in out.err
    assert "step_00000015.pt (step 15)" in out.out
    full, resumed = load_file(str(tmp_path / "full" / "final.safetensors")), load_file(
        str(tmp_path / "crashed" / "final.safetensors"))
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_no_readable_checkpoint_lists_each_problem(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (5, 10):
        (folder / f"step_{step:08d}.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="no readable checkpoint.*step_00000010.*step_00000005"):
        newest_readable_checkpoint(tmp_path)


def test_a_checkpoint_of_another_run_names_the_module(tmp_path, capsys):
    spec, cfg = _cfg(["train.steps=5"])
    run_training(spec, cfg, tmp_path / "run", progress=False)
    ckpt_path = list_checkpoints(tmp_path / "run")[-1][1]
    ckpt = torch.load(ckpt_path, weights_only=True)
    first = next(iter(ckpt["modules"]))
    key = next(iter(ckpt["modules"][first]))
    ckpt["modules"][first][key] = torch.zeros(3, 3, 3)  # a shape this run does not have
    torch.save(ckpt, ckpt_path)
    assert main(["eval", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"module '{first}'" in err[0] and "Traceback" not in err[0]


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    good = tmp_path / "step_00000005.pt"
    save_checkpoint({"step": 5, "modules": {}}, good)
    before = good.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*intact"):
        save_checkpoint({"step": 10, "modules": {}}, tmp_path / "step_00000010.pt")
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000005.pt"]  # no temp file left


@pytest.mark.parametrize("damage", ["config", "run_json"])
def test_a_damaged_run_folder_is_one_line_exit_2(damage, tmp_path, capsys):
    spec, cfg = _cfg(["train.steps=5"])
    run_training(spec, cfg, tmp_path / "run", progress=False)
    target = tmp_path / "run" / ("config.yaml" if damage == "config" else "run.json")
    target.write_text("train: {steps: [1, 2\n  oops: :\n")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and target.name in err[0], err


def test_cuda_without_cuda_is_a_config_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "classify", "--out", str(tmp_path / "r"), "train.steps=1", "train.device=cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.device" in err[0] and "no CUDA" in err[0]


@pytest.mark.parametrize("part", ["optimizers", "rng"])
def test_a_checkpoint_whose_optimizer_or_rng_does_not_fit_is_one_line(part, tmp_path, capsys):
    spec, cfg = _cfg(["train.steps=5"])
    run_training(spec, cfg, tmp_path / "run", progress=False)
    ckpt_path = list_checkpoints(tmp_path / "run")[-1][1]
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt[part] = {} if part == "optimizers" else [{"torch": torch.zeros(3)}]
    torch.save(ckpt, ckpt_path)
    before = (tmp_path / "run" / "config.yaml").read_bytes()
    capsys.readouterr()
    assert main(["train", "classify", "--out", str(tmp_path / "run"), "--resume", *OVERRIDES, "train.steps=8"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and ckpt_path.name in err[0] and ("optimizer" in err[0] or "RNG" in err[0]), err
    assert (tmp_path / "run" / "config.yaml").read_bytes() == before
