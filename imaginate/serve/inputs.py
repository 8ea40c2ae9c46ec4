"""What reaches a tab's function from the browser, checked: uploads (type, size, decodability), numbers,
and every error a user can cause turned into one line in the page instead of a stack trace.

Uploads arrive as paths that Gradio chose inside its own upload cache; a tab function still checks each one
here (it may come from an API client, not the page) before anything reads it: it must be a regular file
under the upload cache or the app's temporary folder, no larger than the configured limit, with an allowed
suffix, and decodable as the kind asked for.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger("imaginate.serve")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".avi", ".mkv")
TEXT_SUFFIXES = (".txt", ".md", "")
WORLD_SUFFIXES = (".npy",)
DEFAULT_UPLOAD_LIMIT_MB = 20.0
MAX_IMAGE_PIXELS = 4096 * 4096  # larger images are refused before decoding (a decompression bomb guard)


class InputError(Exception):
    """Bad input from the page: shown as a message, never as a trace."""


class Limits:
    """Process-wide limits, set once by ``build_app`` (``--max-upload-mb``)."""

    upload_bytes: int = int(DEFAULT_UPLOAD_LIMIT_MB * 1024 * 1024)
    upload_roots: tuple[Path, ...] = ()


def set_upload_limit(megabytes: float) -> None:
    if not megabytes > 0:
        raise ValueError(f"--max-upload-mb: must be positive, got {megabytes}")
    Limits.upload_bytes = int(megabytes * 1024 * 1024)


def allowed_upload_roots() -> tuple[Path, ...]:
    """Where uploads may lie: Gradio's upload cache (``GRADIO_TEMP_DIR`` or ``<temp>/gradio``) and any
    folder added to ``Limits.upload_roots`` (tests)."""
    roots = [Path(os.environ.get("GRADIO_TEMP_DIR", "") or Path(tempfile.gettempdir()) / "gradio")]
    roots += list(Limits.upload_roots)
    return tuple(r.resolve() for r in roots)


def _upload_path(value: Any) -> str | None:
    """The path in what Gradio hands over: a str, a ``FileData``-like object or dict, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, dict):
        return value.get("path") or value.get("name")
    return getattr(value, "path", None) or getattr(value, "name", None)


def checked_upload(value: Any, what: str, suffixes: tuple[str, ...], required: bool = True) -> Path | None:
    """The upload's path once it is known to be a small enough regular file with an allowed suffix.

    Args:
        value: what the Gradio component gave (path, FileData or None).
        what: the field's name in the page, for messages ("content image").
        suffixes: allowed lower-case suffixes.
        required: raise when nothing was uploaded (else return None).

    Raises:
        InputError: nothing uploaded, a path outside the upload folders, too large, wrong type.
    """
    raw = _upload_path(value)
    if raw is None:
        if required:
            raise InputError(f"{what}: please upload a file")
        return None
    path = Path(raw)
    name = path.name if len(path.name) <= 80 else path.name[:77] + "..."
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise InputError(f"{what}: the upload '{name}' is not there any more; upload it again") from None
    if not any(resolved.is_relative_to(root) for root in allowed_upload_roots()):
        raise InputError(f"{what}: '{name}' is not an uploaded file")
    if not resolved.is_file():
        raise InputError(f"{what}: '{name}' is not a file")
    size = resolved.stat().st_size
    if size > Limits.upload_bytes:
        raise InputError(f"{what}: '{name}' is {size / 1e6:.1f} MB; the limit is "
                         f"{Limits.upload_bytes / 1e6:.1f} MB")
    if size == 0:
        raise InputError(f"{what}: '{name}' is empty")
    if resolved.suffix.lower() not in suffixes:
        allowed = ", ".join(s for s in suffixes if s) or "none"
        raise InputError(f"{what}: '{name}' has the wrong file type (allowed: {allowed})")
    return resolved


def read_upload_image(value: Any, what: str, size: int | None = None, channels: int = 3) -> Tensor:
    """An uploaded image as ``[channels, H, W]`` float32 in [0, 1], resized to ``size``² when given.

    Raises:
        InputError: missing, wrong type, too large, or not decodable.
    """
    from PIL import Image

    path = checked_upload(value, what, IMAGE_SUFFIXES)
    try:
        with Image.open(path) as stored:
            if stored.width * stored.height > MAX_IMAGE_PIXELS:
                raise InputError(f"{what}: {stored.width}x{stored.height} pixels is too large "
                                 f"(at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels)")
            image = stored.convert("RGB" if channels == 3 else "L")
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise InputError(f"{what}: '{path.name}' is not a readable image") from None
    if size is not None:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image_array_to_tensor(np.asarray(image), channels)


