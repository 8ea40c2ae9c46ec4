"""Exponential moving average of a network's weights (the generator EMA used for evaluation).

``ModelEMA(model, beta)`` keeps ``ema.module``, a deep copy of ``model`` in eval mode with no
gradients. ``ema.update(model)`` sets, for every floating-point parameter,
``ema_param = beta_t * ema_param + (1 - beta_t) * param`` and copies every buffer (batch-norm
statistics, spectral-norm vectors) and every non-float parameter as they are.

Warm-up (optional, ``warmup_updates > 0``): early in training the average would be dominated by the
random initial weights, so ``beta_t = beta * min(1, n / warmup_updates)`` ramps linearly from 0 (a
plain copy) to ``beta`` over the first ``warmup_updates`` updates, ``n`` counting previous updates.

Checkpointing: ``ema.module`` is an ordinary ``nn.Module`` and can be registered with the engine
like any network; ``ModelEMA`` itself is an ``nn.Module`` whose state holds ``module.*`` plus the
update counter ``num_updates``. With warm-up, register ``ema`` (not just ``ema.module``) so the
counter survives a resume; without warm-up the counter does not affect the update.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.parallel import DataParallel, DistributedDataParallel


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP/DataParallel or a ``torch.compile`` wrapper."""
    while True:
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's wrapper
            model = model._orig_mod
        else:
            return model


class ModelEMA(nn.Module):
    """An exponential moving average of ``model``'s weights.

    Args:
        model: the network to average (DDP or ``torch.compile`` wrappers are unwrapped).
        beta: the decay; 0.999 in most GANs (``0`` copies the model on every update).
        warmup_updates: number of updates over which ``beta`` ramps up from 0 (0: no warm-up).
    """

    def __init__(self, model: nn.Module, beta: float = 0.999, warmup_updates: int = 0) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"EMA beta must be in [0, 1], got {beta}")
        if warmup_updates < 0:
            raise ValueError(f"EMA warmup_updates must be >= 0, got {warmup_updates}")
        self.beta = beta
        self.warmup_updates = warmup_updates
        self.module = copy.deepcopy(_unwrap(model)).eval().requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_beta(self) -> float:
        """The decay the next ``update`` will use."""
        if self.warmup_updates == 0:
            return self.beta
        return self.beta * min(1.0, int(self.num_updates) / self.warmup_updates)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (call after each optimizer step)."""
        model = _unwrap(model)
        beta = self.current_beta()
        ema_params = dict(self.module.named_parameters())
        model_params = dict(model.named_parameters())
        if ema_params.keys() != model_params.keys():
            missing = sorted(ema_params.keys() ^ model_params.keys())[:5]
            raise ValueError(f"ModelEMA.update: model parameters differ from the EMA copy's (e.g. {missing})")
        for name, param in model_params.items():
            ema_param = ema_params[name]
            if ema_param.dtype.is_floating_point:
                # exactly beta * ema + (1 - beta) * param, each product rounded, then the sum
                ema_param.mul_(beta).add_(param.detach().to(ema_param.dtype) * (1.0 - beta))
            else:
                ema_param.copy_(param)
        ema_buffers = dict(self.module.named_buffers())
        for name, buffer in model.named_buffers():
            if name in ema_buffers:
                ema_buffers[name].copy_(buffer)
        self.num_updates += 1

    def forward(self, *args: object, **kwargs: object) -> Tensor:
        """Run the averaged network."""
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> ModelEMA:
        """The EMA copy stays in eval mode whatever ``mode`` is (it is never trained)."""
        super().train(mode)
        self.module.eval()
        return self
