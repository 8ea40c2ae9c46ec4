"""The wsod part of ``imaginate demo``: MIST trained from image tags on a small procedural scene set, its
detections pictured, mAP50 / CorLoc next to the trivial baselines."""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

DEMO_STEPS = 1000  # ~2 min on 2 cores with the proposals (mAP50 ~0.24 measured); the full preset (2000 steps) is in docs/results/wsod.md
DEMO_DATA = ["data.num_train=400", "data.num_test=100", "eval.corloc_images=100",
             "refine_warmup_start=400", "refine_warmup_length=200"]


def demo(out_dir: Path) -> ReportPart:
    from imaginate.engine import run_training
    from imaginate.engine.loop import load_run
    from imaginate.registry import get_system
    from imaginate.systems.wsod.evaluation import evaluate_baselines

    spec = get_system("wsod")
    start = time.time()
    run_dir = out_dir / "wsod" / "tiny"
    overrides = [f"train.steps={DEMO_STEPS}", "train.ckpt_every=300", "train.sample_every=0", "train.num_threads=2",
                 f"data.proposal_cache={out_dir / 'wsod' / 'proposals'}", *DEMO_DATA]
    cfg = build_config(spec.config_cls, preset="tiny", system="wsod", overrides=overrides)
    metrics = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir())
    picture = sorted((run_dir / "samples").glob("detections_*.png"))[-1]
    _, _, system, _ = load_run(run_dir, device="cpu")
    base = evaluate_baselines(system)
    rows = [["MIST (this run)", f"{metrics['map50']:.3f}", f"{metrics['corloc']:.3f}", f"{metrics['part_only']:.3f}"]]
    rows += [[f"baseline: {kind.replace('_', ' ')} per true tag", f"{b['map50']:.3f}", f"{b['corloc']:.3f}",
              f"{b['part_only']:.3f}"] for kind, b in base.items()]
    text = (f"A weakly supervised detector trained from image tags only: a small CNN backbone (stride 8), ROI "
            f"pooling over Selective Search proposals, a WSDDN MIL head and three MIST refinement branches with "
            f"box regression, {cfg.train.steps} steps on {cfg.data.num_train} procedural scenes (objects are a "
            f"class-generic body with a small class emblem; duplicates and colour clutter). The baselines are "
            f"given the true tags. A run this short is far from converged; the full comparison of WSDDN, OICR, "
            f"MIST, MIST + Concrete DropBlock and the box-supervised upper bound is in docs/results/wsod.md.")
    table = Table(f"{cfg.data.num_test} test scenes (mAP50), {cfg.eval.corloc_images} training scenes (CorLoc)",
                  ["detector", "mAP50", "CorLoc", "part-only rate"], rows)
    from imaginate.systems.wsod.ufo2_demo import ufo2_demo

    ufo2_text, ufo2_table, ufo2_picture, _ = ufo2_demo(out_dir)
    return ReportPart("wsod", "Weakly supervised detection: WSDDN + MIST (wetectron, arXiv 2004.04725) and UFO² "
                      "(arXiv 2010.10804)", text + " " + ufo2_text, [table, ufo2_table],
                      [("test scenes: true boxes white, detections coloured with class and score", picture),
                       ("UFO², mixed labels: test scenes", ufo2_picture)], time.time() - start)
