"""Views of a block world for GANcraft: rays and hits of a camera list, kept as plain tensors (so they
batch and split like any other data), the generator's renders of them, and ``ViewSampler``: fresh
random views (with their pseudo ground truth) for every training step."""

from __future__ import annotations

import torch
from torch import Tensor

from imaginate.data.blockworld import (
    BlockWorld,
    PinholeCamera,
    RayHits,
    random_valid_poses,
    ray_voxel_intersections,
)
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


def view_seed(seed: int, step: int, index: int) -> int:
    """The seed of the ``index``-th view of the global batch of ``step`` (independent of the process count)."""
    return ((seed % 1_000_003) * 1_000_033 + step) * 4096 + index


class ViewSampler:
    """Fresh training views every step, as the paper trains: for each view of a step's global batch a
    random valid camera (``random_valid_poses``: entropy / depth / sky rejection), its rays and hits cast
    now, its segmentation, and its pseudo ground truth from the frozen translator with a random lighting
    style drawn for this view. Nothing is kept between steps (memory flat in the number of views seen);
    a view depends only on ``(seed, step, index in the global batch)``, so resumed runs and any process
    count see the same views.

    Args:
        world: the training world.
        image_size: view size in pixels.
        max_hits: hits kept per ray.
        translator: the frozen pseudo-GT translator.
        random_style: a random ``PhotoStyle`` per view (else the translator's mean style).
        seed: the run's seed.
    """

    def __init__(self, world: BlockWorld, image_size: int, max_hits: int, translator, random_style: bool,
                 seed: int) -> None:
        self.world, self.size, self.max_hits = world, image_size, max_hits
        self.translator, self.random_style, self.seed = translator, random_style, seed

    def cameras(self, step: int, indices: list[int]) -> list[PinholeCamera]:
        """The cameras of views ``indices`` of the global batch of ``step``."""
        return [random_valid_poses(self.world, 1, self.size, self.size, seed=view_seed(self.seed, step, i))[0]
                for i in indices]

    @torch.no_grad()
    def views(self, step: int, indices: list[int]) -> dict[str, Tensor]:
        """``cast_views`` fields plus ``labels [B, H, W]`` and ``pseudo_gt [B, 3, H, W]`` in [-1, 1] (CPU)."""
        from imaginate.data.blockworld import PhotoStyle, label_map
        from imaginate.systems.gancraft.pseudo_gt import apply_pseudo_gt, style_vector

        views = cast_views(self.world, self.cameras(step, indices), self.max_hits)
        labels = label_map(hits_of(views))  # [B, H, W]
        styles = None
        if self.random_style and self.translator.style_dim:
            styles = torch.stack([style_vector(PhotoStyle.random(view_seed(self.seed, step, i) % 2**32))
                                  for i in indices])
        pseudo = apply_pseudo_gt(self.translator, labels, styles).cpu()
        return views | {"labels": labels, "pseudo_gt": pseudo}
