"""torch.distributed from torchrun's environment: gloo on CPU, NCCL on CUDA. One process is world size 1."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from imaginate.config import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present (one GPU per local rank), else CPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: '{preference}' but no CUDA device is visible; use auto or cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if preference.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: '{preference}' but no CUDA device is visible; use auto or cpu")
        index = int(preference.split(":", 1)[1]) if preference.split(":", 1)[1].isdigit() else -1
        if not 0 <= index < torch.cuda.device_count():
            raise ConfigError(f"train.device: '{preference}' but this machine has {torch.cuda.device_count()} "
                              "CUDA device(s)")
    elif preference != "cpu":
        raise ConfigError(f"device: '{preference}' is not one of auto, cpu, cuda, cuda:N")
    return torch.device(preference)


def init_distributed(device_preference: str) -> DistEnv:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistEnv(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """The mean of each float over ranks (identity in one process)."""
    if not env.distributed or not values:
        return dict(values)
    keys = sorted(values)
    buf = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=env.device)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    buf /= env.world_size
    return dict(zip(keys, buf.tolist()))


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
