"""face-vid2vid's keypoint video codec: a source image once, then per-frame motion at a few hundred bits.

The sender sends the source frame through a standard image codec (JPEG / WebP through Pillow, or one
H.264 intra frame through PyAV), then per frame the motion of :class:`Motion`: yaw, pitch, roll
(degrees), translation (3) and expression (K x 3). Each value is quantised with its group's step
(angles ``qstep`` degrees; translation and expression ``qstep * SPATIAL_STEP_RATIO``), predicted from
the previous *decoded* value (closed loop: quantisation errors never accumulate), and the integer
residuals are entropy-coded with adaptive Laplace models (``bitstream.ResidualCoder``). A key frame
re-sends a source image (the current frame) and intra-codes its motion: every ``key_period`` frames,
and, when the encoder has the model and ``quality_trigger_db`` is set, whenever the receiver's
reconstruction of a frame would fall below that PSNR. The byte layout is in :mod:`.bitstream`.

The parameter stream alone (``encode_parameters`` / ``decode_parameters``) needs no model; the
video functions take any model with ``estimate_motion(images) -> Motion`` and
``animate(source, source_motion, driving_motion) -> images`` (``model.py``'s protocol).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from imaginate.systems.face_vid2vid.bitstream import (
    HEADER_SIZE,
    MAX_FRAMES_PER_CHUNK,
    Header,
    ResidualCoder,
    StreamError,
    pack_chunk,
    read_chunk,
)
from imaginate.systems.face_vid2vid.motion import Motion, motion_from_vector, motion_to_vector

SPATIAL_STEP_RATIO = 0.01  # translation / expression step per degree of angle step (1 deg ~ 0.009 at radius 0.5)
SOURCE_TAG, INTRA_BIT = 0x80, 0x40


@dataclass
class CodecSettings:
    """How to code a stream.

    Args:
        qstep: the angle step in degrees; translation and expression steps are qstep * 0.01.
        key_period: re-send a source image every this many frames (0: only the first frame).
        quality_trigger_db: re-send a source image when the reconstruction's PSNR would drop below
            this (needs the model at the encoder; None: off).
        frames_per_chunk: frames per checksummed chunk (1: every frame leaves at once, the lowest latency).
        image_codec: "jpeg", "webp" or "h264" for the source images.
        image_quality: JPEG / WebP quality 1..100; for H.264 the CRF is 51 - image_quality // 2.
        fps: the frame rate written to the header.
    """

    qstep: float = 0.5
    key_period: int = 0
    quality_trigger_db: float | None = None
    frames_per_chunk: int = 1
    image_codec: str = "webp"
    image_quality: int = 75
    fps: float = 30.0

    def __post_init__(self) -> None:
        if not self.qstep > 0:
            raise ValueError(f"qstep must be positive, got {self.qstep}")
        if not 0 <= self.key_period < 1 << 16:
            raise ValueError(f"key_period must lie in 0..65535, got {self.key_period}")
        if not 1 <= self.frames_per_chunk <= MAX_FRAMES_PER_CHUNK:
            raise ValueError(f"frames_per_chunk must lie in 1..{MAX_FRAMES_PER_CHUNK}, got {self.frames_per_chunk}")
        if self.image_codec not in ("jpeg", "webp", "h264"):
            raise ValueError(f"image_codec must be jpeg, webp or h264, got {self.image_codec!r}")
        if not 1 <= self.image_quality <= 100:
            raise ValueError(f"image_quality must lie in 1..100, got {self.image_quality}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")

    def header(self, width: int, height: int, num_keypoints: int, frame_count: int) -> Header:
        return Header(width=width, height=height, fps=self.fps, num_keypoints=num_keypoints,
                      step_angle=self.qstep, step_translation=self.qstep * SPATIAL_STEP_RATIO,
                      step_expression=self.qstep * SPATIAL_STEP_RATIO, key_period=self.key_period,
                      frames_per_chunk=self.frames_per_chunk, frame_count=frame_count,
                      image_codec=self.image_codec)


@dataclass
class ChunkRecord:
    """One row of a stream's size table: what lies at ``offset`` and how many bytes it takes."""

    kind: str  # "header", "source" or "frames"
    offset: int
    num_bytes: int
    first_frame: int
    num_frames: int
    intra: bool = False


