"""Adversarial losses on discriminator logits, and the feature matching loss.

Every loss takes raw discriminator outputs (logits, before any sigmoid) as a tensor of any shape
(a global score ``[B]``/``[B, 1]`` or a PatchGAN map ``[B, 1, H, W]``), or a (nested) list of such
tensors from a multi-scale discriminator. A tensor's loss is the mean over its elements; a list's
loss is the mean of its items' losses (recursively, so ``[[a, b], c]`` gives
``((l(a) + l(b)) / 2 + l(c)) / 2``), which for a flat list of scales is the average over scales.

With ``f`` the fake logits, ``r`` the real logits and ``sigma`` the sigmoid:

- ``saturating``: D ``-log sigma(r) - log(1 - sigma(f))``; G ``log(1 - sigma(f)) = -softplus(f)``
- ``non_saturating``: D the same, ``softplus(-r) + softplus(f)``; G ``-log sigma(f) = softplus(-f)``
- ``least_squares``: D ``(r - 1)^2 + f^2``; G ``(f - 1)^2``
- ``wasserstein``: D ``f - r``; G ``-f``
- ``hinge``: D ``relu(1 - r) + relu(1 + f)``; G ``-f``

The saturating generator loss is the original minimax objective (its gradient vanishes when D is
confident, hence the name); the non-saturating one is the usual practice. Both share the binary
cross-entropy discriminator loss, computed stably with softplus. Least squares uses no 1/2 factor
(as pix2pixHD's MSE). WGAN needs a Lipschitz constraint: see ``imaginate.nn.regularizers``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

GAN_LOSSES: tuple[str, ...] = ("saturating", "non_saturating", "least_squares", "wasserstein", "hinge")

# A discriminator output: one tensor, or a (nested) list of them, one per scale.
Logits = Tensor | Sequence["Logits"]


def check_gan_loss(kind: str) -> str:
    """Return ``kind`` if it names a GAN loss, else raise a ValueError naming the allowed ones."""
    if kind not in GAN_LOSSES:
        raise ValueError(f"GAN loss {kind!r} is not one of {', '.join(GAN_LOSSES)}")
    return kind


def _mean_over_scales(logits: Logits, elementwise: Callable[[Tensor], Tensor]) -> Tensor:
    """Mean of ``elementwise(t)`` over each tensor's elements, then mean over list items."""
    if isinstance(logits, Tensor):
        return elementwise(logits).mean()
    if len(logits) == 0:
        raise ValueError("discriminator outputs: got an empty list")
    losses = [_mean_over_scales(item, elementwise) for item in logits]
    return torch.stack(losses).mean()


def _real_term(kind: str) -> Callable[[Tensor], Tensor]:
    """Per-element discriminator loss on real logits."""
    if kind in ("saturating", "non_saturating"):
        return lambda r: F.softplus(-r)  # -log sigma(r)
    if kind == "least_squares":
        return lambda r: (r - 1.0).square()
    if kind == "wasserstein":
        return lambda r: -r
    return lambda r: F.relu(1.0 - r)  # hinge


def _fake_term(kind: str) -> Callable[[Tensor], Tensor]:
    """Per-element discriminator loss on fake logits."""
    if kind in ("saturating", "non_saturating"):
        return F.softplus  # -log(1 - sigma(f))
    if kind == "least_squares":
        return lambda f: f.square()
    if kind == "wasserstein":
        return lambda f: f
    return lambda f: F.relu(1.0 + f)  # hinge


def _generator_term(kind: str) -> Callable[[Tensor], Tensor]:
    """Per-element generator loss on fake logits."""
    if kind == "saturating":
        return lambda f: -F.softplus(f)  # log(1 - sigma(f))
    if kind == "non_saturating":
        return lambda f: F.softplus(-f)  # -log sigma(f)
    if kind == "least_squares":
        return lambda f: (f - 1.0).square()
    return lambda f: -f  # wasserstein, hinge


def d_loss_terms(kind: str, real_logits: Logits, fake_logits: Logits) -> tuple[Tensor, Tensor]:
    """The discriminator loss split into its real and fake parts (for logging).

    Args:
        kind: one of ``GAN_LOSSES``.
        real_logits: D's outputs on real data: a tensor or (nested) list of per-scale tensors.
        fake_logits: D's outputs on generated data (detach the generator's output before D);
            its list structure need not match ``real_logits``.

    Returns:
        ``(real_part, fake_part)``, two scalars whose sum is ``d_loss``.
    """
    check_gan_loss(kind)
    return _mean_over_scales(real_logits, _real_term(kind)), _mean_over_scales(fake_logits, _fake_term(kind))


def d_loss(kind: str, real_logits: Logits, fake_logits: Logits) -> Tensor:
    """Discriminator loss (a scalar to minimise); see the module docstring for the formulas."""
    real_part, fake_part = d_loss_terms(kind, real_logits, fake_logits)
    return real_part + fake_part


def g_loss(kind: str, fake_logits: Logits) -> Tensor:
    """Generator loss (a scalar to minimise) on D's outputs for generated data."""
    check_gan_loss(kind)
    return _mean_over_scales(fake_logits, _generator_term(kind))


# Discriminator features: per scale, a list of per-layer tensors ([[B, C, H, W], ...] per scale).
Features = Tensor | Sequence[Tensor] | Sequence[Sequence[Tensor]]


def _as_scales(features: Features) -> list[list[Tensor]]:
    if isinstance(features, Tensor):
        return [[features]]
    if len(features) > 0 and isinstance(features[0], Tensor):
        return [list(features)]  # type: ignore[arg-type]  # one scale
    return [list(scale) for scale in features]  # type: ignore[union-attr]


def feature_matching_loss(
    real_features: Features, fake_features: Features, layer_weights: Sequence[float] | None = None
) -> Tensor:
    """L1 between the discriminator features of real and fake data (pix2pixHD's feature matching).

    Per scale the loss is ``sum_j w_j * mean|fake[j] - real[j].detach()|`` over layers ``j``; the
    result is the mean over scales. Gradients flow only into the fake features.

    Args:
        real_features: per scale, a list of per-layer tensors (``list[list[Tensor]]``); one scale
            may be given as ``list[Tensor]`` and a single feature as a tensor.
        fake_features: the same structure for generated data.
        layer_weights: one weight per layer; default ``1 / num_layers`` each (the mean over layers).
    """
    real_scales, fake_scales = _as_scales(real_features), _as_scales(fake_features)
    if len(real_scales) != len(fake_scales):
        raise ValueError(f"feature matching: {len(real_scales)} real scales but {len(fake_scales)} fake scales")
    per_scale = []
    for s, (real_layers, fake_layers) in enumerate(zip(real_scales, fake_scales)):
        if len(real_layers) != len(fake_layers) or not real_layers:
            raise ValueError(
                f"feature matching: scale {s} has {len(real_layers)} real and {len(fake_layers)} fake layers"
            )
        weights = layer_weights if layer_weights is not None else [1.0 / len(fake_layers)] * len(fake_layers)
        if len(weights) != len(fake_layers):
            raise ValueError(f"feature matching: {len(weights)} layer weights for {len(fake_layers)} layers")
        per_scale.append(
            sum(w * F.l1_loss(fake, real.detach()) for w, real, fake in zip(weights, real_layers, fake_layers))
        )
    return torch.stack(per_scale).mean()
