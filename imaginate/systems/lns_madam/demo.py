"""The lns_madam part of ``imaginate demo``.

Default (zoo weights): the zoo's digits MLP trained in 8-bit LNS with LNS-Madam, evaluated next to its FP32
counterpart, its weights packed into the 8-bit store (bytes, and the accuracy read back from the packed file),
and the energy model's per-iteration table for ResNet-18. ``train=True``: LNS-Madam vs AdamW at 8 and 6 bits,
trained from scratch.
"""

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


ZOO_LNS = "lns_madam_tiny"
ZOO_FP32 = "lns_madam_tiny_fp32"


def demo(out_dir: Path, train: bool = False) -> ReportPart:
    return _train_demo(out_dir) if train else _zoo_demo(out_dir)


def _energy_table() -> Table:
    from imaginate.numerics.energy import energy_report

    report = energy_report("resnet18")
    fp32 = report.total_mj("fp32")
    rows = [[name, f"{report.total_mj(name):.3g}", f"{fp32 / report.total_mj(name):.1f}x"]
            for name in ("fp32", "fp16", "fp8", "int8", "lns")]
    return Table("Energy per training iteration, ResNet-18, batch 1 (model)", ["format", "mJ", "FP32 / format"], rows)


def pack_weights(net, bits: int, gamma: int, path: Path) -> tuple[dict[str, int], dict, int]:
    """Pack every floating parameter of ``net`` into a ``bits``-bit LNS store (one byte per weight for
    B <= 8) with the per-tensor scale max|w| and write the packed tensors to ``path``.

    The weights of a native LNS-Madam run lie on the grid ``scale * 2 ** (-e / gamma)``; max|w| is one of
    its points, so re-encoding from it gives back the same values (up to float32 rounding).

    Returns:
        (bytes {"packed", "float32"}, the decoded state dict, number of weights that changed on decoding).
    """
    import torch
    from safetensors.torch import save_file

    from imaginate.numerics.lns import LNSFormat, lns_encode
    from imaginate.numerics.lns_pack import decode_packed, decode_table, pack_lns

    fmt = LNSFormat(bits=bits, gamma=gamma)
    packed, decoded, scales, changed, floats = {}, {}, {}, 0, 0
    for name, p in net.named_parameters():
        w = p.detach().float()
        scale = w.abs().amax().clamp_min(1e-30)  # []
        codes, signs = lns_encode(w, fmt, scale=scale, rounding="nearest")
        packed[name] = pack_lns(codes, signs, fmt)  # uint8 [same shape]
        decoded[name] = decode_packed(packed[name], decode_table(fmt, scale))
        scales[name] = float(scale)
        changed += int((~torch.isclose(decoded[name], w, rtol=1e-5, atol=0)).sum())
        floats += w.numel() * 4
    save_file(packed, str(path), metadata={"scales": repr(scales), "bits": str(bits), "gamma": str(gamma)})
    return {"packed": sum(t.numel() * t.element_size() for t in packed.values()), "float32": floats}, decoded, changed


def _zoo_demo(out_dir: Path) -> ReportPart:
    import torch

    from imaginate.engine.loop import _evaluate
    from imaginate.engine.system import unwrap
    from imaginate.zoo import load_zoo
    from imaginate.zoo.report import curves_png, provenance_table

    start = time.time()
    torch.set_num_threads(2)
    part_dir = out_dir / "lns_madam"
    part_dir.mkdir(parents=True, exist_ok=True)
    rows, systems = [], {}
    for name in (ZOO_FP32, ZOO_LNS):
        _, cfg, system, step = load_zoo(name, device="cpu")
        m = _evaluate(system, cfg.train.seed)
        systems[name] = (cfg, system)
        setting = ("FP32 · Madam (no quantisers)" if not cfg.quant.enabled else
                   f"LNS {cfg.optim.lns_bits}-bit store · LNS-Madam (native), 8-bit LNS forward, 5-bit gradients")
        rows.append([f"zoo:{name}", setting, str(step), f"{100 * m['test_acc']:.1f}", f"{m['test_loss']:.3f}"])
    cfg, system = systems[ZOO_LNS]
    net = unwrap(system.net)
    sizes, decoded, changed = pack_weights(net, cfg.optim.lns_bits, cfg.optim.lns_gamma, part_dir / "packed.safetensors")
    original = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict({**original, **decoded})
    repacked = _evaluate(system, cfg.train.seed)
    net.load_state_dict(original)
    n_weights = sum(p.numel() for p in net.parameters())
    file_kb = (part_dir / "packed.safetensors").stat().st_size / 1024
    memory = Table(f"zoo:{ZOO_LNS}: the weights in the {cfg.optim.lns_bits}-bit LNS store",
                   ["weights", "float32 bytes", "packed LNS bytes", "packed file (KB, with header)",
                    "weights changed by packing", "test top-1 % read back from the packed file"],
                   [[str(n_weights), str(sizes["float32"]), str(sizes["packed"]), f"{file_kb:.1f}", str(changed),
                     f"{100 * repacked['test_acc']:.1f}"]])
    text = ("Digits MLP with every Linear layer quantised: 8-bit LNS weights and activations (gamma 8), 5-bit LNS "
            "activation and weight gradients (gamma 1, stochastic rounding). The weights live in an 8-bit LNS store "
            "with no float copy: LNS-Madam adds integers to their exponents. Both models come from the zoo "
            "(same MLP, data, steps and seed; evaluated here on the 360-image test split). The packed table "
            "re-encodes the trained weights, one byte each, and evaluates the model decoded from that file. The "
            "energy table is the compute-only datapath model of docs/energy.md (45 nm figures of Horowitz, ISSCC "
            "2014); see docs/results/lns_madam.md for the bit-width sweep.")
    curves = curves_png(ZOO_LNS, ["classifier_loss", "test_acc"], part_dir / "zoo_curves.png")
    return ReportPart("lns_madam", "Low-precision training with LNS-Madam (arXiv 2106.13914)", text,
                      [Table("Digits MLP from the zoo, test top-1 %", ["weights", "setting", "steps", "top-1 %",
                                                                        "test loss"], rows),
                       memory, _energy_table(), provenance_table([ZOO_LNS, ZOO_FP32])],
                      [(f"zoo:{ZOO_LNS}: its training run's curves", curves)], time.time() - start)


def _train_demo(out_dir: Path) -> ReportPart:
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
