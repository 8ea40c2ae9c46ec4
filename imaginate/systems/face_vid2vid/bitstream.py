"""The ``.fv2v`` byte layout: header, checksummed chunks, and the adaptive entropy coder of residuals.

File (all integers little-endian)::

    header (40 bytes)
      0  magic  b"FV2V"            4  version u8 (=1)          5  image codec u8 (0 JPEG, 1 WebP, 2 H.264)
      6  width u16                 8  height u16              10  fps f32
     14  K (keypoints) u8         15  step angle f32 (deg)    19  step translation f32
     23  step expression f32      27  key period u16 (0: none) 29  frames per chunk u8
     30  frame count u32          34  reserved u16 (0)        36  CRC-32 of bytes 0..35
    chunks, until the end of the file
      varint n (LEB128, payload length) | payload (n bytes) | CRC-16/CCITT of the payload (2 bytes)
      payload[0] is a tag: bit 7 set: a SOURCE chunk (the image that follows, coded by the header's
      image codec, replaces the receiver's source image from the next frame on); bit 7 clear: a FRAME
      chunk of (tag & 63) frames, bit 6 set when they are intra-coded (predicted from zero instead of
      the previous decoded frame). A frame chunk's remaining bytes are the range coder's 32-bit words
      (big-endian, trailing zero bytes dropped: the decoder pads with zeros); no bytes at all mean
      that every residual of the chunk is zero (a frame without motion costs 4 bytes).

Residuals (integers) are coded with constriction's range coder under a quantised Laplace model of
mean 0 whose scale adapts per parameter: an integer accumulator ``acc <- acc - acc // 8 + 32 |r|``
(scale = acc / 256, the running mean of |r|), so encoder and decoder stay in lock-step without
floating-point drift. Intra and predicted frames keep separate accumulators; a source chunk resets
both. Residuals beyond +-ESCAPE are sent as the edge symbol plus a 24-bit uniform remainder.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np

from imaginate.data.errors import DataError

MAGIC = b"FV2V"
VERSION = 1
HEADER_FORMAT = "<4sBBHHfBfffHBIH"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT) + 4
IMAGE_CODECS = ("jpeg", "webp", "h264")
ESCAPE = 4095
MAX_FRAMES_PER_CHUNK = 63
_ACC_SHIFT, _ACC_GAIN, _ACC_UNIT = 3, 32, 256  # acc += 32|r| - acc/8: steady state 256 E|r|
_INITIAL_SCALE = {"intra": 64.0, "inter": 2.0}


class StreamError(DataError):
    """A ``.fv2v`` stream is truncated or corrupt; the message names the byte offset."""


@dataclass(frozen=True)
class Header:
    """The stream's fixed header; steps are stored (and must be used) as float32."""

    width: int
    height: int
    fps: float
    num_keypoints: int
    step_angle: float
    step_translation: float
    step_expression: float
    key_period: int = 0
    frames_per_chunk: int = 1
    frame_count: int = 0
    image_codec: str = "jpeg"

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            if not 1 <= getattr(self, name) < 1 << 16:
                raise ValueError(f"{name} must lie in 1..65535, got {getattr(self, name)}")
        if not 1 <= self.num_keypoints < 256:
            raise ValueError(f"num_keypoints must lie in 1..255, got {self.num_keypoints}")
        for name in ("step_angle", "step_translation", "step_expression", "fps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 1 <= self.frames_per_chunk <= MAX_FRAMES_PER_CHUNK:
            raise ValueError(f"frames_per_chunk must lie in 1..{MAX_FRAMES_PER_CHUNK}, got {self.frames_per_chunk}")
        if not 0 <= self.key_period < 1 << 16:
            raise ValueError(f"key_period must lie in 0..65535, got {self.key_period}")
        if self.image_codec not in IMAGE_CODECS:
            raise ValueError(f"image_codec must be one of {IMAGE_CODECS}, got {self.image_codec!r}")

    @property
    def num_values(self) -> int:
        """Values per frame: yaw, pitch, roll, translation (3), expression (3K)."""
        return 6 + 3 * self.num_keypoints

    def steps(self) -> np.ndarray:
        """``[6 + 3K]`` float64 quantiser step of every value (the float32 header values, widened)."""
        angle, translation, expression = (float(np.float32(s)) for s in
                                          (self.step_angle, self.step_translation, self.step_expression))
        return np.array([angle] * 3 + [translation] * 3 + [expression] * (3 * self.num_keypoints))

    def pack(self) -> bytes:
        body = struct.pack(HEADER_FORMAT, MAGIC, VERSION, IMAGE_CODECS.index(self.image_codec), self.width,
                           self.height, self.fps, self.num_keypoints, self.step_angle, self.step_translation,
                           self.step_expression, self.key_period, self.frames_per_chunk, self.frame_count, 0)
        return body + struct.pack("<I", binascii.crc32(body))

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        if len(data) < HEADER_SIZE:
            raise StreamError(f"truncated stream: the header needs {HEADER_SIZE} bytes, the file has {len(data)} "
                              f"(at byte offset {len(data)})")
        body, (crc,) = data[:HEADER_SIZE - 4], struct.unpack("<I", data[HEADER_SIZE - 4:HEADER_SIZE])
        fields = struct.unpack(HEADER_FORMAT, body)
        if fields[0] != MAGIC:
            raise StreamError(f"not a face-vid2vid stream: bad magic {fields[0]!r} at byte offset 0")
        if binascii.crc32(body) != crc:
            raise StreamError(f"corrupt header: CRC mismatch over byte offsets 0..{HEADER_SIZE - 5}")
        if fields[1] != VERSION:
            raise StreamError(f"unsupported stream version {fields[1]} at byte offset 4 (this reader: {VERSION})")
        if fields[2] >= len(IMAGE_CODECS):
            raise StreamError(f"unknown image codec {fields[2]} at byte offset 5")
        try:
            return cls(width=fields[3], height=fields[4], fps=fields[5], num_keypoints=fields[6],
                       step_angle=fields[7], step_translation=fields[8], step_expression=fields[9],
                       key_period=fields[10], frames_per_chunk=fields[11], frame_count=fields[12],
                       image_codec=IMAGE_CODECS[fields[2]])
        except ValueError as error:
            raise StreamError(f"corrupt header at byte offset 0: {error}") from error


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def crc16(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF)


def pack_chunk(payload: bytes) -> bytes:
    """``varint(len) | payload | CRC-16``."""
    return _varint(len(payload)) + payload + struct.pack("<H", crc16(payload))


def read_chunk(data: bytes, offset: int) -> tuple[bytes, int]:
    """``(payload, next offset)`` of the chunk at ``offset``; StreamError naming the offset when broken."""
    length, shift, position = 0, 0, offset
    while True:
        if position >= len(data):
            raise StreamError(f"truncated stream: chunk length at byte offset {offset} runs past the end "
                              f"({len(data)} bytes)")
        byte = data[position]
        length |= (byte & 0x7F) << shift
        position += 1
        shift += 7
        if not byte & 0x80:
            break
        if shift > 28:
            raise StreamError(f"corrupt chunk length at byte offset {offset}")
    end = position + length + 2
    if end > len(data):
        raise StreamError(f"truncated stream: the chunk at byte offset {offset} needs {end - offset} bytes, "
                          f"only {len(data) - offset} remain")
    payload = data[position:position + length]
    (crc,) = struct.unpack("<H", data[position + length:end])
    if crc16(payload) != crc or length == 0:
        raise StreamError(f"corrupt chunk at byte offset {offset}: CRC mismatch ({length} payload bytes)")
    return payload, end


def _words_to_bytes(words: np.ndarray) -> bytes:
    return words.astype(">u4").tobytes().rstrip(b"\x00")


def _bytes_to_words(data: bytes) -> np.ndarray:
    padded = data + b"\x00" * (-len(data) % 4)
    return np.frombuffer(padded, dtype=">u4").astype(np.uint32)


class ResidualCoder:
    """Adaptive entropy coding of integer residuals ``[G, D]`` (one instance at each end of a stream)."""

    def __init__(self, num_values: int) -> None:
        self.num_values = num_values
        self.reset()

    def reset(self) -> None:
        self.acc = {kind: np.full(self.num_values, int(scale * _ACC_UNIT), dtype=np.int64)
                    for kind, scale in _INITIAL_SCALE.items()}

    def _scales(self, kind: str) -> np.ndarray:
        return np.maximum(self.acc[kind] / _ACC_UNIT, 0.15)

    def _update(self, kind: str, residual: np.ndarray) -> None:
        acc = self.acc[kind]
        self.acc[kind] = np.minimum(acc - (acc >> _ACC_SHIFT) + _ACC_GAIN * np.abs(residual), 1 << 40)

    def encode(self, residuals: np.ndarray, intra: bool) -> bytes:
        """``[G, D]`` int residuals -> bytes (the model adapts after every frame)."""
        import constriction

        model = constriction.stream.model
        laplace, uniform = model.QuantizedLaplace(-ESCAPE, ESCAPE), model.Uniform(1 << 24)
        kind = "intra" if intra else "inter"
        residuals = np.asarray(residuals, dtype=np.int64).reshape(-1, self.num_values)
        if not residuals.any():  # nothing moved: an empty payload (the decoder knows it means zeros)
            for row in residuals:
                self._update(kind, row)
            return b""
        encoder = constriction.stream.queue.RangeEncoder()
        for row in residuals:
            symbols = np.clip(row, -ESCAPE, ESCAPE).astype(np.int32)
            encoder.encode(symbols, laplace, np.zeros(self.num_values), self._scales(kind))
            overflow = np.abs(row[np.abs(row) >= ESCAPE]) - ESCAPE
            if overflow.size:
                if overflow.max() >= 1 << 24:
                    raise ValueError(f"a residual of {int(overflow.max()) + ESCAPE} steps is too large: raise the step")
                encoder.encode(overflow.astype(np.int32), uniform)
            self._update(kind, row)
        return _words_to_bytes(encoder.get_compressed()) or b"\x00"  # never empty: that means "all zero"

    def decode(self, data: bytes, num_frames: int, intra: bool, offset: int) -> np.ndarray:
        """bytes -> ``[G, D]`` int64 residuals; StreamError naming ``offset`` when they do not decode."""
        import constriction

        model = constriction.stream.model
        laplace, uniform = model.QuantizedLaplace(-ESCAPE, ESCAPE), model.Uniform(1 << 24)
        kind = "intra" if intra else "inter"
        if not data:
            rows = np.zeros((num_frames, self.num_values), np.int64)
            for row in rows:
                self._update(kind, row)
            return rows
        rows = []
        try:
            decoder = constriction.stream.queue.RangeDecoder(_bytes_to_words(data))
            for _ in range(num_frames):
                row = decoder.decode(laplace, np.zeros(self.num_values), self._scales(kind)).astype(np.int64)
                edge = np.abs(row) >= ESCAPE
                if edge.any():
                    row[edge] = np.sign(row[edge]) * (ESCAPE + decoder.decode(uniform, int(edge.sum())))
                self._update(kind, row)
                rows.append(row)
        except Exception as error:  # constriction raises on exhausted or invalid input
            raise StreamError(f"corrupt frame data in the chunk at byte offset {offset}: {error}") from error
        return np.stack(rows)
