"""Quantised training: Linear and Conv2d layers whose four tensors pass through chosen number formats.

Where the quantisers sit in a quantised layer ``y = op(x, w) + b``::

    forward    x_q = Q_activation(x)        w_q = Q_weight(w)        y = op(x_q, w_q) + b
    backward   g_q = Q_grad_activation(dL/dy)                         (stochastic by default)
               dL/dx = op_input_grad(g_q, w_q)    -> flows to the previous layer
               dL/dw = Q_grad_weight(op_weight_grad(g_q, x_q))         (stochastic by default)
               dL/db = Q_grad_weight(sum(g_q))

So every multiply-accumulate of the layer, forward and backward, has low-precision operands (what
the energy model counts), and each activation gradient between two quantised layers is quantised
once, where it enters the backward of the layer that produced the activation. The gradient handed to
the previous layer is a product of quantised operands; it is quantised again when it enters that
layer's backward. Forward quantisers round to nearest; the bias is added unquantised (it goes into
the wide accumulator). Quantisers are straight-through: the gradient of ``Q(x)`` w.r.t. ``x`` is 1.

``Q_activation`` / ``Q_weight`` / ``Q_grad_weight`` are :class:`QuantizeSTE` autograd functions;
``Q_grad_activation`` is a pre-hook on the autograd node that produced ``y`` (an identity autograd
function on ``y`` would return a view, which breaks in-place ops such as ``ReLU(inplace=True)``).

Reproducibility: stochastic rounding draws from the ``generator`` given to :func:`quantize_model`
(one generator shared by all layers, on the model's device), or from torch's default generator when
None. Seed it with ``torch.Generator(device=device).manual_seed(seed)``; with the same seed, model,
batches and deterministic kernels, a run draws the same roundings. A resumed run must restore
``generator.get_state()`` from its checkpoint to continue the same stream. On a CPU the LNS gradient
quantisers run the fused C++ kernel (:mod:`imaginate.numerics.lns_kernels`), which takes one seed per
call from the generator and hashes element indices: reproducible, but a different stream from
``lns_impl("reference")`` or ``IMAGINATE_NO_KERNELS=1``.

Default formats: 8-bit LNS forward and 5-bit LNS gradients (the seed's headline); the gammas come
from a small sweep. Set-up: a SmallCNN (width 16: 3 conv + 1 linear) trained in fp32 on scikit-learn
digits (Adam 3e-3, batch 128, 300 steps); the weights, layer inputs, output gradients and weight
gradients of every conv/linear layer on 8 batches; SNR = 10 log10(sum x^2 / sum (x - Q(x))^2) per
tensor, averaged. Forward tensors round to nearest, gradients stochastically (the noise includes the
rounding variance). "flushed": share of non-zero values that quantise to zero.

    SNR dB / flushed %       gamma=1      2            4            8            16
    weight      lns8 nearest 13.5 / 0.0   19.9 / 0.0   26.1 / 0.0   32.2 / 0.0   38.2 / 0.6
    activation  lns8 nearest 14.4 / 0.0   20.5 / 0.0   26.6 / 0.0   32.1 / 0.0   38.4 / 1.6
    grad_act    lns5 stoch.  11.2 / 10.0  16.9 / 66.7   9.4 / 95.8   3.7 / 99.2   1.4 / 99.8
    grad_weight lns5 stoch.  10.8 / 0.0   17.0 / 3.5   15.8 / 40.2   4.9 / 84.8   1.7 / 96.3
    (for comparison: weights int8 44.6, fp8_e4m3 31.3; gradients fp8_e5m2 11.9 act / 23.1 weight)

Then the same CNN trained quantised (same recipe, 3 seeds), test accuracy mean (min - max), fp32 99.4:

    forward gamma 4 / 8 / 16 / 32, gradients gamma 1:  99.4 / 99.7 / 99.6 / 99.4
    forward gamma 8, gradients gamma 2 / 4:             98.5 (97.8 - 99.2) / 54.1 (39.7 - 78.6)
    forward gamma 8, grad_activation 1, grad_weight 2:  98.9 (98.3 - 99.4)

Chosen: ``lns8g8`` forward (no value flushed, 32 dB, about FP8 E4M3's; gamma 16 gains 6 dB but flushes
1-2% of activations, and accuracy on digits is flat from 8 to 32, so range decides) and ``lns5g1``
for both gradients (base 2, the widest range: 14 octaves). SNR alone would pick gamma 2 for
gradients, but it is energy-weighted: it ignores the two thirds of activation gradients that gamma 2
flushes to zero, and training is worse at gamma 2 and fails at gamma 4. Digits is an easy task;
the sweep is small and the choice should be re-checked at the paper's scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imaginate.numerics.formats import LNS, LNS_IMPL, Identity, NumberFormat, parse_format
from imaginate.numerics.lns import ROUNDINGS
from imaginate.numerics.lns_kernels import lns_quantize_kernel

_enabled = True  # flipped by quantized(); read at forward time only


@contextmanager
def quantized(enabled: bool) -> Iterator[None]:
    """Turn every quantised layer's quantisers on or off inside the block (for overhead timing).

    With ``enabled=False`` a QuantLinear / QuantConv2d runs exactly its float parent's forward (and
    hence backward). The flag is read in the forward pass; it is process-global, not thread-local.

    Args:
        enabled: whether quantised layers quantise inside the block.
    """
    global _enabled
    before = _enabled
    _enabled = bool(enabled)
    try:
        yield
    finally:
        _enabled = before


def quantization_enabled() -> bool:
    """Whether quantised layers currently quantise (see :func:`quantized`)."""
    return _enabled


@dataclass(frozen=True)
class QuantFormats:
    """The parsed formats of one layer (built by :meth:`QuantConfig.formats`)."""

    weight: NumberFormat
    activation: NumberFormat
    grad_activation: NumberFormat
    grad_weight: NumberFormat
    grad_rounding: str


@dataclass
class QuantConfig:
    """Number formats of quantised training (spec strings of :func:`parse_format`).

    Args:
        weight: forward weights (round to nearest).
        activation: forward inputs of each quantised layer (round to nearest).
        grad_activation: backward: gradient w.r.t. each quantised layer's output activation.
        grad_weight: backward: gradient w.r.t. the weights (and biases).
        grad_rounding: "nearest" or "stochastic", for the two gradient quantisers.
        enabled: False leaves the model in float (quantize_model converts nothing).
    """

    weight: str = "lns8g8"
    activation: str = "lns8g8"
    grad_activation: str = "lns5g1"
    grad_weight: str = "lns5g1"
    grad_rounding: str = "stochastic"
    enabled: bool = True

    def __post_init__(self) -> None:
        self.formats()
        if self.grad_rounding not in ROUNDINGS:
            raise ValueError(f"quant.grad_rounding: '{self.grad_rounding}' is not one of {', '.join(ROUNDINGS)}")

    def formats(self) -> QuantFormats:
        """The parsed formats; a bad spec raises ValueError naming ``quant.<field>``."""
        parsed: dict[str, NumberFormat] = {}
        for name in ("weight", "activation", "grad_activation", "grad_weight"):
            try:
                parsed[name] = parse_format(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"quant.{name}: {error}") from None
        return QuantFormats(**parsed, grad_rounding=self.grad_rounding)


class QuantizeSTE(torch.autograd.Function):
    """Forward: ``forward_format.quantize(x)`` (nearest); backward: ``backward_format.quantize(grad)``.

    A format of None passes the tensor (or its gradient) through unchanged: straight-through.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        forward_format: NumberFormat | None,
        backward_format: NumberFormat | None,
        rounding: str,
        generator: torch.Generator | None,
    ) -> Tensor:
        ctx.backward_format = backward_format
        ctx.rounding = rounding
        ctx.generator = generator
        return x if forward_format is None else forward_format.quantize(x, "nearest")

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        if ctx.backward_format is not None:
            grad = _quantize_grad(ctx.backward_format, grad, ctx.rounding, ctx.generator)
        return grad, None, None, None, None


