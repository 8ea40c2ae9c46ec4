"""Energy model: MAC counts against closed forms written out here, FlopCounterMode as a reference,
hand-counted totals, the per-operation table's anchors, and the CLI."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from imaginate.numerics.energy import (
    HOROWITZ_45NM_PJ,
    MODELS,
    BertClassifier,
    BertShape,
    EnergyReport,
    add_energy_parser,
    build_model,
    count_macs,
    energy_report,
    fp_add_pj,
    fp_mul_pj,
    int_add_pj,
    int_mul_pj,
    main,
    phase_energy_pj,
    training_settings,
)


def _phases(counts: list) -> tuple[int, int, int]:
    return tuple(sum(getattr(c, p) for c in counts) for p in ("forward", "act_grad", "weight_grad"))


@pytest.mark.parametrize("input_requires_grad", [False, True])
def test_linear_closed_form(input_requires_grad: bool) -> None:
    layer = nn.Linear(7, 5)
    x = torch.randn(3, 4, 7, requires_grad=input_requires_grad)  # N = 12 rows
    (c,) = count_macs(layer, x)
    macs = 12 * 7 * 5
    assert (c.forward, c.weight_grad) == (macs, macs)
    assert c.act_grad == (macs if input_requires_grad else 0)  # a first layer needs no activation-grad
    assert (c.outputs, c.weight_grads) == (12 * 5, 35)
    assert not layer._forward_hooks  # counting leaves no hook behind


def test_conv2d_closed_form_with_stride_padding_groups() -> None:
    n, c_in, c_out, h, w, kh, kw, stride, pad, groups = 2, 6, 8, 11, 13, 3, 5, (2, 3), (1, 2), 2
    conv = nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=pad, groups=groups)
    x = torch.randn(n, c_in, h, w, requires_grad=True)
    (c,) = count_macs(conv, x)
    h_out = (h + 2 * pad[0] - kh) // stride[0] + 1  # 6
    w_out = (w + 2 * pad[1] - kw) // stride[1] + 1  # 5
    macs = n * h_out * w_out * c_out * (c_in // groups) * kh * kw
    assert (h_out, w_out) == (6, 5)
    assert (c.forward, c.act_grad, c.weight_grad) == (macs, macs, macs)
    assert c.input_grads == x.numel()


def test_two_layer_mlp_totals_by_hand() -> None:
    mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    counts = count_macs(mlp, torch.randn(5, 4))
    # layer 1: 5*4*3 = 60 forward, no activation-grad (input is data), 60 weight-grad;
    # layer 2: 5*3*2 = 30 each.
    assert _phases(counts) == (90, 30, 90)
    settings = training_settings()
    report = EnergyReport("mlp", 5, "", 23, counts, settings)
    assert report.macs() == {"forward": 90, "act_grad": 30, "weight_grad": 90, "update": 4 * 3 + 3 + 3 * 2 + 2}
    fp32 = settings[0]
    pj = 90 * fp32.forward.mac_pj + 30 * fp32.act_grad.mac_pj + 90 * fp32.weight_grad.mac_pj + 23 * 4.6
    assert report.total_mj("fp32") == pytest.approx(pj * 1e-9)


def _flop_counter_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """Reference: torch's FlopCounterMode (2 flops per MAC) over a real forward + backward."""
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
    forward = counter.get_total_flops()
    with counter:
        out.sum().backward()
    return forward // 2, counter.get_total_flops() // 2


@pytest.mark.parametrize("name", ["resnet18", "bert"])
def test_counts_match_flop_counter(name: str) -> None:
    if name == "bert":
        model, x = BertClassifier(BertShape(32, 2, 4, 64, vocab=50, max_positions=16)), torch.zeros(2, 9).long()
    else:
        model, x, _ = build_model("resnet18", batch=2, image_size=64, device="meta")
    fwd, act, wgt = _phases(count_macs(model, x))
    assert _flop_counter_macs(model, x) == (fwd, act + wgt)


@pytest.mark.parametrize("name,shape", [("bert-base", (768, 12, 3072)), ("bert-large", (1024, 24, 4096))])
def test_bert_forward_closed_form(name: str, shape: tuple[int, int, int]) -> None:
    h, layers, inter = shape
    s, b = 128, 2
    per_layer = 4 * h * h * s + 2 * h * inter * s + 2 * s * s * h  # q,k,v,out + FFN + QK^T, AV
    report = energy_report(name, b, seq_len=s)
    assert report.macs()["forward"] == b * (layers * per_layer + h * h + h * 2)  # + pooler, classifier


def test_resnet_forward_macs_match_published() -> None:
    # torchvision's model cards: 1.81 / 4.09 GFLOPS (counted as MACs) at 224x224
    assert energy_report("resnet18").macs()["forward"] == pytest.approx(1.814e9, rel=1e-3)
    assert energy_report("resnet50").macs()["forward"] == pytest.approx(4.089e9, rel=1e-3)


def test_horowitz_anchor_points_reproduced() -> None:
    h = HOROWITZ_45NM_PJ
    assert (int_add_pj(8), int_add_pj(32)) == pytest.approx((h["int8_add"], h["int32_add"]))
    assert (int_mul_pj(8), int_mul_pj(32)) == pytest.approx((h["int8_mul"], h["int32_mul"]))
    assert (fp_mul_pj(11), fp_mul_pj(24)) == pytest.approx((h["fp16_mul"], h["fp32_mul"]))
    assert (fp_add_pj(11), fp_add_pj(24)) == pytest.approx((h["fp16_add"], h["fp32_add"]))
    assert int_add_pj(5) < int_add_pj(8) < int_add_pj(24) and fp_mul_pj(4) < fp_mul_pj(8) < fp_mul_pj(11)


