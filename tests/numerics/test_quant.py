"""Quantised layers: forward equals the float layer on quantised operands; backward quantises exactly the
gradients the config names; quantize_model converts exactly Linear/Conv2d; a quantised MLP trains."""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imaginate.numerics.formats import parse_format
from imaginate.numerics.quant import (
    QuantConfig,
    QuantConv2d,
    QuantLinear,
    quantization_enabled,
    quantize_model,
    quantized,
)

# (weight, activation, grad_activation, grad_weight): each gradient quantiser on and off alone
CONFIGS = [
    ("lns8g8", "lns8g8", "lns5g1", "lns5g1"),
    ("lns8g8", "lns8g8", "fp32", "fp32"),
    ("fp32", "fp32", "lns5g1", "fp32"),
    ("fp32", "fp32", "fp32", "lns5g2"),
    ("int8", "fp8_e4m3", "fp8_e5m2", "bf16"),
]


def _layers(cfg: QuantConfig) -> list[tuple[nn.Module, nn.Module, Tensor, object]]:
    """(quantised layer, its float twin, input, float op(x, w, b)) for a Linear on [B, T, in] and a
    strided Conv2d."""
    torch.manual_seed(0)
    linear, linear_twin = QuantLinear(6, 5, cfg=cfg), nn.Linear(6, 5)
    conv, conv_twin = QuantConv2d(3, 4, 3, stride=2, padding=1, cfg=cfg), nn.Conv2d(3, 4, 3, stride=2, padding=1)
    for layer, twin in ((linear, linear_twin), (conv, conv_twin)):
        twin.load_state_dict(layer.state_dict())

    def conv_op(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return F.conv2d(x, w, b, stride=2, padding=1)

    return [(linear, linear_twin, torch.randn(4, 3, 6), F.linear),  # [B, T, in]
            (conv, conv_twin, torch.randn(2, 3, 7, 7), conv_op)]  # [B, C, H, W]


def _reference(layer: nn.Module, x: Tensor, op, cfg: QuantConfig, upstream: Tensor) -> dict[str, Tensor]:
    """The float op fed quantised x and w, its gradients taken from the quantised upstream gradient,
    then the weight and bias gradients quantised: the definition of the layer's forward and backward."""
    f = cfg.formats()
    x_q = f.activation.quantize(x).requires_grad_()
    w_q = f.weight.quantize(layer.weight).requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    y = op(x_q, w_q, b)
    y.backward(f.grad_activation.quantize(upstream, "nearest"))
    return {"y": y.detach(), "x": x_q.grad, "weight": f.grad_weight.quantize(w_q.grad, "nearest"),
            "bias": f.grad_weight.quantize(b.grad, "nearest")}


@pytest.mark.parametrize("specs", CONFIGS)
def test_forward_and_backward_equal_the_float_op_on_quantised_tensors(specs: tuple[str, ...]) -> None:
    cfg = QuantConfig(*specs, grad_rounding="nearest")
    for layer, _, x, op in _layers(cfg):
        upstream = torch.randn_like(op(x, layer.weight, None))  # dL/dy
        expected = _reference(layer, x, op, cfg, upstream)
        x = x.clone().requires_grad_()
        y = layer(x)
        y.backward(upstream)
        assert torch.equal(y, expected["y"])
        assert torch.equal(x.grad, expected["x"])
        assert torch.equal(layer.weight.grad, expected["weight"])
        assert torch.equal(layer.bias.grad, expected["bias"])


def test_fp32_formats_give_the_float_layer_exactly() -> None:
    for layer, twin, x, _ in _layers(QuantConfig("fp32", "fp32", "fp32", "fp32")):
        xs = [x.clone().requires_grad_() for _ in range(2)]
        y_quant, y_float = layer(xs[0]), twin(xs[1])
        upstream = torch.randn_like(y_float)
        y_quant.backward(upstream)
        y_float.backward(upstream)
        assert torch.equal(y_quant, y_float) and torch.equal(xs[0].grad, xs[1].grad)
        assert torch.equal(layer.weight.grad, twin.weight.grad) and torch.equal(layer.bias.grad, twin.bias.grad)


def test_gradients_lie_on_their_grids_and_are_reproducible() -> None:
    cfg = QuantConfig()  # stochastic 5-bit LNS gradients

    def grads(seed: int) -> list[Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(inplace=True), nn.Linear(8, 3))  # in-place after a layer
        quantize_model(model, cfg, generator=torch.Generator().manual_seed(seed))
        model(torch.randn(5, 6)).square().sum().backward()
        return [p.grad for p in model.parameters()]

    first, again, other = grads(1), grads(1), grads(2)
    grid = parse_format(cfg.grad_weight)
    for g in first:
        assert torch.equal(grid.quantize(g), g) and g.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_quantized_context_turns_the_quantisers_off() -> None:
    torch.manual_seed(0)
    layer, x = QuantLinear(6, 5), torch.randn(3, 6)
    with quantized(False):
        assert not quantization_enabled()
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert quantization_enabled()
    assert not torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_quant_config_validation() -> None:
    assert QuantConfig().formats().weight == parse_format("lns8g8")
    with pytest.raises(ValueError, match=r"quant\.grad_weight: .*'lns5g3'"):
        QuantConfig(grad_weight="lns5g3")
    with pytest.raises(ValueError, match=r"quant\.activation: unknown number format 'int'"):
        QuantConfig(activation="int")
    with pytest.raises(ValueError, match=r"quant\.grad_rounding"):
        QuantConfig(grad_rounding="up")


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv1d = nn.Conv1d(4, 4, 1)
        self.attention = nn.MultiheadAttention(4, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 16, 3))


def test_quantize_model_converts_exactly_linear_and_conv2d() -> None:
    model = _Mixed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    assert quantize_model(model, QuantConfig()) is model
    assert type(model.conv) is QuantConv2d and type(model.head[1]) is QuantLinear
    assert type(model.bn) is nn.BatchNorm2d and type(model.conv1d) is nn.Conv1d
    assert not isinstance(model.attention.out_proj, QuantLinear)
    converted = [m for m in model.modules() if isinstance(m, (QuantLinear, QuantConv2d))]
    assert len(converted) == 2
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert all(a is b for a, b in zip(model.parameters(), params))  # the same Parameter objects
    untouched = _Mixed()
    quantize_model(untouched, QuantConfig(enabled=False))
    assert not any(isinstance(m, (QuantLinear, QuantConv2d)) for m in untouched.modules())


def test_quantised_mlp_trains_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(inplace=True), nn.Linear(32, 4))
    quantize_model(model, QuantConfig(), generator=torch.Generator().manual_seed(0))
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
