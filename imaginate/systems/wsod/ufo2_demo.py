"""The UFO² half of the wsod demo part: a short run of ``--preset ufo2_tiny`` (a fifth of the training
scenes each with boxes, tags, points, scribbles or no label), its detections and per-kind losses."""

from __future__ import annotations

import json
import time
from pathlib import Path

from imaginate.report import Table

UFO2_DEMO_STEPS = 200  # 300 steps on 400 scenes took 223 CPU-s with 2 threads on a loaded machine: cut to fit ~75 s
UFO2_DEMO_DATA = ["data.num_train=200", "data.num_test=60", "eval.corloc_images=60"]


def ufo2_demo(out_dir: Path) -> tuple[str, Table, Path, float]:
    """(a paragraph, a table, a detection picture, seconds) of a short mixed-label run."""
    from imaginate.config import build_config
    from imaginate.engine import run_training
    from imaginate.registry import get_system

    spec = get_system("wsod")
    start = time.time()
    run_dir = out_dir / "wsod" / "ufo2_tiny"
    overrides = [f"train.steps={UFO2_DEMO_STEPS}", "train.ckpt_every=0", "train.sample_every=0", "train.num_threads=2",
                 "refine_warmup_start=60", "refine_warmup_length=60", *UFO2_DEMO_DATA,
                 f"data.proposal_cache={out_dir / 'wsod' / 'proposals'}"]
    cfg = build_config(spec.config_cls, preset="ufo2_tiny", system="wsod", overrides=overrides)
    metrics = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir())
    picture = sorted((run_dir / "samples").glob("detections_*.png"))[-1]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"][-40:]
    kinds = ("boxes", "tags", "points", "scribbles", "none")
    losses = []
    for kind in kinds:
        seen = [r[f"loss_{kind}"] for r in train if f"loss_{kind}" in r]
        losses.append(f"{sum(seen) / len(seen):.3f}" if seen else "–")
    table = Table(f"UFO², {UFO2_DEMO_STEPS} steps on mixed labels: mAP50 {metrics['map50']:.3f} ({cfg.data.num_test} "
                  f"test scenes), CorLoc {metrics['corloc']:.3f}; each kind's loss (its share of the batch loss, "
                  f"mean of the last logged steps)", [f"loss {k}" for k in kinds], [losses])
    text = (f"UFO² (arXiv 2010.10804): the same detector trained on {cfg.data.num_train} smaller scenes where each "
            f"image carries one kind of label (boxes, tags, one click per object, one scribble per object, or none), "
            f"each kind with its own loss; unlabeled images learn from an EMA teacher's confident predictions. The "
            f"budget study (which labels to buy for a fixed number of annotator-seconds) is in docs/results/ufo2.md.")
    return text, table, picture, time.time() - start
