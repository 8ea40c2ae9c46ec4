"""``imaginate synthesize``: a video from a label video with a trained vid2vid / wc-vid2vid run.

    imaginate synthesize --checkpoint runs/vid2vid-tiny --world W.npy --path revisit --out video.mp4
    imaginate synthesize --checkpoint RUN --labels FOLDER --out video.mp4
    imaginate synthesize --checkpoint WC_RUN --side-by-side V2V_RUN --path out_and_back --out cmp.mp4

``--world`` (a ``.npy`` block grid; default a procedural test world of ``--seed``) is flown along a camera
path (``out_and_back``, ``loop`` or ``revisit``) in a photo style drawn from ``--seed``; its label video has
depth and poses, so a wc-vid2vid run uses its guidance. ``--labels FOLDER`` reads a user's label video
(``imaginate.data.video_sequences``); without depth and poses only vid2vid mode is possible, and a
wc-vid2vid run then synthesizes without guidance (said on stdout). ``--side-by-side OTHER_RUN`` writes
labels | this run | the other run in one video. Frames are generated one at a time: memory does not
grow with the length.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

PATHS = ("out_and_back", "loop", "revisit")


def _load_generator(run_dir: str, device: str, flag: str):
    from imaginate.cli import UserError
    from imaginate.engine import load_run

    spec, cfg, system, _ = load_run(Path(run_dir), device=device)
    if spec.name != "vid2vid":
        raise UserError(f"{flag} {run_dir}: a {spec.name} run, not a vid2vid one")
    return cfg, system.eval_generator.eval()


def label_colours(labels: Tensor) -> Tensor:
    """``[T, H, W]`` label ids -> ``[T, 3, H, W]`` colours in [0, 1] (block-world label table, grey beyond it)."""
    from imaginate.data.blockworld import DEFAULT_LABELS

    palette = torch.tensor([lab.color for lab in DEFAULT_LABELS], dtype=torch.float32) / 255.0
    palette = torch.cat([palette, torch.full((256, 3), 0.5)])
    return palette[labels.long().cpu().clamp(0, len(palette) - 1)].permute(0, 3, 1, 2)


def _world_video(world, path: str, frames: int, height: int, width: int, seed: int):
    from imaginate.data.blockworld import generate_world
    from imaginate.data.blockworld.label_video import SEED_BASES, make_label_video

    world = world or generate_world((48, 24, 48), seed=SEED_BASES["test", "world"] + seed)
    return make_label_video(world, path, frames, height, width, style_seed=SEED_BASES["test", "style"] + seed,
                            path_seed=seed)


def synthesize_video(run_dir: str, out: str, world_file: str | None = None, path: str = "revisit",
                     labels_dir: str | None = None, side_by_side: str | None = None, frames: int = 24,
                     seed: int = 0, fps: float = 8, device: str = "auto") -> tuple[Path, Tensor]:
    """Synthesize and write an MP4; returns ``(path, frames [T, 3, H, W'] in [0, 1])``."""
    from imaginate.cli import UserError
    from imaginate.engine.video import write_mp4
    from imaginate.systems.vid2vid.inference import synthesize, video_geometry

    if path not in PATHS:
        raise UserError(f"--path: '{path}' is not one of {', '.join(PATHS)}")
    if frames < 2 or frames > 10000:
        raise UserError(f"--frames: must be in 2..10000, got {frames}")
    if world_file and labels_dir:
        raise UserError("--world and --labels: give one of them, not both")
    if not out.endswith(".mp4"):
        raise UserError(f"--out {out}: must be an .mp4 file")
    world = None
    if world_file:
        from imaginate.data.blockworld import load_world

        world = load_world(world_file)  # a one-line DataError naming the file when malformed
    for flag, folder in (("--checkpoint", run_dir), ("--side-by-side", side_by_side)):
        if folder and not folder.startswith("zoo:") and not Path(folder).is_dir():
            raise UserError(f"{flag} {folder}: no such run folder")
    if labels_dir and not Path(labels_dir).is_dir():
        raise UserError(f"--labels {labels_dir}: no such folder")
    cfg, generator = _load_generator(run_dir, device, "--checkpoint")
    generators = [(cfg, generator)]
    if side_by_side:
        generators.append(_load_generator(side_by_side, device, "--side-by-side"))
    height, width = cfg.model.height, cfg.model.width
    if labels_dir:
        from imaginate.data.video_sequences import geometry_status, load_label_video

        video = load_label_video(labels_dir, height=height, width=width, num_labels=cfg.model.num_labels)
        print(f"imaginate synthesize: {labels_dir}: {geometry_status(video)}")
    else:
        video = _world_video(world, path, frames, height, width, seed)
    geometry = video_geometry(video)
    columns = [label_colours(video.labels)]
    for run_cfg, net in generators:
        if tuple(video.labels.shape[-2:]) != (run_cfg.model.height, run_cfg.model.width):
            raise UserError(f"runs disagree on the frame size: {tuple(video.labels.shape[-2:])} vs "
                            f"{(run_cfg.model.height, run_cfg.model.width)}")
        if int(video.labels.max()) >= run_cfg.model.num_labels:
            raise UserError(f"labels go up to {int(video.labels.max())} but the run knows {run_cfg.model.num_labels} "
                            "classes (model.num_labels)")
        use_guidance = run_cfg.model.uses_guidance and geometry is not None
        if run_cfg.model.uses_guidance and geometry is None:
            print("imaginate synthesize: this label video has no depth and poses: the wc-vid2vid run "
                  "synthesizes without guidance (vid2vid mode)")
        columns.append(synthesize(net, video.labels, geometry, use_guidance=use_guidance,
                                  guidance_mode=run_cfg.data.guidance_mode, voxel_faces=labels_dir is None))
    joined = torch.cat(columns, dim=-1)  # [T, 3, H, W * columns]
    return write_mp4(joined, out, fps=fps), joined


def _cmd_synthesize(args: argparse.Namespace) -> int:
    path, frames = synthesize_video(args.checkpoint, args.out, args.world, args.path, args.labels, args.side_by_side,
                                    args.frames, args.seed, args.fps, args.device)
    print(f"wrote {path} ({frames.shape[0]} frames)")
    return 0


def add_synthesize_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synthesize`` (vid2vid / wc-vid2vid video from a label video) on an argparse sub-parser set."""
    p = subparsers.add_parser(
        "synthesize", help="synthesize a video from labels with a trained vid2vid run",
        description="Fly a camera path over a block world (or read a label-video folder) and synthesize the "
                    "video with a vid2vid / wc-vid2vid run, frame by frame (see imaginate/systems/vid2vid/synthesize.py).")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a vid2vid run folder or zoo:NAME")
    p.add_argument("--world", default=None, metavar="W.npy", help="a world grid (default: a procedural test world)")
    p.add_argument("--path", default="revisit", help="out_and_back | loop | revisit (default: revisit)")
    p.add_argument("--labels", default=None, metavar="FOLDER", help="a user's label video folder instead of a world")
    p.add_argument("--side-by-side", default=None, metavar="OTHER_RUN", help="also this run: labels | run | other")
    p.add_argument("--frames", type=int, default=24, help="frames of the camera path (default: 24)")
    p.add_argument("--seed", type=int, default=0, help="the procedural world, path and photo style (default: 0)")
    p.add_argument("--fps", type=float, default=8, help="frames per second (default: 8)")
    p.add_argument("--out", required=True, metavar="OUT.mp4", help="the video to write")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_cmd_synthesize)
    return p
