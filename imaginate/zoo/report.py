"""What a demo part shows about the zoo weights it used: where they came from, and how they trained."""

from __future__ import annotations

from pathlib import Path

from imaginate.report import Table
from imaginate.zoo import get_entry, read_curves

_SKIP = {"step", "split", "time"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _metrics_text(metrics: dict[str, float], limit: int = 4) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in list(metrics.items())[:limit]) or "-"


def provenance_table(names: list[str]) -> Table:
    """One row per zoo entry: how it was made (the command, steps, time) and what it reaches."""
    rows = []
    for name in names:
        e = get_entry(name)
        cpu = _duration(e.cpu_seconds) if e.cpu_seconds is not None else "not measured"
        rows.append([f"zoo:{e.name}", str(e.steps), f"{_duration(e.wall_seconds)} / {cpu}", str(e.threads),
                     e.command,
                     (e.sha256 or "-")[:12], f"{(e.bytes or 0) / 2**20:.2f} MB", _metrics_text(e.metrics)])
    return Table("Zoo weights used here: `python scripts/train_zoo.py NAME` re-makes each from its seed (wall time "
                 "on the project's 2-core build machine, often shared, so an upper bound)",
                 ["weights", "steps", "wall / CPU", "threads", "command", "sha256", "size", "recorded metrics"], rows)


def curves_png(name: str, keys: list[str], path: Path, title: str | None = None) -> Path:
    """Plot the entry's logged scalars ``keys`` (train and eval rows) against the step into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_curves(get_entry(name))
    keys = keys or sorted({k for r in rows for k in r if k not in _SKIP})[:4]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), dpi=100, squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for split, style in (("train", "-"), ("eval", "o-")):
            pts = [(r["step"], r[key]) for r in rows if r.get("split") == split and isinstance(r.get(key), int | float)]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, ms=3, lw=1, label=split)
        ax.set(title=key, xlabel="step")
        ax.legend(fontsize=7)
    fig.suptitle(title or f"zoo:{name} training curves", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
