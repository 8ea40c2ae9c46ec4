"""Broken files of every kind a user may hand a verb, and tiny run folders to hand them to.

``KINDS``: empty, truncated (the first half of a valid file), wrong type (a valid file of another format,
or the right container holding the wrong thing), random bytes, huge dimensions (a header that claims
a size no machine holds), NaN contents (a well-formed file whose numbers are NaN).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

KINDS = ("empty", "truncated", "wrong_type", "random", "huge", "nan")


def random_bytes(n: int = 4096, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def png_bytes(size: int = 32, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def huge_png_bytes(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (10^10), followed by one empty data chunk."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def huge_npy_bytes(shape: tuple[int, ...] = (100_000, 100_000, 100_000), dtype: str = "<i4") -> bytes:
    """An ``.npy`` header claiming a 4 * 10^15-byte array, with no data after it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * 64


def world_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    world = np.zeros((16, 12, 16), dtype=np.int32)
    world[:, :4] = rng.integers(1, 4, (16, 4, 16))
    return npy_bytes(world)


def mp4_bytes(path: Path, frames: int = 6, size: int = 32) -> bytes:
    from imaginate.engine.video import write_mp4

    video = torch.rand(frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    write_mp4(video, path, fps=10)
    return path.read_bytes()


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def nan_state(state: dict) -> dict:
    """A copy of a (nested) state dict with every floating tensor filled with NaN."""
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = nan_state(value)
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            out[key] = torch.full_like(value, float("nan"))
        else:
            out[key] = value
    return out


def variant(kind: str, valid: bytes, wrong: bytes, huge: bytes | None, nan: bytes | None) -> bytes | None:
    """The bytes of one broken file (None: the kind does not apply to this format)."""
    if kind == "empty":
        return b""
    if kind == "truncated":
        return valid[: len(valid) // 2]
    if kind == "wrong_type":
        return wrong
    if kind == "random":
        return random_bytes()
    if kind == "huge":
        return huge
    if kind == "nan":
        return nan
    raise ValueError(kind)


def write_run_folder(system: str, folder: Path, overrides: list[str]) -> Path:
    """A run folder (config.yaml, run.json, one checkpoint at step 1) of an untrained ``system`` at its tiny
    preset: what a verb needs to load a run, in about a second instead of a training run."""
    from imaginate.config import build_config, saved_config_text
    from imaginate.engine.checkpoint import checkpoint_path, save_checkpoint
    from imaginate.engine.distributed import DistEnv
    from imaginate.engine.loop import _state, build_system
    from imaginate.registry import get_system

    spec = get_system(system)
    cfg = build_config(spec.config_cls, preset="tiny", system=system, overrides=["train.device=cpu", *overrides])
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    built = build_system(spec, cfg, env)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(saved_config_text(cfg))
    (folder / "run.json").write_text(json.dumps({"system": system, "preset": "tiny", "world_size": 1,
                                                 "device": "cpu"}) + "\n")
    save_checkpoint(_state(built, 1, env), checkpoint_path(folder, 1))
    return folder
