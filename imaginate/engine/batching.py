"""Batches as a pure function of (seed, step, rank): resuming and re-sharding need no loader state.

Each epoch is a fresh permutation drawn from ``seed + epoch``; the global batch for a step is a
contiguous slice of the epoch stream (wrapping into the next epoch), and rank r takes its share of it.
So a run resumed at step k sees exactly the batches an uninterrupted run sees, and N ranks together see
the same global batch as one process.
"""

from __future__ import annotations

import torch


def global_batch_indices(step: int, num_items: int, global_batch: int, seed: int) -> torch.Tensor:
    """Indices [global_batch] of the items in the global batch of ``step`` (0-based)."""
    if num_items < 1:
        raise ValueError("cannot draw batches from an empty data set")
    start = step * global_batch
    out = []
    while global_batch > 0:
        epoch, offset = divmod(start, num_items)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(num_items, generator=gen)
        take = min(global_batch, num_items - offset)
        out.append(perm[offset:offset + take])
        start += take
        global_batch -= take
    return torch.cat(out)


def rank_share(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous share of a global batch along dim 0 (sizes must divide evenly)."""
    n = indices.shape[0]
    if n % world_size:
        raise ValueError(f"train.batch_size={n} does not split evenly over {world_size} processes")
    per = n // world_size
    return indices[rank * per:(rank + 1) * per]


def split_micro_batches(batch, parts: int) -> list:
    """Split a batch (tensor, or tuple/list/dict of tensors sharing dim 0) into ``parts`` micro-batches."""
    if parts == 1:
        return [batch]
    if isinstance(batch, torch.Tensor):
        if batch.shape[0] % parts:
            raise ValueError(f"a batch of {batch.shape[0]} does not split into train.grad_accum={parts} parts")
        return list(batch.chunk(parts))
    if isinstance(batch, dict):
        pieces = {k: split_micro_batches(v, parts) for k, v in batch.items()}
        return [{k: pieces[k][i] for k in batch} for i in range(parts)]
    if isinstance(batch, (tuple, list)):
        pieces = [split_micro_batches(v, parts) for v in batch]
        return [type(batch)(p[i] for p in pieces) for i in range(parts)]
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} into micro-batches")
