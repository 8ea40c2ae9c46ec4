"""Memory-traffic term of the training-iteration energy model (:mod:`imaginate.numerics.energy`).

Per-access energies: M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, 45 nm: a 64-bit read from an 8 KB SRAM 10 pJ, a 32 KB SRAM 20 pJ, a 1 MB SRAM 100 pJ,
DRAM 1.3-2.6 nJ. Divided by 8 bytes: the per-byte figures of :data:`MEMORY_PJ_PER_BYTE` (DRAM at
the low end of the range). A write is priced as a read.

Traffic of one iteration, each operand moved once between the memory level and the datapath (a
lower bound: perfect on-chip reuse inside a layer, no re-reads)::

    forward      read weights + read inputs + write outputs
    act-grad     read weights + read output grads + write input grads
    weight-grad  read saved inputs + read output grads + write weight grads
    update       per parameter: read the weight gradient, read + write the weight store and the
                 optimizer state

with the element widths of each setting (:data:`WIDTHS`): FP32 4 bytes; FP16/BF16 2; FP8/INT8 1;
LNS 1 for weights and activations, 5/8 for gradients. Updates: the baselines keep an FP32 master
copy (SGD, no further state: read + write 4 + 4) and write their low-precision copy; LNS-Madam reads
and writes its packed 1-byte store and its second moment (``lns_moment_bytes``: 4 fp32, 2 bf16,
1 lns8). Attention products read and write activations in FP32 unless ``quantize_attention``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imaginate.numerics.energy import EnergyReport

HOROWITZ_45NM_PJ_PER_64BIT = {"sram_8kb": 10.0, "sram_32kb": 20.0, "sram_1mb": 100.0, "dram": 1300.0}
MEMORY_PJ_PER_BYTE = {k: v / 8 for k, v in HOROWITZ_45NM_PJ_PER_64BIT.items()}
# (weight, activation, gradient) bytes per element, and bytes of the low-precision weight copy an
# update writes besides the FP32 master copy (0 for FP32, which has none)
WIDTHS = {"fp32": (4, 4, 4, 0), "fp16": (2, 2, 2, 2), "bf16": (2, 2, 2, 2), "fp8": (1, 1, 1, 1),
          "int8": (1, 1, 1, 1), "lns": (1, 1, 5 / 8, 0)}


def traffic_bytes(report: EnergyReport, name: str) -> dict[str, float]:
    """Bytes moved per phase for the setting ``name`` (see the module docstring)."""
    w, a, g, copy = WIDTHS[name]
    out = {"forward": 0.0, "act_grad": 0.0, "weight_grad": 0.0}
    for c in report.layers:
        fp32_products = c.kind == "matmul" and not report.quantize_attention
        ca, cg = (4, 4) if fp32_products else (a, g)
        out["forward"] += c.weights * w + c.inputs * ca + c.outputs * ca
        if c.act_grad:
            out["act_grad"] += c.weights * w + c.outputs * cg + c.input_grads * cg
        if c.weight_grad:
            out["weight_grad"] += c.inputs * ca + c.outputs * cg + c.weight_grads * cg
    if name == "lns":
        per_param = g + 2 * 1 + 2 * report.lns_moment_bytes  # grad read, packed store r/w, moment r/w
    else:
        per_param = g + 2 * 4 + copy  # grad read, FP32 master r/w, low-precision copy write
    out["update"] = report.params * per_param
    return out


def memory_pj(report: EnergyReport, name: str) -> float:
    """Energy of the traffic of one iteration at ``report.memory``, in pJ."""
    return sum(traffic_bytes(report, name).values()) * MEMORY_PJ_PER_BYTE[report.memory]
