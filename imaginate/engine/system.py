"""The contract between the engine and a system, and the one helper systems use to update weights.

A system owns any number of networks (``self.modules``), optimizers (``self.optimizers``) and schedulers
(``self.schedulers``) under names of its choice; the engine moves, wraps, checkpoints, logs and exports
them all. A GAN registers ``generator``, ``discriminator`` and ``generator_ema`` with two optimizers and
calls :meth:`RunContext.update` twice in its ``train_step``; a classifier registers one of each.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from imaginate.engine.batching import global_batch_indices, rank_share, split_micro_batches
from imaginate.engine.distributed import DistEnv, all_reduce_mean
from imaginate.engine.sync_batchnorm import convert_batchnorm, has_batchnorm


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or inf; raised before the optimizer step, so the weights are untouched."""

    def __init__(self, name: str, value: float):
        super().__init__(f"loss of optimizer '{name}' is {value}")
        self.name = name
        self.value = value


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Inside the block ``module``'s parameters take no gradient (e.g. D during a GAN's G step: no D
    gradients are computed, nor synchronised by DDP); their previous ``requires_grad`` flags return after."""
    params = list(unwrap(module).parameters())
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


LossFn = Callable[[Any], "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"]


class RunContext:
    """What a system may ask of the engine: the device, DDP wrapping, AMP and optimizer updates.

    Args:
        env: this process's rank, world size and device.
        amp: mixed precision: bf16 autocast on CPU, fp16 autocast with gradient scaling on CUDA.
        grad_accum: micro-batches per update.
        seed: the run's seed (data order, initialisation).
        global_batch: the batch size summed over ranks.
        sync_batchnorm: under torchrun, modules passed to ``prepare`` normalise with global-batch statistics.
        check_finite: ``update`` refuses a NaN/inf loss (NonFiniteLossError) instead of stepping.
    """

    def __init__(self, env: DistEnv, amp: bool, grad_accum: int, seed: int, global_batch: int,
                 sync_batchnorm: bool = True, check_finite: bool = True):
        self.env = env
        self.sync_batchnorm = sync_batchnorm
        self.check_finite = check_finite
        self.device = env.device
        self.amp = amp
        self.grad_accum = grad_accum
        self.seed = seed
        self.global_batch = global_batch
        self._ddp_modules: list[DistributedDataParallel] = []
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    # -- building -------------------------------------------------------------------------------
    def prepare(self, module: nn.Module, ddp: bool = True) -> nn.Module:
        """Move ``module`` to the run's device; under torchrun, wrap it in DDP when it has trainable
        parameters and ``ddp`` is true (EMA copies and frozen nets pass ``ddp=False``); with
        ``sync_batchnorm`` its BatchNorms then use the statistics of the global batch (engine.sync_batchnorm)."""
        module = module.to(self.device)
        trainable = any(p.requires_grad for p in module.parameters())
        if ddp and trainable and self.env.distributed:
            if self.sync_batchnorm and has_batchnorm(module):
                module = convert_batchnorm(module, self.device)
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
            self._ddp_modules.append(module)
        return module

    def batch_indices(self, step: int, num_items: int) -> torch.Tensor:
        """This rank's indices of the global batch of ``step`` (deterministic; see engine.batching)."""
        idx = global_batch_indices(step, num_items, self.global_batch, self.seed)
        return rank_share(idx, self.env.rank, self.env.world_size)

    def batch_noise(self, step: int, *shape: int, stream: int = 0) -> torch.Tensor:
        """This rank's share of standard normal noise ``[global_batch, *shape]`` drawn from (seed, step, stream),
        on the device: like the batch indices, N ranks together draw what one process draws (a GAN's latents).
        ``stream`` tells apart the draws of one step (e.g. 0 for D's fakes, 1 for G's)."""
        gen = torch.Generator().manual_seed(((self.seed * 1_000_003 + step) * 64 + stream) % 2**63)
        noise = torch.randn(self.global_batch, *shape, generator=gen)
        return rank_share(noise, self.env.rank, self.env.world_size).to(self.device)

    # -- updating -------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _scaler(self, name: str) -> torch.amp.GradScaler:
        if name not in self.scalers:
            enabled = self.amp and self.device.type == "cuda"
            self.scalers[name] = torch.amp.GradScaler(self.device.type, enabled=enabled)
        return self.scalers[name]

    def update(self, name: str, optimizer: torch.optim.Optimizer, batch: Any, loss_fn: LossFn,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> dict[str, float]:
        """One optimizer step: ``loss_fn`` over ``grad_accum`` micro-batches of ``batch``, backward with
        AMP scaling and DDP gradient sync on the last micro-batch only, a finiteness check, the step.

        ``loss_fn(micro_batch)`` returns a scalar loss, or ``(loss, logs)`` with extra floats to log.
        Returns ``{f"{name}_loss": mean loss over ranks, **logs averaged over micro-batches}``.

        Raises:
            NonFiniteLossError: before stepping, when the loss is NaN or inf on any rank.
        """
        scaler = self._scaler(name)
        micro = split_micro_batches(batch, self.grad_accum)
        optimizer.zero_grad(set_to_none=True)
        loss_sum, logs_sum = 0.0, {}
        for i, mb in enumerate(micro):
            last = i == len(micro) - 1
            with contextlib.ExitStack() as stack:
                if not last:
                    for m in self._ddp_modules:
                        stack.enter_context(m.no_sync())
                with self.autocast():
                    out = loss_fn(mb)
                loss, logs = out if isinstance(out, tuple) else (out, {})
                scaler.scale(loss / len(micro)).backward()
            loss_sum += float(loss.detach())
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + float(v)
        loss_mean = all_reduce_mean({"loss": loss_sum / len(micro)}, self.env)["loss"]
        if self.check_finite and not math.isfinite(loss_mean):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(name, loss_mean)
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        result = {f"{name}_loss": loss_mean}
        result.update({k: v / len(micro) for k, v in logs_sum.items()})
        return result


class System:
    """Base class of every system. Subclasses build their parts in ``__init__(cfg, ctx)``.

    Attributes set by subclasses:
        modules: name -> network (as returned by ``ctx.prepare``); all are checkpointed and exported.
        optimizers: name -> optimizer; schedulers: name -> LR scheduler (optional).
    """

    def __init__(self, cfg: Any, ctx: RunContext):
        self.cfg = cfg
        self.ctx = ctx
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}

    def train_batch(self, step: int) -> Any:
        """This rank's share of the batch of ``step``, on the device. Must depend only on (seed, step)."""
        raise NotImplementedError(f"{type(self).__name__} must define train_batch")

    def train_step(self, batch: Any) -> dict[str, float]:
        """Update the weights with ``batch`` (through ``ctx.update``); return floats to log."""
        raise NotImplementedError(f"{type(self).__name__} must define train_step")

    def evaluate(self) -> dict[str, float]:
        """Metrics on held-out data. Runs on rank 0 under ``torch.no_grad`` with a fixed RNG."""
        return {}

    def sample(self) -> dict[str, torch.Tensor]:
        """Pictures to look at: name -> image [3, H, W] in [0, 1]."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Anything else a checkpoint must hold to resume exactly (tensors, numbers, strings)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def train(self, mode: bool = True) -> None:
        for m in self.modules.values():
            m.train(mode)
