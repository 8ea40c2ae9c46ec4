"""Tiled GANcraft rendering: any frame size in bounded memory (the reference's ``inference(tile_size=128)``).

A whole frame through the paper-size renderer costs memory in proportion to its pixels (the per-sample
MLP holds ``pixels x samples x 256`` activations). Here a frame is cut into ``tile x tile`` blocks; each
block is ray cast and rendered on its own, grown by a halo of ``cnn_radius`` pixels on every side that
is inside the image (the render CNN's receptive radius: four 3x3 convolutions, 4 pixels), and only its
core is kept. Per-ray work (ray casting, sampling, MLP, volume rendering) does not depend on other rays;
the CNN output at a core pixel depends only on feature pixels within its radius, all present in the
halo, and zero padding falls on the same pixels as in a whole-frame pass (the halo is clipped at the
image border). The one image-wide quantity, the mean sky feature of ``keep_sky_out``, is summed over
the tiles in a first, sky-only pass. The result equals the whole-frame render up to float rounding
(``tests/gancraft/test_tiled_render.py``), and the peak memory is set by ``tile``, not by the frame
size (``benchmarks/gancraft_memory.py``).

The reference keeps a fixed 30-pixel overlap and crops 15 pixels per side; the exact halo here is the
CNN's radius.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor, nn

from imaginate.data.blockworld import PinholeCamera
from imaginate.systems.gancraft.model import GANcraftGenerator

DEFAULT_TILE = 128  # the reference's tile_size
INFERENCE_SAMPLES = 40  # the reference's samples per ray at inference


def _malloc_trim() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere). Between tiles this
    keeps the process's resident memory at one tile's worth: glibc otherwise keeps freed blocks of
    earlier tiles mapped, and the peak RSS creeps up with the number of tiles."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 (raises AttributeError off glibc)
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def cnn_radius(cnn: nn.Module) -> int:
    """The receptive radius in pixels of a stack of stride-1 convolutions: the sum of ``dilation * (k - 1) / 2``
    (the larger of the two axes) over the convolutions."""
    radius = 0
    for module in cnn.modules():
        if isinstance(module, nn.Conv2d):
            radius += max(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size))
    return radius


def tile_windows(height: int, width: int, tile: int, halo: int) -> list[tuple[tuple[int, int, int, int],
                                                                             tuple[int, int, int, int]]]:
    """``[(core, padded), ...]`` windows ``(top, left, rows, cols)`` covering an ``height x width`` image:
    the cores tile the image without overlap; each padded window is its core grown by ``halo`` pixels,
    clipped to the image."""
    if tile < 1 or halo < 0:
        raise ValueError(f"need tile >= 1 and halo >= 0, got {tile}, {halo}")
    windows = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            rows, cols = min(tile, height - top), min(tile, width - left)
            p_top, p_left = max(top - halo, 0), max(left - halo, 0)
            p_bottom, p_right = min(top + rows + halo, height), min(left + cols + halo, width)
            windows.append(((top, left, rows, cols), (p_top, p_left, p_bottom - p_top, p_right - p_left)))
    return windows


@torch.no_grad()
def mean_sky_feature(generator: GANcraftGenerator, camera: PinholeCamera, code: Tensor, tile: int) -> Tensor:
    """``[1, F]`` the mean sky feature over all pixels of ``camera``'s frame, computed tile by tile."""
    p = generator.voxel_features.features
    total = torch.zeros(generator.config.render_feature_dims, dtype=torch.float64, device=p.device)
    for core, _ in tile_windows(camera.height, camera.width, tile, 0):
        _, directions = camera.rays(device=p.device, dtype=p.dtype, window=core)
        flat = directions.reshape(-1, 3)
        batch_index = torch.zeros(flat.shape[0], dtype=torch.long, device=p.device)
        total += generator.sky_features(flat, code, batch_index).double().sum(dim=0)
    return (total / (camera.height * camera.width)).to(p.dtype)[None]


@torch.no_grad()
def render_camera(generator: GANcraftGenerator, camera: PinholeCamera, style_code: Tensor,
                  tile: int = DEFAULT_TILE, num_samples: int | None = INFERENCE_SAMPLES,
                  release_memory: bool = True) -> Tensor:
    """One frame of ``camera`` rendered tile by tile (deterministic stratum-centre samples).

    Args:
        generator: the GANcraft generator (its world is the one rendered).
        camera: the view; any size.
        style_code: ``[1, style_code_dims]``.
        tile: core tile size in pixels (memory grows with ``(tile + 2 * cnn_radius)^2``).
        num_samples: samples per ray (default 40, the reference's inference value; None: the config's).
        release_memory: return freed memory to the OS after each tile (``malloc_trim`` on glibc, CPU).

    Returns:
        ``[3, H, W]`` float in [0, 1], on the CPU.
    """
    p = generator.voxel_features.features
    code = style_code.to(p.device, p.dtype)
    if code.ndim != 2 or code.shape[0] != 1:
        raise ValueError(f"style_code must be [1, C], got {tuple(code.shape)}")
    sky_mean = mean_sky_feature(generator, camera, code, tile) if generator.config.keep_sky_out else None
    halo = cnn_radius(generator.render_cnn)
    frame = torch.zeros(3, camera.height, camera.width)
    for (top, left, rows, cols), padded in tile_windows(camera.height, camera.width, tile, halo):
        origins, directions = camera.rays(device=p.device, dtype=p.dtype, window=padded)
        origins, directions = origins[None], directions[None]  # [1, h, w, 3]
        hits = generator.cast_rays(origins, directions)
        out = generator(hits, origins, directions, style_code=code, num_samples=num_samples, deterministic=True,
                        sky_mean=sky_mean)
        r0, c0 = top - padded[0], left - padded[1]
        rgb = out["rgb"][0, :, r0:r0 + rows, c0:c0 + cols]  # [3, rows, cols]
        frame[:, top:top + rows, left:left + cols] = ((rgb.float().cpu() + 1) / 2).clamp(0, 1)
        del out, hits
        if release_memory and p.device.type == "cpu":
            _malloc_trim()
    return frame
