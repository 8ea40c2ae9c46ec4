"""The classify part of ``imaginate demo``.

Default (zoo weights): one short live training (Madam on the digits MLP, so a user sees training work) and the
zoo's Fashion-MNIST CNN evaluated on the test split with its prediction picture. ``train=True``: Madam against
SGD and Adam, each at its default lr, trained from scratch.
"""

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


def demo(out_dir: Path, train: bool = False) -> ReportPart:
    return _train_demo(out_dir) if train else _zoo_demo(out_dir)


ZOO_NAME = "classify_fmnist_madam"
LIVE_OVERRIDES = ["data.name=digits", "model.name=mlp", "optim.name=madam", "optim.lr=0.01", "train.steps=600",
                  "train.batch_size=64", "train.eval_every=100", "train.ckpt_every=0", "train.sample_every=0",
                  "train.log_every=10",
                  "train.num_threads=1"]  # a tiny MLP: a second thread buys nothing and stalls on a busy machine


def plot_live(run_dir: Path, path: Path) -> Path:
    """Training loss (left) and test accuracy (right) of the live run, from its metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    train = [r for r in rows if r["split"] == "train"]
    evals = [r for r in rows if r["split"] == "eval" and "test_acc" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 2.8), dpi=110)
    a.plot([r["step"] for r in train], [r["classifier_loss"] for r in train])
    a.set(xlabel="step", ylabel="training loss", yscale="log", title="digits MLP, Madam lr 0.01")
    b.plot([r["step"] for r in evals], [100 * r["test_acc"] for r in evals], "o-")
    b.set(xlabel="step", ylabel="test top-1 %", title="held-out test split")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _zoo_demo(out_dir: Path) -> ReportPart:
    import torch

    from imaginate.engine import run_training
    from imaginate.engine.images import save_png
    from imaginate.engine.loop import _evaluate, _sample
    from imaginate.registry import get_system
    from imaginate.zoo import load_zoo
    from imaginate.zoo.report import curves_png, provenance_table

    start = time.time()
    torch.set_num_threads(2)
    part_dir = out_dir / "classify"
    spec = get_system("classify")
    # 1. live: a short Madam run from scratch, so the report shows training work (loss falls, accuracy rises)
    cfg = build_config(spec.config_cls, preset="tiny", system="classify", overrides=LIVE_OVERRIDES)
    run_dir = part_dir / "live_digits_madam"
    t0 = time.time()
    live = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir(), progress=False)
    live_s = time.time() - t0
    rows = [["live: digits · MLP, trained now", "madam 0.01", str(cfg.train.steps), f"{100 * live['test_acc']:.1f}",
             f"{live['test_loss']:.3f}", f"{live_s:.0f}"]]
    images = [("Live training: digits MLP with Madam at its default lr (loss per logged step; test accuracy "
               "every 100 steps)", plot_live(run_dir, part_dir / "live_curves.png"))]
    tables = []
    text = ("Madam (arXiv 2006.14560) at its default learning rate 0.01, no tuning. The first run trains here and "
            "now on scikit-learn's digits; the Fashion-MNIST CNN comes from the project's zoo and is only evaluated "
            "(full 10,000-image test split).")
    try:
        t0 = time.time()
        _, zcfg, system, step = load_zoo(ZOO_NAME, device="cpu")
        metrics = _evaluate(system, zcfg.train.seed)
        grid = _sample(system, zcfg.train.seed)["predictions"]
        save_png(grid, part_dir / "zoo_predictions.png")
        rows.append([f"zoo:{ZOO_NAME} · Fashion-MNIST CNN (evaluated only)", f"madam {zcfg.optim.resolved_lr:g}",
                     str(step), f"{100 * metrics['test_acc']:.1f}", f"{metrics['test_loss']:.3f}",
                     f"{time.time() - t0:.0f}"])
        images.append((f"zoo:{ZOO_NAME}: the first 32 Fashion-MNIST test images captioned predicted/true "
                       "(red = wrong)", part_dir / "zoo_predictions.png"))
        images.append((f"zoo:{ZOO_NAME}: its training run's curves",
                       curves_png(ZOO_NAME, ["classifier_loss", "test_acc"], part_dir / "zoo_curves.png")))
        tables.append(provenance_table([ZOO_NAME]))
    except DataError as exc:
        text += f" The zoo model was skipped: {exc} (install Debian's dataset-fashion-mnist)."
    tables.insert(0, Table("Test top-1 accuracy", ["model", "optimizer", "steps", "top-1 %", "test loss", "s"], rows))
    return ReportPart("classify", "Classification with Madam (arXiv 2006.14560)", text, tables, images,
                      time.time() - start)


def _train_demo(out_dir: Path) -> ReportPart:
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
