"""The talking-head video folder loader: layout, crop boxes (JSON and CSV), bad files named."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("av")

from imaginate.data.errors import DataError  # noqa: E402
from imaginate.data.video_folder import VideoFolder, read_crop_boxes  # noqa: E402
from imaginate.engine.video import write_mp4  # noqa: E402


def _halves(frames: int = 4, height: int = 48, width: int = 64) -> torch.Tensor:
    """``[T, 3, H, W]``: the left half red, the right half blue."""
    video = torch.zeros(frames, 3, height, width)
    video[:, 0, :, : width // 2] = 0.9
    video[:, 2, :, width // 2:] = 0.9
    return video


@pytest.fixture
def folder(tmp_path):
    write_mp4(_halves(), tmp_path / "id001" / "vidA" / "00001.mp4", fps=25, crf=10)
    write_mp4(_halves(6), tmp_path / "id002" / "vidB" / "00001.mp4", fps=25, crf=10)
    return tmp_path


def test_lists_nested_clips_with_identities_and_centre_crops(folder) -> None:
    data = VideoFolder(folder, size=16)
    assert [data.key(p) for p in data.clips] == ["id001/vidA/00001.mp4", "id002/vidB/00001.mp4"]
    assert data.identity(0) == "id001" and data.identity(1) == "id002"
    clip = data.clip(1)
    assert clip.frames.shape == (6, 3, 16, 16) and clip.fps == pytest.approx(25.0)
    item = data[0]
    assert item["source"].shape == (3, 16, 16) and int(item["clip"]) == 0
    assert torch.equal(data[0]["source"], item["source"])  # item i always gives the same pair


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_crop_box_selects_the_region(folder, kind) -> None:
    if kind == "json":
        (folder / "crops.json").write_text(json.dumps({"id001/vidA/00001.mp4": [0, 0, 24, 24]}))
    else:
        (folder / "crops.csv").write_text("path,left,top,right,bottom\nid001/vidA/00001.mp4,40,8,64,32\n")
    frames = VideoFolder(folder, size=8).clip(0).frames  # [T, 3, 8, 8]
    red, blue = frames[:, 0].mean(), frames[:, 2].mean()
    assert (red > 0.8 and blue < 0.1) if kind == "json" else (blue > 0.8 and red < 0.1)
    uncropped = VideoFolder(folder, size=8, crops=None).clip(1).frames  # the centred square keeps both halves
    assert uncropped[:, 0].mean() > 0.3 and uncropped[:, 2].mean() > 0.3


def test_corrupt_clip_raises_naming_the_file(folder) -> None:
    bad = folder / "id003" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    data = VideoFolder(folder, size=8)
    with pytest.raises(DataError, match="broken.mp4"):
        data.clip(2)


def test_bad_folders_and_box_files_raise_naming_them(tmp_path, folder) -> None:
    with pytest.raises(DataError, match="no .mp4 clips"):
        VideoFolder(_empty(tmp_path), size=8)
    with pytest.raises(DataError, match="does not exist"):
        VideoFolder(tmp_path / "missing", size=8)
    (folder / "crops.csv").write_text("clip,x,y\n")
    with pytest.raises(DataError, match="crops.csv"):
        VideoFolder(folder, size=8)
    (folder / "crops.csv").unlink()
    (folder / "crops.json").write_text(json.dumps({"nope.mp4": [0, 0, 4, 4]}))
    with pytest.raises(DataError, match="nope.mp4"):
        VideoFolder(folder, size=8)
    (folder / "crops.json").write_text(json.dumps({"id001/vidA/00001.mp4": [0, 0, 400, 4]}))
    with pytest.raises(DataError, match="outside"):
        VideoFolder(folder, size=8).clip(0)
    (folder / "crops.json").write_text("{not json")
    with pytest.raises(DataError, match="crops.json"):
        read_crop_boxes(folder / "crops.json")


def _empty(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty
