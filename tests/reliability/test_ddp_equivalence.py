"""2 processes under torch.distributed (gloo, forked ranks with torchrun's environment) train like 1 process at
the same global batch. classify's CNN has batch norm: with ``train.sync_batchnorm`` (the default) its
statistics are those of the global batch and the runs agree (tolerance: |loss_2 - loss_1| <= 1e-4 *
max(1, |loss_1|) at every logged step, final weights within 1e-4: float32 sums in another order);
without it they are per rank and the runs part. The class-conditional GAN (D frozen during the G step, batch
norm synchronised, its latents drawn per global sample by ``RunContext.batch_noise``) agrees too, except in
the generator's biases that feed a batch norm and those norms' running means: the norm cancels such a bias,
so its gradient is float rounding only, which Adam scales up to learning-rate-sized steps that differ
between reduction orders (they do not change the generator's output)."""

from __future__ import annotations

import random
import re

import pytest
import torch
from killing import run_ranks
from safetensors.torch import load_file

from imaginate.engine.logging import read_metrics

CONFIGS = {
    "classify": ["model.name=cnn", "model.width=8", "train.steps=8", "train.batch_size=16", "optim.name=sgd",
                 "optim.lr=0.05"],
    "gan": ["data.name=digits", "model.g_width=8", "model.d_width=8", "model.d_blocks=2", "train.steps=8",
            "train.batch_size=8"],
}
COMMON = ["train.log_every=1", "train.eval_every=0", "train.sample_every=0", "train.ckpt_every=0"]
TOL = 1e-4
# the GAN generator's conv biases whose output a batch norm normalises, and those norms' running means
REDUNDANT_UNDER_BN = re.compile(r"^generator(_ema\.module)?\.(block\d+\.(conv1|conv2|shortcut)\.bias|"
                                r"block\d+\.norm\d\.batch_norm\.running_mean|to_image\.0\.running_mean)$")


def _losses(run):
    return [{k: v for k, v in r.items() if k.endswith("loss")} for r in read_metrics(run) if r["split"] == "train"]


def _gap(one, two) -> float:
    return max(abs(a[k] - b[k]) / max(1.0, abs(a[k])) for a, b in zip(one, two) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("system", sorted(CONFIGS))
def test_two_gloo_ranks_match_one_process_with_sync_batchnorm(system, tmp_path, record_property):
    port = random.Random(system).randint(20000, 40000)
    overrides = [*CONFIGS[system], *COMMON]
    assert run_ranks(system, tmp_path / "one", 1, overrides, port) == [0]
    assert run_ranks(system, tmp_path / "two", 2, overrides, port) == [0, 0]
    assert run_ranks(system, tmp_path / "per_rank", 2, [*overrides, "train.sync_batchnorm=false"], port + 1) == [0, 0]
    one, two, per_rank = _losses(tmp_path / "one"), _losses(tmp_path / "two"), _losses(tmp_path / "per_rank")
    assert len(one) == len(two) == 8
    gap, gap_per_rank = _gap(one, two), _gap(one, per_rank)
    record_property("category", "ddp")
    record_property("gap_sync", gap)
    record_property("gap_per_rank", gap_per_rank)
    assert gap <= TOL, (one, two)
    assert gap_per_rank > 10 * TOL  # the check can fail: per-rank statistics do change training
    a, b = load_file(str(tmp_path / "one" / "final.safetensors")), load_file(str(tmp_path / "two" / "final.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        if system == "gan" and REDUNDANT_UNDER_BN.search(key):
            continue
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=TOL, msg=key)


def test_global_batchnorm_gives_the_full_batch_gradients(tmp_path):
    """2 forked gloo ranks, float64: outputs, input gradients (x2: each rank's loss is a mean over its half),
    weight and bias gradients (averaged as DDP does) and running statistics equal BatchNorm2d on the full
    batch."""
    import os

    import torch.distributed as dist

    from imaginate.engine.sync_batchnorm import GlobalBatchNorm

    gen = torch.Generator().manual_seed(0)
    x_all = torch.randn(8, 3, 4, 4, dtype=torch.float64, generator=gen)
    target = torch.randn(8, 3, 4, 4, dtype=torch.float64, generator=gen)
    weight = torch.arange(1.0, 9.0, dtype=torch.float64).view(8, 1, 1, 1)
    reference = torch.nn.BatchNorm2d(3).double()
    x = x_all.clone().requires_grad_(True)
    ((reference(x) - target) ** 2 * weight).mean().backward()
    port = str(random.Random("gbn").randint(40000, 50000))
    pids = []
    for rank in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
                dist.init_process_group("gloo", rank=rank, world_size=2)
                bn = GlobalBatchNorm(3).double()
                part = slice(4 * rank, 4 * rank + 4)
                xr = x_all[part].clone().requires_grad_(True)
                ((bn(xr) - target[part]) ** 2 * weight[part]).mean().backward()
                for p in (bn.weight, bn.bias):
                    dist.all_reduce(p.grad)
                    p.grad /= 2
                torch.save({"x": xr.grad, "w": bn.weight.grad, "b": bn.bias.grad, "mean": bn.running_mean,
                            "var": bn.running_var}, tmp_path / f"rank{rank}.pt")
                dist.destroy_process_group()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitpid(pid, 0)[1] for pid in pids] == [0, 0]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    torch.testing.assert_close(torch.cat([r0["x"], r1["x"]]) / 2, x.grad, rtol=0, atol=1e-12)
    for got in (r0, r1):
        torch.testing.assert_close(got["w"], reference.weight.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(got["b"], reference.bias.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(got["mean"], reference.running_mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(got["var"], reference.running_var, rtol=0, atol=1e-12)


def test_conversion_keeps_the_parameters_an_optimizer_holds():
    from imaginate.engine.sync_batchnorm import GlobalBatchNorm, convert_batchnorm

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    params = list(net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    converted = convert_batchnorm(net, torch.device("cpu"))
    assert isinstance(converted[1], GlobalBatchNorm)
    assert all(a is b for a, b in zip(params, converted.parameters()))
    assert all(p is q for p, q in zip(opt.param_groups[0]["params"], converted.parameters()))
    assert set(converted.state_dict()) == set(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3),
                                                                   torch.nn.BatchNorm2d(4)).state_dict())
