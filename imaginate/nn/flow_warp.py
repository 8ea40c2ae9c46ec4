"""Backward warping of images by dense optical flow (vid2vid's "warp the previous frame").

Convention. ``flow [B, 2, H, W]`` is in pixels, channel 0 = dx (columns), channel 1 = dy (rows).
``backward_warp(image, flow)(p) = image(p + flow(p))``, sampled bilinearly; samples outside the
image read zeros (a sample half a pixel beyond the border gets half the border pixel's value).
Pixel index ``(i, j)`` is the pixel's centre, as in the block-world cameras (``u = j + 0.5``).

``backward_warp`` uses ``grid_sample`` (one fused kernel on every device);
``backward_warp_reference`` is the plain gather version the tests compare it to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check(image: Tensor, flow: Tensor) -> None:
    if image.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"need image [B, C, H, W] and flow [B, 2, H, W], got {tuple(image.shape)}, "
                         f"{tuple(flow.shape)}")
    if image.shape[0] != flow.shape[0] or image.shape[2:] != flow.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} and flow {tuple(flow.shape)} differ in batch or size")


def flow_to_grid(flow: Tensor) -> Tensor:
    """``[B, H, W, 2]`` ``grid_sample`` grid (``align_corners=False``) of the points ``p + flow(p)``.

    Args:
        flow: ``[B, 2, H, W]`` flow in pixels.
    """
    _, _, height, width = flow.shape
    rows = torch.arange(height, device=flow.device, dtype=flow.dtype)  # [H]
    cols = torch.arange(width, device=flow.device, dtype=flow.dtype)  # [W]
    x = cols.view(1, 1, width) + flow[:, 0]  # [B, H, W] column index sampled
    y = rows.view(1, height, 1) + flow[:, 1]  # [B, H, W] row index sampled
    # align_corners=False: index i -> normalised (2 i + 1) / size - 1.
    return torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], dim=-1)


def backward_warp(image: Tensor, flow: Tensor) -> Tensor:
    """Sample ``image`` at ``p + flow(p)`` for every pixel ``p``.

    Args:
        image: ``[B, C, H, W]`` float.
        flow: ``[B, 2, H, W]`` flow in pixels (dx, dy), same dtype and device.

    Returns:
        ``[B, C, H, W]`` the warped image; zeros where the sample falls outside.
    """
    _check(image, flow)
    grid = flow_to_grid(flow.to(image.dtype))
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def backward_warp_reference(image: Tensor, flow: Tensor) -> Tensor:
    """The same as ``backward_warp``, by four explicit gathers and bilinear weights (for tests)."""
    _check(image, flow)
    batch, channels, height, width = image.shape
    rows = torch.arange(height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    cols = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    x, y = cols + flow[:, 0], rows + flow[:, 1]  # [B, H, W] sampled indices
    x0, y0 = torch.floor(x), torch.floor(y)
    wx, wy = x - x0, y - y0  # [B, H, W] weights of the right / lower neighbours
    flat = image.reshape(batch, channels, height * width)
    out = torch.zeros_like(image)
    for dy, weight_y in ((0, 1 - wy), (1, wy)):
        for dx, weight_x in ((0, 1 - wx), (1, wx)):
            xi, yi = (x0 + dx).long(), (y0 + dy).long()  # [B, H, W]
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            index = (yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).view(batch, 1, -1)
            values = flat.gather(2, index.expand(-1, channels, -1)).view_as(image)
            out = out + values * (weight_x * weight_y * inside).unsqueeze(1)
    return out
