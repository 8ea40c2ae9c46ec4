"""Packed LNS storage: the sign and the exponent code of a B-bit LNS value in one integer of B <= 8
bits (a byte), or two bytes for 9 <= B <= 16.

Layout (``fmt`` an :class:`~imaginate.numerics.lns.LNSFormat`)::

    B <= 8:   uint8   bit 7 = sign (1: negative), bits 0 .. B-2 = code e in [0, max_code]
    B >  8:   int16   bit 15 = sign (1: negative), bits 0 .. B-2 = code e          (two's complement view)

Zero is the code ``max_code`` with the sign bit clear (as :func:`~imaginate.numerics.lns.lns_encode`
gives it: sign 0). For B < 8 the bits between the code and the sign bit stay 0.

Decoding goes through a table with one entry per bit pattern (256 or 65536 floats, built once per
scale): ``value = table[packed]``, where ``table[e | sign_bit] = +-scale * 2 ** (-e / gamma)`` and
every pattern with ``e >= max_code`` holds 0. The table entries are computed exactly as
:func:`~imaginate.numerics.lns.lns_decode` computes a value, so the two decoders agree bit for bit
in float32 (in float64, within one unit in the last place: torch's vectorised and scalar ``exp2``
may round the last bit differently, and which elements take the scalar path depends on the length).
"""

from __future__ import annotations

import torch
from torch import Tensor

from imaginate.numerics.lns import LNSFormat


def packed_dtype(fmt: LNSFormat) -> torch.dtype:
    """uint8 for B <= 8, int16 for 9 <= B <= 16."""
    return torch.uint8 if fmt.bits <= 8 else torch.int16


def _sign_bit(fmt: LNSFormat) -> int:
    return 7 if fmt.bits <= 8 else 15


def _patterns(fmt: LNSFormat) -> int:
    return 256 if fmt.bits <= 8 else 65536


def pack_lns(codes: Tensor, signs: Tensor, fmt: LNSFormat) -> Tensor:
    """Sign and code in one integer (layout in the module docstring).

    Args:
        codes: integer tensor in [0, max_code] (max_code: zero).
        signs: integer tensor in {-1, 0, +1}, same shape; negative values set the sign bit.

    Returns:
        ``packed_dtype(fmt)`` tensor of ``codes``' shape.
    """
    wide = codes.to(torch.int32) | ((signs < 0).to(torch.int32) << _sign_bit(fmt))
    if fmt.bits <= 8:
        return wide.to(torch.uint8)
    return torch.where(wide >= 32768, wide - 65536, wide).to(torch.int16)  # bit 15 -> the int16 sign


def pattern_index(packed: Tensor) -> Tensor:
    """The unsigned bit pattern of ``packed`` as int64 (0..255 or 0..65535): an index into a table."""
    index = packed.to(torch.int64)
    return index if packed.dtype == torch.uint8 else index & 0xFFFF


def unpack_lns(packed: Tensor, fmt: LNSFormat) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`pack_lns`: (codes int16 in [0, max_code], signs int8 in {-1, 0, +1})."""
    index = pattern_index(packed)
    codes = index & ((1 << (fmt.bits - 1)) - 1)
    negative = (index >> _sign_bit(fmt)) & 1
    signs = torch.where(codes >= fmt.max_code, 0, 1 - 2 * negative)
    return codes.to(torch.int16), signs.to(torch.int8)


def decode_table(fmt: LNSFormat, scale: Tensor | float, dtype: torch.dtype = torch.float32) -> Tensor:
    """[256] or [65536] values of every bit pattern, as :func:`lns_decode` would give them in ``dtype``.

    Args:
        fmt: the format.
        scale: the per-tensor scale (0-dim tensor or float).
        dtype: floating dtype of the values.
    """
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    device = scale.device if isinstance(scale, Tensor) else None  # built where the scale lives (CUDA too)
    index = torch.arange(_patterns(fmt), dtype=torch.int64, device=device)
    codes = index & ((1 << (fmt.bits - 1)) - 1)
    negative = ((index >> _sign_bit(fmt)) & 1).to(torch.bool)
    # the same arithmetic as lns_decode: scale * exp2(codes * (-1 / gamma)), then the sign
    magnitude = torch.as_tensor(scale, dtype=compute) * torch.exp2(codes.to(compute) * (-1.0 / fmt.gamma))
    valid = codes < fmt.max_code
    value = torch.where(valid, torch.where(negative, -magnitude, magnitude), 0.0)
    # bits between the code and the sign bit (B < 8) are never set by pack_lns: zero there too
    value = torch.where(index >> (fmt.bits - 1) == (negative.to(torch.int64) << (_sign_bit(fmt) - fmt.bits + 1)),
                        value, 0.0)
    return value.to(dtype)


def decode_packed(packed: Tensor, table: Tensor, out: Tensor | None = None) -> Tensor:
    """``table[packed]``: the decoded values (table from :func:`decode_table`, on ``packed``'s device).

    Args:
        packed: a packed store (any shape).
        table: the decode table.
        out: optional tensor of ``packed``'s shape and ``table``'s dtype to write into.
    """
    index = pattern_index(packed).reshape(-1)
    if out is None:
        return torch.index_select(table, 0, index).reshape(packed.shape)
    torch.index_select(table, 0, index, out=out.view(-1))
    return out
