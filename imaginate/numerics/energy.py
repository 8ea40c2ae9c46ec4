"""Datapath energy of one training iteration, per number format (LNS-Madam, arXiv 2106.13914).

One iteration = forward, activation-gradient and weight-gradient passes over the batch, then one
update per parameter element. Counted: multiply-accumulates (MACs) of Linear, Conv2d and activation x
activation matmuls (attention), and optionally (``memory``) the memory traffic of weights,
activations, gradients and optimizer state (:mod:`imaginate.numerics.energy_memory`). Excluded:
norms, softmax, activations, pooling, residual/bias adds, embedding gathers. Attention's
activation x activation products are priced at FP32 in every setting unless ``quantize_attention``:
the quantised training here (``imaginate.numerics.quant``) quantises Linear and Conv2d layers only,
so only their MACs run in the low-precision format. Closed forms:
Linear(in, out) on N rows: N*in*out; Conv2d: N*Hout*Wout*Cout*(Cin/groups)*kh*kw; activation-grad
and weight-grad MACs equal forward MACs (activation-grad is 0 where the input needs no gradient, e.g.
the first layer); a @ b of two activations: one activation-grad product per operand.

Energy = MACs * (multiply + to-linear conversion + accumulate) + produced elements * (accumulator ->
storage conversion) + parameters * update. Per-operation energies: 45 nm, 0.9 V, from M. Horowitz,
"Computing's energy problem (and what we can do about it)", ISSCC 2014, or derived from his figures
by the scaling rules stated beside each (docs/energy.md). Models are built on the meta device.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PHASES = ("forward", "act_grad", "weight_grad", "update")
MODELS = ("resnet18", "resnet50", "bert-base", "bert-large")

# ---- 1. Per-operation energies (pJ) -------------------------------------------------------------
# Horowitz, ISSCC 2014, "Rough energy costs for various operations in 45nm 0.9V" (pJ per operation).
HOROWITZ_45NM_PJ = {
    "int8_add": 0.03, "int32_add": 0.1, "int8_mul": 0.2, "int32_mul": 3.1,
    "fp16_add": 0.4, "fp32_add": 0.9, "fp16_mul": 1.1, "fp32_mul": 3.7,
}
FP16_SIGNIFICAND, FP32_SIGNIFICAND = 11, 24  # significand bits incl. the hidden bit


def _power_law(x: float, x0: float, e0: float, x1: float, e1: float) -> float:
    """``e0 * (x / x0) ** k``, k chosen so the curve passes through (x0, e0) and (x1, e1)."""
    return e0 * (x / x0) ** (math.log(e1 / e0) / math.log(x1 / x0))


_H = HOROWITZ_45NM_PJ


def int_add_pj(bits: float) -> float:
    """Integer add: through Horowitz's 8-bit 0.03 and 32-bit 0.1 pJ (k = 0.87: ~linear in width)."""
    return _power_law(bits, 8, _H["int8_add"], 32, _H["int32_add"])


def int_mul_pj(bits: float) -> float:
    """Integer multiply: through 8-bit 0.2 and 32-bit 3.1 pJ (k = 1.98: quadratic, an array multiplier)."""
    return _power_law(bits, 8, _H["int8_mul"], 32, _H["int32_mul"])


def fp_mul_pj(significand_bits: float) -> float:
    """FP multiply by significand width: through FP16 (11) 1.1 and FP32 (24) 3.7 pJ (k = 1.55)."""
    return _power_law(significand_bits, FP16_SIGNIFICAND, _H["fp16_mul"], FP32_SIGNIFICAND, _H["fp32_mul"])


def fp_add_pj(significand_bits: float) -> float:
    """FP add by significand width: through FP16 0.4 and FP32 0.9 pJ (k = 1.04: shifter + adder)."""
    return _power_law(significand_bits, FP16_SIGNIFICAND, _H["fp16_add"], FP32_SIGNIFICAND, _H["fp32_add"])


