"""GANcraft vs per-frame pseudo-GT SPADE on view consistency -> docs/results/gancraft.md.

Trains (or reuses) ``imaginate train gancraft --preset tiny`` (32 px, one procedural 48x24x48 world), then
along an orbit and a fly-through of the TRAINING world compares:

- view consistency: the standard deviation across frames of the colour of the same world surface cell
  (first-hit voxel, face, 4x4 cell of the face; ``imaginate/systems/gancraft/evaluation.py``), and the
  same statistic across cells ("contrast": a blank image is perfectly consistent, so both are shown);
- realism statistics against the unpaired photos: Fréchet and kernel distances in a 19-number colour /
  texture statistics space (no landscape feature network exists offline: NOT Inception FID/KID);
- speed on CPU: ray-voxel intersections per second (``benchmarks/raycast_speed.py``'s function) and frames
  per second of the full GANcraft render (ray cast + renderer) at 64² and 128².

Writes docs/results/gancraft.md, gancraft.json, gancraft_strip.png and gancraft_fly.mp4 (SPADE | GANcraft).

    python benchmarks/gancraft.py                          # train the tiny preset (~6 min on 2 cores) + measure
    python benchmarks/gancraft.py --run-dir runs/gancraft-tiny   # measure a finished run
    python benchmarks/gancraft.py --run-dir zoo:gancraft_tiny    # measure the zoo weights (64 px, fresh views)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import train_or_reuse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
FRAMES = 24
VIDEO_SIZE = 128  # twice the training size (the render CNN runs at any size; sharper geometry)


def path_metrics(system, cameras) -> tuple[dict, dict]:
    """View-consistency numbers of GANcraft and per-frame SPADE on one camera path, and the frames."""
    from imaginate.data.blockworld import label_map
    from imaginate.systems.gancraft.evaluation import cross_view_std, surface_keys
    from imaginate.systems.gancraft.pseudo_gt import apply_pseudo_gt
    from imaginate.systems.gancraft.views import cast_views, hits_of, render_views

    views = cast_views(system.world, cameras, system.cfg.model.max_hits)
    keys = surface_keys(hits_of(views), views["origins"], views["directions"])
    labels = label_map(hits_of(views))
    frames = {
        "GANcraft (tiny, one style code)": render_views(system.eval_generator, views, system.mean_style_code()),
        "SPADE pseudo-GT, per frame": (apply_pseudo_gt(system.ensure_translator(), labels).cpu() + 1) / 2,
    }
    out = {}
    for name, video in frames.items():
        std, contrast, cells = cross_view_std(video, keys)
        out[name] = {"std": std, "contrast": contrast, "ratio": std / contrast, "cells": cells}
    frames["segmentation"] = system.world.label_colors("cpu")[labels].permute(0, 3, 1, 2)
    return out, frames


def realism(system, count: int = 64) -> dict:
    """Colour-statistics FID / KID of GANcraft renders and SPADE pseudo-GT of training views vs the photos,
    and of one half of the photos vs the other (the floor of these small-sample numbers)."""
    import torch

    from imaginate.metrics import compute_gan_metrics
    from imaginate.systems.gancraft.evaluation import ColourStatistics
    from imaginate.systems.gancraft.views import render_views

    data, net = system.data, system.eval_generator
    n = min(count, len(data))
    with torch.no_grad():
        codes = net.style_code(net.encode_style(data.pseudo_gt[:n])[0])
    renders = torch.cat([render_views(net, {k: v[i:i + 1] for k, v in data.views.items()}, codes[i:i + 1])
                         for i in range(n)])
    photos = (data.photos + 1) / 2
    half = len(photos) // 2
    sets = {"GANcraft renders of training views": (photos, renders),
            "SPADE pseudo-GT of the same views": (photos, (data.pseudo_gt[:n] + 1) / 2),
            "photos vs other photos (reference)": (photos[:half], photos[half:])}
    out = {}
    for name, (real, fake) in sets.items():
        m = compute_gan_metrics(real, fake, ColourStatistics(), kid_subsets=50,
                                kid_subset_size=min(len(real), len(fake)), pr_k=3, dc_k=3)
        out[name] = {"fid": m["fid"], "kid": m["kid_mean"], "n_real": len(real), "n_fake": len(fake)}
    return out


def speed(system) -> dict:
    """rays/s of the ray caster and frames/s of the full render (ray cast + tiny renderer), 1 frame per call."""
    import torch
    from raycast_speed import rays_per_second

    from imaginate.data.blockworld import orbit
    from imaginate.systems.gancraft.views import cast_views, render_views

    out = {}
    for size in (64, 128):
        out[f"rays_per_s_{size}"], _ = rays_per_second(torch.device("cpu"), size, 6, 3)
        cameras = orbit(system.world, 4, size, size)
        code = system.mean_style_code()
        best = float("inf")
        for camera in cameras[1:]:
            start = time.perf_counter()
            render_views(system.eval_generator, cast_views(system.world, [camera], system.cfg.model.max_hits), code)
            best = min(best, time.perf_counter() - start)
        out[f"fps_{size}"] = 1 / best
    return out


def verdict(paths: dict) -> str:
    """One sentence per path comparing GANcraft with SPADE, from the numbers."""
    ours, spade = "GANcraft (tiny, one style code)", "SPADE pseudo-GT, per frame"
    parts = []
    for path, m in paths.items():
        std = m[spade]["std"] / max(m[ours]["std"], 1e-12)
        ratio = m[spade]["ratio"] / max(m[ours]["ratio"], 1e-12)
        parts.append(f"{path}: SPADE's cross-view std is {std:.1f}x GANcraft's, its std/contrast {ratio:.2f}x")
    return "Verdict (computed): " + "; ".join(parts) + " (above 1 = GANcraft more view-consistent)."


def run_line(run: str, cfg, train_seconds: float | None, cpu_seconds: float | None) -> str:
    """What was measured: the run (its command when it is a zoo entry), steps, views, sizes, time."""
    views = ("fresh random views every step" if cfg.data.view_sampling == "fresh"
             else f"{cfg.data.num_views} fixed training views")
    if run.startswith("zoo:"):
        from imaginate.zoo import get_entry

        head = f"Run: zoo weights `{run}`, made by `{get_entry(run[4:]).command}`"
    else:
        head = "Run: `imaginate train gancraft --preset tiny`"
    time_text = ""
    if train_seconds:
        time_text = f", {train_seconds / 60:.1f} min wall-clock"
        time_text += f" ({cpu_seconds / 60:.1f} CPU-min)" if cpu_seconds else ""
        time_text += " including the translator on a shared, loaded 2-core CPU"
    return (f"{head} ({cfg.train.steps} steps, batch {cfg.train.batch_size}, {cfg.data.image_size} px, {views} of "
            f"a {'x'.join(map(str, cfg.data.world_size))} world of seed {cfg.data.world_seed}; translator "
            f"{cfg.data.translator_steps} steps){time_text}")


def write_outputs(run: str, cfg, train_seconds: float | None, cpu_seconds: float | None, paths: dict,
                  realism_numbers: dict, speeds: dict, threads: int) -> str:
    import torch

    size = cfg.data.image_size
    lines = ["# GANcraft: view consistency vs per-frame SPADE (tiny preset, CPU)", "",
             "Written by `benchmarks/gancraft.py`; do not edit by hand.", "",
             run_line(run, cfg, train_seconds, cpu_seconds)
             + f". Measurements: torch {torch.__version__}, {threads} CPU thread(s).", "",
             "## View consistency on the training world", "",
             f"{FRAMES} frames per path at the training size ({size} px). `std`: standard deviation across frames of "
             "a surface cell's colour ([0, 1] units, cells seen in >= 2 frames), averaged over cells; `contrast`: "
             "the same statistic across cells (how different surfaces look at all); lower std and std/contrast "
             "= more view-consistent.", "",
             "| path | renderer | std | contrast | std / contrast | cells |", "|---|---|---|---|---|---|"]
    for path, numbers in paths.items():
        for name, m in numbers.items():
            lines.append(f"| {path} | {name} | {m['std']:.4f} | {m['contrast']:.4f} | {m['ratio']:.3f} | {m['cells']} |")
    lines += ["", verdict(paths)]
    lines += ["", "## Realism statistics against the unpaired photos", "",
              "Renders of the run's evaluation views (its fixed `eval_views` cameras, each in the style encoded "
              "from its own pseudo-GT) against photo-shader renders of other worlds. "
              "Fréchet distance (FID-like) and KID in a 19-number colour / texture statistics space "
              "(`ColourStatistics`: channel means and standard deviations at two scales, mean gradients, a "
              "brightness CDF, a saturation proxy). No pretrained landscape features exist offline: these are "
              "NOT Inception FID/KID and are only comparable within this table.", "",
              "| images | vs | FID (colour stats) | KID (colour stats) |", "|---|---|---|---|"]
    for name, m in realism_numbers.items():
        lines.append(f"| {name} ({m['n_fake']}) | {m['n_real']} photos | {m['fid']:.3f} | {m['kid']:.4f} |")
    lines += ["", "## Speed (CPU)", "", "| what | 64² | 128² |", "|---|---|---|",
              f"| ray-voxel intersections (6 hits/ray, 64x32x64 world), rays/s | {speeds['rays_per_s_64']:,.0f} | "
              f"{speeds['rays_per_s_128']:,.0f} |",
              f"| full GANcraft render (ray cast + tiny renderer, 1 frame), frames/s | {speeds['fps_64']:.2f} | "
              f"{speeds['fps_128']:.2f} |", "",
              "## Pictures", "",
              "![segmentation | SPADE per frame | GANcraft, fly-through frames](gancraft_strip.png)", "",
              f"Rows: frames 0, 6, 12, 18 of the fly-through ({size} px); columns: segmentation, per-frame SPADE "
              f"pseudo-GT, GANcraft. Video (SPADE left, GANcraft right, {VIDEO_SIZE} px, {2 * FRAMES} frames): "
              "[gancraft_fly.mp4](gancraft_fly.mp4).", ""]
    return "\n".join(lines)


MEMORY_SCRIPT = """
import json, resource, sys, time, torch
torch.set_num_threads(1)
from imaginate.data.blockworld import generate_world, orbit
from imaginate.systems.gancraft.model import GANcraftGenerator, GANcraftModelConfig
from imaginate.systems.gancraft.tiled import render_camera
size, tile, samples = (int(v) for v in sys.argv[1:4])
torch.manual_seed(0)
world = generate_world((64, 32, 64), seed=0)
net = GANcraftGenerator(GANcraftModelConfig.paper(), world).eval()
code = net.style_code(torch.zeros(1, net.config.style_dims))
camera = orbit(world, 8, size, size)[1]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.process_time()
frame = render_camera(net, camera, code, tile=tile, num_samples=samples)
seconds = time.process_time() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"size": size, "tile": tile, "samples": samples, "base_mib": base, "peak_mib": peak,
                  "render_mib": peak - base, "cpu_s": seconds, "mean": float(frame.mean())}))