def image_array_to_tensor(array: np.ndarray, channels: int = 3) -> Tensor:
    """``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]`` uint8 (or float in [0, 1]) -> ``[channels, H, W]`` float32."""
    pixels = torch.from_numpy(np.array(array))  # a copy: Gradio hands read-only arrays
    if pixels.dtype == torch.uint8:
        pixels = pixels.float() / 255.0
    pixels = pixels.float()
    if pixels.dim() == 2:
        pixels = pixels[..., None]
    if pixels.shape[-1] == 4:  # RGBA: composite on white
        alpha = pixels[..., 3:]
        pixels = pixels[..., :3] * alpha + (1 - alpha)
    if channels == 1 and pixels.shape[-1] == 3:
        pixels = (pixels * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
    elif channels == 3 and pixels.shape[-1] == 1:
        pixels = pixels.expand(*pixels.shape[:-1], 3)
    return pixels.permute(2, 0, 1).clamp(0, 1).contiguous()


def read_upload_video(value: Any, what: str, max_frames: int) -> Tensor:
    """An uploaded video's first ``max_frames`` frames, ``[T, 3, H, W]`` float32 in [0, 1].

    Raises:
        InputError: missing, wrong type, too large, not decodable, or without frames.
    """
    from imaginate.engine.video import read_mp4

    path = checked_upload(value, what, VIDEO_SUFFIXES)
    try:
        frames = read_mp4(path, max_frames)
    except Exception:  # PyAV raises many kinds for a damaged or foreign file
        raise InputError(f"{what}: '{path.name}' is not a readable video") from None
    if frames.shape[-1] * frames.shape[-2] > MAX_IMAGE_PIXELS:
        raise InputError(f"{what}: frames of {frames.shape[-1]}x{frames.shape[-2]} are too large")
    return frames


def read_upload_text(value: Any, what: str, max_chars: int = 200_000) -> str:
    """An uploaded UTF-8 text file.

    Raises:
        InputError: missing, wrong type, too large, not UTF-8, or empty.
    """
    path = checked_upload(value, what, TEXT_SUFFIXES)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what}: '{path.name}' is not UTF-8 text") from None
    if not text.strip():
        raise InputError(f"{what}: '{path.name}' holds no text")
    return text[:max_chars]


def int_in(value: Any, what: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high] (Gradio numbers arrive as floats; API clients may send anything)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: '{value}' is not a number") from None
    if not number.is_integer() or not low <= number <= high:
        raise InputError(f"{what}: must be a whole number in {low}..{high}, got {value}")
    return int(number)


def float_in(value: Any, what: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: '{value}' is not a number") from None
    if not np.isfinite(number) or not low <= number <= high:
        raise InputError(f"{what}: must lie in {low:g}..{high:g}, got {value}")
    return number


def choice_in(value: Any, what: str, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise InputError(f"{what}: '{value}' is not one of {', '.join(allowed)}")
    return str(value)


def _user_errors() -> tuple[type[BaseException], ...]:
    from imaginate.cli import UserError
    from imaginate.config import ConfigError
    from imaginate.data import DataError
    from imaginate.engine import CheckpointError
    from imaginate.serve.runs import RunNotFound

    return (InputError, RunNotFound, UserError, ConfigError, DataError, CheckpointError)


def _as_page_error(exc: BaseException, name: str) -> Exception:
    import gradio as gr

    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, _user_errors()):
        return gr.Error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, print_exception=False)
    logger.exception("serve: %s failed", name)  # the trace goes to the server's log, not to the page
    return gr.Error(f"{name} failed ({type(exc).__name__}); the server log has the details",
                    print_exception=False)


def page_errors(fn: Callable) -> Callable:
    """Wrap a tab function so that any exception reaches the page as one line (a Gradio error toast).

    User errors (bad input, missing run, bad config) show their message; anything else shows its type and
    is logged with its trace on the server. Generator functions (progress, cancellation) stay generators.
    """
    name = fn.__name__.replace("_", " ")
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except GeneratorExit:
                raise
            except Exception as exc:
                raise _as_page_error(exc, name) from None
        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _as_page_error(exc, name) from None
    return plain