@dataclass(frozen=True)
class MacFormat:
    """What one multiply-accumulate and one finished output element cost in a format (pJ).

    Args:
        name: short label, e.g. ``"lns8x8/acc24"``.
        mul_pj: the multiply (LNS: the integer add of exponents).
        to_linear_pj: converting the product for accumulation (LNS: shift + gamma-entry LUT; else 0).
        acc_pj: the accumulate add.
        output_pj: per output element, accumulator -> storage format (round / requantise / log).
        note: how the numbers were obtained.
    """

    name: str
    mul_pj: float
    to_linear_pj: float
    acc_pj: float
    output_pj: float
    note: str

    @property
    def mac_pj(self) -> float:
        return self.mul_pj + self.to_linear_pj + self.acc_pj


def fp_format(name: str, significand_bits: int, acc_significand_bits: int = FP32_SIGNIFICAND) -> MacFormat:
    """FP multiply at ``significand_bits``, FP accumulate at ``acc_significand_bits`` (FP32 by default:
    mixed precision, as tensor cores do); an output is rounded to storage width, modelled as one
    integer add of the significand width (0 when accumulator and storage widths agree)."""
    rounding = 0.0 if significand_bits == acc_significand_bits else int_add_pj(significand_bits)
    return MacFormat(name, fp_mul_pj(significand_bits), 0.0, fp_add_pj(acc_significand_bits), rounding,
                     f"FP mul ({significand_bits}-bit significand) + FP add ({acc_significand_bits}-bit)")


def int_format(bits: int = 8, acc_bits: int = 32) -> MacFormat:
    """INT multiply + INT accumulate (Horowitz 8-bit mul, 32-bit add); an output is requantised to
    ``bits`` by one ``acc_bits`` fixed-point multiply by the scale."""
    return MacFormat(f"int{bits}/acc{acc_bits}", int_mul_pj(bits), 0.0, int_add_pj(acc_bits),
                     int_mul_pj(acc_bits), f"INT{bits} mul + INT{acc_bits} add")


def lns_format(bits_a: int, bits_b: int, acc_bits: int = 24, gamma: int = 8,
               remainder_accumulation: bool = False, shift_pj: float | None = None,
               rom_pj: float | None = None) -> MacFormat:
    """LNS MAC of a ``bits_a``-bit by a ``bits_b``-bit LNS operand (1 sign bit + exponent bits).

    Multiply = integer add of exponents sized for the wider operand (different gammas align by a
    constant shift: wiring; the sign XOR is neglected). To linear: e = q * gamma + r; read 2**(-r/gamma)
    from a gamma-entry ROM of 8-bit constants and shift it by q with a barrel shifter. Neither has a
    published 45 nm per-operation figure we could cite: both are ASSUMPTIONS, parameters of the
    model (``shift_pj``, ``rom_pj``), by default priced as one ``acc_bits`` integer add (the shifter)
    and one 8-bit integer add (the ROM read: a small mux tree); the energy table shows how the ratio
    moves when they cost more. Accumulate: one ``acc_bits``
    integer add. Output (linear -> log): leading-one detect (one ``acc_bits`` add) + a ROM read.
    ``remainder_accumulation``: no ROM read per MAC; products go to ``gamma`` partial sums by r, and
    each output pays gamma (acc_bits x 8)-bit constant multiplies (acc_bits / 8 8-bit multiplies
    each) and gamma - 1 adds.

    Args:
        bits_a: LNS bits of one operand (e.g. 8 for weights/activations).
        bits_b: LNS bits of the other (e.g. 5 for gradients).
        acc_bits: linear-domain accumulator width.
        gamma: base factor of the product (number of ROM entries / partial sums).
        remainder_accumulation: the per-remainder partial-sum design instead of a ROM read per MAC.
        shift_pj: energy of the barrel shift (None: the assumption above).
        rom_pj: energy of one ROM read (None: the assumption above).
    """
    exp_add = int_add_pj(max(bits_a, bits_b) - 1)
    shift = int_add_pj(acc_bits) if shift_pj is None else shift_pj
    rom = int_add_pj(8) if rom_pj is None else rom_pj
    acc = int_add_pj(acc_bits)
    to_log = int_add_pj(acc_bits) + rom
    if remainder_accumulation:
        combine = gamma * int_mul_pj(8) * acc_bits / 8 + (gamma - 1) * int_add_pj(acc_bits)
        return MacFormat(f"lns{bits_a}x{bits_b}/acc{acc_bits}/rem{gamma}", exp_add, shift, acc,
                         combine + to_log, "exp add + shift + int add; per output gamma const mults")
    return MacFormat(f"lns{bits_a}x{bits_b}/acc{acc_bits}", exp_add, shift + rom, acc, to_log,
                     "exp add + (shift + ROM) + int add")