"""


def memory(cases: list[tuple[int, int]], samples: int) -> list[dict]:
    """Peak RSS of rendering one frame with the paper-size generator, each case in a fresh process."""
    import os
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = []
    for size, tile in cases:
        result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(size), str(tile), str(samples)], env=env,
                                capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def write_memory(rows: list[dict]) -> None:
    lines = ["# GANcraft: peak memory of rendering one frame, tiled vs whole (paper-size model, CPU)", "",
             "Written by `benchmarks/gancraft.py --memory`; do not edit by hand.", "",
             "The paper-size generator (`GANcraftModelConfig.paper()`: 64-d corner features, 256-wide MLP, "
             f"256-channel render CNN) on a procedural 64x32x64 world, {rows[0]['samples']} samples per ray (the "
             "reference's inference value), one orbit view, `imaginate.systems.gancraft.tiled.render_camera`, "
             "each case in a fresh single-threaded process. `render MiB`: peak RSS during the render minus the "
             "RSS before it (model and world loaded); `whole frame`: the tile covers the frame (one pass, as "
             "before tiling). CPU seconds on a shared, loaded 2-core machine.", "",
             "What bounds the memory is one padded tile, `(tile + 8)^2` rays (a 4-pixel halo on each inner side, "
             "the render CNN's receptive radius) x samples per ray: a 64² frame in 64-pixel tiles is one tile "
             "with no halo, a 128² frame has halos on one side of each tile (68²), from 192² on interior tiles "
             "have halos on both sides (72²) and the peak stays there for any frame size. Only rays that hit a "
             "block get samples, so a tile all of ground costs the most: a whole 128² frame (a third of it sky) "
             "needs less than one 132² tile of ground. The bound for 128-pixel tiles is a 136² tile of ground.", "",
             "| frame | tile | render MiB | peak RSS MiB | CPU s |", "|---|---|---|---|---|"]
    for r in rows:
        tile = "whole frame" if r["tile"] >= r["size"] else r["tile"]
        lines.append(f"| {r['size']}² | {tile} | {r['render_mib']:.0f} | {r['peak_mib']:.0f} | {r['cpu_s']:.0f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gancraft_memory.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "gancraft_memory.json").write_text(json.dumps(rows, indent=1) + "\n")


def coverage(steps: int, batch: int, fixed_views: int) -> dict:
    """Surface corners of the tiny preset's world that training views see (as corners of first-hit blocks):
    fresh views for ``steps`` x ``batch`` vs a fixed set of ``fixed_views`` (the old data path)."""
    import torch

    from imaginate.config import build_config
    from imaginate.data.blockworld import random_valid_poses
    from imaginate.registry import get_system
    from imaginate.systems.gancraft.system import build_world
    from imaginate.systems.gancraft.views import ViewSampler, cast_views
    from imaginate.systems.gancraft.voxel_field import VoxelCornerFeatures

    cfg = build_config(get_system("gancraft").config_cls, preset="tiny", system="gancraft")
    world, size = build_world(cfg.data), cfg.data.image_size
    field = VoxelCornerFeatures(world, 1)
    solid = world.blocks != 0
    air = torch.nn.functional.pad((~solid).float()[None, None], (1,) * 6, value=0.0)  # outside: not air
    exposed = solid & (torch.nn.functional.max_pool3d(air, 3, stride=1)[0, 0] > 0)  # solid, touching air
    surface = set(field.corner_rows(torch.nonzero(exposed)).flatten().tolist()) - {-1}

    def seen(cameras) -> set:
        views = cast_views(world, cameras, 1)
        voxels = views["voxels"][..., 0, :][views["block_ids"][..., 0] >= 0]
        return set(field.corner_rows(voxels).flatten().tolist()) & surface

    sampler = ViewSampler(world, size, 1, None, random_style=False, seed=0)
    fresh: set = set()
    curve = []
    for step in range(steps):
        fresh |= seen(sampler.cameras(step, list(range(batch))))
        if (step + 1) in (steps // 8, steps // 4, steps // 2, steps):
            curve.append({"step": step + 1, "views": (step + 1) * batch, "fraction": len(fresh) / len(surface)})
    fixed = seen(random_valid_poses(world, fixed_views, size, size, seed=cfg.data.world_seed))
    return {"world": list(world.shape), "image_size": size, "surface_corners": len(surface),
            "fixed_views": fixed_views, "fixed_fraction": len(fixed) / len(surface), "fresh": curve, "batch": batch}


def write_coverage(c: dict) -> None:
    lines = ["# GANcraft: how much of the world's surface training views see, fresh vs fixed views", "",
             "Written by `benchmarks/gancraft.py --coverage`; do not edit by hand.", "",
             f"The tiny preset's {'x'.join(map(str, c['world']))} world, {c['image_size']} px views. A surface "
             f"corner is a voxel corner of a solid block that touches air ({c['surface_corners']} of them); it is "
             "seen when it is a corner of a block some pixel of a training view sees first. Corners never seen keep "
             "their random initial features. Fresh: `data.view_sampling=fresh` (new rejection-tested cameras every "
             f"step, batch {c['batch']}); fixed: the old data path, `data.num_views` views cast once.", "",
             "| training views | seen surface corners |", "|---|---|",
             f"| fixed set of {c['fixed_views']} views (any number of steps) | {c['fixed_fraction']:.1%} |"]
    lines += [f"| fresh, {r['step']} steps ({r['views']} views) | {r['fraction']:.1%} |" for r in c["fresh"]]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gancraft_coverage.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "gancraft_coverage.json").write_text(json.dumps(c, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_gancraft" / "tiny"))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the tiny preset's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", action="store_true",
                        help="only measure the tiled render's peak memory -> docs/results/gancraft_memory.md")
    parser.add_argument("--coverage", action="store_true",
                        help="only measure surface coverage, fresh vs fixed views -> docs/results/gancraft_coverage.md")
    args = parser.parse_args()
    if args.coverage:
        import torch

        torch.set_num_threads(1)
        write_coverage(coverage(steps=250, batch=4, fixed_views=64))
        return
    if args.memory:
        cases = [(64, 64), (128, 64), (256, 64), (128, 128), (256, 128)]  # tile >= size: one whole-frame pass
        write_memory(memory(cases, 40))
        return

    import torch

    torch.set_num_threads(args.threads)
    from imaginate.config import build_config
    from imaginate.data.blockworld import fly_through, orbit
    from imaginate.engine import load_run
    from imaginate.engine.images import make_grid, save_png
    from imaginate.engine.logging import read_metrics
    from imaginate.engine.video import write_mp4
    from imaginate.registry import get_system

    run_dir = Path(args.run_dir)
    cpu_seconds = None
    if args.run_dir.startswith("zoo:"):  # the zoo weights: the time recorded by scripts/train_zoo.py
        from imaginate.zoo import get_entry

        entry = get_entry(args.run_dir[4:])
        train_seconds, cpu_seconds = entry.wall_seconds, entry.cpu_seconds
        _, cfg, system, _ = load_run(args.run_dir, device="cpu")
    else:
        steps = args.steps or build_config(get_system("gancraft").config_cls, preset="tiny",
                                           system="gancraft").train.steps
        if not (run_dir / "final.safetensors").is_file():
            train_or_reuse("gancraft", "tiny", [f"train.num_threads={args.threads}"], run_dir, steps, False)
        train_seconds = max(row["time"] for row in read_metrics(run_dir))
        _, cfg, system, _ = load_run(run_dir, device="cpu")
    system.train(False)
    size = cfg.data.image_size
    world = system.world
    paths, frames = {}, {}
    with torch.no_grad():
        paths["orbit"], _ = path_metrics(system, orbit(world, FRAMES, size, size))
        paths["fly-through"], frames = path_metrics(system, fly_through(world, FRAMES, size, size, seed=0))
        realism_numbers = realism(system)
        speeds = speed(system)
        # picture strip and the side-by-side video (64 px)
        names = ["segmentation", "SPADE pseudo-GT, per frame", "GANcraft (tiny, one style code)"]
        tiles = torch.stack([frames[n][[0, 6, 12, 18]] for n in names], dim=1).flatten(0, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        save_png(make_grid(tiles, nrow=3), RESULTS / "gancraft_strip.png")
        _, video = path_metrics(system, fly_through(world, 2 * FRAMES, VIDEO_SIZE, VIDEO_SIZE, seed=0))
        side = torch.cat([video["SPADE pseudo-GT, per frame"], video["GANcraft (tiny, one style code)"]], dim=3)
        write_mp4(side, RESULTS / "gancraft_fly.mp4", fps=12, crf=23)
    report = write_outputs(args.run_dir, cfg, train_seconds, cpu_seconds, paths, realism_numbers, speeds,
                           args.threads)
    (RESULTS / "gancraft.md").write_text(report)
    (RESULTS / "gancraft.json").write_text(json.dumps({"paths": paths, "realism": realism_numbers, "speed": speeds},
                                                      indent=2) + "\n")
    print(report)


if __name__ == "__main__":
    main()
