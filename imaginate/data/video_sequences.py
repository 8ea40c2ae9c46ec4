"""A user's label videos: one folder per sequence, Cityscapes-sequence file names, optional geometry.

Accepted files (anywhere under the sequence folder, sub-folders included; one sequence per folder):

    <prefix>_<frame>_gtFine_labelIds.png   label map: one channel of integer ids (8- or 16-bit); required
    <prefix>_<frame>_leftImg8bit.png       the frame (RGB; also .jpg); optional (targets, not inputs)
    <prefix>_<frame>_depth.png             z-depth, 16-bit PNG in millimetres (0 = unknown); or
    <prefix>_<frame>_depth.npy             z-depth, float array in the poses' units (0 = unknown)
    <prefix>_<frame>_pose.json             {"K": 3x3, "R": 3x3, "t": [3]}: x_cam = R x_world + t
    cameras.txt + images.txt               COLMAP's text export (instead of the JSON files); an
                                           image's NAME must contain <prefix>_<frame>

``<prefix>`` is Cityscapes' ``<city>_<seq>`` (e.g. ``aachen_000000``), ``<frame>`` a zero-padded
number; frames are ordered by number. Cameras follow OpenCV/COLMAP axes (x right, y down, z
forward) and ``K`` is for the label map's own size (scaled when the video is resized). COLMAP's
distortion parameters (SIMPLE_RADIAL, RADIAL, OPENCV) are ignored: undistort the images first.

Depth *and* poses for every frame give ``LabelVideo.has_geometry`` (world-consistent guidance,
plus flow and visibility from depth and pose with a depth-map test); without either, ``depth``,
poses and flow are None and only vid2vid mode is possible (``geometry_status`` says which is
missing). A missing or corrupt label, frame, depth or pose file, a sequence whose kinds of file
cover different frames, or files of different sizes raise a one-line ``DataError`` naming the file.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import torch
import torch.nn.functional as F

from imaginate.data.blockworld.guidance import invert_rigid
from imaginate.data.blockworld.label_video import LabelVideo, exact_flow
from imaginate.data.errors import DataError

NAME = re.compile(r"^(?P<prefix>.+)_(?P<frame>\d+)_(?P<kind>leftImg8bit|gtFine_labelIds|depth|pose)"
                  r"\.(?P<ext>png|jpg|jpeg|npy|json)$", re.IGNORECASE)
KINDS = {"gtFine_labelIds": "labels", "leftImg8bit": "frames", "depth": "depth", "pose": "poses"}
EXTENSIONS = {"labels": ("png",), "frames": ("png", "jpg", "jpeg"), "depth": ("png", "npy"), "poses": ("json",)}
COLMAP_MODELS = {"SIMPLE_PINHOLE": 1, "PINHOLE": 2, "SIMPLE_RADIAL": 1, "RADIAL": 1, "OPENCV": 2}


# --------------------------------------------------------------------------------------------
# Finding the files of a sequence
# --------------------------------------------------------------------------------------------


def _scan(folder: str) -> tuple[dict[str, dict[int, str]], str | None, str | None]:
    """``{kind: {frame: path}}`` of every recognised file, the sequence prefix, and the folder
    holding COLMAP's ``images.txt`` (None when absent)."""
    found: dict[str, dict[int, str]] = {kind: {} for kind in KINDS.values()}
    prefixes: set[str] = set()
    colmap = None
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name == "images.txt":
                colmap = dirpath
            match = NAME.match(name)
            if not match:
                continue
            kind = KINDS[match["kind"]]
            if match["ext"].lower() not in EXTENSIONS[kind]:
                raise DataError(f"{path}: a {match['kind']} file must be .{' or .'.join(EXTENSIONS[kind])}")
            frame = int(match["frame"])
            if frame in found[kind]:
                raise DataError(f"{path}: frame {frame} already has a {match['kind']} file ({found[kind][frame]})")
            found[kind][frame] = path
            prefixes.add(match["prefix"])
    if len(prefixes) > 1:
        raise DataError(f"label video folder {folder} holds several sequences ({', '.join(sorted(prefixes))}): "
                        "put each in its own folder")
    return found, (prefixes.pop() if prefixes else None), colmap


def _expected_name(prefix: str, frame_digits: str, suffix: str) -> str:
    return f"{prefix}_{frame_digits}_{suffix}"