@dataclass(frozen=True)
class TrainingSetting:
    """Formats of the three MAC phases and the cost of updating one parameter element.

    Args:
        name: label in tables (``"fp32"``, ``"lns"``, ...).
        forward: format of weight x activation MACs.
        act_grad: format of gradient x weight MACs.
        weight_grad: format of gradient x activation MACs.
        update_pj: energy to update one parameter element.
        update_note: what the update does in this format.
    """

    name: str
    forward: MacFormat
    act_grad: MacFormat
    weight_grad: MacFormat
    update_pj: float
    update_note: str


def training_settings(lns_acc_bits: int = 24, lns_gamma: int = 8,
                      lns_remainder_accumulation: bool = False, lns_shift_pj: float | None = None,
                      lns_rom_pj: float | None = None) -> list[TrainingSetting]:
    """FP32, FP16, BF16, FP8, INT8 baselines and LNS-Madam (8-bit forward, 5-bit gradients).

    Baselines: SGD on an FP32 master copy (``p -= lr * g``: FP32 mul + add; Adam/Madam cost more, so
    this favours them) + a cast to the low-precision copy. LNS-Madam has no float copy: g_hat = g /
    sqrt(v) is one linear-domain MAC for v (g**2: a 1-bit exponent shift) converted back to log and
    one exponent subtract (sqrt: a shift); e <- clamp(e + g_hat * sign(p)) is one exponent add + one
    compare; bounding g_hat one more compare: 4 exponent-width adds.

    Args:
        lns_acc_bits: LNS linear-domain accumulator width.
        lns_gamma: LNS base factor of products (ROM entries).
        lns_remainder_accumulation: use the per-remainder partial-sum datapath.
        lns_shift_pj, lns_rom_pj: the LNS shifter / ROM energies (None: the documented assumptions).
    """
    fp32_sgd = fp_mul_pj(FP32_SIGNIFICAND) + fp_add_pj(FP32_SIGNIFICAND)
    settings = [TrainingSetting("fp32", *[fp_format("fp32", 24)] * 3, fp32_sgd, "SGD in FP32")]
    for name, fmt in (("fp16", fp_format("fp16/acc32", 11)), ("bf16", fp_format("bf16/acc32", 8)),
                      ("fp8", fp_format("fp8/acc32", 4)), ("int8", int_format(8, 32))):
        # FP8: E4M3 forward, E5M2 gradients (Micikevicius et al. 2022); the multiplier is sized for
        # the wider significand (E4M3: 3 mantissa bits + hidden bit = 4).
        settings.append(TrainingSetting(name, fmt, fmt, fmt, fp32_sgd + fmt.output_pj,
                                        f"SGD on an FP32 master copy + cast to {name}"))
    lns = {k: lns_format(8, b, lns_acc_bits, lns_gamma, lns_remainder_accumulation, lns_shift_pj, lns_rom_pj)
           for k, b in (("forward", 8), ("grad", 5))}
    one = lns_format(8, 5, lns_acc_bits, shift_pj=lns_shift_pj, rom_pj=lns_rom_pj)  # one product: ROM + shift
    lns_update = one.to_linear_pj + one.acc_pj + one.output_pj + 4 * int_add_pj(7)
    settings.append(TrainingSetting("lns", lns["forward"], lns["grad"], lns["grad"], lns_update,
                                    "LNS-Madam: integer exponent add + clamp, no float copy"))
    return settings


