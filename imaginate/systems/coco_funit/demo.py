"""The coco_funit part of ``imaginate demo``.

Default (zoo weights, nothing trained): the zoo's COCO-FUNIT at the ``cpu_simple`` preset on held-out images
of the procedural "simple" species: same-image reconstructions G(x, x) (the first thing to check), a content x style
grid next to its ground truth (the target species drawn in the content's pose) for seen and unseen target
species, ground-truth metrics on a fixed batch beside two copying baselines, the entry's recorded few-shot
evaluation, where the weights came from and their training curves. ``train=True``: today's short tiny-preset
run from scratch with its few-shot metrics, its sample grid and an ``imaginate translate`` picture.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from imaginate.config import build_config
from imaginate.engine.images import captioned_panel, side_by_side
from imaginate.report import ReportPart, Table

ZOO_NAME = "coco_funit_simple"
DEMO_SEED = 404  # offset from data.seed: images neither training (+0) nor the evaluation (+202, +303) drew
CONTENTS_PER_SPECIES = 1  # held-out contents per seen species in the metric batch (19 in all)
GRID_CONTENTS = 5
SEEN_TARGET_COUNT = 5  # how many seen target species the metrics use (spread over the list; the first 3 also in the grid)
GRID_SEEN_STYLES = 3
# What the pictures of these weights show (looked at on the committed zoo:coco_funit_simple weights, 10000 steps)
PICTURES = ("What the pictures show: the translations keep the content's place, size and facing and take the "
            "example species' colour scheme, part by part (body in its base colour, head in its accent colour), for "
            "seen and unseen species; the unseen species' tails and ears are not drawn, the bodies are soft blobs "
            "and the edges carry coloured noise. The reconstructions G(x, x) are as soft: at this budget the "
            "adversarial terms that make translation work cost the crisp reconstruction of a gentler preset.")
DEMO_STEPS = 800  # train=True: ~1.5 min on 2 cores; poses and palettes start to follow, identity needs far more
EVAL = ["eval.shots=[1,5]", "eval.translations_per_class=20", "eval.real_per_class=20",
        "eval.helper_images_per_class=40", "eval.classifier_steps=200", "eval.mask_net_steps=200"]


def demo(out_dir: Path, train: bool = False) -> ReportPart:
    return _train_demo(out_dir) if train else _zoo_demo(out_dir)


# ------------------------------------------------------------------ zoo weights


def held_out(size: int, seed: int, look: tuple[bool, str]):
    """The demo's fixed images, drawn with seeds training and evaluation did not use: contents of every
    seen species (``CONTENTS_PER_SPECIES`` each) and one style example of every species (seen and unseen).
    ``look`` is the data's (plain_background, variant)."""
    from imaginate.data import NUM_SPECIES, SPLIT, SpeciesDataset

    contents = SpeciesDataset(SPLIT.seen, CONTENTS_PER_SPECIES, size, seed + DEMO_SEED, *look).prerender()
    styles = SpeciesDataset(range(NUM_SPECIES), 1, size, seed + DEMO_SEED + 1, *look).prerender()
    return contents, styles


@torch.no_grad()
def ground_truth_metrics(translate, contents, styles, targets: list[int], look: tuple[bool, str]) -> dict[str, dict[str, float]]:
    """Each content translated with one example of each target species, against the ground truth (the
    target drawn in the content's pose on the content's background), and the same for two copying
    baselines. Returns ``{"model" | "copy content" | "copy style": {metric: value}}`` with ``l1`` (whole
    image), ``l1_fg`` (inside the union of the truth's and the content's creature), ``psnr`` (dB),
    ``l1_fg_gt90`` (``l1_fg`` where the example faces more than 90° away from the content) and, for the
    model and the truth, ``sensitivity`` (mean |difference| between translations of one content into two
    target species)."""
    from imaginate.data import facing_difference, render_species_batch
    from imaginate.systems.coco_funit.evaluation import psnr

    n, size = contents.images.shape[0], contents.images.shape[-1]
    fakes, truths, rows = [], [], {"model": [], "copy content": [], "copy style": []}
    far = []
    for u in targets:
        example = styles.images[styles.species == u][:1].expand(n, -1, -1, -1)  # [n, 3, H, W]
        truth, truth_mask = render_species_batch([u] * n, contents.poses, contents.background_seeds, size, *look)
        region = (truth_mask | contents.masks)[:, None].float()  # [n, 1, H, W]
        fake = translate(contents.images, example)
        fakes.append(fake)
        truths.append(truth)
        far.append(facing_difference(contents.poses, styles.poses[styles.species == u][:1].expand(n, -1)) > 90)
        for name, out in (("model", fake), ("copy content", contents.images), ("copy style", example)):
            err = (out - truth).abs()
            rows[name].append(torch.stack([err.flatten(1).mean(1),
                                           (err * region).flatten(1).sum(1) / (region.flatten(1).sum(1) * 3),
                                           psnr(out, truth).double()], dim=1).double())  # [n, 3]
    far_mask = torch.cat(far)
    result = {}
    for name, parts in rows.items():
        values = torch.cat(parts)  # [n * T, 3]
        result[name] = {"l1": float(values[:, 0].mean()), "l1_fg": float(values[:, 1].mean()),
                        "psnr": float(values[:, 2].mean()),
                        "l1_fg_gt90": float(values[far_mask, 1].mean()) if far_mask.any() else float("nan")}

    def sensitivity(images: list[Tensor]) -> float:
        pairs = [(a, b) for a in range(len(images)) for b in range(a + 1, len(images))]
        return sum(float((images[a] - images[b]).abs().mean()) for a, b in pairs) / max(len(pairs), 1)

    result["model"]["sensitivity"] = sensitivity(fakes)
    result["ideal"] = {"sensitivity": sensitivity(truths)}
    return result