@dataclass
class DecodedStream:
    """What a receiver gets: the header, source images by the frame they start at, the decoded values."""

    header: Header
    sources: dict[int, bytes]  # first frame -> coded image bytes
    values: np.ndarray  # [T, 6 + 3K] float64, the dequantised motion
    symbols: np.ndarray  # [T, 6 + 3K] int64, the quantised values (integers of the steps)
    table: list[ChunkRecord] = field(default_factory=list)


class ParameterEncoder:
    """Closed-loop quantisation and coding of motion vectors, one frame chunk at a time."""

    def __init__(self, header: Header) -> None:
        self.header = header
        self.steps = header.steps()
        self.coder = ResidualCoder(header.num_values)
        self.previous: np.ndarray | None = None  # [D] int64 quantised values last decoded
        self.chunks: list[bytes] = []
        self.table: list[ChunkRecord] = [ChunkRecord("header", 0, HEADER_SIZE, 0, 0)]
        self.offset = HEADER_SIZE
        self.frames = 0
        self.decoded: list[np.ndarray] = []

    def _append(self, chunk: bytes, record: ChunkRecord) -> None:
        self.chunks.append(chunk)
        self.table.append(record)
        self.offset += len(chunk)

    def add_source(self, image: bytes) -> None:
        """A key frame: the receiver's source image from the next frame on; intra-code what follows."""
        self._append(pack_chunk(bytes([SOURCE_TAG]) + image),
                     ChunkRecord("source", self.offset, 0, self.frames, 0))
        self.table[-1].num_bytes = len(self.chunks[-1])
        self.coder.reset()
        self.previous = None

    def add_frames(self, values: np.ndarray) -> np.ndarray:
        """Code ``[G, D]`` motion vectors as one chunk; returns their decoded values ``[G, D]``."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, self.header.num_values)
        if not 1 <= len(values) <= MAX_FRAMES_PER_CHUNK:
            raise ValueError(f"a chunk holds 1..{MAX_FRAMES_PER_CHUNK} frames, got {len(values)}")
        if not np.isfinite(values).all():
            raise ValueError("motion values must be finite")
        intra = self.previous is None
        quantised = np.round(values / self.steps).astype(np.int64)  # [G, D] closed loop: no drift by design
        reference = np.concatenate([np.zeros((1, self.header.num_values), np.int64) if intra
                                    else self.previous[None], quantised[:-1]])
        payload = self.coder.encode(quantised - reference, intra)
        tag = len(values) | (INTRA_BIT if intra else 0)
        chunk = pack_chunk(bytes([tag]) + payload)
        self._append(chunk, ChunkRecord("frames", self.offset, len(chunk), self.frames, len(values), intra))
        self.previous = quantised[-1]
        self.frames += len(values)
        decoded = quantised * self.steps
        self.decoded.append(quantised)
        return decoded

    def finish(self) -> tuple[bytes, list[ChunkRecord]]:
        """The whole stream (header with the frame count, then the chunks) and its size table."""
        header = Header(**{**self.header.__dict__, "frame_count": self.frames})
        return header.pack() + b"".join(self.chunks), self.table


def encode_parameters(values: np.ndarray | Tensor, num_keypoints: int, settings: CodecSettings,
                      width: int, height: int, sources: dict[int, bytes] | None = None
                      ) -> tuple[bytes, list[ChunkRecord]]:
    """Code ``[T, 6 + 3K]`` motion vectors (no model needed); ``sources`` maps a frame to the image sent there.

    Without ``sources`` a 1-byte placeholder image goes at frame 0 (and at every key period), so the
    stream still has its key-frame structure.
    """
    values = np.asarray(values, dtype=np.float64)
    header = settings.header(width, height, num_keypoints, len(values))
    if sources is None:
        period = settings.key_period or len(values)
        sources = {frame: b"\x00" for frame in range(0, len(values), period)}
    if 0 not in sources:
        raise ValueError("the stream must start with a source image (sources[0])")
    encoder = ParameterEncoder(header)
    starts = sorted(sources)
    frame = 0
    while frame < len(values):
        if frame in sources:
            encoder.add_source(sources[frame])
        next_key = next((s for s in starts if s > frame), len(values))
        end = min(frame + settings.frames_per_chunk, next_key, len(values))
        encoder.add_frames(values[frame:end])
        frame = end
    return encoder.finish()


def decode_parameters(data: bytes) -> DecodedStream:
    """Parse and decode a whole stream; StreamError names the byte offset of anything broken."""
    header = Header.unpack(data)
    coder = ResidualCoder(header.num_values)
    steps = header.steps()
    sources: dict[int, bytes] = {}
    symbols: list[np.ndarray] = []
    table = [ChunkRecord("header", 0, HEADER_SIZE, 0, 0)]
    previous: np.ndarray | None = None
    offset, frames = HEADER_SIZE, 0
    while offset < len(data):
        payload, end = read_chunk(data, offset)
        tag = payload[0]
        if tag & SOURCE_TAG:
            if tag != SOURCE_TAG or len(payload) < 2:
                raise StreamError(f"corrupt source chunk at byte offset {offset}")
            sources[frames] = payload[1:]
            coder.reset()
            previous = None
            table.append(ChunkRecord("source", offset, end - offset, frames, 0))
        else:
            count, intra = tag & 0x3F, bool(tag & INTRA_BIT)
            if count == 0 or intra != (previous is None) or not sources:
                raise StreamError(f"corrupt frame chunk at byte offset {offset}: tag {tag:#04x} out of sequence")
            residuals = coder.decode(payload[1:], count, intra, offset)
            reference = np.zeros(header.num_values, np.int64) if intra else previous
            quantised = reference + np.cumsum(residuals, axis=0)
            symbols.append(quantised)
            previous = quantised[-1]
            table.append(ChunkRecord("frames", offset, end - offset, frames, count, intra))
            frames += count
        offset = end
    if frames != header.frame_count:
        raise StreamError(f"truncated stream: the header announces {header.frame_count} frames, the chunks hold "
                          f"{frames} (ending at byte offset {len(data)})")
    quantised = np.concatenate(symbols) if symbols else np.zeros((0, header.num_values), np.int64)
    return DecodedStream(header, sources, quantised * steps, quantised, table)


# ----------------------------------------------------------------------------------------------- images

def encode_image(image: Tensor, codec: str, quality: int) -> bytes:
    """``[3, H, W]`` in [0, 1] -> the bytes of a JPEG, a WebP or one H.264 intra frame."""
    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if codec == "h264":
        from imaginate.engine.video import h264_encode

        packets = h264_encode(torch.from_numpy(array)[None], crf=max(0, 51 - quality // 2), intra_only=True)
        return b"".join(packets)
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG" if codec == "jpeg" else "WEBP", quality=int(quality))
    return buffer.getvalue()


def decode_image(data: bytes, codec: str, offset: int = 0) -> Tensor:
    """The inverse of :func:`encode_image`: ``[3, H, W]`` float in [0, 1]; StreamError when it does not decode."""
    try:
        if codec == "h264":
            from imaginate.engine.video import h264_decode

            return h264_decode([data])[0]
        from PIL import Image

        with Image.open(io.BytesIO(data)) as picture:
            array = np.asarray(picture.convert("RGB"))
    except Exception as error:  # Pillow / PyAV raise many types for bad bytes
        raise StreamError(f"the source image in the chunk at byte offset {offset} does not decode: {error}") from error
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


# ------------------------------------------------------------------------------------------- with a model

def _psnr(a: Tensor, b: Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse <= 1e-10 else 10 * float(np.log10(1.0 / mse))


@torch.no_grad()
def encode_video(model: torch.nn.Module, frames: Tensor, settings: CodecSettings, batch_size: int = 16
                 ) -> tuple[bytes, list[ChunkRecord]]:
    """Code ``[T, 3, H, W]`` frames in [0, 1] with ``model``'s motion estimator; returns (stream, size table).

    The encoder mirrors the receiver: a source image is decoded before its motion is estimated, so
    both ends animate the same picture. The quality trigger reconstructs each frame as the receiver
    will and starts a key frame when its PSNR falls below ``settings.quality_trigger_db``.
    """
    device = next(model.parameters()).device
    count, _, height, width = frames.shape
    motions = []
    for start in range(0, count, batch_size):
        motions.append(motion_to_vector(model.estimate_motion(frames[start:start + batch_size].to(device))).cpu())
    values = torch.cat(motions).double().numpy()  # [T, 6 + 3K]
    num_keypoints = (values.shape[1] - 6) // 3
    encoder = ParameterEncoder(settings.header(width, height, num_keypoints, count))
    source, source_motion, last_key = None, None, 0
    frame = 0
    while frame < count:
        key = frame == 0 or (settings.key_period and frame - last_key >= settings.key_period)
        if not key and settings.quality_trigger_db is not None:
            candidate = np.round(values[frame] / encoder.steps) * encoder.steps
            driving = motion_from_vector(torch.from_numpy(candidate).float()[None], num_keypoints).to(device)
            output = model.animate(source, source_motion, driving).clamp(0, 1).cpu()
            key = _psnr(output[0], frames[frame]) < settings.quality_trigger_db
        if key:
            image = encode_image(frames[frame], settings.image_codec, settings.image_quality)
            encoder.add_source(image)
            source = decode_image(image, settings.image_codec)[None].to(device)
            source_motion = model.estimate_motion(source)
            last_key = frame
        end = min(frame + settings.frames_per_chunk, count)
        if settings.key_period:
            end = min(end, last_key + settings.key_period)
        if settings.quality_trigger_db is not None:
            end = frame + 1  # every frame is checked before it is sent
        encoder.add_frames(values[frame:end])
        frame = end
    return encoder.finish()


@torch.no_grad()
def decode_video(model: torch.nn.Module, data: bytes, batch_size: int = 16) -> tuple[Tensor, DecodedStream]:
    """Decode a stream to ``[T, 3, H, W]`` frames with ``model.animate`` (and the parsed stream)."""
    stream = decode_parameters(data)
    device = next(model.parameters()).device
    header, outputs = stream.header, []
    starts = sorted(stream.sources) + [header.frame_count]
    table_offsets = {r.first_frame: r.offset for r in stream.table if r.kind == "source"}
    for first, end in zip(starts[:-1], starts[1:]):
        source = decode_image(stream.sources[first], header.image_codec, table_offsets.get(first, 0))[None].to(device)
        if tuple(source.shape[-2:]) != (header.height, header.width):
            raise StreamError(f"the source image at byte offset {table_offsets.get(first, 0)} is "
                              f"{source.shape[-1]}x{source.shape[-2]}, the header says {header.width}x{header.height}")
        source_motion = model.estimate_motion(source)
        for start in range(first, end, batch_size):
            stop = min(start + batch_size, end)
            driving = motion_from_vector(torch.from_numpy(stream.values[start:stop]).float(),
                                         header.num_keypoints).to(device)
            repeat = Motion(*(f.expand(stop - start, *f.shape[1:]) for f in source_motion))
            outputs.append(model.animate(source.expand(stop - start, -1, -1, -1), repeat, driving).clamp(0, 1).cpu())
    frames = torch.cat(outputs) if outputs else torch.zeros(0, 3, header.height, header.width)
    return frames, stream
