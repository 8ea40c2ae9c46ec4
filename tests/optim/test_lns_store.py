"""The packed native store of LNSMadam, its low-precision second moments, the multi-tensor steps and
the packed safetensors export.

``unpacked_native_reference`` restates the native update as it was before the store was packed
(int16 codes, int8 signs, a float32 moment, per tensor) with the format functions of
``imaginate.numerics.lns`` only; the packed optimizer must reproduce its loss curve bit for bit.
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

from imaginate.numerics.lns import LNSFormat, lns_decode, lns_encode
from imaginate.numerics.lns_pack import decode_packed, decode_table, pack_lns, packed_dtype, unpack_lns
from imaginate.numerics.quant import QuantConfig, quantize_model
from imaginate.optim import IntegerMadam, LNSMadam, Madam
from imaginate.optim.lns_export import export_lns_safetensors, load_lns_into
from imaginate.optim.moment_store import LNS8_ZERO, lns8_table, write_moment

BETA = 0.999


@pytest.mark.parametrize("bits", range(2, 17))
def test_pack_round_trips_every_code_and_sign(bits):
    fmt = LNSFormat(bits=bits, gamma=4)
    codes = torch.arange(fmt.max_code + 1, dtype=torch.int16).repeat(3)  # every code, three signs
    signs = torch.tensor([-1, 0, 1], dtype=torch.int8).repeat_interleave(fmt.max_code + 1)
    signs = torch.where(codes == fmt.max_code, 0, signs).to(torch.int8)  # zero has sign 0
    codes = torch.where(signs == 0, fmt.max_code, codes).to(torch.int16)  # and sign 0 is zero
    packed = pack_lns(codes, signs, fmt)
    assert packed.dtype == packed_dtype(fmt) and packed.element_size() == (1 if bits <= 8 else 2)
    back_codes, back_signs = unpack_lns(packed, fmt)
    assert torch.equal(back_codes, codes) and torch.equal(back_signs, signs)
    assert len(torch.unique(packed)) == 2 * fmt.max_code + 1  # distinct patterns for distinct values
    for dtype in (torch.float32, torch.float64):
        scale = torch.tensor(0.75, dtype=dtype)
        table = decode_table(fmt, scale, dtype)
        decoded, reference = decode_packed(packed, table), lns_decode(codes, signs, scale, fmt, dtype)
        if dtype == torch.float32:
            assert torch.equal(decoded, reference)
        else:  # float64 exp2 of the last (non-vectorised) elements may differ in the last bit
            torch.testing.assert_close(decoded, reference, rtol=2**-52, atol=0)


@pytest.mark.parametrize("bits", [8, 16])
def test_decode_table_is_built_on_the_scale_device(bits):
    # The native LNSMadam step passes a scale on the parameter's device; a table built on the CPU failed on
    # CUDA ("found at least two devices", seen on an H200). The meta device catches the same mix on a CPU box.
    fmt = LNSFormat(bits=bits, gamma=8)
    table = decode_table(fmt, torch.tensor(0.5, device="meta"), torch.float32)
    assert table.device.type == "meta" and table.shape == (2 ** bits,)
    assert decode_table(fmt, 0.5).device.type == "cpu"  # a float scale: the CPU, as before


def unpacked_native_reference(params, lr, bits, gamma, p_scale=3.0, g_bound=10.0):
    """Encodes ``params`` now; returns ``step()`` updating int16 codes / int8 signs (the pre-packing store)."""
    fmt = LNSFormat(bits=bits, gamma=gamma)
    state = {}
    for p in params:
        scale = p_scale * p.detach().square().mean().sqrt().item()
        codes, signs = lns_encode(p.detach(), fmt, scale=torch.tensor(scale), rounding="nearest")
        state[id(p)] = dict(t=0, scale=scale, v=torch.zeros_like(p), codes=codes, signs=signs)
        with torch.no_grad():
            p.copy_(decode_packed(pack_lns(codes, signs, fmt), decode_table(fmt, torch.tensor(scale), p.dtype)).view_as(p))

    def step():
        for p in params:
            g, s = p.grad, state[id(p)]
            s["t"] += 1
            s["v"].mul_(BETA).addcmul_(g, g, value=1 - BETA)
            g_hat = g / (s["v"] / (1 - BETA ** s["t"])).sqrt()
            g_hat = torch.nan_to_num(g_hat, nan=0.0, posinf=float("inf"), neginf=float("-inf"))
            g_hat = g_hat.clamp(-g_bound, g_bound).round()
            move = torch.round(lr * gamma * g_hat).to(torch.int32) * s["signs"]
            codes = s["codes"].to(torch.int32) + move
            alive = (s["signs"] != 0) & (codes <= fmt.max_code - 1)
            s["signs"] = torch.where(alive, s["signs"], 0).to(torch.int8)
            s["codes"] = torch.where(alive, codes.clamp(0, fmt.max_code - 1), fmt.max_code).to(torch.int16)
            # decoded as LNSMadam decodes (its table): lns_decode's scalar tail may differ in the last bit
            table = decode_table(fmt, torch.tensor(s["scale"]), p.dtype)
            p.copy_(decode_packed(pack_lns(s["codes"], s["signs"], fmt), table).view_as(p))

    return step


def _quantised_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))
    return quantize_model(model, QuantConfig(), generator=torch.Generator().manual_seed(seed))


def _losses(model, step, steps=50):
    gen = torch.Generator().manual_seed(7)
    x, y = torch.randn(32, 12, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    losses = []
    for _ in range(steps):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        with torch.no_grad():
            step()
        losses.append(loss.item())
    return losses


def test_native_loss_curve_equals_the_unpacked_store_over_50_steps():
    # the system's setting: 8-bit LNS forward, 5-bit stochastic gradients, an 8-bit native store
    kwargs = dict(lr=1 / 8, mode="native", bits=8, gamma=8)
    model = _quantised_mlp(0)
    opt = LNSMadam(model.parameters(), **kwargs)  # the multi-tensor step (the per-tensor one: below)
    opt.init_store()
    curves = [_losses(model, opt.step)]
    assert all(s["packed"].dtype == torch.uint8 for s in opt.state.values())
    model = _quantised_mlp(0)
    reference_step = unpacked_native_reference(list(model.parameters()), lr=1 / 8, bits=8, gamma=8)
    curves.append(_losses(model, reference_step))
    assert curves[0] == curves[1]  # bit for bit
    assert curves[0][-1] < 0.8 * curves[0][0]  # and it trains


@pytest.mark.parametrize("moment, nbytes", [("fp32", 4), ("bf16", 2), ("lns8", 1)])
def test_no_float32_weight_sized_tensor_in_the_state(moment, nbytes):
    model = _quantised_mlp(1)
    opt = LNSMadam(model.parameters(), lr=1 / 8, mode="native", bits=8, gamma=8, moment=moment)
    opt.init_store()
    losses = _losses(model, opt.step, steps=30)
    assert losses[-1] < 0.8 * losses[0]
    for p in model.parameters():
        state = opt.state[p]
        weight_sized = {k: v for k, v in state.items() if torch.is_tensor(v) and v.numel() == p.numel()}
        assert state["packed"].dtype == torch.uint8
        assert sum(v.element_size() for v in weight_sized.values()) == 1 + nbytes
        float32 = [k for k, v in weight_sized.items() if v.dtype == torch.float32]
        assert float32 == (["exp_avg_sq"] if moment == "fp32" else [])


@pytest.mark.parametrize("moment", ["bf16", "lns8"])
def test_stochastic_moment_is_unbiased(moment):
    # 0.3 and 7e-5 lie between grid points of both formats; the mean of many stores must find them
    v = torch.tensor([0.3, 7e-5]).repeat_interleave(40000)
    gen = torch.Generator().manual_seed(0)
    if moment == "bf16":
        stored = torch.empty(v.shape, dtype=torch.bfloat16)
        write_moment(stored, v, "bf16", generator=gen)
        back = stored.float()
        assert len(torch.unique(back[:40000])) == 2  # the two neighbours of 0.3
        means = back.view(2, -1).mean(1)
        torch.testing.assert_close(means, torch.tensor([0.3, 7e-5]), rtol=2e-4, atol=0)
    else:
        stored = torch.empty(v.shape, dtype=torch.uint8)
        write_moment(stored, v, "lns8", scale=1.0, generator=gen)
        back = lns8_table(1.0, v.device)[stored.long()]
        log_means = torch.log2(back.view(2, -1)).mean(1)  # unbiased in the log domain
        torch.testing.assert_close(log_means, torch.log2(torch.tensor([0.3, 7e-5])), rtol=0, atol=2e-3)
        stored_zero = torch.empty(1, dtype=torch.uint8)
        write_moment(stored_zero, torch.zeros(1), "lns8", scale=1.0, generator=gen)
        assert stored_zero.item() == LNS8_ZERO


@pytest.mark.parametrize("moment", ["fp32", "bf16", "lns8"])
def test_state_dict_round_trip_keeps_packed_store_and_moment_dtypes(moment):
    kwargs = dict(lr=1 / 4, mode="native", bits=6, gamma=4, moment=moment)
    model = _quantised_mlp(2)
    opt = LNSMadam(model.parameters(), **kwargs)
    _losses(model, opt.step, steps=4)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = _quantised_mlp(3)
    fresh.load_state_dict(saved["model"])
    fresh_opt = LNSMadam(fresh.parameters(), **kwargs)
    fresh_opt.load_state_dict(saved["optim"])
    for p, q in zip(model.parameters(), fresh.parameters()):
        a, b = opt.state[p], fresh_opt.state[q]
        assert set(a) == set(b)
        for key in a:
            if torch.is_tensor(a[key]):
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key
        assert torch.equal(p, q)
    # the stochastic gradient rounding's generator is the run's (a checkpoint saves it): share its state
    generators = [next(m.quant_generator for m in net.modules() if hasattr(m, "quant_generator"))
                  for net in (model, fresh)]
    generators[1].set_state(generators[0].get_state())
    torch.manual_seed(11)  # the moment's stochastic rounding draws from the default generator
    first = _losses(model, opt.step, steps=5)
    torch.manual_seed(11)
    assert _losses(fresh, fresh_opt.step, steps=5) == first  # continues identically


def test_export_reloads_to_the_same_outputs(tmp_path):
    model = _quantised_mlp(4)
    opt = LNSMadam(model.parameters(), lr=1 / 8, mode="native", bits=8, gamma=8)
    _losses(model, opt.step, steps=10)
    sizes = export_lns_safetensors(model, opt, tmp_path / "lns.safetensors")
    assert sizes["packed"] == sum(p.numel() for p in model.parameters()) and sizes["float"] == 0
    fresh = _quantised_mlp(5)
    x = torch.randn(16, 12)
    with torch.no_grad():
        assert not torch.equal(fresh(x), model(x))
        load_lns_into(fresh, tmp_path / "lns.safetensors")
        assert torch.equal(fresh(x), model(x))
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="format"):
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
        load_lns_into(fresh, tmp_path / "plain.safetensors")


@pytest.mark.parametrize("make", [
    lambda ps, fe: Madam(ps, foreach=fe),
    lambda ps, fe: IntegerMadam(ps, foreach=fe, levels=256, lr_factor=3.0, base_lr=0.05),
    lambda ps, fe: LNSMadam(ps, foreach=fe, lr=1 / 64),
    lambda ps, fe: LNSMadam(ps, foreach=fe, mode="native", bits=12, gamma=128, lr=3 / 256, underflow="saturate"),
    lambda ps, fe: LNSMadam(ps, foreach=fe, mode="native", bits=6, gamma=2, lr=0.5),
], ids=["madam", "integer_madam", "lns_reference", "lns_native12_offgrid", "lns_native6"])
def test_foreach_steps_equal_per_tensor_steps(make):
    # one tensor spans three slabs, small ones share a slab, one is non-contiguous, one has a zero
    shapes = [(300, 500), (7,), (70000,), (3, 5)]
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen) for s in shapes]
    start[1][0] = 0.0
    sides = []
    for foreach in (True, False):
        params = [w.clone().requires_grad_() for w in start[:3]] + [start[3].clone().t().requires_grad_()]
        sides.append((params, make(params, foreach)))
    for t in range(25):
        for pa, pb in zip(sides[0][0], sides[1][0]):
            g = torch.randn(pa.shape, generator=gen) * (t % 3)  # every third step: all-zero gradients
            pa.grad, pb.grad = g.clone(), g.clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the off-grid lr warns once
            sides[0][1].step()
            sides[1][1].step()
    for pa, pb in zip(sides[0][0], sides[1][0]):
        assert torch.equal(pa, pb)
        for key, value in sides[0][1].state[pa].items():
            other = sides[1][1].state[pb][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, key


def test_factory_lns_moment():
    from imaginate.optim import OptimConfig, build_optimizer

    model = nn.Linear(4, 3)
    opt = build_optimizer(OptimConfig(name="lns_madam", lns_mode="native", lns_bits=8, lns_moment="lns8"), model)
    assert all(s["exp_avg_sq_code"].dtype == torch.uint8 for s in opt.state.values())
    with pytest.raises(ValueError, match="optim.lns_moment"):
        OptimConfig(name="adam", lns_moment="bf16")
    with pytest.raises(ValueError, match="optim.lns_moment"):
        OptimConfig(name="lns_madam", lns_mode="native", lns_moment="fp8")
