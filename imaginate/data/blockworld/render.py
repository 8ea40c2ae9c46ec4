"""Classic renders of block worlds from ray-voxel hits: segmentation, depth, normals and a "photo".

Every renderer takes the ``RayHits`` of a view (batch shape ``[H, W]``, only the first hit is used)
and returns a float image in [0, 1], ``[H, W, 3]``; pixels whose ray misses every block show sky.
The "photo" shader is the stand-in real domain: procedural per-block textures (top and side faces),
Lambert shading from the hit face's normal under a directional sun with ray-cast shadows, a sky
reflection on water, distance fog and a sky gradient with a sun disc. ``PhotoStyle`` holds the
lighting and colours; ``PhotoStyle.random`` varies them (time of day, haze) for a style-diverse set.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from imaginate.data.blockworld.camera import PinholeCamera
from imaginate.data.blockworld.raycast import RayHits, ray_voxel_intersections
from imaginate.data.blockworld.world import BlockLabel, BlockWorld

# --------------------------------------------------------------------------------------------
# Procedural block textures (numpy; scikit-image's texture images are not a dependency)
# --------------------------------------------------------------------------------------------

# Albedo of each default block in the photo domain (slightly different from segmentation colours).
PHOTO_COLORS: dict[str, tuple[float, float, float]] = {
    "stone": (0.50, 0.50, 0.50), "dirt": (0.47, 0.33, 0.22), "grass": (0.36, 0.58, 0.22),
    "sand": (0.86, 0.80, 0.60), "water": (0.12, 0.27, 0.60), "snow": (0.95, 0.96, 0.98),
    "wood": (0.40, 0.29, 0.16), "leaves": (0.20, 0.45, 0.14), "gravel": (0.55, 0.52, 0.50),
}


def _noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """``[T, T]`` blocky value noise in [-1, 1] with ``cell``-texel cells."""
    coarse = rng.uniform(-1, 1, size=(size // cell + 1, size // cell + 1))
    return np.kron(coarse, np.ones((cell, cell)))[:size, :size]


def _texture(name: str, base: np.ndarray, size: int, rng: np.random.Generator, top: bool) -> np.ndarray:
    """``[T, T, 3]`` texture of one face kind of one block; rows run from the top edge down."""
    fine, coarse = _noise(rng, size, 1), _noise(rng, size, max(size // 4, 1))
    shade = 1.0 + 0.10 * fine + 0.08 * coarse  # [T, T] generic speckle
    row = np.arange(size)[:, None] / size  # [T, 1] 0 at the top edge
    col = np.arange(size)[None, :] / size  # [1, T]
    if name == "stone":
        shade = 1.0 + 0.08 * fine + 0.15 * coarse - 0.25 * (np.abs(_noise(rng, size, 2)) > 0.92)
    elif name == "leaves" or name == "grass" and top:
        shade = 1.0 + 0.22 * fine + 0.1 * coarse - (0.45 * (fine < -0.75) if name == "leaves" else 0.0)
    elif name == "grass":  # side: dirt with a ragged green fringe along the top edge
        fringe = row < (0.2 + 0.12 * np.abs(_noise(rng, size, 1)[:1, :]))
        dirt = np.array(PHOTO_COLORS["dirt"])
        return np.where(fringe[..., None], base, dirt) * (1.0 + 0.12 * fine)[..., None]
    elif name == "wood":
        if top:  # rings
            radius = np.hypot(row - 0.5, col - 0.5)
            shade = 1.05 + 0.15 * np.sin(radius * 40.0) + 0.05 * fine
        else:  # vertical bark grooves
            shade = 1.0 + 0.2 * np.sin(col * 2 * np.pi * 3 + 0.6 * _noise(rng, size, 2)) + 0.08 * fine
    elif name == "water":
        shade = 1.0 + 0.10 * np.sin((row + 0.15 * coarse) * 2 * np.pi * 3) + 0.04 * fine
    elif name == "gravel":
        pebbles = _noise(rng, size, 2)
        stones = np.where((pebbles > 0.3)[..., None], base * 0.75, base * (1.0 + 0.15 * fine[..., None]))
        rust = np.where((pebbles < -0.6)[..., None], np.array([0.06, 0.03, 0.0]), 0.0)
        return stones * (1.0 + 0.1 * coarse[..., None]) + rust
    elif name in ("sand", "snow"):
        shade = 1.0 + 0.05 * fine + 0.04 * coarse
    return base * shade[..., None]


def block_textures(labels: tuple[BlockLabel, ...], size: int = 16, seed: int = 0) -> Tensor:
    """Procedural textures of every label, deterministic by seed.

    Args:
        labels: the label table (unknown names get their segmentation colour with speckle).
        size: ``T``, texels per block edge.
        seed: the random seed.

    Returns:
        ``[L, 2, T, T, 3]`` float32 albedo in [0, 1]: index 0 the top face, 1 the sides.
    """
    out = np.zeros((len(labels), 2, size, size, 3))
    for label in labels[1:]:  # air has no texture
        base = np.array(PHOTO_COLORS.get(label.name, tuple(c / 255.0 for c in label.color)))
        for face in (0, 1):
            rng = np.random.default_rng([seed, label.id, face])
            out[label.id, face] = _texture(label.name, base, size, rng, top=face == 0)
    return torch.from_numpy(out.clip(0.0, 1.0)).float()


def label_map(hits: RayHits) -> Tensor:
    """``[H, W]`` int64 block id of the first hit, 0 (air, i.e. sky) where the ray misses."""
    return hits.block_ids[..., 0].clamp(min=0)


def render_segmentation(hits: RayHits, colors: Tensor) -> Tensor:
    """``[H, W, 3]`` label colours of the first hits (``colors[0]``, air's colour, for sky).

    Args:
        hits: the view's hits, batch ``[H, W]``.
        colors: ``[L, 3]`` label colours in [0, 1] (``BlockWorld.label_colors()``).
    """
    return colors.to(hits.block_ids.device)[label_map(hits)]


def render_depth(hits: RayHits) -> Tensor:
    """``[H, W]`` depth of the first hit along the ray, +inf for sky."""
    return hits.entry_depth[..., 0]


def depth_to_rgb(depth: Tensor, max_depth: float | None = None) -> Tensor:
    """``[H, W, 3]`` grey image of a depth map: near is bright, ``max_depth`` (default the largest
    finite depth) and beyond is dark, sky is black."""
    finite = torch.isfinite(depth)
    if max_depth is None:
        max_depth = float(depth[finite].max()) if bool(finite.any()) else 1.0
    value = (1.0 - depth / max(max_depth, 1e-6)).clamp(0.0, 1.0) * 0.9 + 0.1
    value = torch.where(finite, value, torch.zeros_like(value))
    return value.float()[..., None].expand(*depth.shape, 3)


def render_normals(hits: RayHits) -> Tensor:
    """``[H, W, 3]`` first-hit face normals mapped from [-1, 1] to [0, 1]; sky is black."""
    normals = (hits.normals[..., 0, :].float() + 1.0) / 2.0
    return torch.where(hits.hit[..., :1], normals, torch.zeros_like(normals))


@dataclass(frozen=True)
class PhotoStyle:
    """Lighting and colours of the photo shader.

    Args:
        sun_direction: ``(x, y, z)`` direction towards the sun (normalised on use; y > 0 is up).
        sun_color: RGB of direct sunlight.
        ambient: RGB of the light every face gets.
        sky_zenith: RGB of the sky straight up.
        sky_horizon: RGB of the sky (and the fog) at the horizon.
        fog_distance: distance in blocks at which fog covers 63% of a surface's colour.
        shadows: cast shadow rays towards the sun.
        texture_seed: seed of the procedural block textures.
        label_tints: per block id an RGB factor on the albedo (ids past the end are untinted;
            empty, the default, tints nothing).
    """

    sun_direction: tuple[float, float, float] = (0.45, 0.8, 0.3)
    sun_color: tuple[float, float, float] = (1.0, 0.95, 0.85)
    ambient: tuple[float, float, float] = (0.42, 0.45, 0.52)
    sky_zenith: tuple[float, float, float] = (0.25, 0.45, 0.85)
    sky_horizon: tuple[float, float, float] = (0.75, 0.85, 0.95)
    fog_distance: float = 120.0
    shadows: bool = True
    texture_seed: int = 0
    label_tints: tuple[tuple[float, float, float], ...] = ()

    @classmethod
    def random(cls, seed: int) -> PhotoStyle:
        """A random time of day (sun height and azimuth, warmer light near the horizon) and haze."""
        rng = np.random.default_rng(seed)
        elevation = rng.uniform(0.15, 1.3)  # radians above the horizon
        azimuth = rng.uniform(0, 2 * math.pi)
        flat = math.cos(elevation)
        sun = (flat * math.cos(azimuth), math.sin(elevation), flat * math.sin(azimuth))
        warmth = max(0.0, 1.0 - elevation / 0.8)  # 1 at sunrise, 0 when high
        sun_color = (1.0, 0.95 - 0.25 * warmth, 0.85 - 0.45 * warmth)
        horizon = (0.75 + 0.2 * warmth, 0.85 - 0.1 * warmth, 0.95 - 0.35 * warmth)
        brightness = rng.uniform(0.85, 1.1)
        return cls(
            sun_direction=sun,
            sun_color=tuple(brightness * c for c in sun_color),
            ambient=tuple(rng.uniform(0.85, 1.15) * c for c in (0.42, 0.45, 0.52)),
            sky_zenith=(0.2 + 0.1 * rng.random(), 0.4 + 0.1 * rng.random(), 0.8 + 0.15 * rng.random()),
            sky_horizon=horizon,
            fog_distance=float(rng.uniform(80.0, 250.0)),
            texture_seed=int(rng.integers(0, 4)),
        )

    @classmethod
    def random_scene(cls, seed: int, num_labels: int = 10, tint_spread: float = 0.3) -> PhotoStyle:
        """``random``'s lighting plus what a per-sequence look needs: every block kind's albedo
        tinted (a log-normal RGB factor of spread ``tint_spread``), textures from any of 2**16 seeds
        and a sky whose zenith and horizon hues vary freely. Used by the vid2vid label videos so
        that a block's colour cannot be read off its label."""
        rng = np.random.default_rng([seed, 7])
        tints = np.exp(tint_spread * rng.standard_normal((num_labels, 3)))
        zenith = rng.uniform([0.1, 0.2, 0.45], [0.6, 0.7, 1.0])
        horizon = np.clip(zenith + rng.uniform(0.15, 0.45, size=3), 0.0, 1.0)
        return replace(
            cls.random(seed),
            sky_zenith=tuple(float(c) for c in zenith),
            sky_horizon=tuple(float(c) for c in horizon),
            texture_seed=int(rng.integers(0, 2**16)),
            label_tints=tuple(tuple(float(c) for c in tint) for tint in tints),
        )


def sky_color(directions: Tensor, style: PhotoStyle) -> Tensor:
    """``[..., 3]`` sky colour seen along unit ``directions [..., 3]``: a horizon-to-zenith gradient
    with a sun disc and halo."""
    device, dtype = directions.device, directions.dtype
    zenith = torch.tensor(style.sky_zenith, device=device, dtype=dtype)
    horizon = torch.tensor(style.sky_horizon, device=device, dtype=dtype)
    sun = torch.tensor(style.sun_direction, device=device, dtype=dtype)
    sun = sun / sun.norm()
    up = directions[..., 1:2].clamp(min=0.0).sqrt()  # [..., 1] 0 at the horizon, 1 at the zenith
    color = horizon + (zenith - horizon) * up
    color = torch.where(directions[..., 1:2] < 0, horizon * 0.8, color)  # below the horizon
    cos_sun = (directions * sun).sum(dim=-1, keepdim=True).clamp(min=0.0)
    glow = 0.35 * cos_sun**64 + ((cos_sun - 0.9985) / 0.0010).clamp(0.0, 1.0)
    return color + torch.tensor(style.sun_color, device=device, dtype=dtype) * glow


def _face_coordinates(points: Tensor, voxels: Tensor, normals: Tensor) -> tuple[Tensor, Tensor]:
    """``(u, v)`` in [0, 1) on the hit face: for side faces u runs horizontally and v downwards from
    the top edge; for top and bottom faces (u, v) = (x, z)."""
    local = (points - voxels.to(points.dtype)).clamp(0.0, 1.0 - 1e-6)  # [P, 3] position inside the block
    axis = normals.abs().argmax(dim=-1)  # [P] 0, 1 or 2
    u = torch.where(axis == 0, local[:, 2], local[:, 0])
    v = torch.where(axis == 1, local[:, 2], 1.0 - 1e-6 - local[:, 1])
    return u, v


def _voxel_jitter(voxels: Tensor) -> Tensor:
    """``[P]`` a deterministic per-block brightness factor in [0.94, 1.06] (integer hash of the index)."""
    h = (voxels[:, 0] * 73856093) ^ (voxels[:, 1] * 19349663) ^ (voxels[:, 2] * 83492791)
    return 0.94 + 0.12 * ((h % 1024).abs().float() / 1023.0)


def render_photo(world: BlockWorld, hits: RayHits, origins: Tensor, directions: Tensor,
                 style: PhotoStyle = PhotoStyle(), textures: Tensor | None = None) -> Tensor:
    """The "photo" render of a view.

    Args:
        world: the world the hits come from (its grid casts the shadow rays).
        hits: the view's hits, batch ``[H, W]``.
        origins: ``[H, W, 3]`` ray origins.
        directions: ``[H, W, 3]`` unit ray directions.
        style: lighting and colours.
        textures: ``[L, 2, T, T, 3]`` block textures (default ``block_textures(world.labels,
            seed=style.texture_seed)``).

    Returns:
        ``[H, W, 3]`` float32 image in [0, 1].
    """
    device = hits.block_ids.device
    shape = hits.block_ids.shape[:-1]
    d = directions.reshape(-1, 3).to(device=device, dtype=torch.float32)  # [P, 3]
    image = sky_color(d, style)  # [P, 3]
    ids = hits.block_ids[..., 0].reshape(-1)  # [P]
    hit = ids >= 0
    if bool(hit.any()):
        if textures is None:
            textures = block_textures(world.labels, seed=style.texture_seed)
        textures = textures.to(device)
        size = textures.shape[2]
        o = origins.reshape(-1, 3).to(device=device, dtype=torch.float32)[hit]  # [Q, 3]
        dh = d[hit]  # [Q, 3]
        t = hits.entry_depth[..., 0].reshape(-1)[hit].float()  # [Q]
        voxels = hits.voxels[..., 0, :].reshape(-1, 3)[hit]  # [Q, 3]
        normals = hits.normals[..., 0, :].reshape(-1, 3)[hit].float()  # [Q, 3]
        inside = normals.abs().sum(dim=-1, keepdim=True) == 0  # ray started in the block: face the viewer
        normals = torch.where(inside, -dh, normals)
        points = o + t[:, None] * dh  # [Q, 3]

        # Texture: top texture on +y faces, side texture elsewhere; nearest texel.
        u, v = _face_coordinates(points, voxels, normals)
        face = (normals[:, 1] < 0.5).long()  # [Q] 0 = top, 1 = side
        texel = textures[ids[hit], face, (v * size).long(), (u * size).long()]  # [Q, 3]
        albedo = texel * _voxel_jitter(voxels)[:, None]
        if style.label_tints:
            tints = torch.ones(len(world.labels), 3, device=device)
            count = min(len(style.label_tints), len(world.labels))
            tints[:count] = torch.tensor(style.label_tints[:count], device=device, dtype=torch.float32)
            albedo = (albedo * tints[ids[hit]]).clamp(0.0, 1.0)

        # Lighting: ambient + Lambert sun, zero where a shadow ray towards the sun hits a block.
        sun = torch.tensor(style.sun_direction, device=device, dtype=torch.float32)
        sun = sun / sun.norm()
        lambert = (normals @ sun).clamp(min=0.0)  # [Q]
        if style.shadows:
            lit = lambert > 0
            shadow_origins = points[lit] + 1e-3 * normals[lit]
            sun_rays = sun.expand_as(shadow_origins)
            shadow_hits = ray_voxel_intersections(world.blocks, shadow_origins, sun_rays, max_hits=1)
            blocked = shadow_hits.hit[:, 0]
            lambert[lit] = torch.where(blocked, torch.zeros_like(lambert[lit]), lambert[lit])
        ambient = torch.tensor(style.ambient, device=device) * (0.8 + 0.2 * normals[:, 1:2].clamp(min=0))
        color = albedo * (ambient + torch.tensor(style.sun_color, device=device) * lambert[:, None])

        # Water reflects the sky (Schlick's Fresnel term).
        water = torch.tensor([label.name == "water" for label in world.labels], device=device)[ids[hit]]
        if bool(water.any()):
            cos_view = (-(dh * normals).sum(dim=-1)).clamp(0.0, 1.0)
            fresnel = 0.02 + 0.98 * (1.0 - cos_view) ** 5
            reflected = dh - 2 * (dh * normals).sum(dim=-1, keepdim=True) * normals
            mix = (0.2 + 0.7 * fresnel)[:, None] * water[:, None].float()
            color = color * (1 - mix) + sky_color(reflected, style) * mix

        # Distance fog towards the horizon colour.
        haze = 1.0 - torch.exp(-t / style.fog_distance)  # [Q]
        horizon = torch.tensor(style.sky_horizon, device=device)
        image[hit] = color + (horizon - color) * haze[:, None]
    return image.clamp(0.0, 1.0).reshape(*shape, 3)


def render_all(world: BlockWorld, camera: PinholeCamera, style: PhotoStyle = PhotoStyle(),
               max_hits: int = 1) -> dict[str, Tensor]:
    """Ray cast one view and render everything from the same hits.

    Args:
        world: the world (rays run on its device).
        camera: the view.
        style: the photo shader's style.
        max_hits: hits per ray kept in ``"hits"``.

    Returns:
        ``{"hits": RayHits [H, W, N], "labels": [H, W] ids, "segmentation", "depth" ([H, W]),
        "normals", "photo"}``; images are ``[H, W, 3]`` in [0, 1].
    """
    origins, directions = camera.rays(device=world.device)
    hits = ray_voxel_intersections(world.blocks, origins, directions, max_hits=max_hits)
    return {
        "hits": hits,
        "labels": label_map(hits),
        "segmentation": render_segmentation(hits, world.label_colors()),
        "depth": render_depth(hits),
        "normals": render_normals(hits),
        "photo": render_photo(world, hits, origins, directions, style),
    }


def save_png(image: Tensor, path: str | os.PathLike) -> None:
    """Write ``[H, W, 3]`` or ``[H, W]`` float in [0, 1] (or uint8) as a PNG."""
    from PIL import Image

    array = image.detach().cpu()
    if array.dtype != torch.uint8:
        array = (array.float().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    Image.fromarray(array.numpy()).save(path)
