"""Concrete DropBlock (wetectron, arXiv 2004.04725, Sec. 3.3): an adversarial, learned ROI-feature dropout.

A small conv net looks at the (detached) pooled ROI features and predicts, per cell, the probability of
dropping it. A hard binary mask is sampled with the Gumbel-softmax (binary Concrete) trick, dilated
into blocks by a max-pool, and applied to the features. The conv net is trained to *increase* the
detector loss (``cdb_adversarial_step``), so it learns to hide the most discriminative parts of an
object and the detector has to look at the rest of it (context focus).

Choices, and where they differ from the released code (``wetectron/modeling/cdb.py``):

* Per-cell drop probability ``p = sigmoid(x) * max_drop / dilation_kernel**2`` as in the released
  code (its ``_compute_gamma``; DropBlock's gamma): after the k x k dilation at most about
  ``max_drop`` of the cells are dropped. Without the division a 3x3 dilation of p = 0.3 would drop
  ``1 - 0.7**9 = 96%`` of the cells.
* No BatchNorm in the conv net (the released code has it): the mask of one ROI must not depend on the
  other ROIs in the batch, so that sequential (chunked) back-propagation gives the plain gradients.
* Rescaling per ROI, not over the whole batch: ``out[r] = x[r] * keep[r] * S*S / max(kept cells of r, 1)``
  (the released code uses ``numel / sum`` over all ROIs, which couples ROIs and chunks). An ROI with
  every cell dropped comes out as zeros (the ``max(., 1)`` guard), never NaN. The scale is a
  constant for autograd (detached): the adversary is trained through which cells it drops.
* Distributed training: the adversarial gradients come from ``torch.autograd.grad``, which DDP's
  all-reduce never sees, so ``cdb_adversarial_step`` averages them over the ranks itself (otherwise
  each rank's CDB net drifts its own way).
* Its optimizer (``cdb_optimizer``, ``cdb_lr_factor``) follows the reference's VOC07 setting
  (wetectron ``configs/voc/V_16_voc07.yaml`` ``SOLVER_CDB`` over ``config/defaults.py``): SGD,
  momentum 0.9, lr 1e-4 at batch 8 with biases at 2x lr and no weight decay, weight decay 1e-4, a
  linear warm-up from 1/3 over 500 steps, and the lr multiplied by 3.0 (its ``GAMMA``; a rise, not a
  decay) at the detector's decay steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def sample_mask(drop_logits: Tensor, tau: float = 0.01, generator: torch.Generator | None = None) -> Tensor:
    """A hard binary drop mask by the Gumbel-softmax over {drop, keep}, straight-through gradient.

    The two-class Gumbel-softmax with class logits (log p, log(1 - p)) is the binary Concrete
    relaxation ``soft = sigmoid((logit(p) + L) / tau)`` with logistic noise ``L = g_drop - g_keep =
    log(u) - log(1 - u)``, u ~ U(0, 1); the hard sample ``soft > 0.5`` is 1 with probability exactly p.

    Args:
        drop_logits: any shape, logit(p) = log(p) - log(1 - p) of each cell's drop probability.
        tau: temperature of the relaxation (the gradient is that of ``soft``).
        generator: random source; None draws from the default generator of ``drop_logits``' device.

    Returns:
        the mask, shaped like ``drop_logits``: forward values exactly 0.0 or 1.0 (1 = drop);
        backward, the gradient of the soft sample.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    u = torch.rand(drop_logits.shape, generator=generator, device=drop_logits.device, dtype=drop_logits.dtype)
    u = u.clamp(min=torch.finfo(u.dtype).tiny)  # torch.rand is in [0, 1): keep log(u) finite
    logistic_noise = torch.log(u) - torch.log1p(-u)
    soft = torch.sigmoid((drop_logits + logistic_noise) / tau)
    hard = (soft > 0.5).to(soft.dtype)
    # hard + (soft - soft) keeps the forward value exactly hard; (hard - soft) + soft may round off 0/1
    return hard + (soft - soft.detach())


