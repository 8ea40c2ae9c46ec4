"""``imaginate codec``: the face-vid2vid keypoint codec on files.

    imaginate codec encode --checkpoint runs/face_vid2vid-tiny --video talk.mp4 --out talk.fv2v --qstep 0.5
    imaginate codec decode --checkpoint runs/face_vid2vid-tiny talk.fv2v --out decoded.mp4
    imaginate codec info talk.fv2v

``encode`` resizes the video to the model's size, estimates per-frame motion and writes the stream
(format: :mod:`imaginate.systems.face_vid2vid.bitstream`); it prints the size and the bit rate at the
stream's frame rate. ``decode`` synthesises every frame from the source image(s) and the decoded
motion with the same run (the receiver must hold the sender's model). ``info`` needs no model: it
checks every checksum and prints the size table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from imaginate.data.errors import DataError
from imaginate.systems.face_vid2vid.bitstream import StreamError
from imaginate.systems.face_vid2vid.codec import CodecSettings, decode_parameters


def _model(run_dir: str, device: str):
    from imaginate.cli import UserError
    from imaginate.systems.face_vid2vid.inference import load_model

    model = load_model(run_dir, device)
    if not hasattr(model, "estimate_motion") or not hasattr(model, "animate"):
        raise UserError(f"--checkpoint {run_dir}: this run's model has no 3D head motion to code (ablation run?)")
    return model


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _cmd_encode(args: argparse.Namespace) -> int:
    from imaginate.cli import UserError
    from imaginate.data.video_folder import read_clip
    from imaginate.engine.video import mp4_fps
    from imaginate.systems.face_vid2vid.codec import encode_video

    try:
        settings = CodecSettings(qstep=args.qstep, key_period=args.key_period, quality_trigger_db=args.quality_trigger,
                                 frames_per_chunk=args.frames_per_chunk, image_codec=args.image_codec,
                                 image_quality=args.image_quality, fps=args.fps or 30.0)
    except ValueError as error:
        raise UserError(f"imaginate codec encode: {error}") from None
    if not Path(args.video).is_file():
        raise UserError(f"--video {args.video}: no such file")
    model = _model(args.checkpoint, args.device)
    size = model.config.image_size
    frames = read_clip(args.video, size, max_frames=args.max_frames)  # DataError names a corrupt file
    if args.fps is None:
        settings.fps = mp4_fps(args.video) or 30.0
    data, table = encode_video(model, frames, settings)
    out = Path(args.out)
    _write_atomic(out, data)
    seconds = len(frames) / settings.fps
    sources = sum(r.num_bytes for r in table if r.kind == "source")
    print(f"wrote {out}: {len(data)} bytes for {len(frames)} frames at {size}x{size} "
          f"({len(data) * 8 / seconds / 1000:.2f} kbps at {settings.fps:g} fps; source image(s) {sources} bytes)")
    return 0


def _read_stream(path: str) -> bytes:
    from imaginate.cli import UserError

    if not Path(path).is_file():
        raise UserError(f"{path}: no such stream file")
    return Path(path).read_bytes()


def _named(path: str, error: Exception) -> Exception:
    """A stream error (it names the byte offset) as one line that also names the file."""
    from imaginate.cli import UserError

    return UserError(f"{path}: {error}")


def _cmd_decode(args: argparse.Namespace) -> int:
    from imaginate.cli import UserError
    from imaginate.engine.video import write_mp4
    from imaginate.systems.face_vid2vid.codec import decode_video

    if not str(args.out).lower().endswith(".mp4"):
        raise UserError(f"--out {args.out}: must be an .mp4 file")
    data = _read_stream(args.stream)
    try:
        decode_parameters(data)  # check the whole stream before loading a model (StreamError names the offset)
    except StreamError as error:
        raise _named(args.stream, error) from None
    model = _model(args.checkpoint, args.device)
    try:
        frames, stream = decode_video(model, data)
    except DataError as error:  # StreamError included: e.g. a source image that disagrees with the header
        raise _named(args.stream, error) from None
    header = stream.header
    if (header.width, header.height) != (model.config.image_size,) * 2:
        raise UserError(f"{args.stream}: coded at {header.width}x{header.height}, the run's model works at "
                        f"{model.config.image_size}x{model.config.image_size}")
    path = write_mp4(frames, args.out, fps=header.fps)
    print(f"wrote {path}: {len(frames)} frames at {header.width}x{header.height}, {header.fps:g} fps")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    try:
        stream = decode_parameters(_read_stream(args.stream))
    except StreamError as error:
        raise _named(args.stream, error) from None
    header = stream.header
    total = sum(r.num_bytes for r in stream.table)
    print(f"{args.stream}: {header.width}x{header.height}, {header.frame_count} frames at {header.fps:g} fps, "
          f"K={header.num_keypoints}, steps {header.step_angle:g} deg / {header.step_translation:g} / "
          f"{header.step_expression:g}, source codec {header.image_codec}, {total} bytes "
          f"({total * 8 / max(header.frame_count, 1) * header.fps / 1000:.2f} kbps)")
    for record in stream.table:
        print(f"  {record.kind:7s} offset {record.offset:8d} bytes {record.num_bytes:6d} frames "
              f"{record.first_frame}..{record.first_frame + record.num_frames}{' intra' if record.intra else ''}")
    return 0


def add_codec_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``codec encode | decode | info`` on an argparse sub-parser set."""
    p = subparsers.add_parser("codec", help="face-vid2vid keypoint video codec: encode / decode / info",
                              description="Code a talking-head video as one source image plus per-frame head "
                                          "motion (.fv2v), and decode it with the same face_vid2vid run.")
    verbs = p.add_subparsers(dest="codec_command", required=True, metavar="VERB")
    enc = verbs.add_parser("encode", help="video -> .fv2v stream")
    enc.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a face_vid2vid run folder")
    enc.add_argument("--video", required=True, metavar="IN.mp4", help="the talking-head video")
    enc.add_argument("--out", required=True, metavar="S.fv2v", help="the stream to write")
    enc.add_argument("--qstep", type=float, default=0.5,
                     help="angle step in degrees; translation / expression steps are 0.01 x this (default 0.5)")
    enc.add_argument("--key-period", type=int, default=0, help="re-send a source image every N frames (0: never)")
    enc.add_argument("--quality-trigger", type=float, default=None, metavar="DB",
                     help="re-send a source image when the reconstruction PSNR would fall below DB")
    enc.add_argument("--frames-per-chunk", type=int, default=1, help="frames per checksummed chunk (default 1)")
    enc.add_argument("--image-codec", default="webp", help="webp | jpeg | h264 for the source image (default webp)")
    enc.add_argument("--image-quality", type=int, default=75, help="1..100 (default 75)")
    enc.add_argument("--fps", type=float, default=None, help="frame rate to record (default: the video's)")
    enc.add_argument("--max-frames", type=int, default=None, help="code only the first N frames")
    enc.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    enc.set_defaults(func=_cmd_encode)
    dec = verbs.add_parser("decode", help=".fv2v stream -> MP4")
    dec.add_argument("stream", metavar="S.fv2v")
    dec.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="the run the stream was coded with")
    dec.add_argument("--out", required=True, metavar="OUT.mp4")
    dec.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    dec.set_defaults(func=_cmd_decode)
    info = verbs.add_parser("info", help="check a stream and print its size table (no model needed)")
    info.add_argument("stream", metavar="S.fv2v")
    info.set_defaults(func=_cmd_info)
    return p
