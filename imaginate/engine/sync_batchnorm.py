"""Batch norm over the global batch of all ranks, on CPU (gloo) as well as CUDA.

Under torchrun each rank sees ``batch_size / world_size`` items; a plain BatchNorm normalises with the
statistics of that share, so N processes train a different model than one process at the same global
batch. ``convert_batchnorm`` swaps every BatchNorm of a module for one that all-reduces its statistics:
``torch.nn.SyncBatchNorm`` on CUDA, and :class:`GlobalBatchNorm` (differentiable all-reduces)
elsewhere, since torch's SyncBatchNorm refuses CPU tensors. The state-dict
keys stay those of BatchNorm, so checkpoints move freely between 1 and N processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of every rank's input is the sum of the ranks' output gradients."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # noqa: D102
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        out = grad.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


def all_reduce(tensor: Tensor) -> Tensor:
    return _AllReduceSum.apply(tensor)


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm{1,2,3}d whose training-mode statistics are those of the global batch (all ranks).

    Two all-reduces per call: the sum and count (mean), then the sum of squared deviations (biased
    variance for normalising; the unbiased one feeds the running estimate, as BatchNorm does).
    Gradients flow through both reductions, so the weights get the gradient of the global batch's loss.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input [N, C, ...], got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if not (use_batch_stats and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input if input.dtype == torch.float64 else input.float()
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        total = all_reduce(torch.cat([x.sum(dims), count]))  # [C + 1]: global sums, global count
        n = total[-1]
        mean = total[:-1] / n  # [C]
        squares = all_reduce(((x - mean.view(shape)) ** 2).sum(dims))  # [C]
        var = squares / n
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var.detach() * n / (n - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(mean.detach().to(self.running_mean.dtype), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in module.modules())


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every BatchNorm replaced by a global-batch one (SyncBatchNorm on CUDA) that holds the
    very same Parameter and buffer objects (so optimizers built before keep working) and train/eval mode."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        replaced = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats, device="meta")
        # the same Parameter and buffer objects: an optimizer built before the conversion still steps them
        for name, param in module.named_parameters(recurse=False):
            setattr(replaced, name, param)
        for name, buffer in module.named_buffers(recurse=False):
            setattr(replaced, name, buffer)
        replaced.train(module.training)
        return replaced
    for name, child in module.named_children():
        converted = convert_batchnorm(child, device)
        if converted is not child:
            setattr(module, name, converted)
    return module