def reconstruction_metrics(out: Tensor, images: Tensor, masks: Tensor) -> dict[str, float]:
    """Reconstructions ``out`` = G(x, x) against x: ``l1``, ``l1_fg`` (inside the creature) and ``psnr``."""
    from imaginate.systems.coco_funit.evaluation import psnr

    err, region = (out - images).abs(), masks[:, None].float()
    return {"l1": float(err.mean()), "l1_fg": float((err * region).sum() / (region.sum() * 3)),
            "psnr": float(psnr(out, images).mean())}


def translation_grid(translate, contents, styles, targets: list[int], look: tuple[bool, str], path: Path) -> Path:
    """Contents (first column, held-out images of seen species) x one example of each target species
    (first row): the model's translations beside the ground truth."""
    from imaginate.data import render_species_batch
    from imaginate.engine.images import make_grid

    size = contents.images.shape[-1]
    picks = torch.linspace(0, contents.images.shape[0] - 1, GRID_CONTENTS).round().long()
    content = contents.images[picks]  # [R, 3, H, W]
    style = torch.cat([styles.images[styles.species == u][:1] for u in targets])  # [S, 3, H, W]
    r, s = content.shape[0], style.shape[0]
    fake = translate(content.repeat_interleave(s, 0), style.repeat(r, 1, 1, 1))
    truth, _ = render_species_batch(torch.tensor(targets).repeat(r), contents.poses[picks].repeat_interleave(s, 0),
                                    contents.background_seeds[picks].repeat_interleave(s, 0), size, *look)
    panels = []
    for caption, images in (("COCO-FUNIT (zoo weights, EMA generator)", fake),
                            ("ground truth: the example's species in the content's pose", truth)):
        tiles = [torch.ones_like(content[:1]), style]
        for i in range(r):
            tiles += [content[i:i + 1], images[i * s:(i + 1) * s]]
        panels.append(captioned_panel(make_grid(torch.cat(tiles), nrow=s + 1), caption))
    return side_by_side(panels, path)


def reconstruction_grid(inputs: Tensor, outputs: Tensor, seen: int, path: Path) -> Path:
    """Held-out inputs (top) over their same-image reconstructions G(x, x) (bottom); the first ``seen``
    are of seen species, the rest of unseen ones."""
    from imaginate.engine.images import make_grid

    grid = make_grid(torch.cat([inputs, outputs]), nrow=inputs.shape[0])
    caption = f"held-out images (top; {seen} of seen, {inputs.shape[0] - seen} of unseen species) over G(x, x)"
    return side_by_side([captioned_panel(grid, caption)], path)