def _check_coverage(folder: str, prefix: str, found: dict[str, dict[int, str]], kind: str, frames: list[int]) -> None:
    """Every frame of the label maps must have a file of ``kind`` and no file may lack a label map."""
    names = {"frames": "leftImg8bit.png", "depth": "depth.png (or .npy)", "poses": "pose.json"}
    for frame, path in sorted(found[kind].items()):
        if frame not in found["labels"]:
            digits = NAME.match(os.path.basename(path))["frame"]
            raise DataError(f"{path} has no label map {_expected_name(prefix, digits, 'gtFine_labelIds.png')} "
                            f"in {folder}: the sequence's files cover different frames")
    for frame in frames:
        if frame not in found[kind]:
            label_path = found["labels"][frame]
            digits = NAME.match(os.path.basename(label_path))["frame"]
            raise DataError(f"{os.path.join(os.path.dirname(label_path), _expected_name(prefix, digits, names[kind]))}"
                            f" is missing (the sequence has {kind} for {len(found[kind])} of its {len(frames)} frames)")


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def _open_image(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path} is not a readable image ({first})") from None
    return image


def read_label_map(path: str) -> np.ndarray:
    """``[H, W]`` int64 ids of a single-channel label PNG."""
    image = _open_image(path)
    if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise DataError(f"{path} must be a single-channel label-id map, got a {image.mode} image "
                        "(colour-coded label maps are not accepted: write the ids)")
    return np.asarray(image).astype(np.int64)


def read_frame(path: str) -> np.ndarray:
    """``[H, W, 3]`` float32 RGB in [0, 1]."""
    return np.asarray(_open_image(path).convert("RGB")).astype(np.float32) / 255.0


def read_depth(path: str) -> np.ndarray:
    """``[H, W]`` float32 z-depth: a 16-bit PNG in millimetres (to metres) or a float ``.npy``."""
    if path.lower().endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(f"{path} is not a readable .npy array ({first})") from None
        if array.ndim != 2 or array.dtype.kind not in "fiu":
            raise DataError(f"{path} must hold a 2-D numeric depth map, got shape {array.shape} {array.dtype}")
        depth = array.astype(np.float32)
    else:
        image = _open_image(path)
        if image.mode not in ("I", "I;16", "I;16B", "I;16L"):
            raise DataError(f"{path} must be a 16-bit depth PNG in millimetres, got a {image.mode} image")
        depth = np.asarray(image).astype(np.float32) / 1000.0
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise DataError(f"{path} has negative or non-finite depths")
    return depth


def _matrix(path: str, data: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in data:
        raise DataError(f"{path}: missing key '{key}' (a pose file holds K, R and t)")
    try:
        array = np.asarray(data[key], dtype=np.float64).reshape(shape)
    except (ValueError, TypeError):
        raise DataError(f"{path}: '{key}' must be {' x '.join(map(str, shape))} numbers") from None
    if not np.isfinite(array).all():
        raise DataError(f"{path}: '{key}' has non-finite values")
    return array


def _check_rotation(path: str, rotation: np.ndarray) -> None:
    if np.abs(rotation @ rotation.T - np.eye(3)).max() > 1e-3 or np.linalg.det(rotation) < 0:
        raise DataError(f"{path}: R is not a rotation matrix")


def read_pose_json(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(K [3, 3], world_to_camera [4, 4])`` of a ``{"K", "R", "t"}`` JSON file."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path} is not a readable JSON file ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object with K, R and t")
    k, rotation, translation = _matrix(path, data, "K", (3, 3)), _matrix(path, data, "R", (3, 3)), _matrix(
        path, data, "t", (3,))
    _check_rotation(path, rotation)
    if k[0, 0] <= 0 or k[1, 1] <= 0 or np.abs(k[2] - [0, 0, 1]).max() > 1e-9 or k[1, 0] != 0:
        raise DataError(f"{path}: K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with positive focal lengths")
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3], world_to_camera[:3, 3] = rotation, translation
    return k, world_to_camera


def _quaternion_to_rotation(qw: float, qx: float, qy: float, qz: float) -> np.ndarray:
    q = np.array([qw, qx, qy, qz]) / np.linalg.norm([qw, qx, qy, qz])
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _data_lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f if not line.startswith("#")]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable text file ({str(error).splitlines()[0]})") from None


