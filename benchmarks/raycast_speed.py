"""Throughput of the PyTorch ray-voxel DDA: one 128x128 view of a procedural 64x32x64 world, 6 hits per
ray, single thread on CPU (and on CUDA when present). Prints one line per device.

    python benchmarks/raycast_speed.py [--size 128] [--hits 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from imaginate.data.blockworld import generate_world, orbit, ray_voxel_intersections


def rays_per_second(device: torch.device, size: int, hits: int, repeats: int) -> tuple[float, float]:
    """(rays/s of the best of ``repeats`` runs, fraction of rays that hit something)."""
    world = generate_world((64, 32, 64), seed=0).to(device)
    camera = orbit(world, 8, size, size)[1]
    origins, directions = camera.rays(device=device)
    ray_voxel_intersections(world.blocks, origins, directions, max_hits=hits)  # warm-up
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image width and height")
    parser.add_argument("--hits", type=int, default=6, help="hits per ray")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        speed, hit_fraction = rays_per_second(device, args.size, args.hits, args.repeats)
        threads = "1 thread" if device.type == "cpu" else torch.cuda.get_device_name(device)
        print(f"raycast {device.type} ({threads}): {speed:,.0f} rays/s, {args.size}x{args.size} view, "
              f"{args.hits} hits/ray, {hit_fraction:.0%} of rays hit, world 64x32x64")


if __name__ == "__main__":
    main()