# ---- 2. Counting MACs ---------------------------------------------------------------------------
class MatMul(nn.Module):
    """``a @ b`` as a module, so the MAC counter sees activation x activation products (attention)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b


@dataclass
class LayerCount:
    """MACs and produced elements of one layer call over the whole batch.

    Args:
        name: module path in the model.
        kind: ``"linear"``, ``"conv2d"`` or ``"matmul"``.
        forward, act_grad, weight_grad: MACs per phase.
        outputs, input_grads, weight_grads: elements the forward / activation-grad / weight-grad
            passes produce (each pays one accumulator -> storage conversion).
        inputs: activation elements the layer reads (both operands of a matmul).
        weights: weight elements the layer reads (0 for a matmul).
    """

    name: str
    kind: str
    forward: int
    act_grad: int
    weight_grad: int
    outputs: int
    input_grads: int
    weight_grads: int
    inputs: int = 0
    weights: int = 0


def _count_call(name: str, module: nn.Module, inputs: tuple, out: Tensor) -> LayerCount:
    if isinstance(module, MatMul):
        a, b = inputs
        macs = out.numel() * a.shape[-1]  # [..., n, k] @ [..., k, m]
        grads = [t for t in (a, b) if t.requires_grad]
        return LayerCount(name, "matmul", macs, macs * len(grads), 0, out.numel(),
                          sum(t.numel() for t in grads), 0, a.numel() + b.numel(), 0)
    x, w = inputs[0], module.weight
    if isinstance(module, nn.Linear):
        rows = x.numel() // module.in_features  # N
        macs, kind = rows * module.in_features * module.out_features, "linear"
    else:  # Conv2d: N * Hout * Wout * Cout * (Cin / groups) * kh * kw
        n, c_out, h_out, w_out = out.shape
        kh, kw = module.kernel_size
        macs = n * h_out * w_out * c_out * (module.in_channels // module.groups) * kh * kw
        kind = "conv2d"
    return LayerCount(name, kind, macs, macs if x.requires_grad else 0, macs if w.requires_grad else 0,
                      out.numel(), x.numel() if x.requires_grad else 0, w.numel() if w.requires_grad else 0,
                      x.numel(), w.numel())


def count_macs(model: nn.Module, *inputs: Tensor) -> list[LayerCount]:
    """One forward pass with hooks on Linear / Conv2d / MatMul; backward MACs by the closed forms.

    Args:
        model: any module (meta-device modules and inputs work and cost no memory).
        inputs: the forward's arguments (the batch).
    """
    counts: list[LayerCount] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, MatMul)):
            def hook(m: nn.Module, args: tuple, out: Tensor, name: str = name) -> None:
                counts.append(_count_call(name, m, args, out))
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return counts


# ---- 3. Models ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BertShape:
    """BERT encoder sizes (Devlin et al. 2019)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int = 30522
    max_positions: int = 512


BERT_SHAPES = {"bert-base": BertShape(768, 12, 12, 3072), "bert-large": BertShape(1024, 24, 16, 4096)}


class BertLayer(nn.Module):
    """Post-norm encoder layer: self-attention (explicit matmuls) + GELU feed-forward."""

    def __init__(self, hidden: int, heads: int, intermediate: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.attn_out = (nn.Linear(hidden, hidden) for _ in range(4))
        self.scores, self.context = MatMul(), MatMul()
        self.attn_norm, self.ffn_norm = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.ffn_in, self.ffn_out = nn.Linear(hidden, intermediate), nn.Linear(intermediate, hidden)

    def forward(self, x: Tensor) -> Tensor:  # [B, S, H]
        b, s, h = x.shape
        d = h // self.heads

        def split(t: Tensor) -> Tensor:  # [B, S, H] -> [B, heads, S, d]
            return t.view(b, s, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        attn = torch.softmax(self.scores(q, k.transpose(-1, -2)) / math.sqrt(d), dim=-1)  # [B, heads, S, S]
        ctx = self.context(attn, v).transpose(1, 2).reshape(b, s, h)
        x = self.attn_norm(x + self.attn_out(ctx))
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))


