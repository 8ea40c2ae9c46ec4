"""Label videos from block worlds: the synthetic data of vid2vid and world-consistent vid2vid.

One ``LabelVideo`` is a camera path over a procedural world (``paths.py``: out-and-back, loop,
revisit-after-detour) with, per frame, the label map, a "photo" target, z-depth, intrinsics and
camera pose, and the exact backward optical flow with its occlusion mask between consecutive
frames (computed from depth and pose and checked by ray casting; this replaces FlowNet2). Every
sequence has its own random photo style (``PhotoStyle.random_scene``: block tints and textures,
light, sky), so a model can keep a place's look on revisiting it only by remembering it.

``label_video_specs`` draws train / test splits whose worlds *and* styles are disjoint;
``LabelVideoDataset`` renders them (deterministic by seed) with an optional on-disk cache.
Rendering all frames of a sequence in one batched ray cast costs about 0.1 s per 64x128 frame
on one CPU thread (see ``make_label_video``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from imaginate.data.blockworld.camera import PinholeCamera
from imaginate.data.blockworld.guidance import invert_rigid, pixel_grid, project, unproject
from imaginate.data.blockworld.paths import CAMERA_PATHS, camera_path, revisit_pairs
from imaginate.data.blockworld.raycast import ray_voxel_intersections
from imaginate.data.blockworld.render import PhotoStyle, label_map, render_photo
from imaginate.data.blockworld.world import BlockWorld, generate_world
from imaginate.data.errors import DataError

_FORMAT = "imaginate.label_video.v1"


@dataclass
class LabelVideo:
    """A label video with its targets and (when known) its geometry.

    Attributes:
        labels: ``[T, H, W]`` int64 label ids (0 = sky / void).
        photo: ``[T, 3, H, W]`` float32 target frames in [0, 1] (None for a user's label-only video).
        depth: ``[T, H, W]`` float32 z-depth along the optical axis, 0 where the pixel sees sky;
            None when unknown.
        intrinsics: ``[T, 3, 3]`` float32 ``K`` (pixel ``(i, j)`` is the point ``(j + .5, i + .5)``).
        cam_to_world: ``[T, 4, 4]`` float32 camera-to-world poses (OpenCV camera axes).
        flow: ``[T, 2, H, W]`` float32 backward flow in pixels (dx, dy): pixel ``p`` of frame ``t``
            shows the surface point that frame ``t - 1`` shows at ``p + flow[t](p)``; ``flow[0] = 0``.
            Geometric motion wherever the pixel sees a surface in front of the previous camera,
            0 elsewhere.
        flow_valid: ``[T, 1, H, W]`` float32, 1 where that surface point is visible in both frames
            (inside the previous image and not occluded there), 0 for frame 0 and sky.
        revisit_pairs: ``(t_out, t_back)`` frames at identical poses.
        num_labels: size of the label table (``labels < num_labels``).
        name: where the video came from (world / style / path or a folder).
    """

    labels: Tensor
    photo: Tensor | None
    depth: Tensor | None
    intrinsics: Tensor | None
    cam_to_world: Tensor | None
    flow: Tensor | None
    flow_valid: Tensor | None
    revisit_pairs: list[tuple[int, int]] = field(default_factory=list)
    num_labels: int = 0
    name: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.labels.shape[1]), int(self.labels.shape[2])

    @property
    def has_geometry(self) -> bool:
        """Depth and poses are known: world-consistent guidance is possible (else vid2vid only)."""
        return self.depth is not None and self.intrinsics is not None and self.cam_to_world is not None

    @property
    def has_flow(self) -> bool:
        return self.flow is not None and self.flow_valid is not None

    def clip(self, start: int, length: int) -> LabelVideo:
        """Frames ``start .. start + length - 1``; the first frame's flow and mask become 0 and only
        revisit pairs inside the clip remain (renumbered)."""
        if not (0 <= start and 1 <= length and start + length <= self.num_frames):
            raise ValueError(f"clip [{start}, {start + length}) outside 0..{self.num_frames}")
        cut = slice(start, start + length)

        def part(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor[cut].clone()

        flow, valid = part(self.flow), part(self.flow_valid)
        if flow is not None and valid is not None:
            flow[0], valid[0] = 0.0, 0.0
        pairs = [(a - start, b - start) for a, b in self.revisit_pairs
                 if start <= a and b < start + length]
        return replace(self, labels=self.labels[cut], photo=part(self.photo), depth=part(self.depth),
                       intrinsics=part(self.intrinsics), cam_to_world=part(self.cam_to_world), flow=flow,
                       flow_valid=valid, revisit_pairs=pairs)

    def to(self, device: torch.device | str) -> LabelVideo:
        def move(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.to(device)

        return replace(self, labels=self.labels.to(device), photo=move(self.photo), depth=move(self.depth),
                       intrinsics=move(self.intrinsics), cam_to_world=move(self.cam_to_world),
                       flow=move(self.flow), flow_valid=move(self.flow_valid))

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only (for ``torch.save`` / ``torch.load(weights_only=True)``); absent fields omitted."""
        state = {"labels": self.labels, "num_labels": torch.tensor(self.num_labels),
                 "revisit_pairs": torch.tensor(self.revisit_pairs, dtype=torch.long).reshape(-1, 2),
                 "name": torch.tensor(list(self.name.encode()), dtype=torch.uint8)}
        for key in ("photo", "depth", "intrinsics", "cam_to_world", "flow", "flow_valid"):
            if getattr(self, key) is not None:
                state[key] = getattr(self, key)
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> LabelVideo:
        return cls(
            labels=state["labels"],
            **{key: state.get(key) for key in ("photo", "depth", "intrinsics", "cam_to_world", "flow", "flow_valid")},
            revisit_pairs=[(int(a), int(b)) for a, b in state["revisit_pairs"].tolist()],
            num_labels=int(state["num_labels"]), name=bytes(state["name"].tolist()).decode(),
        )


def stack_label_videos(videos: list[LabelVideo]) -> dict[str, Tensor | list]:
    """A batch of equally long, equally sized videos: each tensor field stacked to ``[B, T, ...]``
    (fields absent from any video are left out), plus ``"revisit_pairs"`` (a list per video)."""
    if not videos:
        raise ValueError("no videos to stack")
    batch: dict[str, Tensor | list] = {}
    for key in ("labels", "photo", "depth", "intrinsics", "cam_to_world", "flow", "flow_valid"):
        tensors = [getattr(video, key) for video in videos]
        if all(t is not None for t in tensors):
            batch[key] = torch.stack(tensors)
    batch["revisit_pairs"] = [video.revisit_pairs for video in videos]
    return batch


# --------------------------------------------------------------------------------------------
# Exact flow and occlusion
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def exact_flow(depth: Tensor, intrinsics: Tensor, cam_to_world: Tensor, world: BlockWorld | None = None,
               depth_tolerance: float = 0.02) -> tuple[Tensor, Tensor]:
    """Backward flow and its validity mask from depth and poses.

    Each pixel of frame ``t`` is unprojected with its depth, moved into camera ``t - 1`` and
    projected. It is valid when it lands inside the previous image, in front of the camera, and is
    visible there: on a block world (``world`` given) a ray cast from camera ``t - 1`` towards the
    point must first hit a block where the point is (exact); otherwise the previous inverse depth,
    sampled bilinearly where the point lands, must agree within ``depth_tolerance`` (relative).

    Args:
        depth: ``[T, H, W]`` z-depth, 0 for sky.
        intrinsics: ``[T, 3, 3]``.
        cam_to_world: ``[T, 4, 4]``.
        world: the block world the frames show, for exact visibility.
        depth_tolerance: relative depth difference accepted by the depth-map test.

    Returns:
        ``flow [T, 2, H, W]`` and ``valid [T, 1, H, W]`` float32, as in ``LabelVideo``.
    """
    frames, height, width = depth.shape
    flow = torch.zeros(frames, 2, height, width, device=depth.device)
    valid = torch.zeros(frames, 1, height, width, device=depth.device)
    if frames < 2:
        return flow, valid
    d64 = depth.double()
    points = unproject(d64[1:], intrinsics[1:].double(), cam_to_world[1:].double())  # [T-1, H, W, 3]
    pixels, z_prev = project(points, intrinsics[:-1].double(), cam_to_world[:-1].double())  # [T-1, H, W, 2]
    here = pixel_grid(height, width, depth.device, torch.float64)[..., :2]  # [H, W, 2]
    seen = (d64[1:] > 0) & (z_prev > 1e-6)  # [T-1, H, W] a surface in front of the previous camera
    motion = torch.where(seen[..., None], pixels - here, torch.zeros_like(pixels))
    inside = seen & (pixels[..., 0] >= 0) & (pixels[..., 0] < width) & (pixels[..., 1] >= 0) & (
        pixels[..., 1] < height)
    if world is not None:
        centres = cam_to_world[:-1, :3, 3].double().to(world.device)  # [T-1, 3] previous cameras
        index = torch.nonzero(inside)  # [N, 3] (frame, row, column)
        targets = points[inside].to(world.device)  # [N, 3]
        towards = targets - centres[index[:, 0]]
        distance = towards.norm(dim=-1)  # [N]
        hits = ray_voxel_intersections(world.blocks, centres[index[:, 0]], towards / distance[:, None],
                                       max_hits=1, far=float(distance.max()) + 1.0 if len(distance) else 1.0)
        first = hits.entry_depth[:, 0].to(depth.device)  # [N] +inf when nothing is hit
        visible_points = first >= distance.to(depth.device) - (1e-4 * distance.to(depth.device) + 1e-6)
        visible = torch.zeros_like(inside)
        visible[inside] = visible_points
    else:
        # Inverse depth is linear in the pixel coordinates on a plane, so bilinear sampling of the
        # previous inverse depth at the landing point is exact inside faces; every one of the four
        # neighbours must have a depth.
        has_depth = (d64[:-1] > 0).double()
        inverse = torch.where(d64[:-1] > 0, 1.0 / d64[:-1].clamp(min=1e-12), torch.zeros_like(d64[:-1]))
        grid = torch.stack([2 * pixels[..., 0] / width - 1, 2 * pixels[..., 1] / height - 1], dim=-1)
        sampled = F.grid_sample(torch.stack([inverse, has_depth], 1), grid, align_corners=False)  # [T-1, 2, H, W]
        near_prev = 1.0 / z_prev.clamp(min=1e-12)
        agrees = (sampled[:, 0] - near_prev).abs() <= depth_tolerance * near_prev
        visible = inside & (sampled[:, 1] > 1 - 1e-9) & agrees
    flow[1:] = motion.permute(0, 3, 1, 2).float()
    valid[1:, 0] = visible.float()
    return flow, valid


# --------------------------------------------------------------------------------------------
# Rendering a sequence
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def make_label_video(world: BlockWorld, path: str, num_frames: int, height: int, width: int, style_seed: int,
                     path_seed: int = 0) -> LabelVideo:
    """Render a label video along a camera path in the sequence's own photo style.

    All frames are ray cast in one batched call (about 0.06 s of ray casting + 0.03 s of shading
    per 64x128 frame on one thread, plus 0.5 to 2 s per sequence to draw a path of valid views),
    then the exact flow ray casts once more from each previous camera towards the visible points.

    Args:
        world: the world (rendered on its device).
        path: ``"out_and_back"``, ``"loop"`` or ``"revisit"`` (``paths.CAMERA_PATHS``).
        num_frames: ``T``.
        height: ``H``.
        width: ``W``.
        style_seed: the sequence's photo style (``PhotoStyle.random_scene``).
        path_seed: picks the path over the world.

    Returns:
        the ``LabelVideo`` (tensors on the world's device).
    """
    if path not in CAMERA_PATHS:
        raise ValueError(f"unknown camera path {path!r}; choose one of {', '.join(CAMERA_PATHS)}")
    cameras = camera_path(path, world, num_frames, width, height, path_seed)
    style = PhotoStyle.random_scene(style_seed, num_labels=len(world.labels))
    video = render_label_video(world, cameras, style)
    video.name = f"{path} path {path_seed}, style {style_seed}"
    return video


@torch.no_grad()
def render_label_video(world: BlockWorld, cameras: list[PinholeCamera], style: PhotoStyle | None = None
                       ) -> LabelVideo:
    """Render any list of cameras (all of one size) as a ``LabelVideo`` (``make_label_video``'s
    work after it has drawn the path and the style; ``style`` defaults to ``PhotoStyle()``)."""
    style = PhotoStyle() if style is None else style
    if not cameras or len({(c.height, c.width) for c in cameras}) != 1:
        raise ValueError("need at least one camera, all of the same image size")
    rays = [camera.rays(device=world.device) for camera in cameras]
    origins = torch.stack([r[0] for r in rays])  # [T, H, W, 3]
    directions = torch.stack([r[1] for r in rays])  # [T, H, W, 3]
    hits = ray_voxel_intersections(world.blocks, origins, directions, max_hits=1)  # batch [T, H, W]
    labels = label_map(hits)  # [T, H, W]
    photo = render_photo(world, hits, origins, directions, style).permute(0, 3, 1, 2).contiguous()
    forward = torch.stack([camera.forward for camera in cameras]).to(world.device, torch.float32)  # [T, 3]
    distance = hits.entry_depth[..., 0]  # [T, H, W] along the unit ray, +inf for sky
    cosine = (directions * forward[:, None, None, :]).sum(dim=-1)
    depth = torch.where(torch.isfinite(distance), distance * cosine, torch.zeros_like(distance)).float()
    intrinsics = torch.stack([camera.intrinsics for camera in cameras]).to(world.device)  # [T, 3, 3] float64
    cam_to_world = invert_rigid(torch.stack([camera.world_to_camera for camera in cameras])).to(world.device)
    flow, valid = exact_flow(depth, intrinsics, cam_to_world, world)
    return LabelVideo(
        labels=labels, photo=photo, depth=depth, intrinsics=intrinsics.float(), cam_to_world=cam_to_world.float(),
        flow=flow, flow_valid=valid, revisit_pairs=revisit_pairs(cameras), num_labels=len(world.labels),
    )


# --------------------------------------------------------------------------------------------
# Data sets with unseen worlds and unseen styles
# --------------------------------------------------------------------------------------------

# Seed ranges: train and test worlds / styles never overlap (each range holds 1000 splits of 10**4).
SEED_BASES = {("train", "world"): 20_000_000, ("train", "style"): 30_000_000,
              ("test", "world"): 40_000_000, ("test", "style"): 50_000_000}
SPLITS = ("train", "test")


@dataclass(frozen=True)
class LabelVideoSpec:
    """Everything that determines one rendered label video."""

    world_seed: int
    style_seed: int
    path: str
    path_seed: int
    num_frames: int
    height: int
    width: int
    world_size: tuple[int, int, int] = (64, 32, 64)

    def __post_init__(self) -> None:
        if self.path not in CAMERA_PATHS:
            raise ValueError(f"path must be one of {', '.join(CAMERA_PATHS)}, got {self.path!r}")
        if self.num_frames < 2 or self.height < 1 or self.width < 1:
            raise ValueError(f"need num_frames >= 2 and a positive size, got {self.num_frames} frames "
                             f"of {self.height}x{self.width}")

    def key(self) -> str:
        """A file name that changes with every field and with the cache format."""
        text = repr((_FORMAT, sorted(asdict(self).items())))
        return f"{self.path}_{self.height}x{self.width}_{hashlib.sha1(text.encode()).hexdigest()[:16]}"

    def render(self, device: torch.device | str = "cpu") -> LabelVideo:
        world = generate_world(self.world_size, seed=self.world_seed).to(device)
        return make_label_video(world, self.path, self.num_frames, self.height, self.width, self.style_seed,
                                self.path_seed)


def label_video_specs(split: str, num_sequences: int, num_frames: int, height: int, width: int,
                      paths: tuple[str, ...] = tuple(CAMERA_PATHS), seed: int = 0, num_worlds: int | None = None,
                      num_styles: int | None = None,
                      world_size: tuple[int, int, int] = (64, 32, 64)) -> list[LabelVideoSpec]:
    """The sequences of a split. Train and test draw worlds and styles from disjoint seed ranges
    (``SEED_BASES``), so test sequences show unseen worlds in unseen styles.

    Args:
        split: ``"train"`` or ``"test"``.
        num_sequences: how many sequences.
        num_frames, height, width: of every sequence.
        paths: camera paths, used in turn.
        seed: picks a different set of worlds and styles (0 <= seed < 1000).
        num_worlds: distinct worlds (sequence ``i`` uses world ``i % num_worlds``; default one each).
        num_styles: distinct styles (``i % num_styles``; default one each).
        world_size: ``(X, Y, Z)`` of the generated worlds.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 0 <= seed < 1000 or num_sequences < 1 or not paths:
        raise ValueError(f"need 0 <= seed < 1000, num_sequences >= 1 and paths; got {seed}, {num_sequences}")
    num_worlds, num_styles = num_worlds or num_sequences, num_styles or num_sequences
    if max(num_worlds, num_styles) > 10_000:
        raise ValueError("at most 10000 worlds and styles per split")
    world_base = SEED_BASES[split, "world"] + 10_000 * seed
    style_base = SEED_BASES[split, "style"] + 10_000 * seed
    return [LabelVideoSpec(world_base + i % num_worlds, style_base + i % num_styles, paths[i % len(paths)], i,
                           num_frames, height, width, tuple(world_size)) for i in range(num_sequences)]


class LabelVideoDataset(torch.utils.data.Dataset):
    """Rendered label videos, each rendered once (deterministic by its spec).

    Args:
        specs: the sequences (``label_video_specs``).
        cache_dir: when given, each video is saved there as ``<spec.key()>.pt`` (atomically) and read
            back instead of rendered; a damaged cache file is a ``DataError`` naming it.
        keep_in_memory: also keep rendered videos in this process (about 4.7 MB for 16 frames of
            64x128).
    """

    def __init__(self, specs: list[LabelVideoSpec], cache_dir: str | os.PathLike | None = None,
                 keep_in_memory: bool = True) -> None:
        self.specs = list(specs)
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self.keep_in_memory = keep_in_memory
        self._memory: dict[int, LabelVideo] = {}

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int) -> LabelVideo:
        if index in self._memory:
            return self._memory[index]
        spec = self.specs[index]
        video = self._load(spec) if self.cache_dir else None
        if video is None:
            video = spec.render()
            if self.cache_dir:
                self._save(spec, video)
        if self.keep_in_memory:
            self._memory[index] = video
        return video

    def _file(self, spec: LabelVideoSpec) -> str:
        assert self.cache_dir is not None
        return os.path.join(self.cache_dir, f"{spec.key()}.pt")

    def _load(self, spec: LabelVideoSpec) -> LabelVideo | None:
        file = self._file(spec)
        if not os.path.isfile(file):
            return None
        try:
            return LabelVideo.from_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        except (pickle.UnpicklingError, RuntimeError, KeyError, ValueError, TypeError, EOFError, OSError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(f"label video cache file {file} is damaged ({first}); delete it to re-render") from None

    def _save(self, spec: LabelVideoSpec, video: LabelVideo) -> None:
        os.makedirs(self.cache_dir, exist_ok=True)
        file = self._file(spec)
        temporary = f"{file}.tmp{os.getpid()}"
        torch.save(video.state_dict(), temporary)
        os.replace(temporary, file)