def test_energy_linear_in_macs() -> None:
    fmt = training_settings()[-1].forward
    assert phase_energy_pj(fmt, 2000, 30) == pytest.approx(2 * phase_energy_pj(fmt, 1000, 15))
    one, four = energy_report("resnet18", 1, image_size=64), energy_report("resnet18", 4, image_size=64)
    for s in ("fp32", "lns"):
        e1, e4 = one.energy_mj(s), four.energy_mj(s)
        for phase in ("forward", "act_grad"):
            assert e4[phase] == pytest.approx(4 * e1[phase])
        # weight-grad: 4x the MACs, but one output conversion per weight element whatever the batch
        fmt = one.setting(s).weight_grad
        weights = sum(c.weight_grads for c in one.layers)
        assert e4["weight_grad"] - 4 * e1["weight_grad"] == pytest.approx(-3e-9 * weights * fmt.output_pj)
        assert e4["update"] == pytest.approx(e1["update"])  # per parameter, not per sample


@pytest.mark.parametrize("remainder", [False, True])
def test_lns_cheaper_than_every_baseline(remainder: bool) -> None:
    settings = {s.name: s for s in training_settings(lns_remainder_accumulation=remainder)}
    lns = settings.pop("lns")
    for phase in ("forward", "act_grad", "weight_grad"):
        assert getattr(lns, phase).mac_pj < getattr(settings["int8"], phase).mac_pj
        assert getattr(lns, phase).mac_pj < getattr(settings["fp32"], phase).mac_pj / 10
    assert lns.update_pj < settings["fp32"].update_pj
    order = [settings[n].forward.mac_pj for n in ("fp32", "fp16", "bf16", "fp8", "int8")]
    assert order == sorted(order, reverse=True)


def test_cli_prints_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "resnet18", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "FP32 / format" in out and "MACs: forward" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert rows["fp32"][-1] == "1.0x" and float(rows["lns"][-1].rstrip("x")) > 10


def test_add_energy_parser_registers_verb() -> None:
    parser = argparse.ArgumentParser(prog="imaginate")
    add_energy_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["energy", "--model", "bert-base", "--batch", "3"])
    assert (args.model, args.batch, args.seq_len) == ("bert-base", 3, 128) and callable(args.func)
    for bad in (["energy", "--model", "vgg"], ["energy", "--model", "resnet18", "--batch", "0"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(bad)
        assert exc.value.code == 2
    assert set(MODELS) == {"resnet18", "resnet50", "bert-base", "bert-large"}


def test_unknown_model_and_bad_batch_rejected() -> None:
    with pytest.raises(ValueError, match="model: 'vgg16' is not one of"):
        energy_report("vgg16")
    with pytest.raises(ValueError, match="batch: must be >= 1"):
        energy_report("resnet18", 0)


def test_attention_priced_at_fp32_unless_quantised() -> None:
    fp32_attention, quantised = energy_report("bert-base"), energy_report("bert-base", quantize_attention=True)
    matmul = [c for c in fp32_attention.layers if c.kind == "matmul"]
    assert matmul and fp32_attention.total_mj("fp32") == pytest.approx(quantised.total_mj("fp32"))
    fp32, lns = fp32_attention.setting("fp32").forward, fp32_attention.setting("lns")
    extra = sum(c.forward * (fp32.mac_pj - lns.forward.mac_pj) + c.outputs * (fp32.output_pj - lns.forward.output_pj)
                + c.act_grad * (fp32.mac_pj - lns.act_grad.mac_pj)
                + c.input_grads * (fp32.output_pj - lns.act_grad.output_pj) for c in matmul)
    assert fp32_attention.total_mj("lns") - quantised.total_mj("lns") == pytest.approx(extra * 1e-9)
    resnet = energy_report("resnet18", image_size=64)  # no attention: no change
    assert resnet.total_mj("lns") == energy_report("resnet18", image_size=64, quantize_attention=True).total_mj("lns")


def test_memory_traffic_by_hand() -> None:
    from imaginate.numerics.energy_memory import MEMORY_PJ_PER_BYTE, traffic_bytes

    mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    counts = count_macs(mlp, torch.randn(5, 4))
    report = EnergyReport("mlp", 5, "", 23, counts, training_settings(), memory="dram", lns_moment_bytes=1)
    # fp32, 4 bytes each: forward reads weights 12 + 6, inputs 20 + 15, writes outputs 15 + 10;
    # act-grad (layer 2 only): weights 6, output grads 10, input grads 15; weight-grad: inputs 20 + 15,
    # output grads 15 + 10, weight grads 12 + 6; update: 23 x (grad 4 + master read + write 8)
    assert traffic_bytes(report, "fp32") == {"forward": 4 * 78, "act_grad": 4 * 31, "weight_grad": 4 * 78,
                                             "update": 23 * 12}
    lns = traffic_bytes(report, "lns")  # weights/activations 1 byte, gradients 5/8, moment 1 byte
    assert lns["forward"] == 78 and lns["act_grad"] == 6 + (10 + 15) * 5 / 8
    assert lns["update"] == 23 * (5 / 8 + 2 + 2)
    compute = EnergyReport("mlp", 5, "", 23, counts, training_settings()).total_mj("fp32")
    memory_pj = sum(traffic_bytes(report, "fp32").values()) * MEMORY_PJ_PER_BYTE["dram"]
    assert report.total_mj("fp32") == pytest.approx(compute + memory_pj * 1e-9)
    with pytest.raises(ValueError, match="memory"):
        energy_report("resnet18", memory="l4_cache")