class BertClassifier(nn.Module):
    """Embeddings + encoder + pooler + classifier (the GLUE fine-tuning model).

    Args:
        shape: encoder sizes.
        num_labels: classifier outputs.
    """

    def __init__(self, shape: BertShape, num_labels: int = 2) -> None:
        super().__init__()
        self.token = nn.Embedding(shape.vocab, shape.hidden)
        self.position = nn.Embedding(shape.max_positions, shape.hidden)
        self.segment = nn.Embedding(2, shape.hidden)
        self.embed_norm = nn.LayerNorm(shape.hidden)
        self.layers = nn.ModuleList(BertLayer(shape.hidden, shape.heads, shape.intermediate)
                                    for _ in range(shape.layers))
        self.pooler = nn.Linear(shape.hidden, shape.hidden)
        self.classifier = nn.Linear(shape.hidden, num_labels)

    def forward(self, token_ids: Tensor) -> Tensor:  # [B, S] -> [B, num_labels]
        positions = torch.arange(token_ids.shape[1], device=token_ids.device)
        x = self.token(token_ids) + self.position(positions) + self.segment(torch.zeros_like(token_ids))
        x = self.embed_norm(x)  # [B, S, H]
        for layer in self.layers:
            x = layer(x)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


def build_model(name: str, batch: int, image_size: int = 224, seq_len: int = 128,
                device: str | torch.device = "meta") -> tuple[nn.Module, Tensor, str]:
    """(model, input batch, description) on ``device`` (meta: shapes only, no memory).

    Args:
        name: one of ``MODELS``.
        batch: samples per iteration.
        image_size: ResNet input height = width.
        seq_len: BERT tokens per sequence.
        device: where to build.
    """
    if name in ("resnet18", "resnet50"):
        import torchvision

        with torch.device(device):
            model = getattr(torchvision.models, name)(weights=None)
        return model, torch.zeros(batch, 3, image_size, image_size, device=device), \
            f"{batch} x 3x{image_size}x{image_size} images"
    if name in BERT_SHAPES:
        with torch.device(device):
            model = BertClassifier(BERT_SHAPES[name])
        return model, torch.zeros(batch, seq_len, dtype=torch.long, device=device), \
            f"{batch} x {seq_len}-token sequences"
    raise ValueError(f"model: {name!r} is not one of {', '.join(MODELS)}")


# ---- 4. Report ----------------------------------------------------------------------------------
def phase_energy_pj(fmt: MacFormat, macs: int, outputs: int) -> float:
    """Energy of one MAC phase: MACs * MAC energy + produced elements * output conversion."""
    return macs * fmt.mac_pj + outputs * fmt.output_pj


