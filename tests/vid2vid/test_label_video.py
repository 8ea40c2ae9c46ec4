import pytest
import torch

from imaginate.data import DataError
from imaginate.data.blockworld import BlockWorld, PinholeCamera, generate_world, ray_voxel_intersections
from imaginate.data.blockworld.guidance import unproject
from imaginate.data.blockworld.label_video import (
    LabelVideoDataset,
    exact_flow,
    label_video_specs,
    make_label_video,
    render_label_video,
    stack_label_videos,
)
from imaginate.data.blockworld.paths import CAMERA_PATHS, camera_path, revisit_pairs
from imaginate.nn import backward_warp


@pytest.fixture(scope="module")
def world():
    return generate_world((40, 24, 40), seed=5)


@pytest.fixture(scope="module")
def video(world):
    return make_label_video(world, "loop", 8, 24, 48, style_seed=3, path_seed=1)


@pytest.mark.parametrize("name", sorted(CAMERA_PATHS))
def test_paths_revisit_identical_poses(world, name):
    cameras = camera_path(name, world, 12, 32, 16, seed=2)
    assert len(cameras) == 12
    pairs = revisit_pairs(cameras)
    assert len(pairs) >= 3
    for out, back in pairs:
        assert back - out >= 1
        assert torch.equal(cameras[out].world_to_camera, cameras[back].world_to_camera)
    if name == "out_and_back":
        assert pairs[-1] == (0, 11) and (5, 6) in pairs
    # poses not listed as pairs are distinct (the path really moves)
    distinct = {tuple(c.world_to_camera.flatten().tolist()) for c in cameras}
    assert len(distinct) == 12 - len(pairs)


def test_video_fields_shapes_and_revisits(video):
    t, h, w = 8, 24, 48
    assert video.labels.shape == (t, h, w) and video.labels.dtype == torch.int64
    assert video.photo.shape == (t, 3, h, w) and 0 <= float(video.photo.min()) and float(video.photo.max()) <= 1
    assert video.depth.shape == (t, h, w) and video.flow.shape == (t, 2, h, w)
    assert video.flow_valid.shape == (t, 1, h, w)
    assert video.intrinsics.shape == (t, 3, 3) and video.cam_to_world.shape == (t, 4, 4)
    assert video.has_geometry and video.num_labels == 10
    sky = video.labels == 0
    assert bool((video.depth[sky] == 0).all()) and bool((video.depth[~sky] > 0).all())
    assert float(video.flow[0].abs().max()) == 0 and float(video.flow_valid[0].max()) == 0
    assert float(video.flow_valid[:, 0][sky].max()) == 0
    assert video.revisit_pairs == [(0, 6), (1, 7)]
    for out, back in video.revisit_pairs:
        assert torch.equal(video.cam_to_world[out], video.cam_to_world[back])
        assert torch.equal(video.labels[out], video.labels[back])
        assert torch.equal(video.photo[out], video.photo[back])


def test_determinism_and_styles(world, video):
    again = make_label_video(world, "loop", 8, 24, 48, style_seed=3, path_seed=1)
    for key, value in video.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    restyled = make_label_video(world, "loop", 8, 24, 48, style_seed=4, path_seed=1)
    assert torch.equal(restyled.labels, video.labels)
    ground = video.labels > 0
    assert float((restyled.photo - video.photo).abs().mean(0)[:, ground.any(0)].mean()) > 0.03


