"""Throughput of the PyTorch ray-voxel DDA, old (one voxel per loop step) vs new (``window`` plane crossings
per loop step) in one interleaved run (``torch.utils.benchmark``, alternating sides), on a view of a
procedural 64x32x64 world at several sizes, 6 hits per ray, single thread on CPU (and on CUDA when
present). Both sides are checked to return the same hits first.

    python benchmarks/raycast_speed.py [--sizes 64 128 256] [--hits 6] [--window 8] [--rounds 3] [--write]

``--write`` saves the table to docs/results/gancraft_raycast.md and .json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.utils.benchmark as tbench

from imaginate.data.blockworld import generate_world, orbit
from imaginate.data.blockworld.raycast import ray_voxel_intersections, ray_voxel_intersections_stepwise

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def rays_per_second(device: torch.device, size: int, hits: int, repeats: int) -> tuple[float, float]:
    """(rays/s of the current DDA, best of ``repeats`` calls; fraction of rays that hit) on one orbit view."""
    import time

    world = generate_world((64, 32, 64), seed=0).to(device)
    origins, directions = orbit(world, 8, size, size)[1].rays(device=device)
    result = ray_voxel_intersections(world.blocks, origins, directions, max_hits=hits)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = ray_voxel_intersections(world.blocks, origins, directions, max_hits=hits)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return size * size / best, float(result.hit[..., 0].float().mean())


def compare(device: torch.device, size: int, hits: int, window: int, rounds: int) -> dict:
    """Rays/s of both versions (median of interleaved rounds) and the fraction of rays that hit."""
    world = generate_world((64, 32, 64), seed=0).to(device)
    camera = orbit(world, 8, size, size)[1]
    origins, directions = camera.rays(device=device)
    old = ray_voxel_intersections_stepwise(world.blocks, origins, directions, max_hits=hits)
    new = ray_voxel_intersections(world.blocks, origins, directions, max_hits=hits, window=window)
    same = torch.equal(old.block_ids, new.block_ids) and torch.equal(old.voxels, new.voxels)
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(rounds):  # alternate the two sides so that load changes hit both alike
        for name, fn, kwargs in (("old", ray_voxel_intersections_stepwise, {}),
                                 ("new", ray_voxel_intersections, {"window": window})):
            timer = tbench.Timer("fn(b, o, d, max_hits=h, **kw)", globals={
                "fn": fn, "b": world.blocks, "o": origins, "d": directions, "h": hits, "kw": kwargs}, num_threads=1)
            times[name].append(timer.blocked_autorange(min_run_time=0.5).median)
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"device": device.type, "size": size, "hits": hits, "window": window, "same_hits": same,
            "rays_per_s_old": size * size / median["old"], "rays_per_s_new": size * size / median["new"],
            "speedup": median["old"] / median["new"], "hit_fraction": float(new.hit[..., 0].float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="image widths and heights")
    parser.add_argument("--hits", type=int, default=6, help="hits per ray")
    parser.add_argument("--window", type=int, default=8, help="plane crossings per loop step of the new DDA")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side")
    parser.add_argument("--write", action="store_true", help="write docs/results/gancraft_raycast.{md,json}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for size in args.sizes:
            row = compare(device, size, args.hits, args.window, args.rounds)
            rows.append(row)
            print(f"raycast {device.type} {size}x{size}: old {row['rays_per_s_old']:,.0f} rays/s, new (window "
                  f"{args.window}) {row['rays_per_s_new']:,.0f} rays/s, x{row['speedup']:.2f}, same hits: "
                  f"{row['same_hits']}, {row['hit_fraction']:.0%} of rays hit")
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "gancraft_raycast.json").write_text(json.dumps(rows, indent=1))
        lines = ["# GANcraft ray-voxel DDA: one voxel per loop step vs a window of plane crossings", "",
                 "Written by `benchmarks/raycast_speed.py --write`. One orbit view of a procedural 64x32x64 world, "
                 f"{args.hits} hits per ray, one thread, medians of {args.rounds} interleaved rounds "
                 "(`torch.utils.benchmark`) on a shared, loaded 2-core machine: ratios are more reliable than "
                 "absolute rates. `same` = both return identical block ids and voxels.", "",
                 "| device | size | old rays/s | new rays/s | speed-up | same |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['device']} | {r['size']}² | {r['rays_per_s_old']:,.0f} | {r['rays_per_s_new']:,.0f} | "
                  f"x{r['speedup']:.2f} | {r['same_hits']} |" for r in rows]
        (RESULTS / "gancraft_raycast.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