@dataclass
class EnergyReport:
    """Per-phase MACs of one training iteration and its energy per training setting."""

    model: str
    batch: int
    input_desc: str
    params: int
    layers: list[LayerCount]
    settings: list[TrainingSetting]
    quantize_attention: bool = False
    memory: str = "none"
    lns_moment_bytes: int = 4

    def macs(self) -> dict[str, int]:
        """MACs per phase; ``update`` counts parameter elements (one update op each)."""
        total = {p: sum(getattr(c, p) for c in self.layers) for p in PHASES[:3]}
        return {**total, "update": self.params}

    def setting(self, name: str) -> TrainingSetting:
        return next(s for s in self.settings if s.name == name)

    def energy_mj(self, name: str) -> dict[str, float]:
        """Energy per phase in mJ for the setting called ``name``."""
        s, pj = self.setting(name), {}
        fp32 = self.settings[0].forward  # attention products stay FP32 unless quantize_attention

        def fmt(c: LayerCount, phase: str) -> MacFormat:
            return fp32 if c.kind == "matmul" and not self.quantize_attention else getattr(s, phase)

        for phase, outputs in (("forward", "outputs"), ("act_grad", "input_grads"),
                               ("weight_grad", "weight_grads")):
            pj[phase] = sum(phase_energy_pj(fmt(c, phase), getattr(c, phase), getattr(c, outputs))
                            for c in self.layers)
        pj["update"] = self.params * s.update_pj
        if self.memory != "none":
            from imaginate.numerics.energy_memory import memory_pj

            pj["memory"] = memory_pj(self, name)
        return {k: v * 1e-9 for k, v in pj.items()}

    def total_mj(self, name: str) -> float:
        return sum(self.energy_mj(name).values())

    def ratio_to_fp32(self, name: str) -> float:
        """How many times less energy than FP32 the setting uses."""
        return self.total_mj("fp32") / self.total_mj(name)

    def format_table(self, markdown: bool = False) -> str:
        """MACs per phase, then energy per phase and format (mJ) and the ratio to FP32."""
        m = self.macs()
        scope = "compute-only datapath" if self.memory == "none" else f"datapath + memory traffic ({self.memory})"
        head = (f"{self.model}: {self.input_desc} per iteration, {self.params / 1e6:.2f} M parameters; "
                f"{scope}, 45 nm (Horowitz, ISSCC 2014); attention products "
                f"{'quantised' if self.quantize_attention else 'FP32'}")
        macs = (f"MACs: forward {m['forward'] / 1e9:.3f} G, activation-grad {m['act_grad'] / 1e9:.3f} G, "
                f"weight-grad {m['weight_grad'] / 1e9:.3f} G, weight-update {m['update'] / 1e6:.2f} M ops")
        phases = PHASES + (("memory",) if self.memory != "none" else ())
        cols = ["format", "forward", "act-grad", "weight-grad", "update", *(["memory"] if self.memory != "none"
                                                                              else []), "total mJ", "FP32 / format"]
        rows = [cols]
        for s in self.settings:
            e = self.energy_mj(s.name)
            rows.append([s.name, *(f"{e[p]:.4g}" for p in phases), f"{sum(e.values()):.4g}",
                         f"{self.ratio_to_fp32(s.name):.1f}x"])
        if markdown:
            lines = ["| " + " | ".join(r) + " |" for r in rows]
            return "\n".join([head + "  ", macs, "", lines[0], "|" + "---|" * len(cols), *lines[1:]])
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
        lines = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
                 for r in rows]
        return "\n".join([head, macs, "energy per iteration (mJ):", *lines])


def energy_report(model_name: str, batch: int = 1, *, image_size: int = 224, seq_len: int = 128,
                  lns_acc_bits: int = 24, lns_gamma: int = 8,
                  lns_remainder_accumulation: bool = False, lns_shift_pj: float | None = None,
                  lns_rom_pj: float | None = None, quantize_attention: bool = False, memory: str = "none",
                  lns_moment_bytes: int = 4) -> EnergyReport:
    """Count one training iteration of ``model_name`` and price it in every format.

    Args:
        model_name: one of ``MODELS``.
        batch: samples per iteration (energies scale linearly, except the per-parameter update).
        image_size: ResNet input resolution (ImageNet: 224).
        seq_len: BERT sequence length (GLUE: 128; SQuAD: 384).
        lns_acc_bits: LNS accumulator width.
        lns_gamma: LNS base factor of products.
        lns_remainder_accumulation: per-remainder partial sums instead of a ROM read per MAC.
        lns_shift_pj, lns_rom_pj: LNS shifter / ROM energies (None: the documented assumptions).
        quantize_attention: price attention's activation x activation products in the setting's
            format (False: FP32, as the quantised training here leaves them).
        memory: "none" (compute only), or a memory level of
            :data:`imaginate.numerics.energy_memory.MEMORY_PJ_PER_BYTE` for the traffic term.
        lns_moment_bytes: bytes per element of LNS-Madam's stored second moment (4, 2 or 1).
    """
    from imaginate.numerics.energy_memory import MEMORY_PJ_PER_BYTE

    if memory != "none" and memory not in MEMORY_PJ_PER_BYTE:
        raise ValueError(f"memory: {memory!r} is not one of none, {', '.join(MEMORY_PJ_PER_BYTE)}")
    if batch < 1:
        raise ValueError(f"batch: must be >= 1, got {batch}")
    model, x, desc = build_model(model_name, batch, image_size, seq_len)
    params = sum(p.numel() for p in model.parameters())
    return EnergyReport(model_name, batch, desc, params, count_macs(model, x),
                        training_settings(lns_acc_bits, lns_gamma, lns_remainder_accumulation, lns_shift_pj,
                                          lns_rom_pj), quantize_attention, memory, lns_moment_bytes)


