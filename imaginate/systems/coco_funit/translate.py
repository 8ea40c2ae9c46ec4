"""``imaginate translate``: few-shot translation of one content image with a trained COCO-FUNIT / FUNIT run.

    imaginate translate --checkpoint runs/coco_funit-tiny --content cat.png --style fox1.png fox2.png \\
        --out out.png [--interpolate wolf.png --steps 6]

The run is rebuilt from its saved config and newest checkpoint (the EMA generator when it has one).
The K style images' raw style codes are averaged (K-shot). The PNG shows, in a row: the content, the
style images and the translation; with ``--interpolate``, a second row holds the second style's
images and a strip of ``--steps`` translations whose style codes go linearly from the first style's
code to the second's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from imaginate.data import DataError
from imaginate.engine.images import make_grid, save_png

MAX_ASPECT = 2.0  # images up to 2:1 (either way) are resized to the model's square size; beyond, an error


def read_image(path: str, size: int, channels: int = 3, what: str = "image") -> Tensor:
    """Read an image file as ``[channels, size, size]`` float32 in [0, 1], resized (bilinear) to ``size``.

    Args:
        path: the file.
        size: the model's image size.
        channels: 3 (RGB) or 1 (grey-scale).
        what: the option that named the file, for messages (e.g. "--content").

    Raises:
        DataError: the file is missing or not a readable image, or its aspect ratio exceeds ``MAX_ASPECT``
            (a one-line message naming the file).
    """
    from PIL import Image

    if not Path(path).is_file():
        raise DataError(f"{what} {path}: no such file")
    try:
        with Image.open(path) as stored:
            image = stored.convert("RGB" if channels == 3 else "L")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{what} {path}: not a readable image ({reason})") from None
    width, height = image.size
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise DataError(f"{what} {path}: {width}x{height} is too far from square to resize to {size}x{size} "
                        f"(at most {MAX_ASPECT:g}:1); crop it first")
    if (width, height) != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    return (pixels.permute(2, 0, 1) if pixels.dim() == 3 else pixels[None]).contiguous()


def _row(images: list[Tensor]) -> Tensor:
    return make_grid(torch.stack(images), nrow=len(images))


def _stack_rows(rows: list[Tensor], pad: int = 2) -> Tensor:
    """Rows ``[3, h, w_i]`` (``make_grid`` rows with ``pad``) stacked vertically with one ``pad`` between
    them, right-padded with white to the widest."""
    width = max(r.shape[-1] for r in rows)
    rows = [rows[0]] + [r[:, pad:] for r in rows[1:]]
    return torch.cat([F.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows], dim=1)


@torch.no_grad()
def translate_files(run_dir: str, content: str, styles: list[str], out: str, interpolate: list[str] | None = None,
                    steps: int = 5, device: str = "auto") -> Path:
    """Translate ``content`` with the K-shot style of ``styles`` and write the picture to ``out``.

    Args:
        run_dir: a coco_funit run folder, or ``zoo:NAME`` (weights from ``imaginate.zoo``).
        content: the content image file.
        styles: K style image files of one class.
        out: the PNG to write.
        interpolate: style image files of a second class: add a strip interpolating the style codes.
        steps: translations in the interpolation strip (>= 2, both ends included).
        device: auto | cpu | cuda | cuda:N.

    Returns:
        the path written.
    """
    from imaginate.cli import UserError
    from imaginate.engine import load_run

    if steps < 2:
        raise UserError(f"--steps: must be >= 2, got {steps}")
    if not str(run_dir).startswith("zoo:") and not Path(run_dir).is_dir():  # zoo:NAME = project-trained weights
        raise UserError(f"--checkpoint {run_dir}: no such run folder")
    spec, cfg, system, _ = load_run(Path(run_dir), device=device)
    if spec.name != "coco_funit":
        raise UserError(f"--checkpoint {run_dir}: a {spec.name} run, not a coco_funit one")
    size, channels = cfg.model.image_size, cfg.model.image_channels
    content_image = read_image(content, size, channels, "--content")  # [C, H, W]
    style_images = [read_image(p, size, channels, "--style") for p in styles]
    net = system.eval_generator.eval()
    dev = system.ctx.device

    def style_code(files: list[Tensor]) -> Tensor:  # K images -> [1, S], the raw styles averaged over K
        return net.style_code(code, torch.stack(files)[None].to(dev) * 2 - 1)

    def decode(style: Tensor) -> Tensor:  # [1, S] -> [C, H, W] in [0, 1]
        return ((net.decode(code, style)[0].float().cpu() + 1) / 2).clamp(0, 1)

    code = net.encode_content(content_image[None].to(dev) * 2 - 1)  # [1, C_c, h, w]
    first = style_code(style_images)
    rows = [_row([content_image, *style_images, decode(first)])]
    if interpolate:
        second_images = [read_image(p, size, channels, "--interpolate") for p in interpolate]
        second = style_code(second_images)
        strip = [decode(net.interpolate_style(first, second, i / (steps - 1))) for i in range(steps)]
        rows.append(_row([*second_images, *strip]))
    path = Path(out)
    save_png(_stack_rows(rows), path)
    return path


def _cmd_translate(args: argparse.Namespace) -> int:
    path = translate_files(args.checkpoint, args.content, args.style, args.out, args.interpolate, args.steps,
                           args.device)
    print(f"wrote {path}")
    return 0


def add_translate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``translate`` (few-shot translation with a coco_funit run) on an argparse sub-parser set.

    Args:
        subparsers: the result of ``parser.add_subparsers()``.

    Returns:
        the new sub-parser; its ``func`` default runs the command and returns the exit code.
    """
    p = subparsers.add_parser(
        "translate", help="few-shot image translation with a trained coco_funit run",
        description="Translate a content image into the appearance of the class shown by K style images "
                    "(their style codes are averaged), with a coco_funit run's newest checkpoint (EMA "
                    "generator if present). Images are resized to the model's size; non-square ones up to "
                    "2:1 are squashed. Writes content | styles | output as one PNG.")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR",
                   help="a coco_funit run folder, or zoo:NAME (e.g. zoo:coco_funit_cpu)")
    p.add_argument("--content", required=True, metavar="IMG", help="the content image")
    p.add_argument("--style", required=True, nargs="+", metavar="IMG", help="K style images of one class")
    p.add_argument("--out", required=True, metavar="OUT.png", help="the PNG to write")
    p.add_argument("--interpolate", nargs="+", metavar="IMG", default=None,
                   help="style images of a second class: add a strip interpolating between the two style codes")
    p.add_argument("--steps", type=int, default=5, help="images in the interpolation strip (default: 5)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_cmd_translate)
    return p
