"""The gancraft part of ``imaginate demo``.

``demo(out_dir)`` (``train=False``, what ``make demo`` runs) loads the zoo weights ``zoo:gancraft_tiny`` (no
training): renders fresh random views of its training world next to their segmentation and the per-frame
SPADE pseudo-GT, an orbit through the ``imaginate render`` code path (MP4 + a strip of its frames), the
system's own metrics on a fixed batch (view consistency along the evaluation orbit, error to the pseudo-GT
on fixed views), and where the weights came from (provenance table, training curves).

``demo(out_dir, train=True)`` is the old part: a short GANcraft run from scratch (translator included).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

ZOO_NAME = "gancraft_tiny"
DEMO_STEPS = 120  # train=True: geometry and label colours, little texture
TRANSLATOR_STEPS = 100
FRESH_VIEWS = 4  # fresh random views shown (seeded, not among the training steps' views)
FRESH_VIEW_STEP = 10**7  # the ViewSampler "step" these views are drawn at: far past any training step
ORBIT_FRAMES = 48
ORBIT_SIZE = 128  # twice the training size: the render CNN runs at any size, the geometry is sharper
FIXED_VIEWS = 8  # fixed views of the metrics batch (the run's eval views, first 8)
CURVE_KEYS = ["l2", "perceptual", "g_gan", "view_std_gancraft"]


def _ratio(metrics: dict[str, float], name: str) -> str:
    return f"{metrics[f'view_std_{name}'] / max(metrics[f'view_contrast_{name}'], 1e-12):.3f}"


@torch.no_grad()
def fixed_batch_metrics(system, views: int = FIXED_VIEWS) -> dict[str, float]:
    """The system's own metrics (those of ``GANcraftSystem.evaluate`` without the photo statistics) on a small
    fixed batch: view consistency along the evaluation orbit (``eval_path_frames`` frames), GANcraft in the
    mean style code of the batch vs per-frame SPADE, and the error to the pseudo-GT of the first ``views``
    evaluation views (the run's own eval cameras), each rendered in its own encoded style."""
    from imaginate.data.blockworld import label_map, orbit, random_valid_poses
    from imaginate.systems.gancraft.evaluation import cross_view_std, surface_keys
    from imaginate.systems.gancraft.pseudo_gt import apply_pseudo_gt
    from imaginate.systems.gancraft.views import cast_views, hits_of, render_views

    cfg, net, world = system.cfg, system.eval_generator, system.world
    size, device = cfg.data.image_size, system.ctx.device
    translator = system.ensure_translator()
    batch = cast_views(world, random_valid_poses(world, views, size, size, seed=cfg.data.world_seed), cfg.model.max_hits)
    pseudo = apply_pseudo_gt(translator, label_map(hits_of(batch))).cpu()  # [V, 3, H, W] in [-1, 1]
    mu, _ = net.encode_style(pseudo.to(device))
    codes = net.style_code(mu)
    renders = torch.cat([render_views(net, {k: v[i:i + 1] for k, v in batch.items()}, codes[i:i + 1])
                         for i in range(views)])
    path = cast_views(world, orbit(world, cfg.eval_path_frames, size, size), cfg.model.max_hits)
    keys = surface_keys(hits_of(path), path["origins"], path["directions"])
    ours = render_views(net, path, net.style_code(mu.mean(0, keepdim=True)))
    spade = (apply_pseudo_gt(translator, label_map(hits_of(path))).cpu() + 1) / 2
    std_ours, contrast_ours, cells = cross_view_std(ours, keys)
    std_spade, contrast_spade, _ = cross_view_std(spade, keys)
    return {"view_std_gancraft": std_ours, "view_std_spade": std_spade, "view_cells": float(cells),
            "view_contrast_gancraft": contrast_ours, "view_contrast_spade": contrast_spade,
            "l2_to_pseudo_gt": float(((renders - (pseudo + 1) / 2) ** 2).mean())}


def demo(out_dir: Path, train: bool = False) -> ReportPart:
    return _demo_train(out_dir) if train else _demo_zoo(out_dir)


def _demo_zoo(out_dir: Path) -> ReportPart:
    from imaginate.data.blockworld import save_png
    from imaginate.engine import make_grid
    from imaginate.systems.gancraft.render import render_video
    from imaginate.systems.gancraft.views import render_views
    from imaginate.zoo import get_entry, load_zoo
    from imaginate.zoo.report import curves_png, provenance_table

    start = time.time()
    torch.set_num_threads(2)
    folder = out_dir / "gancraft"
    folder.mkdir(parents=True, exist_ok=True)
    entry = get_entry(ZOO_NAME)
    _, cfg, system, step = load_zoo(ZOO_NAME)
    size = cfg.data.image_size

    # 1. Fresh random views (cameras the run never trained on): segmentation | SPADE pseudo-GT | GANcraft.
    views = system.sampler.views(FRESH_VIEW_STEP, list(range(FRESH_VIEWS)))
    net = system.eval_generator
    mu, _ = net.encode_style(views["pseudo_gt"].to(system.ctx.device))
    renders = torch.cat([render_views(net, {k: v[i:i + 1] for k, v in views.items()}, net.style_code(mu[i:i + 1]))
                         for i in range(FRESH_VIEWS)])
    segmentation = system.world.label_colors("cpu")[views["labels"]].permute(0, 3, 1, 2)
    tiles = torch.stack([segmentation, (views["pseudo_gt"] + 1) / 2, renders], 1).flatten(0, 1)  # [3V, 3, H, W]
    fresh_png = folder / "fresh_views.png"
    save_png(make_grid(tiles, nrow=3).permute(1, 2, 0), fresh_png)

    # 2. An orbit through the `imaginate render` code path (tiled, z = 0, ORBIT_SIZE px), MP4 + 8 of its frames.
    video, frames = render_video(f"zoo:{ZOO_NAME}", str(folder / "orbit.mp4"), path="orbit", frames=ORBIT_FRAMES,
                                 size=ORBIT_SIZE, samples=cfg.model.samples_per_ray)
    orbit_png = folder / "orbit_frames.png"
    save_png(make_grid(frames[::ORBIT_FRAMES // 8][:8], nrow=8).permute(1, 2, 0), orbit_png)

    # 3. The system's own metrics on a fixed batch; 4. provenance and curves.
    t_metrics = time.time()
    m = fixed_batch_metrics(system)
    t_metrics = time.time() - t_metrics
    curves = curves_png(ZOO_NAME, [k for k in CURVE_KEYS if _has_curve(entry, k)], folder / "curves.png",
                        f"zoo:{ZOO_NAME} training curves (train rows, means of 25 steps)")
    rows = [["cross-view colour std of surface cells, GANcraft (lower = more consistent)", f"{m['view_std_gancraft']:.4f}"],
            ["cross-view colour std of surface cells, per-frame SPADE pseudo-GT", f"{m['view_std_spade']:.4f}"],
            ["std / contrast (contrast = colour std across cells), GANcraft", _ratio(m, "gancraft")],
            ["std / contrast, per-frame SPADE", _ratio(m, "spade")],
            ["surface cells compared", f"{m['view_cells']:.0f}"],
            [f"mean squared error to the pseudo-GT on {FIXED_VIEWS} fixed views ([0, 1] units)",
             f"{m['l2_to_pseudo_gt']:.4f}"]]
    table = Table(f"zoo:{ZOO_NAME} on a fixed batch ({cfg.eval_path_frames}-frame orbit, {FIXED_VIEWS} views; "
                  f"{t_metrics:.1f} s)", ["metric", "value"], rows)
    text = (f"GANcraft (voxel-corner features, style-modulated render MLP, sky MLP, render CNN, style encoder) "
            f"from the zoo weights zoo:{ZOO_NAME} ({step} steps at {size} px, fresh random cameras every step, "
            f"on the procedural {'x'.join(map(str, cfg.data.world_size))} world of seed {cfg.data.world_seed}, "
            f"which the config rebuilds; supervised by a frozen SPADE pseudo-GT translator plus an OASIS "
            f"N+1-class discriminator against photo renders of other worlds). No training here. The fresh views "
            f"are cameras drawn at a step the run never reached; the orbit video ({video}, {ORBIT_SIZE} px, twice "
            f"the training size) is rendered tile by tile with the style z = 0. GANcraft's std and its std/contrast below SPADE's mean the same surface "
            f"keeps its colour better across frames. Weak: trained at {size} px with a tiny renderer for {step} steps, so textures are coarse and colours paler than "
            f"the pseudo-GT's; "
            f"the realism statistics (colour-statistics FID, not Inception) are in the provenance table's recorded "
            f"metrics and docs/results/gancraft.md.")
    return ReportPart("gancraft", "GANcraft neural rendering of block worlds (arXiv 2104.07659)", text,
                      [table, provenance_table([ZOO_NAME])],
                      [("fresh views: segmentation | per-frame SPADE pseudo-GT | GANcraft", fresh_png),
                       (f"orbit frames 0, {ORBIT_FRAMES // 8}, ... of {ORBIT_FRAMES} at {ORBIT_SIZE} px (imaginate render)",
                        orbit_png),
                       (f"zoo:{ZOO_NAME} training curves", curves)],
                      time.time() - start)


def _has_curve(entry, key: str) -> bool:
    from imaginate.zoo import read_curves

    return any(key in row for row in read_curves(entry))


def _demo_train(out_dir: Path) -> ReportPart:
    from imaginate.engine import run_training
    from imaginate.registry import get_system
    from imaginate.systems.gancraft.render import render_video

    spec = get_system("gancraft")
    start = time.time()
    folder = out_dir / "gancraft"
    overrides = [f"train.steps={DEMO_STEPS}", "train.ckpt_every=60", "train.sample_every=0", "train.num_threads=2",
                 f"data.translator_steps={TRANSLATOR_STEPS}", "data.translator_worlds=2", "data.num_views=32",
                 "data.photo_worlds=2",
                 f"data.translator_cache={folder / 'translator.safetensors'}", "eval_views=16"]
    cfg = build_config(spec.config_cls, preset="tiny", system="gancraft", overrides=overrides)
    run_dir = folder / "tiny"
    metrics = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir(), progress=False)
    strip = sorted((run_dir / "samples").glob("segmentation_pseudo_gt_gancraft_*.png"))[-1]
    video, _ = render_video(str(run_dir), str(folder / "orbit.mp4"), path="orbit", frames=24, size=64,
                            samples=cfg.model.samples_per_ray)

    rows = [["cross-view colour std of surface cells, GANcraft (lower = more consistent)",
             f"{metrics['view_std_gancraft']:.4f}"],
            ["cross-view colour std of surface cells, per-frame SPADE pseudo-GT", f"{metrics['view_std_spade']:.4f}"],
            ["std / contrast (contrast = colour std across cells), GANcraft", _ratio(metrics, "gancraft")],
            ["std / contrast, per-frame SPADE", _ratio(metrics, "spade")],
            ["mean squared error to the pseudo-GT on training views ([0, 1] units)", f"{metrics['l2_to_pseudo_gt']:.4f}"],
            ["FID in colour-statistics space vs photos (not Inception), GANcraft", f"{metrics['fid_colour_gancraft']:.3f}"],
            ["FID in colour-statistics space vs photos (not Inception), SPADE", f"{metrics['fid_colour_spade']:.3f}"]]
    text = (f"GANcraft (voxel-corner features, style-modulated render MLP, sky MLP, render CNN, style encoder) "
            f"trained for {cfg.train.steps} steps at {cfg.data.image_size} px on one procedural "
            f"{'x'.join(map(str, cfg.data.world_size))} world, supervised by a frozen SPADE translator "
            f"({TRANSLATOR_STEPS} steps on other worlds) applied to each view's segmentation, plus an OASIS N+1-class "
            f"discriminator against photo renders of other worlds. The view-consistency numbers follow "
            f"{cfg.eval_path_frames} orbit frames of the training world; a low std with a low contrast only means a "
            f"flat image, so both are given. An orbit video from `imaginate render` is at {video}. A run this short "
            f"is blurry; the zoo weights (the default demo) and docs/results/gancraft.md show longer runs.")
    table = Table(f"GANcraft vs per-frame SPADE after {cfg.train.steps} steps", ["metric", "value"], rows)
    return ReportPart("gancraft", "GANcraft neural rendering of block worlds (arXiv 2104.07659)", text, [table],
                      [("training views: segmentation | pseudo-GT (SPADE) | GANcraft render", strip)],
                      time.time() - start)
