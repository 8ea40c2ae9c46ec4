"""The classify part of ``imaginate demo``: Madam against SGD and Adam, each at its default lr."""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.data import DataError, load_fashion_mnist
from imaginate.engine.logging import read_metrics
from imaginate.report import ReportPart, Table

OPTIMIZERS = ("madam", "adam", "sgd")


def _tasks() -> list[tuple[str, list[str]]]:
    tasks = [("digits · MLP", ["data.name=digits", "model.name=mlp", "train.steps=600", "train.batch_size=64"])]
    try:
        load_fashion_mnist()
        tasks.append(("Fashion-MNIST · CNN", ["data.name=fashion_mnist", "model.name=cnn", "train.steps=400",
                                              "train.batch_size=128", "data.limit_test=5000"]))
    except DataError:
        pass  # the report says it was skipped
    return tasks


def plot_curves(runs: dict[str, Path], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=110)
    for label, run_dir in runs.items():
        rows = [r for r in read_metrics(run_dir) if r["split"] == "train"]
        ax.plot([r["step"] for r in rows], [r["classifier_loss"] for r in rows], label=label)
    ax.set(xlabel="step", ylabel="training loss", yscale="log", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def demo(out_dir: Path) -> ReportPart:
    from imaginate.engine import run_training
    from imaginate.registry import get_system

    spec = get_system("classify")
    start = time.time()
    rows, images = [], []
    tasks = _tasks()
    for task, overrides in tasks:
        runs = {}
        for opt in OPTIMIZERS:
            run_dir = out_dir / "classify" / f"{task.split(' ')[0].lower().replace('-', '')}_{opt}"
            cfg = build_config(spec.config_cls, preset="tiny", system="classify",
                               overrides=overrides + [f"optim.name={opt}", "optim.lr=null", "train.eval_every=0",
                                                      "train.ckpt_every=0", "train.num_threads=2"])
            t0 = time.time()
            resume = (run_dir / "checkpoints").is_dir()
            metrics = run_training(spec, cfg, run_dir, resume=resume, progress=True)
            rows.append([task, opt, f"{cfg.optim.resolved_lr:g}", str(cfg.train.steps),
                         f"{100 * metrics['test_acc']:.1f}", f"{time.time() - t0:.0f}"])
            runs[opt] = run_dir
        samples = sorted((runs["madam"] / "samples").glob("predictions_*.png"))
        images.append((f"{task}, Madam: test images captioned predicted/true (red = wrong)", samples[-1]))
        images.append((f"{task}: training loss", plot_curves(runs, out_dir / "classify" / f"curves_{len(images)}.png",
                                                            task)))
    text = ("Each optimizer trains at its default learning rate (Madam 0.01, Adam 1e-3, SGD 0.1 with momentum "
            "0.9) with no tuning; top-1 accuracy on the held-out test split.")
    if len(tasks) == 1:
        text += " Fashion-MNIST was not found (install Debian's dataset-fashion-mnist), so only digits ran."
    table = Table("Test accuracy at default learning rates", ["task", "optimizer", "lr", "steps", "top-1 %", "s"],
                  rows)
    return ReportPart("classify", "Classification with Madam (arXiv 2006.14560)", text, [table], images,
                      time.time() - start)
