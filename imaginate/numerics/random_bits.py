"""Cheap uniform random numbers for stochastic rounding.

``torch.rand`` on a CPU draws one Mersenne-Twister float per element (about 14 ns each, measured
single-threaded on this project's machine); stochastic rounding needs far fewer random bits.
:func:`random_u16` draws 64-bit integers from torch's generator (about 3.5 ns per 16 bits) and cuts
each into three independent 16-bit numbers (bits 0-47; bit 63 of torch's 64-bit draws may be fixed,
so bits 48-63 are not used). A rounding decision ``u < frac`` with ``u = (r + 1/2) / 65536`` is then
unbiased up to the 16-bit resolution of ``u``: ``P(round up) = frac`` within ``2 ** -17``.

Reproducibility: the numbers are a function of the generator's state, which advances by
``ceil(n / 3)`` 64-bit draws per call, so a seeded generator gives the same stream on every run.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_u16(numel: int, device: torch.device | str, generator: torch.Generator | None = None) -> Tensor:
    """``numel`` independent uniform integers in [0, 65535] as int32 (1-D).

    Args:
        numel: how many.
        device: where (the generator, if given, must live there too).
        generator: torch generator; None: torch's default generator.
    """
    words = torch.empty((numel + 2) // 3, dtype=torch.int64, device=device)
    words.random_(generator=generator)  # uniform on [0, 2 ** 63)
    pieces = words.view(torch.int16).view(-1, 4)[:, :3]  # bits 0-47, little-endian pieces
    return pieces.reshape(-1)[:numel].to(torch.int32) & 0xFFFF


def uniform_from_u16(bits: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(bits + 1/2) / 65536``: uniform on (0, 1) at 16-bit resolution, never exactly 0 or 1."""
    return (bits.to(dtype) + 0.5) * (1.0 / 65536)
