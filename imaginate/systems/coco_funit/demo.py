"""The coco_funit part of ``imaginate demo``: a short COCO-FUNIT run on the procedural species, few-shot
metrics on the unseen species, the content-by-style grid and a K-shot translation with a style
interpolation strip written by the ``imaginate translate`` code path."""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

DEMO_STEPS = 800  # ~1.5 min on 2 cores: poses and palettes start to follow; species identity needs far more
EVAL = ["eval.shots=[1,5]", "eval.translations_per_class=20", "eval.real_per_class=20",
        "eval.helper_images_per_class=40", "eval.classifier_steps=200", "eval.mask_net_steps=200"]


def _species_files(folder: Path, species: int, count: int, size: int, seed: int) -> list[str]:
    """Write ``count`` fresh images of one species as PNG files (what a user would pass to translate)."""
    import torch

    from imaginate.data import render_species_batch
    from imaginate.data.species import sample_contents, species_name
    from imaginate.engine.images import save_png

    poses, backgrounds = sample_contents(count, torch.Generator().manual_seed(seed))
    images, _ = render_species_batch([species] * count, poses, backgrounds, size)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"{species_name(species)}_{i}.png") for i in range(count)]
    for image, path in zip(images, paths):
        save_png(image, Path(path))
    return paths


def demo(out_dir: Path) -> ReportPart:
    from imaginate.data import SPLIT
    from imaginate.data.species import species_name
    from imaginate.engine import run_training
    from imaginate.registry import get_system
    from imaginate.systems.coco_funit.translate import translate_files

    spec = get_system("coco_funit")
    start = time.time()
    overrides = [f"train.steps={DEMO_STEPS}", "train.ckpt_every=400", "train.sample_every=0",
                 "train.num_threads=2", f"eval.cache_dir={out_dir / 'coco_funit' / 'eval_helpers'}", *EVAL]
    cfg = build_config(spec.config_cls, preset="tiny", system="coco_funit", overrides=overrides)
    run_dir = out_dir / "coco_funit" / "tiny"
    metrics = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir())
    grid = sorted((run_dir / "samples").glob("content_by_style_*.png"))[-1]

    # the translate command's code path: one content file, K=3 style files, a strip to a second species
    size = cfg.model.image_size
    files = run_dir / "translate_inputs"
    first, second = SPLIT.unseen[0], SPLIT.unseen[1]
    content = _species_files(files, SPLIT.seen[0], 1, size, seed=1)[0]
    styles = _species_files(files, first, 3, size, seed=2)
    others = _species_files(files, second, 3, size, seed=3)
    translated = translate_files(str(run_dir), content, styles, str(run_dir / "translate_k3.png"),
                                 interpolate=others, steps=6)

    rows = [["species classifier accuracy on real unseen images (helper net)", f"{metrics['pacc_real']:.3f}"]]
    for k in (1, 5):
        rows += [[f"PAcc, K={k}", f"{metrics[f'pacc_k{k}']:.3f}"],
                 [f"content IoU (content mask vs translation foreground), K={k}", f"{metrics[f'iou_content_k{k}']:.3f}"],
                 [f"mFID (species-classifier features), K={k}", f"{metrics[f'mfid_k{k}']:.1f}"]]
    text = (f"COCO-FUNIT (content encoder, content-conditioned style code with the constant style bias, AdaIN "
            f"decoder, projection discriminator, hinge + feature matching + reconstruction, EMA) trained for "
            f"{cfg.train.steps} steps at {size} px on 19 procedural species, then asked to translate seen-species "
            f"contents into the 5 held-out species from K example images. A run this short learns pose and palette "
            f"transfer only; the full comparison with FUNIT (3000 steps, 2 seeds) is in docs/results/coco_funit.md.")
    table = Table(f"Few-shot evaluation on the unseen species after {cfg.train.steps} steps", ["metric", "value"], rows)
    return ReportPart("coco_funit", "COCO-FUNIT few-shot translation (arXiv 2007.07431)", text, [table],
                      [("content rows (seen species) x one style example per unseen species (EMA generator)", grid),
                       (f"`imaginate translate`: content, K=3 examples of {species_name(first)}, the translation, and a style "
                        f"interpolation strip towards {species_name(second)}", Path(translated))],
                      time.time() - start)
