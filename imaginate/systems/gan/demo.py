"""The gan part of ``imaginate demo``.

Default (zoo weights): the zoo's class-conditional Fashion-MNIST GAN: a samples grid per class from its EMA
generator, its metrics re-measured on the fixed evaluation batch, per-class accuracy. ``train=True``: a short
run from scratch, samples and metrics.
"""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

DEMO_STEPS = 1000  # ~2.5 min on 2 cores; recognisable classes need ~1000 steps (docs/results/gan.md)


ZOO_NAME = "gan_fmnist"


def demo(out_dir: Path, train: bool = False) -> ReportPart:
    return _train_demo(out_dir) if train else _zoo_demo(out_dir)


def _metric_rows(metrics: dict[str, float]) -> list[list[str]]:
    rows = [["FID (Fashion-MNIST features)", f"{metrics['fid']:.2f}"],
            ["KID (Fashion-MNIST features)", f"{metrics['kid']:.3f} ± {metrics['kid_std']:.3f}"],
            ["precision / recall (Fashion-MNIST features)", f"{metrics['precision']:.3f} / {metrics['recall']:.3f}"]]
    if "class_acc" in metrics:
        rows.append(["feature classifier accuracy on samples (per intended class)", f"{100 * metrics['class_acc']:.1f}%"])
    return rows


def _zoo_demo(out_dir: Path) -> ReportPart:
    import torch
    import torch.nn.functional as F

    from imaginate.engine.images import make_grid, save_png
    from imaginate.engine.loop import _evaluate
    from imaginate.zoo import get_entry, load_zoo, read_curves
    from imaginate.zoo.report import curves_png, provenance_table

    start = time.time()
    # one thread: on the shared 2-core box the part took 26-27 s with 1 thread and 31-65 s with 2 (measured)
    torch.set_num_threads(1)
    part_dir = out_dir / "gan"
    _, cfg, system, step = load_zoo(ZOO_NAME, device="cpu")
    metrics = _evaluate(system, cfg.train.seed)  # the entry's own evaluation: the same fixed latents and labels
    recorded = get_entry(ZOO_NAME).metrics
    names = system.class_names
    k = len(names)
    with torch.no_grad():
        samples = system.generate(torch.arange(k).repeat_interleave(10), seed=1)  # [k * 10, C, H, W]
        real = torch.cat([system.test_set.images[system.test_set.labels == c][:2] for c in range(k)])  # [2k, C, H, W]
    grid = make_grid(torch.cat([torch.cat([real[2 * c:2 * c + 2], samples[10 * c:10 * c + 10]]) for c in range(k)]),
                     nrow=12)  # [C, h, w]: per row two real test images, then ten samples
    grid = F.interpolate(grid[None], scale_factor=2, mode="nearest")[0]
    save_png(grid, part_dir / "zoo_samples.png")
    table = Table(f"zoo:{ZOO_NAME} after {step} steps, evaluated here ({cfg.eval.num_samples} samples vs the first "
                  f"{cfg.eval.num_samples} test images; recorded = the zoo entry's value)",
                  ["metric", "value", "recorded"],
                  [row + [rec[1]] for row, rec in zip(_metric_rows(metrics), _metric_rows(recorded), strict=True)])
    tables = [table]
    if "class_acc_0" in metrics:
        tables.append(Table("Feature classifier reads the intended class of the samples (per class)",
                            ["class"] + names[:k], [["accuracy %"] + [f"{100 * metrics[f'class_acc_{c}']:.0f}"
                                                                      for c in range(k)]]))
    tables.append(provenance_table([ZOO_NAME]))
    keys = [key for key in ("discriminator_loss", "generator_loss", "fid", "class_acc")
            if any(key in r for r in read_curves(get_entry(ZOO_NAME)))]
    images = [(f"zoo:{ZOO_NAME}, EMA generator: one row per class ({', '.join(names)}); the first two images of "
               "each row are real test images, the other ten are samples from ten latent seeds", part_dir / "zoo_samples.png"),
              (f"zoo:{ZOO_NAME}: its training run's curves", curves_png(ZOO_NAME, keys, part_dir / "zoo_curves.png"))]
    text = (f"A class-conditional GAN (conditional-BN residual generator, projection discriminator with spectral "
            f"norm, hinge loss, TTUR, EMA generator) trained by the project for {step} steps on {cfg.data.name} "
            "on the CPU and loaded from the zoo; nothing is trained here. Metrics use the project's own "
            "Fashion-MNIST feature network, not Inception, so they are only comparable with other numbers measured "
            "in these features.")
    return ReportPart("gan", "Class-conditional GAN (GAN toolkit, arXiv 2008.02793)", text, tables, images,
                      time.time() - start)


def _train_demo(out_dir: Path) -> ReportPart:
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
