"""The gan part of ``imaginate demo``: a short class-conditional Fashion-MNIST run, samples and metrics."""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

DEMO_STEPS = 1000  # ~2.5 min on 2 cores; recognisable classes need ~1000 steps (docs/results/gan.md)


def demo(out_dir: Path) -> ReportPart:
    from imaginate.data import DataError, load_fashion_mnist
    from imaginate.engine import run_training
    from imaginate.registry import get_system

    spec = get_system("gan")
    start = time.time()
    overrides = [f"train.steps={DEMO_STEPS}", "train.ckpt_every=0", "train.sample_every=0", "train.num_threads=2"]
    try:
        load_fashion_mnist()
    except DataError:
        overrides.append("data.name=digits")
    cfg = build_config(spec.config_cls, preset="tiny", system="gan", overrides=overrides)
    run_dir = out_dir / "gan" / "tiny"
    metrics = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir())
    grid = sorted((run_dir / "samples").glob("class_by_seed_*.png"))[-1]
    rows = [["FID (Fashion-MNIST features)", f"{metrics['fid']:.2f}"],
            ["KID (Fashion-MNIST features)", f"{metrics['kid']:.3f} ± {metrics['kid_std']:.3f}"],
            ["precision / recall (Fashion-MNIST features)", f"{metrics['precision']:.3f} / {metrics['recall']:.3f}"]]
    if "class_acc" in metrics:
        rows.append(["feature classifier accuracy on samples (per intended class)", f"{100 * metrics['class_acc']:.1f}%"])
    text = (f"A class-conditional GAN (conditional-BN residual generator, projection discriminator with spectral "
            f"norm, hinge loss, TTUR, EMA generator) trained for {cfg.train.steps} steps on {cfg.data.name} on the "
            "CPU. Metrics use the project's own Fashion-MNIST feature network, not Inception, so they are only "
            "comparable with other numbers measured in these features.")
    table = Table(f"After {cfg.train.steps} steps ({cfg.eval.num_samples} samples vs the test split)",
                  ["metric", "value"], rows)
    return ReportPart("gan", "Class-conditional GAN (GAN toolkit, arXiv 2008.02793)", text, [table],
                      [("EMA generator samples: one row per class, one column per latent seed", grid)],
                      time.time() - start)
