"""``imaginate render``: a video of a block world along a camera path, rendered by a trained GANcraft run.

    imaginate render --checkpoint runs/gancraft-tiny --path orbit --frames 48 --size 64 --out orbit.mp4
    imaginate render --checkpoint RUN --world W.npy --path fly --out fly.mp4 --style photo.png --seed 3

GANcraft learns a feature per voxel corner OF ITS TRAINING WORLD. Rendering that world (the default, or
``--world`` holding the same grid) uses the learned features. Any other world is rendered with the run's
MLP, sky and CNN but fresh U(-1, 1) corner features (seeded by ``--seed``): GANcraft has no features for
an unseen world, so such videos show the labels' learned appearance without the per-world detail; to
render a new world properly, train on it (``imaginate train gancraft data.world_file=W.npy``).

Style: ``--style IMG`` encodes an example image with the style encoder (its mean ``mu``); otherwise
``z = 0`` (the prior's mean), or ``z ~ N(0, I)`` drawn with ``--seed`` when given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from imaginate.data.blockworld import BlockWorld, fly_through, load_world, orbit
from imaginate.systems.gancraft.model import GANcraftGenerator
from imaginate.systems.gancraft.views import cast_views, render_views

PATHS = ("orbit", "fly")


def generator_for_world(trained: GANcraftGenerator, world: BlockWorld, seed: int) -> tuple[GANcraftGenerator, bool]:
    """``(generator, learned)``: the trained generator when ``world`` is its training world, else a copy
    on ``world`` with the trained networks and fresh U(-1, 1) corner features (``learned`` False)."""
    if tuple(trained.blocks.shape) == world.shape and torch.equal(trained.blocks.cpu(), world.blocks.cpu()):
        return trained, True
    generator = GANcraftGenerator(trained.config, world)
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("voxel_features.")}
    generator.load_state_dict(state, strict=False)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        generator.voxel_features.features.copy_(torch.rand(generator.voxel_features.features.shape, generator=gen) * 2 - 1)
    return generator.to(trained.voxel_features.features.device), False


@torch.no_grad()
def render_video(run_dir: str, out: str, world_file: str | None = None, path: str = "orbit", frames: int = 48,
                 size: int = 64, style: str | None = None, seed: int | None = None, fps: float = 12,
                 device: str = "auto") -> tuple[Path, Tensor]:
    """Render ``frames`` views of a camera path and write them as an MP4.

    Args:
        run_dir: a gancraft run folder.
        out: the ``.mp4`` file to write.
        world_file: a ``.npy`` world (default: the run's training world).
        path: ``orbit`` (around the centre) or ``fly`` (a closed loop above the terrain, ``fly_through``).
        frames: number of frames (>= 2).
        size: frame width and height in pixels.
        style: an example image whose encoded style is used.
        seed: draws z (and the features of an unseen world); None: z = 0, features seed 0.
        fps: frames per second of the video.
        device: auto | cpu | cuda | cuda:N.

    Returns:
        ``(the path written, frames [T, 3, H, W] in [0, 1])``.
    """
    from imaginate.cli import UserError
    from imaginate.engine import load_run
    from imaginate.engine.video import write_mp4
    from imaginate.systems.coco_funit.translate import read_image

    if path not in PATHS:
        raise UserError(f"--path: '{path}' is not one of {', '.join(PATHS)}")
    if frames < 2 or size < 8:
        raise UserError(f"--frames must be >= 2 and --size >= 8, got {frames} and {size}")
    if not Path(run_dir).is_dir():
        raise UserError(f"--checkpoint {run_dir}: no such run folder")
    world = load_world(world_file) if world_file else None  # a one-line DataError when malformed
    spec, cfg, system, _ = load_run(Path(run_dir), device=device)
    if spec.name != "gancraft":
        raise UserError(f"--checkpoint {run_dir}: a {spec.name} run, not a gancraft one")
    trained = system.eval_generator.eval()
    generator, learned = generator_for_world(trained, world or system.world, 0 if seed is None else seed)
    if not learned:
        print("imaginate render: this world is not the run's training world: its corner features are random "
              "(train on it for a faithful render)")
    world = world or system.world
    dev = system.ctx.device
    if style:
        image = read_image(style, cfg.model.style_encoder_size, 3, "--style")[None].to(dev) * 2 - 1
        z = generator.encode_style(image)[0]
    elif seed is not None:
        z = generator.sample_z(1, torch.Generator(device=dev).manual_seed(seed))
    else:
        z = torch.zeros(1, cfg.model.style_dims, device=dev)
    cameras = orbit(world, frames, size, size) if path == "orbit" else fly_through(world, frames, size, size, seed=seed or 0)
    views = cast_views(world, cameras, cfg.model.max_hits)
    video = render_views(generator, views, generator.style_code(z))
    return write_mp4(video, out, fps=fps), video


def _cmd_render(args: argparse.Namespace) -> int:
    path, _ = render_video(args.checkpoint, args.out, args.world, args.path, args.frames, args.size, args.style,
                           args.seed, args.fps, args.device)
    print(f"wrote {path}")
    return 0


def add_render_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``render`` (a GANcraft video along a camera path) on an argparse sub-parser set."""
    p = subparsers.add_parser(
        "render", help="render a block-world video with a trained gancraft run",
        description="Render a camera path (orbit or fly-through) of a block world with a gancraft run's newest "
                    "checkpoint and write an MP4. The run's training world has learned voxel features; other "
                    "worlds get random ones (see imaginate/systems/gancraft/render.py).")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a gancraft run folder")
    p.add_argument("--world", default=None, metavar="W.npy", help="a world grid (default: the run's world)")
    p.add_argument("--path", default="orbit", help="orbit | fly (default: orbit)")
    p.add_argument("--frames", type=int, default=48, help="frames (default: 48)")
    p.add_argument("--size", type=int, default=64, help="frame width and height (default: 64)")
    p.add_argument("--out", required=True, metavar="OUT.mp4", help="the video to write")
    p.add_argument("--style", default=None, metavar="IMG", help="an example image of the style")
    p.add_argument("--seed", type=int, default=None, help="draws the style z (default: z = 0)")
    p.add_argument("--fps", type=float, default=12, help="frames per second (default: 12)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_cmd_render)
    return p