def _quantize_grad(fmt: NumberFormat, grad: Tensor, rounding: str, generator: torch.Generator | None) -> Tensor:
    """A gradient quantiser: per-tensor LNS on a CPU takes the fused C++ kernel (counter-based random
    numbers seeded from ``generator``, see :mod:`imaginate.numerics.lns_kernels`), everything else
    (and ``lns_impl("reference")`` or ``IMAGINATE_NO_KERNELS=1``) ``fmt.quantize``."""
    if isinstance(fmt, LNS) and LNS_IMPL["impl"] == "fast":
        fused = lns_quantize_kernel(grad, fmt.fmt, rounding=rounding, generator=generator)
        if fused is not None:
            return fused
    return fmt.quantize(grad, rounding, generator)


def _live(fmt: NumberFormat | None) -> NumberFormat | None:
    return None if fmt is None or isinstance(fmt, Identity) else fmt


def quantize_ste(
    x: Tensor,
    forward_format: NumberFormat | None,
    backward_format: NumberFormat | None,
    rounding: str = "stochastic",
    generator: torch.Generator | None = None,
) -> Tensor:
    """``QuantizeSTE`` with fp32 (Identity) formats treated as None; a no-op when both are.

    Args:
        x: any tensor.
        forward_format: rounds ``x`` in the forward pass (to nearest); None or fp32: unchanged.
        backward_format: rounds the gradient w.r.t. ``x``; None or fp32: unchanged.
        rounding: rounding of the backward quantiser.
        generator: random source of stochastic rounding.
    """
    forward_format, backward_format = _live(forward_format), _live(backward_format)
    if forward_format is None and backward_format is None:
        return x
    return QuantizeSTE.apply(x, forward_format, backward_format, rounding, generator)


