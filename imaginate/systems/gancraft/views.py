"""Views of a block world for GANcraft: rays and hits of a camera list, kept as plain tensors (so they
batch and split like any other data), and the generator's renders of them."""

from __future__ import annotations

import torch
from torch import Tensor

from imaginate.data.blockworld import BlockWorld, PinholeCamera, RayHits, ray_voxel_intersections
from imaginate.systems.gancraft.model import GANcraftGenerator

HIT_FIELDS = ("block_ids", "voxels", "entry_depth", "exit_depth", "normals")


def cast_views(world: BlockWorld, cameras: list[PinholeCamera], max_hits: int) -> dict[str, Tensor]:
    """Rays and hits of same-size cameras: ``origins``, ``directions`` ``[T, H, W, 3]`` and ``HIT_FIELDS``."""
    rays = [camera.rays() for camera in cameras]
    origins, directions = torch.stack([o for o, _ in rays]), torch.stack([d for _, d in rays])
    hits = ray_voxel_intersections(world.blocks.cpu(), origins, directions, max_hits=max_hits)
    return {"origins": origins, "directions": directions, **{k: getattr(hits, k) for k in HIT_FIELDS}}


def hits_of(batch: dict[str, Tensor]) -> RayHits:
    """The ``RayHits`` held in a ``cast_views`` dict (or a batch of one)."""
    return RayHits(*(batch[k] for k in HIT_FIELDS))


@torch.no_grad()
def render_views(generator: GANcraftGenerator, views: dict[str, Tensor], style_code: Tensor,
                 chunk: int = 4) -> Tensor:
    """GANcraft renders ``[T, 3, H, W]`` in [0, 1] (CPU) of ``cast_views`` output with one style code ``[1, C]``
    (deterministic samples, eval mode restored afterwards)."""
    was_training = generator.training
    generator.eval()
    device = generator.voxel_features.features.device
    frames = []
    for start in range(0, views["origins"].shape[0], chunk):
        part = {k: v[start:start + chunk].to(device) for k, v in views.items()}
        code = style_code.to(device).expand(part["origins"].shape[0], -1)
        rgb = generator(hits_of(part), part["origins"], part["directions"], style_code=code)["rgb"]
        frames.append(((rgb.float().cpu() + 1) / 2).clamp(0, 1))
    generator.train(was_training)
    return torch.cat(frames)