def dilate_mask(mask: Tensor, kernel: int = 3) -> Tensor:
    """[R, 1, S, S] drop mask -> [R, 1, S, S]: each dropped cell grows to a kernel x kernel block.

    A max-pool with stride 1 and padding kernel // 2 (odd kernels only, so the size is unchanged).
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be odd and >= 1, got {kernel}")
    return F.max_pool2d(mask, kernel_size=kernel, stride=1, padding=kernel // 2)


class ConcreteDropBlock(nn.Module):
    """Learned block dropout of pooled ROI features; identity in eval mode.

    Args:
        channels: F, the channels of the ROI features [R, F, S, S].
        roi_size: S, the side of the pooled ROI features (checked in forward).
        max_drop: about the largest fraction of cells dropped after dilation; the per-cell drop
            probability is ``sigmoid(x) * max_drop / dilation_kernel**2`` (see the module docstring).
        tau: Gumbel-softmax temperature.
        dilation_kernel: side of the dropped blocks (odd).
        hidden_channels: width of the conv net's hidden layer (default ``channels``, as released).
    """

    def __init__(self, channels: int, roi_size: int = 7, max_drop: float = 0.3, tau: float = 0.01,
                 dilation_kernel: int = 3, hidden_channels: int | None = None) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if roi_size < 1:
            raise ValueError(f"roi_size must be >= 1, got {roi_size}")
        if not 0.0 <= max_drop < 1.0:
            raise ValueError(f"max_drop must be in [0, 1), got {max_drop}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if dilation_kernel < 1 or dilation_kernel % 2 == 0:
            raise ValueError(f"dilation_kernel must be odd and >= 1, got {dilation_kernel}")
        hidden = channels if hidden_channels is None else hidden_channels
        if hidden < 1:
            raise ValueError(f"hidden_channels must be >= 1, got {hidden_channels}")
        self.roi_size = roi_size
        self.max_drop = max_drop
        self.tau = tau
        self.dilation_kernel = dilation_kernel
        self.cell_drop_max = max_drop / dilation_kernel**2  # upper bound of the per-cell probability
        self.drop_logit_net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 3, padding=1))
        self._last_drop_fraction: Tensor | None = None

    @property
    def last_drop_fraction(self) -> float:
        """Fraction of cells dropped (after dilation) in the last training forward; 0.0 before any.

        With chunked (sequential) back-propagation that is the last chunk's fraction.
        """
        return 0.0 if self._last_drop_fraction is None else float(self._last_drop_fraction)

    def drop_logits(self, features: Tensor) -> Tensor:
        """[R, F, S, S] -> [R, 1, S, S] logit of each cell's drop probability p = sigmoid(x) * cell_drop_max.

        The conv net sees detached features: it is trained only by its own (adversarial) objective.
        """
        x = self.drop_logit_net(features.detach())
        log_p = F.logsigmoid(x) + math.log(self.cell_drop_max)
        p = torch.sigmoid(x) * self.cell_drop_max
        return log_p - torch.log1p(-p)

    def forward(self, features: Tensor) -> Tensor:
        """[R, F, S, S] ROI features -> [R, F, S, S]; identity in eval mode or with max_drop == 0."""
        if features.dim() != 4 or features.shape[-2:] != (self.roi_size, self.roi_size):
            raise ValueError(f"expected [R, F, {self.roi_size}, {self.roi_size}] ROI features, "
                             f"got {list(features.shape)}")
        if not self.training or self.max_drop == 0.0:
            return features
        mask = dilate_mask(sample_mask(self.drop_logits(features), self.tau), self.dilation_kernel)  # [R, 1, S, S]
        keep = 1.0 - mask
        with torch.no_grad():
            kept = keep.sum(dim=(1, 2, 3), keepdim=True)  # [R, 1, 1, 1]
            scale = (self.roi_size**2) / kept.clamp(min=1.0)  # all-dropped ROI: keep is 0, output 0
            self._last_drop_fraction = mask.mean()
        return features * keep * scale


def cdb_optimizer(cdb: nn.Module, lr: float = 1e-4, momentum: float = 0.9, weight_decay: float = 1e-4,
                  bias_lr_factor: float = 2.0) -> torch.optim.SGD:
    """SGD over the CDB net's parameters as the reference builds it: weights at ``lr`` with
    ``weight_decay``, biases at ``bias_lr_factor * lr`` without weight decay."""
    weights = [p for name, p in cdb.named_parameters() if p.requires_grad and not name.endswith("bias")]
    biases = [p for name, p in cdb.named_parameters() if p.requires_grad and name.endswith("bias")]
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay},
              {"params": biases, "lr": lr * bias_lr_factor, "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=momentum)


def cdb_lr_factor(step: int, warmup_steps: int, milestones: list[int], gamma: float,
                  warmup_from: float = 1.0 / 3.0) -> float:
    """The CDB learning-rate multiplier at ``step``: a linear warm-up from ``warmup_from`` to 1 over
    ``warmup_steps``, times ``gamma`` per milestone passed (the reference's warm-up multi-step rule)."""
    warm = 1.0
    if step < warmup_steps:
        alpha = step / warmup_steps
        warm = warmup_from * (1.0 - alpha) + alpha
    return warm * gamma ** sum(step >= m for m in milestones)


def average_over_ranks_(tensors: list[Tensor]) -> None:
    """Replace each tensor by its mean over the ranks of the default process group, in place (one
    all-reduce of a flat buffer); nothing happens in a single process."""
    if not tensors or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def cdb_adversarial_step(cdb: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[], Tensor],
                         weight: float = 0.01) -> Tensor:
    """One adversarial update of the Concrete DropBlock net: step ``optimizer`` on ``-weight * loss_fn()``.

    The pattern (wetectron's ``do_train_cdb``): after the detector's own step, ``loss_fn`` runs a
    second training forward of the detector (with ``cdb`` inside it) and returns its loss; the CDB net
    descends ``-weight * loss``, i.e. ascends the detector loss. Gradients are taken with
    ``torch.autograd.grad`` for the CDB parameters only, so the ``.grad`` of every other parameter is
    neither read nor written, and ``optimizer`` must hold CDB parameters only (checked). Under
    torch.distributed the gradients are averaged over the ranks before the step (DDP's all-reduce
    runs only inside ``backward``), so every rank's CDB net stays the same.

    Args:
        cdb: the Concrete DropBlock module (its trainable parameters are updated).
        optimizer: the CDB net's own optimizer (wetectron: SGD), over ``cdb``'s parameters only.
        loss_fn: closure running the detector forward in training mode, returning the scalar loss.
        weight: the adversarial weight (wetectron: 0.01).

    Returns:
        the detector loss of the second forward (detached).
    """
    params = [p for p in cdb.parameters() if p.requires_grad]
    owned = {id(p) for p in cdb.parameters()}
    foreign = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in owned]
    if foreign:
        raise ValueError(f"optimizer holds {len(foreign)} parameters that are not the CDB net's: "
                         "give the CDB net its own optimizer")
    loss = loss_fn()
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {list(loss.shape)}")
    grads = torch.autograd.grad(-weight * loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    average_over_ranks_(grads)
    for param, grad in zip(params, grads):
        param.grad = grad
    optimizer.step()
    for param in params:
        param.grad = None
    return loss.detach()
