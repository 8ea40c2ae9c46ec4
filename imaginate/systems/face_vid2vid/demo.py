"""The face_vid2vid part of ``imaginate demo`` (filled in below)."""

from __future__ import annotations

from pathlib import Path


def demo(out_dir: Path):
    raise NotImplementedError
