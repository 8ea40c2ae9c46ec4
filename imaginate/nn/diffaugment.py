"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees.

Semantics follow the original: the same policy is applied to real and to generated images, but
every call draws fresh random parameters per sample, so reals and fakes get independent draws
(call it once on each). The operations are differentiable with respect to the images, so the
generator is trained through them.

Policy: a comma-separated subset of ``color``, ``translation``, ``cutout`` (applied in that
written order). Per sample:

- ``color``: brightness ``x + (u - 0.5)``, then saturation ``(x - mean_c) * 2u + mean_c`` (mean over
  channels per pixel), then contrast ``(x - mean) * (u + 0.5) + mean`` (mean over C, H, W), each
  ``u ~ U[0, 1)`` drawn per sample;
- ``translation``: shift by integers ``(dy, dx)``, each uniform in ``[-r * size, r * size]``
  (``r = 0.125``, rounded to the nearest integer), filling with zeros: output pixel ``(i, j)`` is
  input pixel ``(i + dy, j + dx)``;
- ``cutout``: zero a square of ``round(0.5 * size)`` pixels whose centre is uniform over the image
  (clipped at the borders).

Random numbers come from ``generator`` (a ``torch.Generator``; default: the global RNG), drawn on
the generator's device in this order: color (brightness, saturation, contrast), translation (dy,
dx), cutout (y, x centre).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

DIFFAUGMENT_OPS: tuple[str, ...] = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; an empty string means no augmentation.

    Raises ValueError naming an unknown or repeated operation and the allowed ones.
    """
    ops = tuple(op.strip() for op in policy.split(",") if op.strip())
    for op in ops:
        if op not in DIFFAUGMENT_OPS:
            raise ValueError(f"DiffAugment policy: {op!r} is not one of {', '.join(DIFFAUGMENT_OPS)}")
    if len(set(ops)) != len(ops):
        raise ValueError(f"DiffAugment policy: {policy!r} repeats an operation")
    return ops


def _rand(batch: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``[B, 1, 1, 1]`` uniform draws in x's dtype and device."""
    device = generator.device if generator is not None else x.device
    return torch.rand(batch, 1, 1, 1, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _randint(low: int, high: int, batch: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``[B]`` integers in ``[low, high)`` on x's device."""
    device = generator.device if generator is not None else x.device
    return torch.randint(low, high, (batch,), generator=generator, device=device).to(x.device)


def random_color(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random brightness, saturation and contrast per sample; ``[B, C, H, W]`` -> same."""
    b = x.shape[0]
    x = x + (_rand(b, x, generator) - 0.5)  # brightness
    channel_mean = x.mean(dim=1, keepdim=True)  # [B, 1, H, W]
    x = (x - channel_mean) * (_rand(b, x, generator) * 2) + channel_mean  # saturation
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1]
    return (x - image_mean) * (_rand(b, x, generator) + 0.5) + image_mean  # contrast


def translate(x: Tensor, shift_y: Tensor, shift_x: Tensor) -> Tensor:
    """Shift each image by integers, zero-filled: ``out[b, :, i, j] = x[b, :, i + dy_b, j + dx_b]``.

    Args:
        x: ``[B, C, H, W]``.
        shift_y: ``[B]`` integer row offsets dy.
        shift_x: ``[B]`` integer column offsets dx.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))  # [B, C, H+2, W+2], a zero border to point outside pixels at
    rows = (torch.arange(h, device=x.device)[None, :] + shift_y[:, None] + 1).clamp(0, h + 1)  # [B, H]
    cols = (torch.arange(w, device=x.device)[None, :] + shift_x[:, None] + 1).clamp(0, w + 1)  # [B, W]
    batch_index = torch.arange(b, device=x.device)[:, None, None]  # [B, 1, 1]
    gathered = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return gathered.permute(0, 3, 1, 2)


def random_translation(x: Tensor, ratio: float = 0.125, generator: torch.Generator | None = None) -> Tensor:
    """Translate each image by up to ``round(ratio * size)`` pixels per axis (zero fill)."""
    b, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = _randint(-max_y, max_y + 1, b, x, generator)
    shift_x = _randint(-max_x, max_x + 1, b, x, generator)
    return translate(x, shift_y, shift_x)


def cutout_mask(
    height: int, width: int, size_y: int, size_x: int, centre_y: Tensor, centre_x: Tensor
) -> Tensor:
    """``[B, 1, H, W]`` mask, 0 inside the box of rows ``[cy - size_y // 2, cy - size_y // 2 + size_y)``
    (columns likewise) and 1 elsewhere."""
    rows = torch.arange(height, device=centre_y.device)[None, :]  # [1, H]
    cols = torch.arange(width, device=centre_x.device)[None, :]  # [1, W]
    top, left = (centre_y - size_y // 2)[:, None], (centre_x - size_x // 2)[:, None]  # [B, 1]
    in_rows = (rows >= top) & (rows < top + size_y)  # [B, H]
    in_cols = (cols >= left) & (cols < left + size_x)  # [B, W]
    return (~(in_rows[:, :, None] & in_cols[:, None, :]))[:, None]  # [B, 1, H, W]


def random_cutout(x: Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Zero a random ``round(ratio * H) x round(ratio * W)`` box per image."""
    b, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    centre_y = _randint(0, h + (1 - size_y % 2), b, x, generator)
    centre_x = _randint(0, w + (1 - size_x % 2), b, x, generator)
    return x * cutout_mask(h, w, size_y, size_x, centre_y, centre_x).to(x.dtype)


def diff_augment(
    x: Tensor,
    policy: str = "color,translation,cutout",
    generator: torch.Generator | None = None,
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.5,
) -> Tensor:
    """Apply the policy's operations to ``x`` ``[B, C, H, W]``, with fresh random draws per sample."""
    for op in parse_policy(policy):
        if op == "color":
            x = random_color(x, generator)
        elif op == "translation":
            x = random_translation(x, translation_ratio, generator)
        else:
            x = random_cutout(x, cutout_ratio, generator)
    return x


class DiffAugment(nn.Module):
    """DiffAugment as a module (no parameters); the policy is validated at construction.

    Args:
        policy: comma-separated subset of ``color``, ``translation``, ``cutout``.
        translation_ratio: maximum shift as a fraction of the image size (0.125).
        cutout_ratio: cutout box side as a fraction of the image size (0.5).
    """

    def __init__(self, policy: str = "color,translation,cutout", translation_ratio: float = 0.125,
                 cutout_ratio: float = 0.5) -> None:
        super().__init__()
        self.ops = parse_policy(policy)
        self.policy = ",".join(self.ops)
        self.translation_ratio = translation_ratio
        self.cutout_ratio = cutout_ratio

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]``; a new random draw on every call."""
        return diff_augment(x, self.policy, generator, self.translation_ratio, self.cutout_ratio)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"