def read_colmap(folder: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{image NAME: (K [3, 3], world_to_camera [4, 4])}`` from ``cameras.txt`` and ``images.txt``."""
    cameras_path, images_path = os.path.join(folder, "cameras.txt"), os.path.join(folder, "images.txt")
    if not os.path.isfile(cameras_path):
        raise DataError(f"{cameras_path} is missing (COLMAP's images.txt needs its cameras.txt)")
    intrinsics: dict[int, np.ndarray] = {}
    for number, line in enumerate(_data_lines(cameras_path), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            camera_id, model, params = int(parts[0]), parts[1], [float(p) for p in parts[4:]]
        except (IndexError, ValueError):
            raise DataError(f"{cameras_path}: line {number} is not 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS'") from None
        if model not in COLMAP_MODELS or len(params) < COLMAP_MODELS[model] + 2:
            raise DataError(f"{cameras_path}: camera {camera_id} has model {model}; accepted: "
                            f"{', '.join(COLMAP_MODELS)} (distortion ignored)")
        fx, fy = (params[0], params[0]) if COLMAP_MODELS[model] == 1 else (params[0], params[1])
        cx, cy = params[COLMAP_MODELS[model]], params[COLMAP_MODELS[model] + 1]
        intrinsics[camera_id] = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    poses = {}
    lines = _data_lines(images_path)
    for number, line in enumerate(lines[0::2], 1):  # each image: a pose line, then its 2D points line
        if not line.strip():
            continue
        parts = line.split()
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(p) for p in parts[1:8])
            camera_id, name = int(parts[8]), " ".join(parts[9:])
        except (IndexError, ValueError):
            raise DataError(f"{images_path}: image entry {number} is not "
                            "'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'") from None
        if camera_id not in intrinsics or not name:
            raise DataError(f"{images_path}: image entry {number} ({name or 'no name'}) refers to camera "
                            f"{camera_id}, which {cameras_path} does not define")
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = _quaternion_to_rotation(qw, qx, qy, qz)
        world_to_camera[:3, 3] = (tx, ty, tz)
        poses[name] = (intrinsics[camera_id], world_to_camera)
    return poses


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _colmap_poses(folder: str, colmap: str, prefix: str, found: dict[str, dict[int, str]],
                  frames: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    by_name = read_colmap(colmap)
    poses = {}
    for frame in frames:
        digits = NAME.match(os.path.basename(found["labels"][frame]))["frame"]
        key = f"{prefix}_{digits}"
        matches = [name for name in by_name if key in os.path.basename(name)]
        if not matches:
            raise DataError(f"{os.path.join(colmap, 'images.txt')} has no image named like {key}_* "
                            f"(the sequence's frame {digits})")
        poses[frame] = by_name[matches[0]]
    return poses


def geometry_status(video: LabelVideo) -> str:
    """One line: whether a video supports world-consistent guidance, and if not, what is missing."""
    if video.has_geometry:
        return "depth and poses for every frame: world-consistent (wc_vid2vid) guidance available"
    missing = [what for what, value in (("depth maps", video.depth), ("camera poses", video.cam_to_world))
               if value is None]
    return f"no {' and no '.join(missing)}: vid2vid mode only (no guidance images)"


def load_label_video(folder: str | os.PathLike, height: int | None = None, width: int | None = None,
                     num_labels: int = 35, require_frames: bool = False) -> LabelVideo:
    """Read one sequence folder (see the module docstring for the file names).

    Args:
        folder: the sequence's folder.
        height, width: resize to this size (labels and depth nearest, frames by area averaging,
            intrinsics scaled); None keeps the files' size.
        num_labels: the label table's size; ids must lie below it (35 = Cityscapes' label ids).
        require_frames: the RGB frames must be present (training); otherwise ``photo`` is None
            when there are none (synthesis needs only labels).

    Returns:
        a ``LabelVideo``; without depth or poses, ``depth``/``intrinsics``/``cam_to_world``/
        ``flow``/``flow_valid`` are None (``has_geometry`` False).

    Raises:
        DataError: one line naming the missing, corrupt or inconsistent file.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"label video folder {folder} does not exist")
    found, prefix, colmap = _scan(folder)
    if not found["labels"]:
        raise DataError(f"label video folder {folder} has no label maps named <city>_<seq>_<frame>_gtFine_labelIds.png")
    assert prefix is not None
    frames = sorted(found["labels"])
    if len(frames) < 2:
        raise DataError(f"label video folder {folder} has one frame ({found['labels'][frames[0]]}): need at least 2")
    if found["frames"] or require_frames:
        _check_coverage(folder, prefix, found, "frames", frames)
    has_depth = bool(found["depth"])
    if has_depth:
        _check_coverage(folder, prefix, found, "depth", frames)
    if found["poses"]:
        _check_coverage(folder, prefix, found, "poses", frames)
        poses = {frame: read_pose_json(found["poses"][frame]) for frame in frames}
    elif colmap is not None:
        poses = _colmap_poses(folder, colmap, prefix, found, frames)
    else:
        poses = {}

    labels = []
    size = None
    for frame in frames:
        path = found["labels"][frame]
        ids = read_label_map(path)
        size = size or ids.shape
        if ids.shape != size:
            raise DataError(f"{path} is {ids.shape[1]}x{ids.shape[0]}, the sequence's first label map "
                            f"{size[1]}x{size[0]}: all files of a sequence must have one size")
        if int(ids.max()) >= num_labels:
            raise DataError(f"{path} has label id {int(ids.max())}, outside 0..{num_labels - 1} (num_labels)")
        labels.append(ids)

    def read_all(kind: str, reader) -> list[np.ndarray]:
        arrays = []
        for frame in frames:
            path = found[kind][frame]
            array = reader(path)
            if array.shape[:2] != size:
                raise DataError(f"{path} is {array.shape[1]}x{array.shape[0]}, its label map {size[1]}x{size[0]}")
            arrays.append(array)
        return arrays

    out_h, out_w = height or size[0], width or size[1]
    label_t = torch.from_numpy(np.stack(labels))  # [T, H0, W0]
    label_t = F.interpolate(label_t[:, None].float(), size=(out_h, out_w), mode="nearest")[:, 0].long()
    photo = None
    if found["frames"]:
        photo = torch.from_numpy(np.stack(read_all("frames", read_frame))).permute(0, 3, 1, 2)
        photo = F.interpolate(photo, size=(out_h, out_w), mode="area") if (out_h, out_w) != size else photo
    depth = intrinsics = cam_to_world = flow = valid = None
    if has_depth:
        depth = torch.from_numpy(np.stack(read_all("depth", read_depth)))
        depth = F.interpolate(depth[:, None], size=(out_h, out_w), mode="nearest")[:, 0]
    if poses:
        scale = np.array([[out_w / size[1]], [out_h / size[0]], [1.0]])
        intrinsics = torch.from_numpy(np.stack([poses[f][0] * scale for f in frames])).float()
        cam_to_world = invert_rigid(torch.from_numpy(np.stack([poses[f][1] for f in frames]))).float()
    if depth is not None and cam_to_world is not None:
        flow, valid = exact_flow(depth, intrinsics, cam_to_world, world=None)
    return LabelVideo(labels=label_t, photo=photo, depth=depth, intrinsics=intrinsics, cam_to_world=cam_to_world,
                      flow=flow, flow_valid=valid, revisit_pairs=[], num_labels=num_labels, name=folder)


def load_video_sequences(root: str | os.PathLike, height: int | None = None, width: int | None = None,
                         num_labels: int = 35, require_frames: bool = False) -> list[LabelVideo]:
    """Every sequence under ``root``: each sub-folder holding label maps is one sequence (or ``root``
    itself when its label maps sit directly in it). Arguments as ``load_label_video``."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(f"label video folder {root} does not exist")
    entries = sorted(os.listdir(root))
    if any(NAME.match(name) for name in entries):
        return [load_label_video(root, height, width, num_labels, require_frames)]
    folders = [os.path.join(root, name) for name in entries
               if not name.startswith(".") and os.path.isdir(os.path.join(root, name))]
    videos = [load_label_video(folder, height, width, num_labels, require_frames) for folder in folders]
    if not videos:
        raise DataError(f"label video folder {root} has no sequence folders with "
                        "<city>_<seq>_<frame>_gtFine_labelIds.png label maps")
    return videos
