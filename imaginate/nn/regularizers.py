"""Discriminator gradient penalties: WGAN-GP, R1 (on real data) and R2 (on generated data).

All penalties differentiate the discriminator's output with respect to its input with
``torch.autograd.grad(..., create_graph=True)``, so the returned scalar can be back-propagated into
the discriminator's weights. A multi-scale discriminator's outputs (a nested list of tensors) are
summed over all elements of all scales before differentiating, as is a PatchGAN map.

The discriminator is called as ``discriminator(x)``, or ``discriminator(x, condition)`` when a
``condition`` (class labels, a segmentation map, ...) is given; it is passed through untouched.

Lazy regularisation (StyleGAN2): evaluate the penalty only every ``interval`` D steps and multiply
it by ``interval`` so that its average strength is unchanged::

    penalty = lazy_penalty(step, 16, lambda: r1_penalty(discriminator, real, gamma=10.0))
    if penalty is not None:
        loss = loss + penalty

(StyleGAN2 also rescales Adam's learning rate and betas by ``interval / (interval + 1)``; that is the
optimiser's business and is not done here.) Under fp16 autocast the input gradients can underflow;
compute penalties in float32 if that happens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

Outputs = Tensor | Sequence[Any]  # a tensor or a (nested) list of per-scale tensors


def _sum_outputs(outputs: Outputs) -> Tensor:
    """Sum of every element of a tensor or of a (nested) list of tensors."""
    if isinstance(outputs, Tensor):
        return outputs.sum()
    if isinstance(outputs, Sequence) and len(outputs) > 0:
        return torch.stack([_sum_outputs(item) for item in outputs]).sum()
    raise TypeError(f"discriminator outputs must be a tensor or a non-empty list, got {type(outputs).__name__}")


def _call(discriminator: Callable[..., Outputs], x: Tensor, condition: Any) -> Outputs:
    return discriminator(x) if condition is None else discriminator(x, condition)


def input_gradients(outputs: Outputs, inputs: Tensor) -> Tensor:
    """d(sum of outputs)/d(inputs), with a graph so that it can itself be differentiated.

    Args:
        outputs: the discriminator's outputs computed from ``inputs`` (``inputs.requires_grad``).
        inputs: the input batch ``[B, ...]``.

    Returns:
        ``[B, ...]``, the same shape as ``inputs``.
    """
    (grad,) = torch.autograd.grad(_sum_outputs(outputs), inputs, create_graph=True)
    return grad


def squared_gradient_norm_penalty(inputs: Tensor, outputs: Outputs, gamma: float) -> Tensor:
    """``gamma / 2 * E_b ||d outputs / d inputs_b||^2`` from outputs already computed on ``inputs``.

    Use it to reuse the D forward pass of the D loss: make ``inputs.requires_grad_(True)`` before
    calling D, then pass the same outputs here.
    """
    grad = input_gradients(outputs, inputs)  # [B, ...]
    return 0.5 * gamma * grad.square().flatten(1).sum(1).mean()


def r1_penalty(
    discriminator: Callable[..., Outputs], real: Tensor, gamma: float = 10.0, condition: Any = None
) -> Tensor:
    """R1 penalty (Mescheder et al. 2018): ``gamma / 2 * E ||grad_x D(x)||^2`` on real data.

    Args:
        discriminator: the D network (or any callable returning its logits).
        real: real batch ``[B, C, H, W]`` (detached inside; no gradient reaches the data).
        gamma: the penalty weight (10 is common; StyleGAN2 scales it with resolution).
        condition: passed to D as its second argument when not None.
    """
    inputs = real.detach().requires_grad_(True)
    return squared_gradient_norm_penalty(inputs, _call(discriminator, inputs, condition), gamma)


def r2_penalty(
    discriminator: Callable[..., Outputs], fake: Tensor, gamma: float = 10.0, condition: Any = None
) -> Tensor:
    """R2 penalty: the R1 formula on generated data ``fake`` (detached inside)."""
    inputs = fake.detach().requires_grad_(True)
    return squared_gradient_norm_penalty(inputs, _call(discriminator, inputs, condition), gamma)


def gradient_penalty(
    discriminator: Callable[..., Outputs],
    real: Tensor,
    fake: Tensor,
    weight: float = 10.0,
    condition: Any = None,
    generator: torch.Generator | None = None,
    target_norm: float = 1.0,
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``weight * E (||grad D(x_hat)|| - target_norm)^2``.

    ``x_hat = alpha * real + (1 - alpha) * fake`` with one ``alpha ~ U[0, 1]`` per sample.

    Args:
        discriminator: the critic (or any callable returning its outputs).
        real: real batch ``[B, ...]``.
        fake: generated batch of the same shape (detached inside).
        weight: lambda in the paper (10).
        condition: passed to D as its second argument when not None (the same for all x_hat).
        generator: the random generator for ``alpha`` (default: the global one). Its device is
            used to draw; ``alpha`` is then moved to ``real``'s device.
        target_norm: the gradient norm the penalty pulls towards (1 in the paper).
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    draw_device = generator.device if generator is not None else real.device
    alpha_shape = (real.shape[0],) + (1,) * (real.dim() - 1)  # [B, 1, 1, 1]
    alpha = torch.rand(alpha_shape, generator=generator, device=draw_device, dtype=real.dtype).to(real.device)
    interpolates = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)  # [B, ...]
    grad = input_gradients(_call(discriminator, interpolates, condition), interpolates)
    norms = grad.flatten(1).norm(2, dim=1)  # [B]
    return weight * (norms - target_norm).square().mean()


def is_due(step: int, interval: int) -> bool:
    """Whether a lazy regulariser with this interval runs at ``step`` (steps 0, k, 2k, ...)."""
    if interval < 1:
        raise ValueError(f"lazy regularisation interval must be >= 1, got {interval}")
    return step % interval == 0


def lazy_penalty(step: int, interval: int, penalty_fn: Callable[[], Tensor]) -> Tensor | None:
    """``interval * penalty_fn()`` at steps 0, k, 2k, ... (k = interval), else None (not evaluated)."""
    if not is_due(step, interval):
        return None
    return interval * penalty_fn()

