import sys

import pytest
import torch

pytest.importorskip("av")

from imaginate.engine.video import read_mp4, write_mp4  # noqa: E402


def _clip(num_frames: int, height: int, width: int) -> torch.Tensor:
    """``[T, 3, H, W]`` smooth moving colour gradients in [0, 1] (easy for H.264)."""
    t = torch.arange(num_frames, dtype=torch.float32)[:, None, None]
    y = torch.linspace(0, 1, height)[None, :, None]
    x = torch.linspace(0, 1, width)[None, None, :]
    shape = (num_frames, height, width)
    red = (0.5 + 0.4 * torch.sin(2 * torch.pi * (x + 0.05 * t))).expand(shape)
    green = (0.2 + 0.6 * y).expand(shape)
    blue = 0.5 + 0.3 * torch.cos(2 * torch.pi * (x * y + 0.03 * t))
    return torch.stack([red, green, blue], dim=1)


def test_round_trip_keeps_frames_size_and_colours(tmp_path):
    clip = _clip(9, 48, 64)
    path = write_mp4(clip, tmp_path / "clip.mp4", fps=12)
    assert path.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    decoded = read_mp4(path)
    assert decoded.shape == (9, 3, 48, 64)
    assert (decoded - clip).abs().mean() < 0.02
    # Frames stay in order: each decoded frame is closest to its own source frame.
    distances = (decoded[:, None] - clip[None]).abs().mean(dim=(2, 3, 4))  # [T, T]
    assert torch.equal(distances.argmin(dim=1), torch.arange(9))


def test_uint8_frames_and_overwrite(tmp_path):
    clip = (_clip(4, 32, 32).permute(0, 2, 3, 1) * 255).round().to(torch.uint8)  # [T, H, W, 3]
    path = tmp_path / "sub" / "clip.mp4"
    write_mp4(torch.zeros(2, 3, 16, 16), path)
    write_mp4(clip, path, crf=10)  # replaces the first file
    decoded = read_mp4(path)
    assert decoded.shape == (4, 3, 32, 32)
    assert (decoded - clip.permute(0, 3, 1, 2).float() / 255).abs().mean() < 0.02


def test_odd_sizes_are_padded_to_even(tmp_path):
    clip = _clip(3, 33, 47)
    decoded = read_mp4(write_mp4(clip, tmp_path / "odd.mp4"))
    assert decoded.shape == (3, 3, 34, 48)
    assert (decoded[:, :, :33, :47] - clip).abs().mean() < 0.03
    # The padding repeats the last row and column.
    assert (decoded[:, :, 33, :47] - clip[:, :, 32]).abs().mean() < 0.05
    assert (decoded[:, :, :33, 47] - clip[:, :, :, 46]).abs().mean() < 0.05


@pytest.mark.parametrize(
    "frames, match",
    [
        (torch.zeros(3, 16, 16), r"\[T, 3, H, W\]"),  # missing the time axis
        (torch.zeros(2, 4, 16, 16), r"\[T, 3, H, W\]"),  # four channels
        (torch.zeros(2, 16, 16, 3), r"\[T, 3, H, W\]"),  # float channels-last
        (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), r"\[T, H, W, 3\]"),  # uint8 channels-first
        (torch.zeros(0, 3, 16, 16), r"T, H, W >= 1"),
        (torch.zeros(2, 3, 16, 16, dtype=torch.int64), "float in \\[0, 1\\] or uint8"),
    ],
)
def test_bad_frames_raise_clear_errors(tmp_path, frames, match):
    with pytest.raises(ValueError, match=match):
        write_mp4(frames, tmp_path / "bad.mp4")
    assert not list(tmp_path.iterdir())


def test_bad_options_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="fps"):
        write_mp4(_clip(2, 16, 16), tmp_path / "a.mp4", fps=0)
    with pytest.raises(ValueError, match="crf"):
        write_mp4(_clip(2, 16, 16), tmp_path / "a.mp4", crf=60)
    with pytest.raises(FileNotFoundError):
        read_mp4(tmp_path / "missing.mp4")


def test_missing_pyav_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(ImportError, match="pip install av"):
        write_mp4(_clip(2, 16, 16), tmp_path / "a.mp4")
    assert not list(tmp_path.iterdir())
