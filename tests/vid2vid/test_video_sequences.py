import json

import numpy as np
import pytest
import torch
from PIL import Image

from imaginate.data import DataError
from imaginate.data.blockworld import generate_world, make_label_video
from imaginate.data.video_sequences import geometry_status, load_label_video, load_video_sequences

PREFIX = "aachen_000000"


@pytest.fixture(scope="module")
def video():
    world = generate_world((32, 16, 32), seed=11)
    return make_label_video(world, "out_and_back", 5, 16, 24, style_seed=1, path_seed=0)


def name(frame, suffix):
    return f"{PREFIX}_{frame:06d}_{suffix}"


def rotation_to_quaternion(r):
    """(w, x, y, z) of a rotation matrix (a trace-based formula with the largest-component branch)."""
    trace = np.trace(r)
    if trace > 0:
        s = 2 * np.sqrt(trace + 1)
        return np.array([s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s])
    i = int(np.argmax(np.diag(r)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2 * np.sqrt(1 + r[i, i] - r[j, j] - r[k, k])
    q = np.zeros(4)
    q[0] = (r[k, j] - r[j, k]) / s
    q[1 + i], q[1 + j], q[1 + k] = s / 4, (r[j, i] + r[i, j]) / s, (r[k, i] + r[i, k]) / s
    return q


def write_sequence(folder, video, frames=True, depth="png", poses="json"):
    folder.mkdir(parents=True, exist_ok=True)
    w2c = torch.linalg.inv(video.cam_to_world.double()).numpy()
    for t in range(video.num_frames):
        frame = 19 + t
        Image.fromarray(video.labels[t].numpy().astype(np.uint8), mode="L").save(folder / name(frame, "gtFine_labelIds.png"))
        if frames:
            rgb = (video.photo[t].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            Image.fromarray(rgb).save(folder / name(frame, "leftImg8bit.png"))
        if depth == "png":
            millimetres = np.round(video.depth[t].numpy().astype(np.float64) * 1000).astype(np.uint16)
            Image.fromarray(millimetres).save(folder / name(frame, "depth.png"))
        elif depth == "npy":
            np.save(folder / name(frame, "depth.npy"), video.depth[t].numpy())
        if poses == "json":
            data = {"K": video.intrinsics[t].tolist(), "R": w2c[t, :3, :3].tolist(), "t": w2c[t, :3, 3].tolist()}
            (folder / name(frame, "pose.json")).write_text(json.dumps(data))
    if poses == "colmap":
        k = video.intrinsics[0].double().tolist()
        h, w = video.size
        (folder / "cameras.txt").write_text(f"# Camera list\n1 PINHOLE {w} {h} {k[0][0]!r} {k[1][1]!r} {k[0][2]!r} {k[1][2]!r}\n")
        lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
        for t in range(video.num_frames):
            q = rotation_to_quaternion(w2c[t, :3, :3]).tolist()
            tx, ty, tz = w2c[t, :3, 3].tolist()
            lines += [f"{t + 1} {q[0]!r} {q[1]!r} {q[2]!r} {q[3]!r} {tx!r} {ty!r} {tz!r} 1 {name(19 + t, 'leftImg8bit.png')}", ""]
        (folder / "images.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_round_trip_with_depth_and_json_poses(tmp_path, video):
    loaded = load_label_video(write_sequence(tmp_path / "seq", video), num_labels=10)
    assert loaded.has_geometry and "wc_vid2vid" in geometry_status(loaded)
    assert torch.equal(loaded.labels, video.labels)
    assert float((loaded.photo - video.photo).abs().max()) <= 0.5 / 255 + 1e-6
    assert float((loaded.depth - video.depth).abs().max()) <= 0.0005 + 1e-5  # millimetre quantisation
    torch.testing.assert_close(loaded.cam_to_world, video.cam_to_world, atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded.intrinsics, video.intrinsics)
    # flow from depth + pose: the same motion; the depth-map visibility test is conservative
    assert float((loaded.flow - video.flow).abs().max()) < 0.05
    loaded_valid, exact_valid = loaded.flow_valid.bool(), video.flow_valid.bool()
    assert float((loaded_valid & exact_valid).sum()) >= 0.99 * float(loaded_valid.sum())  # precision
    assert float((loaded_valid & exact_valid).sum()) >= 0.6 * float(exact_valid.sum())  # recall at 16x24


def test_colmap_poses_and_npy_depth_and_resize(tmp_path, video):
    folder = write_sequence(tmp_path / "seq", video, depth="npy", poses="colmap")
    loaded = load_label_video(folder, num_labels=10)
    torch.testing.assert_close(loaded.cam_to_world, video.cam_to_world, atol=1e-5, rtol=0)
    assert torch.equal(loaded.depth, video.depth)
    small = load_label_video(folder, height=8, width=12, num_labels=10)
    assert small.labels.shape == (5, 8, 12) and small.photo.shape == (5, 3, 8, 12)
    torch.testing.assert_close(small.intrinsics[:, :2], video.intrinsics[:, :2] / 2)


def test_labels_only_is_vid2vid_mode(tmp_path, video):
    loaded = load_label_video(write_sequence(tmp_path / "seq", video, frames=False, depth=None, poses=None),
                              num_labels=10)
    assert not loaded.has_geometry and loaded.photo is None and loaded.flow is None and loaded.depth is None
    assert "vid2vid mode only" in geometry_status(loaded) and "depth" in geometry_status(loaded)
    with pytest.raises(DataError, match="leftImg8bit.png is missing"):
        load_label_video(tmp_path / "seq", num_labels=10, require_frames=True)


def test_several_sequences(tmp_path, video):
    write_sequence(tmp_path / "root" / "a", video)
    write_sequence(tmp_path / "root" / "b", video.clip(0, 3), depth=None, poses=None)
    videos = load_video_sequences(tmp_path / "root", num_labels=10)
    assert [v.num_frames for v in videos] == [5, 3] and [v.has_geometry for v in videos] == [True, False]


def broken(tmp_path, video, damage):
    folder = write_sequence(tmp_path / "seq", video)
    target = damage(folder)
    with pytest.raises(DataError) as error:
        load_label_video(folder, num_labels=10)
    message = str(error.value)
    assert "\n" not in message
    return target, message


@pytest.mark.parametrize("what", ["label", "frame", "pose", "depth"])
def test_missing_file_is_named(tmp_path, video, what):
    suffix = {"label": "gtFine_labelIds.png", "frame": "leftImg8bit.png", "pose": "pose.json",
              "depth": "depth.png"}[what]

    def damage(folder):
        (folder / name(21, suffix)).unlink()
        return name(21, "leftImg8bit.png" if what == "label" else suffix)

    target, message = broken(tmp_path, video, damage)
    assert target in message


@pytest.mark.parametrize("what", ["label", "frame", "depth", "pose", "pose_key", "rgb_label", "size", "label_id"])
def test_corrupt_file_is_named(tmp_path, video, what):
    def damage(folder):
        if what in ("label", "frame", "depth", "pose"):
            suffix = {"label": "gtFine_labelIds.png", "frame": "leftImg8bit.png", "depth": "depth.png",
                      "pose": "pose.json"}[what]
            (folder / name(20, suffix)).write_bytes(b"\x89PNG\r\n garbage {")
            return name(20, suffix)
        if what == "pose_key":
            path = folder / name(22, "pose.json")
            data = json.loads(path.read_text())
            del data["R"]
            path.write_text(json.dumps(data))
            return name(22, "pose.json")
        if what == "rgb_label":
            Image.new("RGB", (24, 16)).save(folder / name(23, "gtFine_labelIds.png"))
            return name(23, "gtFine_labelIds.png")
        if what == "size":
            Image.new("L", (20, 16)).save(folder / name(23, "gtFine_labelIds.png"))
            return name(23, "gtFine_labelIds.png")
        Image.fromarray(np.full((16, 24), 40, np.uint8), mode="L").save(folder / name(19, "gtFine_labelIds.png"))
        return name(19, "gtFine_labelIds.png")

    target, message = broken(tmp_path, video, damage)
    assert target in message
    if what == "pose_key":
        assert "'R'" in message


def test_colmap_without_the_frame_is_named(tmp_path, video):
    folder = write_sequence(tmp_path / "seq", video, poses="colmap")
    text = (folder / "images.txt").read_text().replace(name(20, "leftImg8bit.png"), "other.png")
    (folder / "images.txt").write_text(text)
    with pytest.raises(DataError, match=f"images.txt has no image named like {PREFIX}_000020"):
        load_label_video(folder, num_labels=10)
    (folder / "cameras.txt").write_text("1 FISHEYE 24 16 1 2 3\n")
    with pytest.raises(DataError, match="cameras.txt: camera 1 has model FISHEYE"):
        load_label_video(folder, num_labels=10)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_label_video(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no label maps"):
        load_label_video(tmp_path / "empty")
