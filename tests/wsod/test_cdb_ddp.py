"""Concrete DropBlock under torchrun with 2 gloo processes: its adversarial gradients (taken with
``torch.autograd.grad``, outside DDP's all-reduce) are averaged over the ranks, so every rank keeps the
same CDB weights; and its optimizer follows the reference's schedule."""

import json
import os
import subprocess
import sys

import pytest
import torch

from imaginate.systems.wsod.cdb import ConcreteDropBlock, cdb_lr_factor, cdb_optimizer

WORKER = """
import json, sys
import torch, torch.distributed as dist
from imaginate.config import build_config
from imaginate.engine import unwrap
from imaginate.engine.distributed import init_distributed
from imaginate.engine.loop import build_system
from imaginate.registry import get_system

torch.set_num_threads(1)
env = init_distributed("cpu")
spec = get_system("wsod")
cfg = build_config(spec.config_cls, preset="tiny", system="wsod", overrides=sys.argv[2:])
system = build_system(spec, cfg, env)
system.train(True)
net = unwrap(system.net)
start = torch.cat([p.detach().reshape(-1) for p in net.roi_dropout.parameters()]).clone()
for step in range(3):
    system.train_step(system.train_batch(step))

def spread(params):
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    copies = [torch.zeros_like(flat) for _ in range(env.world_size)]
    dist.all_gather(copies, flat)
    return flat, float((copies[0] - copies[1]).abs().max())

cdb, cdb_spread = spread(net.roi_dropout.parameters())
_, detector_spread = spread(net.detector_parameters())
if env.rank == 0:
    json.dump({"cdb_spread": cdb_spread, "detector_spread": detector_spread,
               "cdb_moved": float((cdb - start).abs().max())}, open(sys.argv[1], "w"))
dist.barrier()
dist.destroy_process_group()
"""

OVERRIDES = ["data.num_train=8", "data.num_test=4", "model.width=8", "model.neck_dim=32", "data.image_size=64",
             "data.train_scales=[64]", "data.proposal_method=sliding_window", "data.max_proposals=40",
             "train.batch_size=4", "cdb=true", "cdb_max_drop=0.5", "refine_warmup_start=0", "optim.cdb_lr=0.1", "cdb_weight=1.0",
             "optim.cdb_warmup_steps=0"]


@pytest.mark.slow
def test_cdb_weights_stay_identical_across_two_gloo_ranks(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    out = tmp_path / "spread.json"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "worker.py"), str(out), *OVERRIDES,
                           f"data.proposal_cache={tmp_path / 'cache'}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spread = json.loads(out.read_text())
    # the adversary did learn: with no CDB gradient Adam would not move it at all (it moves ~8e-6 in 3 steps)
    assert spread["cdb_moved"] > 0.0
    assert spread["detector_spread"] == 0.0  # DDP's own all-reduce
    assert spread["cdb_spread"] == 0.0, spread  # drifted apart (~1e-4) before the CDB gradients were averaged


def test_cdb_optimizer_follows_the_reference_schedule():
    cdb = ConcreteDropBlock(4, 7)
    opt = cdb_optimizer(cdb, lr=1e-4, momentum=0.9, weight_decay=1e-4)
    weights, biases = opt.param_groups
    assert all(p.dim() == 4 for p in weights["params"]) and all(p.dim() == 1 for p in biases["params"])
    assert (weights["lr"], weights["weight_decay"]) == (1e-4, 1e-4)
    assert (biases["lr"], biases["weight_decay"]) == (2e-4, 0.0)
    factors = [cdb_lr_factor(s, 500, [20000, 26700], 3.0) for s in (0, 250, 500, 19999, 20000, 26700)]
    assert factors == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 3.0, 9.0])


def test_a_single_process_cdb_step_is_unchanged_by_the_averaging():
    from imaginate.systems.wsod.cdb import average_over_ranks_

    grads = [torch.randn(3, 2), torch.randn(4)]
    before = [g.clone() for g in grads]
    average_over_ranks_(grads)  # no process group: nothing to average
    assert all(torch.equal(a, b) for a, b in zip(before, grads))