# ---- 5. Command line ----------------------------------------------------------------------------
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run_energy(args: argparse.Namespace) -> int:
    """The ``energy`` verb: print the table for ``args.model``."""
    report = energy_report(args.model, args.batch, image_size=args.image_size, seq_len=args.seq_len,
                           lns_acc_bits=args.lns_acc_bits, lns_gamma=args.lns_gamma,
                           lns_remainder_accumulation=args.lns_remainder_accumulation,
                           lns_shift_pj=args.lns_shift_pj, lns_rom_pj=args.lns_rom_pj,
                           quantize_attention=args.quantize_attention, memory=args.memory,
                           lns_moment_bytes=args.lns_moment_bytes)
    print(report.format_table(markdown=args.markdown))
    return 0


def add_energy_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``energy`` on an argparse subparsers object; ``func`` is ``run_energy``.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "energy", help="datapath energy of one training iteration per number format (LNS-Madam)",
        description="Count the MACs of one training iteration (forward, activation-gradient, "
                    "weight-gradient, weight update) and price them per format: FP32, FP16, BF16, FP8, "
                    "INT8 and LNS-Madam (8-bit LNS forward, 5-bit LNS gradients). Compute-only "
                    "datapath, 45 nm per-operation energies (Horowitz, ISSCC 2014); see docs/energy.md.")
    p.add_argument("--model", required=True, choices=MODELS, help="network to count")
    p.add_argument("--batch", type=_positive, default=1, help="samples per iteration (default: 1)")
    p.add_argument("--image-size", type=_positive, default=224, help="ResNet input size (default: 224)")
    p.add_argument("--seq-len", type=_positive, default=128, help="BERT sequence length (default: 128)")
    p.add_argument("--lns-acc-bits", type=_positive, default=24, help="LNS accumulator bits (default: 24)")
    p.add_argument("--lns-gamma", type=_positive, default=8, help="LNS base factor gamma (default: 8)")
    p.add_argument("--lns-remainder-accumulation", action="store_true",
                   help="per-remainder partial sums instead of a look-up per MAC")
    p.add_argument("--lns-shift-pj", type=float, default=None, help="LNS barrel shift energy, pJ (default: an assumption)")
    p.add_argument("--lns-rom-pj", type=float, default=None, help="LNS ROM read energy, pJ (default: an assumption)")
    p.add_argument("--quantize-attention", action="store_true",
                   help="price attention products in the low-precision format (default: FP32, as trained)")
    p.add_argument("--memory", default="none", choices=("none", "sram_8kb", "sram_32kb", "sram_1mb", "dram"),
                   help="add memory traffic at this level (Horowitz 2014 per-access energies)")
    p.add_argument("--lns-moment-bytes", type=int, default=4, choices=(1, 2, 4),
                   help="bytes of LNS-Madam's stored second moment (4 fp32, 2 bf16, 1 lns8)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=run_energy)
    return p


def main(argv: list[str] | None = None) -> int:
    """``imaginate energy ...`` on its own: ``main(["--model", "resnet18"])``.

    Args:
        argv: the arguments after ``energy`` (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="imaginate")
    add_energy_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["energy", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
