"""The slab-by-slab LNS quantiser against the whole-tensor reference ``lns_quantize``."""

from __future__ import annotations

import pytest
import torch

from imaginate.numerics.formats import LNS, lns_impl
from imaginate.numerics.lns import LNSFormat, lns_quantize
from imaginate.numerics.lns_fast import SLAB, lns_quantize_fast


def _values(n: int, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=gen, dtype=dtype) * torch.rand(n, generator=gen, dtype=dtype) ** 6
    x[::7] = 0.0  # zeros, and magnitudes spread over ~20 octaves (some flush to zero)
    return x


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("bits, gamma", [(5, 1), (8, 8), (12, 128)])
@pytest.mark.parametrize("n, dtype", [(3 * SLAB + 5, torch.float32), (1000, torch.float64), (7, torch.float32)])
def test_fast_quantiser_is_bit_identical(rounding, bits, gamma, n, dtype):
    fmt = LNSFormat(bits, gamma)
    x = _values(n, dtype).view(-1, 1) if n % 2 else _values(n, dtype)
    ref = lns_quantize(x, fmt, rounding=rounding, generator=torch.Generator().manual_seed(5))
    fast = lns_quantize_fast(x, fmt, rounding=rounding, generator=torch.Generator().manual_seed(5))
    assert fast.shape == x.shape and fast.dtype == x.dtype
    assert torch.equal(fast, ref)  # same float ops on the same elements, same random stream


def test_fast_stochastic_rounding_is_unbiased_and_hits_the_two_neighbours():
    fmt = LNSFormat(5, 1)
    x = torch.full((200_000,), 0.3)
    x[0] = 1.0  # the max-abs scale: neighbours of 0.3 are 2**-2 and 2**-1
    q = lns_quantize_fast(x, fmt, rounding="stochastic", generator=torch.Generator().manual_seed(0))[1:]
    assert set(q.unique().tolist()) == {0.25, 0.5}
    exponent = torch.log2(q).mean().item()  # unbiased in the log domain
    assert exponent == pytest.approx(float(torch.log2(torch.tensor(0.3))), abs=5e-3)


def test_lns_format_uses_the_fast_path_and_can_switch_back():
    x = _values(3 * SLAB, torch.float32)
    fmt = LNS(5, 1)
    fast = fmt.quantize(x, "stochastic", torch.Generator().manual_seed(2))
    with lns_impl("reference"):
        ref = fmt.quantize(x, "stochastic", torch.Generator().manual_seed(2))
    assert torch.equal(fast, ref)
    with pytest.raises(ValueError, match="impl"):
        with lns_impl("compiled"):
            pass
