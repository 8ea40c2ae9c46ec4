"""Objectives of the styled-text generator: LM reconstruction, the Gumbel-softmax straight-through sample
that carries the adversarial and style gradients through discrete text, and the style-consistency term.
The GAN terms themselves are the shared ones in ``imaginate.nn.gan_losses``."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from imaginate.systems.styled_text.tokenizer import PAD


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy (nats) over non-padding targets. logits [B, T, V]; targets [B, T]."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=PAD)


def gumbel_softmax_st(logits: Tensor, tau: float, hard: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """A sample from ``softmax(logits)`` as a row over the vocabulary, differentiable in ``logits``.

    ``y = softmax((logits + g) / tau)`` with Gumbel noise ``g``. ``hard``: the forward value is the one-hot
    of ``argmax y`` and the gradient is that of ``y`` (straight-through); otherwise ``y`` itself (the soft
    embedding option). logits [..., V] -> [..., V].
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
    soft = F.softmax((logits.float() + gumbel) / tau, dim=-1)
    if not hard:
        return soft
    hard_rows = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard_rows - soft.detach() + soft


def gumbel_temperature(step: int, start: float, end: float, anneal_steps: int) -> float:
    """Exponential annealing from ``start`` to ``end`` over ``anneal_steps`` steps, then ``end``."""
    if anneal_steps <= 0 or step >= anneal_steps:
        return end
    return start * math.exp(math.log(end / start) * step / anneal_steps)


def style_consistency_loss(generated_code: Tensor, reference_code: Tensor) -> Tensor:
    """1 - cosine between the encoder's code of generated text and of the reference, [B, S] each."""
    return (1.0 - F.cosine_similarity(generated_code.float(), reference_code.float(), dim=-1)).mean()
