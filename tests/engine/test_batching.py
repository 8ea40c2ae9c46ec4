import torch

from imaginate.engine.batching import global_batch_indices, rank_share, split_micro_batches


def test_epochs_are_permutations_and_steps_are_deterministic():
    n, b = 10, 4
    stream = torch.cat([global_batch_indices(s, n, b, seed=3) for s in range(5)])  # 20 items = 2 epochs
    assert sorted(stream[:10].tolist()) == list(range(10))
    assert sorted(stream[10:].tolist()) == list(range(10))
    assert torch.equal(global_batch_indices(3, n, b, seed=3), global_batch_indices(3, n, b, seed=3))
    assert not torch.equal(stream[:10], torch.cat([global_batch_indices(s, n, b, seed=4) for s in range(5)])[:10])


def test_rank_shares_partition_the_global_batch():
    idx = global_batch_indices(7, 100, 8, seed=0)
    shares = [rank_share(idx, r, 4) for r in range(4)]
    assert torch.equal(torch.cat(shares), idx)


def test_micro_batches_split_nested_batches():
    x, y = torch.arange(12).view(6, 2), torch.arange(6)
    parts = split_micro_batches((x, y), 3)
    assert len(parts) == 3 and torch.equal(torch.cat([p[0] for p in parts]), x)
    d = split_micro_batches({"a": y}, 2)
    assert torch.equal(d[1]["a"], y[3:])


def test_batch_noise_is_the_global_draw_shared_out_by_rank():
    from imaginate.engine.distributed import DistEnv
    from imaginate.engine.system import RunContext

    def ctx(rank, world):
        return RunContext(DistEnv(rank, world, rank, torch.device("cpu")), amp=False, grad_accum=1, seed=7,
                          global_batch=8)

    one = ctx(0, 1).batch_noise(3, 5, stream=1)
    assert one.shape == (8, 5)
    shares = [ctx(r, 4).batch_noise(3, 5, stream=1) for r in range(4)]
    assert all(s.shape == (2, 5) for s in shares) and torch.equal(torch.cat(shares), one)
    assert torch.equal(ctx(0, 1).batch_noise(3, 5, stream=1), one)  # a function of (seed, step, stream)
    assert not torch.equal(ctx(0, 1).batch_noise(4, 5, stream=1), one)
    assert not torch.equal(ctx(0, 1).batch_noise(3, 5, stream=0), one)
    torch.manual_seed(0)
    a = ctx(0, 1).batch_noise(3, 5, stream=1)
    torch.randn(10)  # the global generator does not enter
    assert torch.equal(a, one)
