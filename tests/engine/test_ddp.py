"""torchrun with 2 CPU processes (gloo) gives the loss curve of 1 process at the same global batch."""

import os
import subprocess
import sys

from imaginate.engine.logging import read_metrics

COMMON = ["classify", "--preset", "tiny", "--no-progress", "train.steps=25", "train.log_every=1",
          "train.batch_size=64", "train.eval_every=0", "train.sample_every=0", "train.ckpt_every=0",
          "train.num_threads=1", "optim.name=madam"]


def _run(cmd, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_gloo_processes_match_one_process(tmp_path):
    _run([sys.executable, "-m", "imaginate", "train", *COMMON, "--out", str(tmp_path / "one")], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "imaginate", "train", *COMMON, "--out", str(tmp_path / "two")], tmp_path)
    one = [r["classifier_loss"] for r in read_metrics(tmp_path / "one") if r["split"] == "train"]
    two = [r["classifier_loss"] for r in read_metrics(tmp_path / "two") if r["split"] == "train"]
    assert len(one) == len(two) == 25
    assert one[-1] < 0.9 * one[0]  # it trained
    for a, b in zip(one, two):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (a, b)
    import json

    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2


def test_two_gloo_processes_train_a_gan_like_one_process(tmp_path):
    """The GAN's latents come with the batch (engine RunContext.batch_noise), so 2 ranks draw the global batch's
    z that 1 process draws: D and G losses agree (before, each rank drew its own z: 1e-2 apart at step 2).
    Only the first steps are compared: adversarial training amplifies the all-reduce's rounding (~5e-3 by step 15)."""
    gan = ["gan", "--preset", "tiny", "--no-progress", "train.steps=3", "train.log_every=1", "train.batch_size=32",
           "train.eval_every=0", "train.sample_every=0", "train.ckpt_every=0", "train.num_threads=1",
           "eval.num_samples=64"]
    _run([sys.executable, "-m", "imaginate", "train", *gan, "--out", str(tmp_path / "one")], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "imaginate", "train", *gan, "--out", str(tmp_path / "two")], tmp_path)
    for key in ("discriminator_loss", "generator_loss"):
        one = [r[key] for r in read_metrics(tmp_path / "one") if r["split"] == "train"]
        two = [r[key] for r in read_metrics(tmp_path / "two") if r["split"] == "train"]
        assert len(one) == len(two) == 3
        for a, b in zip(one, two):
            assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (key, a, b)
