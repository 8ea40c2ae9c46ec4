"""The lns_madam part of ``imaginate demo``: digits MLP in 8-bit LNS with LNS-Madam vs AdamW, and the
energy model's per-iteration table for ResNet-18."""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

RUNS = [  # (label, overrides)
    ("FP32 · Madam (no quantisers)", ["optim.name=madam", "optim.lr=0.01", "quant.enabled=false"]),
    ("LNS 8-bit store · LNS-Madam (native)", []),
    ("LNS 8-bit store · AdamW (re-quantised)", ["optim.name=adamw", "optim.lr=0.001", "optim.store=lns8g8"]),
    ("LNS 6-bit store · LNS-Madam (native)", ["optim.lns_bits=6", "optim.lns_gamma=2", "optim.lr=0.5"]),
    ("LNS 6-bit store · AdamW (re-quantised)", ["optim.name=adamw", "optim.lr=0.001", "optim.store=lns6g2"]),
]


def demo(out_dir: Path) -> ReportPart:
    from imaginate.engine import run_training
    from imaginate.numerics.energy import energy_report
    from imaginate.registry import get_system

    spec = get_system("lns_madam")
    start = time.time()
    rows = []
    for i, (label, overrides) in enumerate(RUNS):
        cfg = build_config(spec.config_cls, preset="tiny", system="lns_madam", overrides=overrides + [
            "train.steps=300", "train.eval_every=0", "train.ckpt_every=0", "train.sample_every=0",
            "train.num_threads=2"])
        run_dir = out_dir / "lns_madam" / f"run{i}"
        metrics = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir())
        rows.append([label, f"{100 * metrics['test_acc']:.1f}"])
    report = energy_report("resnet18")
    fp32 = report.total_mj("fp32")
    energy_rows = [[name, f"{report.total_mj(name):.3g}", f"{fp32 / report.total_mj(name):.1f}x"]
                   for name in ("fp32", "fp16", "fp8", "int8", "lns")]
    text = ("Digits MLP, 300 steps, with every Linear layer quantised: 8-bit LNS weights and activations (gamma 8), "
            "5-bit LNS activation and weight gradients (gamma 1, stochastic rounding). The weights themselves live "
            "in a B-bit LNS store with no float copy: LNS-Madam adds integers to their exponents, AdamW's update is "
            "rounded back onto the same grid after every step. The energy table is the compute-only datapath model "
            "of docs/energy.md (45 nm figures of Horowitz, ISSCC 2014); see docs/results/lns_madam.md for the "
            "bit-width sweep.")
    return ReportPart("lns_madam", "Low-precision training with LNS-Madam (arXiv 2106.13914)", text,
                      [Table("Digits MLP, test top-1 %", ["setting", "top-1 %"], rows),
                       Table("Energy per training iteration, ResNet-18, batch 1 (model)", ["format", "mJ", "FP32 / format"],
                             energy_rows)], [], time.time() - start)