def measure(system, pictures: Path | None = None) -> dict:
    """The demo's measurements of a COCO-FUNIT system's evaluation generator on the fixed held-out batch:
    ``{"reconstruction": {images: metrics}, "translation": {"seen" | "unseen": ground_truth_metrics},
    "contents": 19, "pictures": [reconstruction PNG, grid PNG]}`` (pictures only with a folder)."""
    from imaginate.data import SPLIT

    cfg = system.cfg
    size, look, seed = cfg.model.image_size, (cfg.data.plain_background, cfg.data.variant), cfg.data.seed
    contents, styles = held_out(size, seed, look)
    translate = system.translate

    def reconstruct(images: Tensor) -> Tensor:
        return system.translate(images, images)

    seen_targets = [SPLIT.seen[round(i * (len(SPLIT.seen) - 1) / (SEEN_TARGET_COUNT - 1))] for i in range(SEEN_TARGET_COUNT)]
    unseen_targets = list(SPLIT.unseen)
    unseen_images = torch.cat([styles.images[styles.species == u] for u in unseen_targets])
    unseen_masks = torch.cat([styles.masks[styles.species == u] for u in unseen_targets])
    seen_rec, unseen_rec = reconstruct(contents.images), reconstruct(unseen_images)
    out = {"contents": contents.images.shape[0], "seen_targets": len(seen_targets), "pictures": [],
           "reconstruction": {
               "held-out images of seen species": reconstruction_metrics(seen_rec, contents.images, contents.masks),
               "images of unseen species": reconstruction_metrics(unseen_rec, unseen_images, unseen_masks)},
           "translation": {"seen": ground_truth_metrics(translate, contents, styles, seen_targets, look),
                           "unseen": ground_truth_metrics(translate, contents, styles, unseen_targets, look)}}
    if pictures is not None:
        every = max(1, contents.images.shape[0] // 6)
        out["pictures"] = [
            reconstruction_grid(torch.cat([contents.images[::every][:6], unseen_images]),
                                torch.cat([seen_rec[::every][:6], unseen_rec]), min(6, len(seen_rec[::every])),
                                pictures / "zoo_reconstruction.png"),
            translation_grid(translate, contents, styles, seen_targets[:GRID_SEEN_STYLES] + unseen_targets, look,
                             pictures / "zoo_translation.png")]
    return out


def _zoo_demo(out_dir: Path) -> ReportPart:
    from imaginate.zoo import get_entry, load_zoo, read_curves
    from imaginate.zoo.report import curves_png, provenance_table

    start = time.time()
    torch.set_num_threads(2)
    part_dir = out_dir / "coco_funit"
    _, cfg, system, step = load_zoo(ZOO_NAME, device="cpu")
    system.train(False)
    size = cfg.model.image_size
    found = measure(system, part_dir)
    rec, gt, n = found["reconstruction"], found["translation"], found["contents"]
    rec_png, grid_png = found["pictures"]
    tables = [Table(f"Same-image reconstruction G(x, x) of held-out images ({n} seen-species images, one per "
                    "unseen species; L1 in [0, 1] units)", ["images", "L1", "L1 on the creature", "PSNR dB"],
                    [[k, f"{v['l1']:.4f}", f"{v['l1_fg']:.4f}", f"{v['psnr']:.2f}"] for k, v in rec.items()])]
    rows = []
    for group, by in gt.items():
        for name in ("model", "copy content", "copy style"):
            v = by[name]
            rows.append([f"{group} species", name, f"{v['l1']:.4f}", f"{v['l1_fg']:.4f}", f"{v['l1_fg_gt90']:.4f}",
                         f"{v['psnr']:.2f}", f"{v['sensitivity']:.4f}" if "sensitivity" in v else ""])
        rows.append([f"{group} species", "ground truth", "0", "0", "0", "∞", f"{by['ideal']['sensitivity']:.4f}"])
    tables.append(Table(f"Translations against their ground truth on a fixed held-out batch: {n} contents of the seen "
                        f"species x one example of each of {found['seen_targets']} seen and 5 unseen target species "
                        "(K = 1); lower L1 is better, and a translator must beat both copying baselines", ["target", "translator", "L1", "L1 on creatures",
                                                              "L1 on creatures, > 90° apart", "PSNR dB",
                                                              "style sensitivity"], rows))
    recorded = get_entry(ZOO_NAME).metrics
    keys = [("pacc_k1", "PAcc (species classifier reads the unseen target; chance 1/24 = 0.042)"),
            ("l1_gt_k1", "L1 to ground truth"), ("l1_fg_k1", "L1 on creatures"), ("psnr_gt_k1", "PSNR dB"),
            ("iou_target_k1", "target IoU"), ("style_leak_k1", "style leak (ideal: style_leak_ideal_k1)"),
            ("style_sensitivity_k1", "style sensitivity"), ("dead_style_code", "dead style-code share"),
            ("collapsed", "collapsed (1 = output ignores the style)")]
    tables.append(Table(f"zoo:{ZOO_NAME}'s recorded few-shot evaluation (the system's own, unseen species, K = 1, "
                        f"{cfg.eval.translations_per_class} translations per species; made by scripts/train_zoo.py)",
                        ["metric", "recorded"],
                        [[label, f"{recorded[k]:.4f}"] for k, label in keys if k in recorded]))
    tables.append(provenance_table([ZOO_NAME]))
    logged = {k for r in read_curves(get_entry(ZOO_NAME)) for k in r}
    curve_keys = [k for k in ("reconstruction", "style_sensitivity", "discriminator_loss", "g_gan") if k in logged]

    model_u, copy_u = gt["unseen"]["model"], gt["unseen"]["copy content"]
    beats = model_u["l1_fg"] < min(copy_u["l1_fg"], gt["unseen"]["copy style"]["l1_fg"])
    pacc = recorded.get("pacc_k1", float("nan"))
    text = (f"COCO-FUNIT (content encoder, content-conditioned style code with the constant style bias, AdaIN "
            f"decoder) trained by the project for {step} steps at {size} px on 19 procedural few-part species"
            + (f" and {cfg.data.extra_species} extra procedural ones" if cfg.data.extra_species else "")
            + f" (the cpu_simple preset; weights zoo:{ZOO_NAME}, nothing is trained here), shown on images it "
            f"never saw. First the reconstructions G(x, x): a translator that cannot redraw its own input cannot be "
            f"judged on translation. Then contents of seen species translated with one example of 3 seen and the 5 "
            f"unseen species, beside the ground truth the procedural data can render. {PICTURES} "
            + ("On the unseen species its L1 on the creatures is below both copying baselines. " if beats else
               "On the unseen species its L1 on the creatures is not below both copying baselines (copying the "
               "example is closer: L1 rewards a sharp right-species image in the wrong pose less than it punishes "
               "wrong details), ")
            + f"and the species classifier reads {100 * pacc:.1f}% of its translations as the unseen target species "
            "(chance 4.2%). The FUNIT comparison over 3 seeds is in docs/results/coco_funit_cpu_simple.md.")
    images = [("Same-image reconstruction: held-out inputs over G(x, x)", rec_png),
              ("Content x style: held-out seen-species contents (first column) with one example per target species "
               "(first row: 3 seen, then the 5 unseen species); left the model, right the ground truth", grid_png),
              (f"zoo:{ZOO_NAME}: its training run's curves",
               curves_png(ZOO_NAME, curve_keys, part_dir / "zoo_curves.png"))]
    return ReportPart("coco_funit", "COCO-FUNIT few-shot translation (arXiv 2007.07431)", text, tables, images,
                      time.time() - start)


# ------------------------------------------------------------------ train=True: a short run from scratch


def _species_files(folder: Path, species: int, count: int, size: int, seed: int) -> list[str]:
    """Write ``count`` fresh images of one species as PNG files (what a user would pass to translate)."""
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


def _train_demo(out_dir: Path) -> ReportPart:
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

    from imaginate.systems.coco_funit.evaluation import is_collapsed

    rows = [["species classifier accuracy on real unseen images (helper net)", f"{metrics['pacc_real']:.3f}"]]
    for k in (1, 5):
        rows += [[f"PAcc, K={k}", f"{metrics[f'pacc_k{k}']:.3f}"],
                 [f"content IoU (content mask vs translation foreground), K={k}", f"{metrics[f'iou_content_k{k}']:.3f}"],
                 [f"style sensitivity (ideal {metrics[f'style_sensitivity_ideal_k{k}']:.4f}), K={k}",
                  f"{metrics[f'style_sensitivity_k{k}']:.4f}"]]
        if f"mfid_k{k}" in metrics:  # only with eval.mfid=true
            rows.append([f"mFID (species-classifier features), K={k}", f"{metrics[f'mfid_k{k}']:.1f}"])
    rows.append(["dead style-code share", f"{metrics['dead_style_code']:.3f}"])
    collapsed = is_collapsed(metrics)
    text = (f"COCO-FUNIT (content encoder, content-conditioned style code with the constant style bias, AdaIN "
            f"decoder, projection discriminator, hinge + feature matching + reconstruction, EMA) trained for "
            f"{cfg.train.steps} steps at {size} px on 19 procedural species (the tiny preset), then asked to translate "
            "seen-species contents into the 5 held-out species from K example images. "
            + ("This run collapsed: its output ignores the style example (style sensitivity under a tenth of the "
               "ideal's, or a dead style code), a failure, not a result: a run this short does not learn to "
               "translate. " if collapsed else "A run this short learns pose and palette transfer at most. ")
            + "`imaginate demo` without --train shows the zoo weights (the cpu_simple preset, 10000 steps); the "
              "comparison with FUNIT is in docs/results/coco_funit_cpu_simple.md.")
    table = Table(f"Few-shot evaluation on the unseen species after {cfg.train.steps} steps", ["metric", "value"], rows)
    return ReportPart("coco_funit", "COCO-FUNIT few-shot translation (arXiv 2007.07431)", text, [table],
                      [("content rows (seen species) x one style example per unseen species (EMA generator)", grid),
                       (f"`imaginate translate`: content, K=3 examples of {species_name(first)}, the translation, and a style "
                        f"interpolation strip towards {species_name(second)}", Path(translated))],
                      time.time() - start)
