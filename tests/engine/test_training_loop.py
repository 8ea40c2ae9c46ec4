"""The engine's promises: exact resume, NaN stop, accumulation, atomic and safe checkpoints, exports."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imaginate.config import TrainConfig, build_config
from imaginate.engine import (
    CheckpointError,
    RunContext,
    System,
    TrainingDiverged,
    load_checkpoint,
    run_training,
)
from imaginate.engine.checkpoint import atomic_torch_save, latest_checkpoint
from imaginate.engine.logging import read_metrics
from imaginate.registry import SystemSpec, get_system
from imaginate.systems.classify.system import ClassifySystem


@dataclass
class NoisyConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=30, batch_size=8, log_every=1))
    nan_at_step: int = 0  # 0 = never


class NoisyRegression(System):
    """A linear model fitted to noisy targets: the noise comes from the global RNG, so an exact resume
    needs the RNG restored, not only the weights."""

    def __init__(self, cfg: NoisyConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        self.x = torch.randn(64, 5)
        self.y = self.x @ torch.arange(5.0) + 1.0
        self.net = ctx.prepare(torch.nn.Linear(5, 1))
        self.modules = {"net": self.net}
        self.optimizers = {"net": torch.optim.Adam(self.net.parameters(), lr=0.05)}
        self.calls = 0

    def train_batch(self, step):
        idx = self.ctx.batch_indices(step, 64)
        return self.x[idx], self.y[idx]

    def train_step(self, batch):
        self.calls += 1
        x, y = batch
        noise = 0.1 * torch.randn_like(y)
        bad = self.cfg.nan_at_step and self.calls >= self.cfg.nan_at_step

        def loss_fn(mb):
            loss = ((self.net(mb[0]).squeeze(1) - mb[1] - noise) ** 2).mean()
            return loss * float("nan") if bad else loss

        return self.ctx.update("net", self.optimizers["net"], batch, loss_fn)

    def evaluate(self):
        return {"mse": float(((self.net(self.x).squeeze(1) - self.y) ** 2).mean())}


NOISY = SystemSpec("noisy", NoisyConfig, NoisyRegression, "test system")


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final.safetensors"))


@pytest.mark.parametrize("system", ["noisy", "classify"])
def test_resume_after_a_crash_ends_bit_identical(system, tmp_path, monkeypatch, crash_after):
    if system == "noisy":
        spec, cfg, cls = NOISY, NoisyConfig(train=TrainConfig(steps=30, batch_size=8, ckpt_every=10)), NoisyRegression
    else:
        spec, cls = get_system("classify"), ClassifySystem
        cfg = build_config(spec.config_cls, preset="tiny", system="classify",
                           overrides=["train.steps=30", "train.ckpt_every=10", "train.eval_every=0",
                                      "train.sample_every=0", "optim.name=madam"])
    run_training(spec, cfg, tmp_path / "full", progress=False)

    original = crash_after(cls, 17)  # dies during step 18; newest checkpoint: step 10
    with pytest.raises(KeyboardInterrupt):
        run_training(spec, cfg, tmp_path / "crashed", progress=False)
    assert latest_checkpoint(tmp_path / "crashed").name == "step_00000010.pt"
    monkeypatch.setattr(cls, "train_step", original)
    run_training(spec, cfg, tmp_path / "crashed", resume=True, progress=False)

    full, resumed = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "crashed")
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    a = load_checkpoint(latest_checkpoint(tmp_path / "full"))["optimizers"]
    b = load_checkpoint(latest_checkpoint(tmp_path / "crashed"))["optimizers"]
    for name in a:
        for pid, state in a[name]["state"].items():
            for key, value in state.items():
                other = b[name]["state"][pid][key]
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), (name, key)
    # metrics.jsonl has each step once (the crashed run's lines after step 10 were dropped on resume)
    steps = [r["step"] for r in read_metrics(tmp_path / "crashed") if r["split"] == "train"]
    assert steps == sorted(set(steps))


def test_resume_without_checkpoint_and_overwrite_are_refused(tmp_path):
    from imaginate.config import ConfigError

    cfg = NoisyConfig(train=TrainConfig(steps=5, batch_size=8))
    with pytest.raises(ConfigError, match="no checkpoint"):
        run_training(NOISY, cfg, tmp_path / "r", resume=True, progress=False)
    run_training(NOISY, cfg, tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        run_training(NOISY, cfg, tmp_path / "r", progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = NoisyConfig(train=TrainConfig(steps=30, batch_size=8, ckpt_every=5), nan_at_step=13)
    with pytest.raises(TrainingDiverged) as exc:
        run_training(NOISY, cfg, tmp_path / "r", progress=False)
    msg = str(exc.value)
    assert "step 13" in msg and "nan" in msg and "step_00000010.pt" in msg
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "step_00000010.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["modules"]["net"].values())
    assert not (tmp_path / "r" / "final.safetensors").exists()


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    spec = get_system("classify")
    finals = []
    for accum in (1, 4):
        cfg = build_config(spec.config_cls, preset="tiny", system="classify",
                           overrides=["train.steps=5", f"train.grad_accum={accum}", "optim.name=sgd",
                                      "train.eval_every=0", "train.sample_every=0"])
        run_training(spec, cfg, tmp_path / f"a{accum}", progress=False)
        finals.append(_final_weights(tmp_path / f"a{accum}"))
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], rtol=0, atol=1e-6)


def test_amp_bf16_on_cpu_trains(tmp_path):
    spec = get_system("classify")
    cfg = build_config(spec.config_cls, preset="tiny", system="classify",
                       overrides=["train.steps=150", "train.amp=true", "train.sample_every=0"])
    metrics = run_training(spec, cfg, tmp_path / "amp", progress=False)
    assert metrics["test_acc"] > 0.8


def test_checkpoints_are_atomic_and_never_unpickle_code(tmp_path):
    path = tmp_path / "c.pt"
    atomic_torch_save({"w": torch.ones(3)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("interrupted mid-write")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"w": Boom()}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))  # the old file survived
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind

    torch.save({"obj": Path("x")}, tmp_path / "code.pt")  # a pickled class: refused by weights_only
    with pytest.raises(CheckpointError, match="code.pt"):
        load_checkpoint(tmp_path / "code.pt")
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(tmp_path / "trunc.pt")


def test_run_folder_holds_config_metrics_samples_and_safetensors(tmp_path):
    from imaginate.cli import main

    run = tmp_path / "run"
    assert main(["train", "classify", "--out", str(run), "--no-progress", "train.steps=40",
                 "train.log_every=10", "train.eval_every=20"]) == 0
    saved = build_config(get_system("classify").config_cls, preset=None, system="classify",
                         preset_file=run / "config.yaml")
    assert saved.train.steps == 40
    rows = read_metrics(run)
    assert [r["step"] for r in rows if r["split"] == "train"] == [10, 20, 30, 40]
    assert [r["step"] for r in rows if r["split"] == "eval"] == [20, 40]
    assert list((run / "samples").glob("predictions_*.png"))
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    weights = _final_weights(run)
    assert weights and all(k.startswith("classifier.") for k in weights)


def test_integer_madam_runs_through_the_loop(tmp_path):
    spec = get_system("classify")
    cfg = build_config(spec.config_cls, preset="tiny", system="classify",
                       overrides=["train.steps=200", "optim.name=integer_madam", "train.sample_every=0"])
    metrics = run_training(spec, cfg, tmp_path / "r", progress=False)
    assert metrics["test_acc"] > 0.5  # chance is 0.1
