"""``imaginate talk``: animate one source image with the motion of a driving video (face-vid2vid).

    imaginate talk --checkpoint runs/face_vid2vid-tiny --source face.png --driving drive.mp4 --out out.mp4
    imaginate talk --checkpoint RUN --source face.png --driving drive.mp4 --out out.mp4 --yaw 20 --pitch 0

Per driving frame the head pose (yaw, pitch, roll), translation and expression are estimated and the source
person is synthesised in that motion. ``--yaw/--pitch/--roll D`` set that angle to D degrees for every frame
(free view; the other parts of the motion still follow the driving video); ``--d-yaw`` etc. offset instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from imaginate.systems.face_vid2vid.inference import load_model, resize_frames
from imaginate.systems.face_vid2vid.model import FaceVid2Vid, repose


@torch.no_grad()
def talk(run_dir: str, source_path: str, driving_path: str, out: str, yaw: float | None = None,
         pitch: float | None = None, roll: float | None = None, d_yaw: float = 0.0, d_pitch: float = 0.0,
         d_roll: float = 0.0, max_frames: int | None = None, fps: float = 30.0, batch: int = 16,
         device: str = "auto") -> tuple[Path, Tensor]:
    """Write the animated video; returns ``(path, frames [T, 3, H, W] in [0, 1])``.

    Raises:
        UserError / DataError: a missing or unreadable file, a run of another kind, bad options (one line).
    """
    from imaginate.cli import UserError
    from imaginate.engine.video import read_mp4, write_mp4
    from imaginate.systems.coco_funit.translate import read_image

    if not str(out).lower().endswith(".mp4"):
        raise UserError(f"--out {out}: must be an .mp4 file")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {max_frames}")
    for name, value in (("--yaw", yaw), ("--pitch", pitch), ("--roll", roll)):
        if value is not None and not -99.0 <= value <= 96.0:
            raise UserError(f"{name} {value}: outside the model's angle range [-99, 96] degrees")
    if not Path(driving_path).is_file():
        raise UserError(f"--driving {driving_path}: no such file")
    model = load_model(run_dir, device)
    if not isinstance(model, FaceVid2Vid):
        raise UserError(f"--checkpoint {run_dir}: a keypoints2d ablation run has no head pose to drive or re-pose")
    size = model.config.image_size
    dev = next(model.parameters()).device
    source = read_image(source_path, size, 3, "--source")[None].to(dev)  # [1, 3, S, S]
    try:
        driving = read_mp4(driving_path, max_frames)
    except Exception as exc:  # PyAV raises many kinds for a damaged file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--driving {driving_path}: not a readable video ({reason})") from None
    if driving.shape[0] == 0:
        raise UserError(f"--driving {driving_path}: no video frames")
    driving = resize_frames(driving, size)
    volume, canonical = model.appearance(source), model.canonical_keypoints(source)
    source_motion = model.estimate_motion(source)
    frames = []
    for i in range(0, driving.shape[0], batch):
        chunk = driving[i:i + batch].to(dev)
        n = chunk.shape[0]
        motion = repose(model.estimate_motion(chunk), yaw, pitch, roll, d_yaw, d_pitch, d_roll)
        src_motion = type(source_motion)(*(f.expand(n, *f.shape[1:]) for f in source_motion))
        out_frames = model.generate(volume.expand(n, *volume.shape[1:]), canonical.expand(n, -1, -1), src_motion,
                                    motion)["image"]
        frames.append(out_frames.cpu())
    video = torch.cat(frames)
    return write_mp4(video, out, fps=fps), video


def _cmd_talk(args: argparse.Namespace) -> int:
    path, video = talk(args.checkpoint, args.source, args.driving, args.out, args.yaw, args.pitch, args.roll,
                       args.d_yaw, args.d_pitch, args.d_roll, args.max_frames, args.fps, device=args.device)
    print(f"wrote {path} ({video.shape[0]} frames, {video.shape[-1]}x{video.shape[-2]})")
    return 0


def add_talk_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``talk`` (face-vid2vid reenactment with optional free view) on an argparse sub-parser set."""
    p = subparsers.add_parser(
        "talk", help="animate a source face with a driving video (face_vid2vid run)",
        description="Synthesise the person of --source moving as the head in --driving with a face_vid2vid run; "
                    "--yaw/--pitch/--roll set the head's angle (free view).")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a face_vid2vid run folder")
    p.add_argument("--source", required=True, metavar="IMG", help="the source image (appearance)")
    p.add_argument("--driving", required=True, metavar="VIDEO.mp4", help="the driving video (motion)")
    p.add_argument("--out", required=True, metavar="OUT.mp4", help="the video to write")
    for name in ("yaw", "pitch", "roll"):
        p.add_argument(f"--{name}", type=float, default=None, metavar="D", help=f"set {name} to D degrees")
        p.add_argument(f"--d-{name}", dest=f"d_{name}", type=float, default=0.0, metavar="D",
                       help=f"add D degrees to the driving {name}")
    p.add_argument("--max-frames", type=int, default=None, help="use the first N driving frames")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second of the output (default: 30)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_cmd_talk)
    return p
