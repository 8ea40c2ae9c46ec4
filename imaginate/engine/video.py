"""MP4 files (H.264, yuv420p) through PyAV, for fly-through videos; PyAV is an optional extra.

``write_mp4`` takes ``[T, 3, H, W]`` float frames in [0, 1] (or ``[T, H, W, 3]`` uint8), pads odd
sizes to even ones by repeating the last row or column (yuv420p needs even sizes) and writes the
file atomically; ``read_mp4`` decodes a file back to ``[T, 3, H, W]`` float frames in [0, 1].
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

_INSTALL_HINT = "MP4 files need PyAV: pip install av (or pip install 'imaginate[video]')"


def _import_av() -> Any:
    """The ``av`` module, or an ImportError that says what to install."""
    try:
        import av
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return av


def _to_uint8_frames(frames: Tensor | np.ndarray) -> np.ndarray:
    """``[T, 3, H, W]`` float in [0, 1] or ``[T, H, W, 3]`` uint8 -> ``[T, H, W, 3]`` uint8 (C order)."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, Tensor):
        raise TypeError(f"frames must be a Tensor or numpy array, got {type(frames).__name__}")
    shape = tuple(frames.shape)
    if frames.dtype == torch.uint8:
        if frames.ndim != 4 or shape[-1] != 3 or min(shape) == 0:
            raise ValueError(f"uint8 frames must be [T, H, W, 3] with T, H, W >= 1, got shape {list(shape)}")
        return np.ascontiguousarray(frames.detach().cpu().numpy())
    if not frames.dtype.is_floating_point:
        raise ValueError(f"frames must be float in [0, 1] or uint8, got dtype {frames.dtype}")
    if frames.ndim != 4 or shape[1] != 3 or min(shape) == 0:
        raise ValueError(f"float frames must be [T, 3, H, W] with T, H, W >= 1, got shape {list(shape)}")
    array = (frames.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(array.permute(0, 2, 3, 1).numpy())  # [T, H, W, 3]


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """``[T, H, W, 3]`` -> ``[T, H + H % 2, W + W % 2, 3]``, repeating the last row / column."""
    _, height, width, _ = frames.shape
    if height % 2 == 0 and width % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def write_mp4(frames: Tensor | np.ndarray, path: str | os.PathLike, fps: float = 12, crf: int = 18,
              codec: str = "libx264") -> Path:
    """Encode frames as an H.264 MP4 (yuv420p), written to a temporary file then renamed over ``path``.

    Args:
        frames: ``[T, 3, H, W]`` float in [0, 1] (clamped), or ``[T, H, W, 3]`` uint8. Odd H or W
            are padded to even by repeating the last row or column.
        path: the ``.mp4`` file to write (its folder is created).
        fps: frames per second (> 0).
        crf: libx264's constant rate factor, 0 (lossless luma) to 51 (worst); 18 looks lossless.
        codec: the FFmpeg H.264 encoder; ``"libopenh264"`` is tried when libx264 is missing.

    Returns:
        the path written.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must lie in 0..51, got {crf}")
    array = _pad_to_even(_to_uint8_frames(frames))  # [T, H, W, 3] uint8, even H and W
    av = _import_av()
    if codec not in av.codecs_available:
        fallback = "libopenh264" if "libopenh264" in av.codecs_available else None
        if fallback is None or codec != "libx264":
            raise RuntimeError(f"PyAV's FFmpeg has no {codec!r} encoder")
        codec = fallback
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = int(array.shape[2]), int(array.shape[1])
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": str(int(crf))}
            for image in array:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())  # flush the encoder's delayed frames
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_mp4(path: str | os.PathLike, max_frames: int | None = None) -> Tensor:
    """Decode the frames of a video file's first video stream (all, or the first ``max_frames``).

    Returns:
        ``[T, 3, H, W]`` float32 in [0, 1] (H, W as stored, i.e. even for files from ``write_mp4``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file {path} does not exist")
    av = _import_av()
    images = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if max_frames is not None and len(images) >= max_frames:
                break
            images.append(frame.to_ndarray(format="rgb24"))
    if not images:
        raise ValueError(f"video file {path} has no frames")
    array = torch.from_numpy(np.stack(images))  # [T, H, W, 3] uint8
    return array.permute(0, 3, 1, 2).float() / 255.0


def mp4_fps(path: str | os.PathLike) -> float:
    """The average frame rate of a video file's first video stream (0.0 when the file does not say)."""
    av = _import_av()
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else 0.0


def h264_encode(frames: Tensor | np.ndarray, crf: int, preset: str = "veryfast", fps: float = 30.0,
                intra_only: bool = False, keyint: int = 250) -> list[bytes]:
    """Encode frames with libx264 as a conferencing sender would: no container, one packet per frame.

    Low-latency settings: ``tune=zerolatency`` (no frame look-ahead, no B-frames), ``bframes=0``,
    scene-cut off, an I-frame every ``keyint`` frames (every frame when ``intra_only``). The Annex-B
    packets carry SPS/PPS in band, so their summed size is the payload a receiver needs.

    Args:
        frames: ``[T, 3, H, W]`` float in [0, 1] or ``[T, H, W, 3]`` uint8 (odd sizes padded to even).
        crf: 0..51, higher is smaller and worse.

    Returns:
        the coded packets, one ``bytes`` per frame in order.
    """
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must lie in 0..51, got {crf}")
    array = _pad_to_even(_to_uint8_frames(frames))  # [T, H, W, 3]
    av = _import_av()
    context = av.CodecContext.create("libx264", "w")
    context.width, context.height = int(array.shape[2]), int(array.shape[1])
    context.pix_fmt = "yuv420p"
    context.time_base = 1 / Fraction(fps).limit_denominator(1001)
    context.framerate = Fraction(fps).limit_denominator(1001)
    params = f"bframes=0:scenecut=0:keyint={1 if intra_only else keyint}:min-keyint={1 if intra_only else keyint}"
    context.options = {"crf": str(int(crf)), "preset": preset, "tune": "zerolatency", "x264-params": params}
    packets = []
    for index, image in enumerate(array):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        packets.extend(bytes(packet) for packet in context.encode(frame))
    packets.extend(bytes(packet) for packet in context.encode(None))
    return packets


def h264_decode(packets: list[bytes], size: tuple[int, int] | None = None) -> Tensor:
    """Decode Annex-B H.264 packets: ``[T, 3, H, W]`` float in [0, 1] (cropped to ``size`` = (H, W) if given)."""
    av = _import_av()
    context = av.CodecContext.create("h264", "r")
    images = []
    for data in list(packets) + [None]:  # each packet is one whole access unit; None flushes
        packet = None if data is None else av.Packet(data)
        images.extend(frame.to_ndarray(format="rgb24") for frame in context.decode(packet))
    if not images:
        raise ValueError("the H.264 packets hold no decodable frame")
    array = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
    return array if size is None else array[..., : size[0], : size[1]]


def h264_crf_sweep(frames: Tensor, crfs: list[int], preset: str = "veryfast", fps: float = 30.0
                   ) -> list[tuple[int, int, Tensor]]:
    """``[(crf, payload bytes (sum of packet sizes), decoded [T, 3, H, W])]`` for each CRF."""
    height, width = frames.shape[-2:]
    results = []
    for crf in crfs:
        packets = h264_encode(frames, crf, preset=preset, fps=fps)
        results.append((int(crf), sum(len(p) for p in packets), h264_decode(packets, (height, width))))
    return results
