"""Image grids and PNG files shared by every system's samples."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, value: float = 1.0) -> torch.Tensor:
    """Tile images [N, C, H, W] (C = 1 or 3, values in [0, 1]) into one image [3, H', W']."""
    if images.dim() != 4:
        raise ValueError(f"make_grid expects [N, C, H, W], got {list(images.shape)}")
    n, c, h, w = images.shape
    if c == 1:
        images = images.expand(n, 3, h, w)
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = torch.full((3, rows * (h + pad) + pad, nrow * (w + pad) + pad), value, dtype=images.dtype)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = images[i].detach().cpu()
    return grid


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] or [1, H, W] in [0, 1] -> HxWx3 uint8."""
    if image.dim() != 3:
        raise ValueError(f"expected an image [C, H, W], got {list(image.shape)}")
    if image.shape[0] == 1:
        image = image.expand(3, *image.shape[1:])
    arr = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return arr.permute(1, 2, 0).numpy()


def save_png(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)


def captioned_grid(images: torch.Tensor, captions: list[str], colors: list[tuple[int, int, int]] | None = None,
                   nrow: int = 8, tile: int = 64) -> torch.Tensor:
    """Images [N, C, H, W] in [0, 1], each upscaled to ``tile`` px with a caption strip below -> [3, H', W']."""
    from PIL import ImageDraw

    n = images.shape[0]
    if len(captions) != n:
        raise ValueError(f"{n} images but {len(captions)} captions")
    colors = colors or [(0, 0, 0)] * n
    strip = 14
    rows = math.ceil(n / nrow)
    canvas = Image.new("RGB", (nrow * (tile + 2) + 2, rows * (tile + strip + 2) + 2), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, nrow)
        left, top = 2 + c * (tile + 2), 2 + r * (tile + strip + 2)
        img = Image.fromarray(to_uint8(images[i])).resize((tile, tile), Image.NEAREST)
        canvas.paste(img, (left, top))
        draw.text((left + 1, top + tile + 1), captions[i][: max(1, tile // 6)], fill=colors[i])
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255.0


def captioned_panel(grid: torch.Tensor, caption: str, scale: int = 3):
    """An image [3, H, W] in [0, 1] enlarged ``scale`` times (nearest) under a one-line caption (a PIL image)."""
    from PIL import ImageDraw

    img = Image.fromarray(to_uint8(grid))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    canvas = Image.new("RGB", (img.width, img.height + 16), (255, 255, 255))
    canvas.paste(img, (0, 16))
    ImageDraw.Draw(canvas).text((3, 2), caption, fill=(0, 0, 0))
    return canvas


def side_by_side(panels: list, path: Path, gap: int = 12) -> Path:
    """PIL images placed left to right on white, ``gap`` pixels apart, saved to ``path``."""
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    total = Image.new("RGB", (width, max(p.height for p in panels)), (255, 255, 255))
    left = 0
    for p in panels:
        total.paste(p, (left, 0))
        left += p.width + gap
    path.parent.mkdir(parents=True, exist_ok=True)
    total.save(path)
    return path