def quantize_output_grad(
    y: Tensor, fmt: NumberFormat | None, rounding: str, generator: torch.Generator | None
) -> Tensor:
    """Quantise the gradient w.r.t. ``y`` as it enters the backward of the node that produced ``y``.

    A pre-hook on ``y.grad_fn``, so ``y`` itself is returned untouched and may be modified in place
    afterwards (the hook sits on the producing node, whose incoming gradient is dL/dy).

    Args:
        y: output of an op; nothing happens when it has no ``grad_fn`` (no grad mode) or fmt is fp32.
        fmt: the gradient format.
        rounding: "nearest" or "stochastic".
        generator: random source of stochastic rounding.
    """
    fmt = _live(fmt)
    if fmt is None or y.grad_fn is None:
        return y

    def hook(grad_outputs: tuple[Tensor | None, ...]) -> tuple[Tensor | None, ...]:
        first = grad_outputs[0]
        quantized_first = None if first is None else _quantize_grad(fmt, first, rounding, generator)
        return (quantized_first, *grad_outputs[1:])

    y.grad_fn.register_prehook(hook)
    return y


class _QuantizedLayer:
    """Shared by QuantLinear and QuantConv2d: formats, generator and the quantised forward."""

    quant_formats: QuantFormats
    quant_generator: torch.Generator | None
    weight: nn.Parameter
    bias: nn.Parameter | None

    def _setup_quant(self, cfg: QuantConfig, generator: torch.Generator | None) -> None:
        self.quant_formats = cfg.formats()
        self.quant_generator = generator

    def _quantized_forward(self, x: Tensor, op: Callable[[Tensor, Tensor, Tensor | None], Tensor]) -> Tensor:
        if not _enabled:
            return op(x, self.weight, self.bias)
        f, gen = self.quant_formats, self.quant_generator
        x_q = quantize_ste(x, f.activation, None, f.grad_rounding, gen)
        w_q = quantize_ste(self.weight, f.weight, f.grad_weight, f.grad_rounding, gen)
        b = None if self.bias is None else quantize_ste(self.bias, None, f.grad_weight, f.grad_rounding, gen)
        y = op(x_q, w_q, b)
        return quantize_output_grad(y, f.grad_activation, f.grad_rounding, gen)

    def _quant_repr(self) -> str:
        f = self.quant_formats
        return (f"weight={f.weight}, activation={f.activation}, grad_activation={f.grad_activation}, "
                f"grad_weight={f.grad_weight}, grad_rounding={f.grad_rounding}")


class QuantLinear(_QuantizedLayer, nn.Linear):
    """nn.Linear with quantised weights, inputs and gradients (same parameters and state_dict).

    Args:
        in_features / out_features / bias / device / dtype: as nn.Linear.
        cfg: the formats; None: QuantConfig() defaults.
        generator: random source of stochastic rounding (on the layer's device); None: torch's default.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, cfg: QuantConfig | None = None,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup_quant(cfg or QuantConfig(), generator)

    def forward(self, input: Tensor) -> Tensor:  # [*, in] -> [*, out]
        return self._quantized_forward(input, F.linear)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class QuantConv2d(_QuantizedLayer, nn.Conv2d):
    """nn.Conv2d with quantised weights, inputs and gradients (same parameters and state_dict).

    Args:
        in_channels ... dtype: as nn.Conv2d.
        cfg: the formats; None: QuantConfig() defaults.
        generator: random source of stochastic rounding (on the layer's device); None: torch's default.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", cfg: QuantConfig | None = None,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._setup_quant(cfg or QuantConfig(), generator)

    def forward(self, input: Tensor) -> Tensor:  # [B, C_in, H, W] -> [B, C_out, H', W']
        return self._quantized_forward(input, self._conv_forward)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


_CONVERSIONS: dict[type[nn.Module], type[nn.Module]] = {nn.Linear: QuantLinear, nn.Conv2d: QuantConv2d}


def quantize_model(model: nn.Module, cfg: QuantConfig, generator: torch.Generator | None = None) -> nn.Module:
    """Turn every nn.Linear and nn.Conv2d of ``model`` into QuantLinear / QuantConv2d, in place.

    Each layer keeps its own Parameter objects (so an optimizer built before stays valid), hooks and
    state_dict; only its class and its formats change. Layers already quantised get the new formats.
    Subclasses of Linear/Conv2d (e.g. the output projection inside nn.MultiheadAttention, whose
    weight the attention reads directly) and every other module are left alone.

    Args:
        model: any module (the root itself may be a Linear or Conv2d).
        cfg: the formats; ``cfg.enabled=False`` converts nothing.
        generator: random source of stochastic rounding, shared by all layers, on the model's device.

    Returns:
        ``model`` itself.
    """
    if not cfg.enabled:
        return model
    for module in model.modules():
        target = _CONVERSIONS.get(type(module))
        if target is not None:
            module.__class__ = target
        if isinstance(module, _QuantizedLayer):
            module._setup_quant(cfg, generator)
    return model