def test_exact_flow_lands_on_the_same_surface_point(world, video):
    """Cast a ray from camera t-1 through p + flow(p): it must hit the point pixel p of frame t sees."""
    points = unproject(video.depth.double(), video.intrinsics.double(), video.cam_to_world.double())
    valid = video.flow_valid[1:, 0].bool()  # [T-1, H, W]
    assert int(valid.sum()) > 0.3 * valid.numel()
    frame, row, col = torch.nonzero(valid, as_tuple=True)
    flow = video.flow[1:].double()
    u = col + 0.5 + flow[frame, 0, row, col]
    v = row + 0.5 + flow[frame, 1, row, col]
    k_inv = torch.linalg.inv(video.intrinsics[:-1].double())[frame]  # [N, 3, 3]
    c2w = video.cam_to_world[:-1].double()[frame]
    rays = (k_inv @ torch.stack([u, v, torch.ones_like(u)], -1)[..., None])[..., 0]
    directions = (c2w[:, :3, :3] @ rays[..., None])[..., 0]
    directions = directions / directions.norm(dim=-1, keepdim=True)
    hits = ray_voxel_intersections(world.blocks, c2w[:, :3, 3], directions, max_hits=1)
    landed = c2w[:, :3, 3] + hits.entry_depth[:, :1] * directions
    error = (landed - points[1:][frame, row, col]).norm(dim=-1)
    assert float(error.max()) < 1e-3
    assert torch.equal(hits.block_ids[:, 0], video.labels[1:][frame, row, col])
    # the photo: warping explains most of the change between frames
    diff_warped = (backward_warp(video.photo[:-1], video.flow[1:]) - video.photo[1:]).abs().mean(1)[valid]
    diff_still = (video.photo[:-1] - video.photo[1:]).abs().mean(1)[valid]
    assert float(diff_warped.mean()) < 0.6 * float(diff_still.mean())


def test_occlusion_by_a_wall_is_exact():
    blocks = torch.zeros(24, 10, 16, dtype=torch.int32)
    blocks[:, 0, :] = 1  # floor
    blocks[10, 1:7, :8] = 2  # a wall across half the floor, taller than the cameras
    world = BlockWorld(blocks)
    previous = PinholeCamera.from_look_at((5.0, 3.0, 8.0), (20.0, 0.0, 8.0), 64, 48)
    current = PinholeCamera.from_look_at((14.0, 3.0, 8.0), (20.0, 0.0, 8.0), 64, 48)
    video = render_label_video(world, [previous, current])
    points = unproject(video.depth[1:].double(), video.intrinsics[1:].double(), video.cam_to_world[1:].double())[0]
    valid = video.flow_valid[1, 0].bool()
    floor = video.depth[1] > 0
    behind_wall = floor & (points[..., 0] > 11) & (points[..., 2] < 7.9)
    in_the_open = floor & (points[..., 0] > 11) & (points[..., 2] > 8.1)
    landed = (video.flow[1, 0].abs() + video.flow[1, 1].abs()) > 0
    assert int((behind_wall & landed).sum()) > 50  # these project into the previous image ...
    assert not bool(valid[behind_wall].any())  # ... but the wall hides them there
    assert float(valid[in_the_open].float().mean()) > 0.5
    # the depth-map test agrees away from the wall's silhouette
    _, by_depth = exact_flow(video.depth, video.intrinsics, video.cam_to_world, world=None)
    assert not bool(by_depth[1, 0].bool()[behind_wall].any())


def test_clip_and_stack(video):
    clip = video.clip(1, 7)
    assert clip.num_frames == 7 and clip.revisit_pairs == [(0, 6)]
    assert float(clip.flow_valid[0].max()) == 0 and torch.equal(clip.flow[1], video.flow[2])
    for start, length in ((-1, 3), (0, 0), (5, 4)):
        with pytest.raises(ValueError, match="clip"):
            video.clip(start, length)
    batch = stack_label_videos([clip, clip])
    assert batch["photo"].shape == (2, 7, 3, 24, 48) and batch["revisit_pairs"] == [[(0, 6)]] * 2


def test_splits_are_disjoint_and_cached(tmp_path):
    train = label_video_specs("train", 6, 4, 8, 16, num_worlds=3)
    test = label_video_specs("test", 4, 4, 8, 16)
    assert {s.world_seed for s in train}.isdisjoint({s.world_seed for s in test})
    assert {s.style_seed for s in train}.isdisjoint({s.style_seed for s in test})
    assert len({s.world_seed for s in train}) == 3 and len({s.style_seed for s in train}) == 6
    assert {s.path for s in train} == set(CAMERA_PATHS)
    assert label_video_specs("train", 6, 4, 8, 16, num_worlds=3) == train
    spec = test[:1]
    first = LabelVideoDataset(spec, cache_dir=tmp_path)[0]
    cached = LabelVideoDataset(spec, cache_dir=tmp_path)[0]  # read from the file
    assert (tmp_path / f"{spec[0].key()}.pt").is_file()
    assert torch.equal(first.photo, cached.photo) and first.revisit_pairs == cached.revisit_pairs
    (tmp_path / f"{spec[0].key()}.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=spec[0].key()):
        LabelVideoDataset(spec, cache_dir=tmp_path)[0]
