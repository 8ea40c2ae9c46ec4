"""``imaginate render``: a block world along a camera path, rendered by a trained GANcraft run, as an MP4
and/or PNG frames.

    imaginate render --checkpoint runs/gancraft-tiny --path orbit --frames 48 --size 64 --out orbit.mp4
    imaginate render --checkpoint RUN --world W.npy --layout yzx --path fly --out fly.mp4 --style photo.png
    imaginate render --checkpoint RUN --keyframes cams.json --width 320 --height 180 --png-dir frames/

Frames are rendered tile by tile (``--tile``, default 128 pixels like the reference; ``tiled.py``), so the
memory does not grow with ``--width`` / ``--height``; ``--samples`` samples per ray (default 40, the
reference's inference value). Camera paths: ``orbit`` (around the centre), ``fly`` (a closed loop above
the terrain) or a keyframe file (``--keyframes``, JSON)::

    {"fov": 60, "keyframes": [{"position": [x, y, z], "target": [x, y, z], "fov": 50}, ...]}

(or just the list): positions and targets in world (= block) coordinates, Y up; ``fov`` (horizontal,
degrees) per keyframe or for all. ``--frames`` frames are spread evenly over the segments between
keyframes, interpolating position, target and field of view linearly.

GANcraft learns a feature per voxel corner OF ITS TRAINING WORLD. Rendering that world (the default, or
``--world`` holding the same grid) uses the learned features. Any other world is rendered with the run's
MLP, sky and CNN but fresh U(-1, 1) corner features (seeded by ``--seed``): GANcraft has no features for
an unseen world, so such videos show the labels' learned appearance without the per-world detail; to
render a new world properly, train on it (``imaginate train gancraft data.world_file=W.npy``).
``--layout`` is the world file's axis order (``yzx`` for the reference's ``.npy`` files).

Style: ``--style IMG`` encodes an example image with the style encoder (its mean ``mu``); otherwise
``z = 0`` (the prior's mean), or ``z ~ N(0, I)`` drawn with ``--seed`` when given.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from imaginate.data.blockworld import DEFAULT_FOV, BlockWorld, PinholeCamera, fly_through, orbit, save_png
from imaginate.data.blockworld.world import LAYOUTS
from imaginate.systems.gancraft.model import GANcraftGenerator
from imaginate.systems.gancraft.tiled import DEFAULT_TILE, INFERENCE_SAMPLES, render_camera

PATHS = ("orbit", "fly", "keyframes")


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


def _vector(value: object, where: str) -> list[float]:
    from imaginate.cli import UserError

    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                and math.isfinite(v) for v in value)):
        raise UserError(f"{where}: must be a list of 3 finite numbers, got {value!r}")
    return [float(v) for v in value]


def read_keyframes(path: str, default_fov: float) -> list[tuple[list[float], list[float], float]]:
    """``[(position, target, fov), ...]`` from a keyframe JSON file (format in the module docstring);
    a one-line ``UserError`` naming the file and the entry when malformed."""
    from imaginate.cli import UserError

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"--keyframes {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"--keyframes {path}: not a readable JSON file ({str(error).splitlines()[0]})") from None
    fov = default_fov
    if isinstance(data, dict):
        fov = data.get("fov", fov)
        data = data.get("keyframes")
    if not isinstance(data, list) or len(data) < 2:
        raise UserError(f"--keyframes {path}: needs a list of at least 2 keyframes (or {{\"keyframes\": [...]}})")
    frames = []
    for i, key in enumerate(data):
        where = f"--keyframes {path}: keyframe {i}"
        if not isinstance(key, dict) or "position" not in key or "target" not in key:
            raise UserError(f"{where}: must be an object with 'position' and 'target'")
        position, target = _vector(key["position"], f"{where} position"), _vector(key["target"], f"{where} target")
        key_fov = key.get("fov", fov)
        if isinstance(key_fov, bool) or not isinstance(key_fov, (int, float)) or not 0 < key_fov < 180:
            raise UserError(f"{where} fov: must be a number in (0, 180), got {key_fov!r}")
        if np.allclose(position, target):
            raise UserError(f"{where}: position and target coincide")
        frames.append((position, target, float(key_fov)))
    return frames


def keyframe_path(keys: list[tuple[list[float], list[float], float]], frames: int, width: int,
                  height: int) -> list[PinholeCamera]:
    """``frames`` cameras spread evenly over the keyframes (the first and last included), linear in
    position, target and field of view."""
    positions = np.array([k[0] for k in keys])  # [K, 3]
    targets = np.array([k[1] for k in keys])
    fovs = np.array([k[2] for k in keys])
    cameras = []
    for u in np.linspace(0, len(keys) - 1, frames):
        i = min(int(u), len(keys) - 2)
        w = u - i
        position, target = (1 - w) * positions[i] + w * positions[i + 1], (1 - w) * targets[i] + w * targets[i + 1]
        fov = float((1 - w) * fovs[i] + w * fovs[i + 1])
        cameras.append(PinholeCamera.from_look_at(position, target, width, height, fov))
    return cameras


@torch.no_grad()
def render_video(run_dir: str, out: str | None, world_file: str | None = None, path: str = "orbit",
                 frames: int = 48, size: int = 64, style: str | None = None, seed: int | None = None,
                 fps: float = 12, device: str = "auto", width: int | None = None, height: int | None = None,
                 fov: float = DEFAULT_FOV, samples: int = INFERENCE_SAMPLES, tile: int = DEFAULT_TILE,
                 layout: str = "xyz", keyframes: str | None = None, png_dir: str | None = None,
                 box: list[int] | None = None, block_labels: str | None = None,
                 hollow: int = 0) -> tuple[Path | None, Tensor]:
    """Render ``frames`` views of a camera path; write them as an MP4 (``out``) and/or PNGs (``png_dir``).

    Args:
        run_dir: a gancraft run folder, or ``zoo:NAME`` (the project-trained weights).
        out: the ``.mp4`` file to write (None: no video).
        world_file: a ``.npy`` world (axis order ``layout``), a ``.schem``, or a Java world folder / ``.mca``
            file cropped to ``box`` (``[x0, y0, z0, x1, y1, z1]``), labelled by ``block_labels`` (a CSV;
            default the shipped table) and hollowed to ``hollow`` blocks; default: the run's training world.
        path: ``orbit``, ``fly`` or ``keyframes`` (implied by ``keyframes``).
        frames: number of frames (>= 2).
        size: frame width and height, unless ``width`` / ``height`` are given.
        style: an example image whose encoded style is used.
        seed: draws z (and the features of an unseen world); None: z = 0, features seed 0.
        fps: frames per second of the video.
        device: auto | cpu | cuda | cuda:N.
        fov: horizontal field of view of orbit and fly paths (keyframes carry their own).
        samples: samples per ray.
        tile: tile size in pixels.
        keyframes: a keyframe JSON file.
        png_dir: a folder for ``00000.png``, ``00001.png``, ...

    Returns:
        ``(the video written or None, frames [T, 3, H, W] in [0, 1])``.
    """
    from imaginate.cli import UserError
    from imaginate.data.blockworld.minecraft import load_any_world
    from imaginate.engine import load_run
    from imaginate.engine.video import write_mp4
    from imaginate.systems.coco_funit.translate import read_image

    path = "keyframes" if keyframes else path
    width, height = width or size, height or size
    if path not in PATHS:
        raise UserError(f"--path: '{path}' is not one of {', '.join(PATHS)}")
    if path == "keyframes" and not keyframes:
        raise UserError("--path keyframes needs --keyframes FILE.json")
    if frames < 2 or min(width, height) < 8:
        raise UserError(f"--frames must be >= 2 and the frame at least 8x8 pixels, got {frames} and {width}x{height}")
    if samples < 1 or tile < 8 or not 0 < fov < 180:
        raise UserError(f"--samples must be >= 1, --tile >= 8 and --fov in (0, 180), got {samples}, {tile}, {fov}")
    if layout not in LAYOUTS:
        raise UserError(f"--layout: '{layout}' is not one of {', '.join(LAYOUTS)}")
    if out is None and png_dir is None:
        raise UserError("give --out VIDEO.mp4 and/or --png-dir FOLDER")
    if not str(run_dir).startswith("zoo:") and not Path(run_dir).is_dir():  # zoo:NAME: the project's weights
        raise UserError(f"--checkpoint {run_dir}: no such run folder")
    keys = read_keyframes(keyframes, fov) if keyframes else None
    world = load_any_world(world_file, layout, box, block_labels, hollow) if world_file else None  # DataError: one line
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
    if path == "orbit":
        cameras = orbit(world, frames, width, height, fov)
    elif path == "fly":
        cameras = fly_through(world, frames, width, height, seed=seed or 0, fov_deg=fov)
    else:
        cameras = keyframe_path(keys, frames, width, height)
    code = generator.style_code(z)
    video = torch.stack([render_camera(generator, camera, code, tile=tile, num_samples=samples)
                         for camera in cameras])  # [T, 3, H, W]
    if png_dir is not None:
        folder = Path(png_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(video):
            save_png(frame.permute(1, 2, 0), folder / f"{i:05d}.png")
    written = write_mp4(video, out, fps=fps) if out is not None else None
    return written, video


def _cmd_render(args: argparse.Namespace) -> int:
    path, video = render_video(args.checkpoint, args.out, args.world, args.path, args.frames, args.size, args.style,
                               args.seed, args.fps, args.device, args.width, args.height, args.fov, args.samples,
                               args.tile, args.layout, args.keyframes, args.png_dir, args.box, args.block_labels,
                               args.hollow)
    if path is not None:
        print(f"wrote {path}")
    if args.png_dir:
        print(f"wrote {video.shape[0]} PNG frames to {args.png_dir}")
    return 0


def add_render_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``render`` (a GANcraft video along a camera path) on an argparse sub-parser set."""
    p = subparsers.add_parser(
        "render", help="render a block-world video with a trained gancraft run",
        description="Render a camera path (orbit, fly-through or keyframes) of a block world with a gancraft run's "
                    "newest checkpoint, tile by tile, and write an MP4 and/or PNG frames. The run's training world "
                    "has learned voxel features; other worlds get random ones (see "
                    "imaginate/systems/gancraft/render.py).")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a gancraft run folder or zoo:NAME")
    p.add_argument("--world", default=None, metavar="WORLD",
                   help="a world: .npy grid, .schem, Java world folder or .mca (default: the run's world)")
    p.add_argument("--layout", default="xyz", help="axis order of --world: xyz (default) or yzx (the reference's "
                                                   ".npy) or another permutation")
    p.add_argument("--box", type=int, nargs=6, default=None, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                   help="crop box of a Minecraft world folder or .mca file (Minecraft coordinates, half-open)")
    p.add_argument("--block-labels", default=None, metavar="TABLE.csv",
                   help="Minecraft block id -> label table (default: the shipped minecraft_labels.csv)")
    p.add_argument("--hollow", type=int, default=0, help="hollow solid interiors deeper than this (default: 0 = off)")
    p.add_argument("--path", default="orbit", help="orbit | fly | keyframes (default: orbit)")
    p.add_argument("--keyframes", default=None, metavar="CAMS.json",
                   help="keyframe camera path: [{\"position\": [x,y,z], \"target\": [x,y,z], \"fov\": deg}, ...]")
    p.add_argument("--frames", type=int, default=48, help="frames (default: 48)")
    p.add_argument("--size", type=int, default=64, help="frame width and height (default: 64)")
    p.add_argument("--width", type=int, default=None, help="frame width (default: --size)")
    p.add_argument("--height", type=int, default=None, help="frame height (default: --size)")
    p.add_argument("--fov", type=float, default=DEFAULT_FOV, help=f"horizontal field of view in degrees of orbit "
                                                                   f"and fly paths (default: {DEFAULT_FOV})")
    p.add_argument("--samples", type=int, default=INFERENCE_SAMPLES,
                   help=f"samples per ray (default: {INFERENCE_SAMPLES}, the reference's inference value)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"render in tiles of this many pixels; bounds the memory (default: {DEFAULT_TILE})")
    p.add_argument("--out", default=None, metavar="OUT.mp4", help="the video to write")
    p.add_argument("--png-dir", default=None, metavar="FOLDER", help="also (or only) write PNG frames here")
    p.add_argument("--style", default=None, metavar="IMG", help="an example image of the style")
    p.add_argument("--seed", type=int, default=None, help="draws the style z (default: z = 0)")
    p.add_argument("--fps", type=float, default=12, help="frames per second (default: 12)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_cmd_render)
    return p
