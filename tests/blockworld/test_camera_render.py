"""Pinhole cameras, trajectories, view rejection and the classic renders of block worlds."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from imaginate.data.blockworld import (
    BLOCK_IDS,
    BlockWorld,
    PhotoStyle,
    PinholeCamera,
    RayHits,
    block_textures,
    depth_to_rgb,
    fly_through,
    generate_world,
    intrinsics_from_fov,
    orbit,
    random_valid_poses,
    ray_voxel_intersections,
    render_all,
    save_png,
    sky_color,
    view_statistics,
)


@pytest.fixture(scope="module")
def world():
    return generate_world((32, 24, 32), seed=2)


def flat_world(size=16, height=4):
    blocks = torch.zeros(size, 12, size, dtype=torch.int32)
    blocks[:, :height, :] = BLOCK_IDS["stone"]
    return BlockWorld(blocks)


# --------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------


def test_intrinsics_and_pose():
    k = intrinsics_from_fov(90.0, 64, 48)
    assert k[0, 0].item() == pytest.approx(32.0) and k[:2, 2].tolist() == [32.0, 24.0]
    camera = PinholeCamera.from_look_at((1.0, 2.0, 3.0), (4.0, 0.0, -1.0), 64, 48)
    rotation = camera.world_to_camera[:3, :3]
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(3, dtype=torch.float64))
    assert torch.linalg.det(rotation).item() == pytest.approx(1.0)
    torch.testing.assert_close(camera.position, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    expected = torch.tensor([3.0, -2.0, -4.0], dtype=torch.float64)
    torch.testing.assert_close(camera.forward, expected / expected.norm())


def test_principal_ray_hits_the_look_at_points_pixel():
    blocks = torch.zeros(16, 16, 16, dtype=torch.int32)
    blocks[9, 5, 7] = BLOCK_IDS["sand"]
    target = torch.tensor([9.3, 5.6, 7.2], dtype=torch.float64)  # inside that block
    camera = PinholeCamera.from_look_at((2.0, 12.0, 1.0), target, width=33, height=21, fov_deg=50.0)
    pixels, depth = camera.project(target)
    torch.testing.assert_close(pixels, torch.tensor([16.5, 10.5], dtype=torch.float64))  # the image centre
    assert depth.item() == pytest.approx(float((target - camera.position).norm()))
    origins, directions = camera.rays(dtype=torch.float64)
    torch.testing.assert_close(directions[10, 16], camera.forward)
    hits = ray_voxel_intersections(blocks, origins, directions, max_hits=1)
    assert hits.voxels[10, 16, 0].tolist() == [9, 5, 7]
    assert int(hits.hit.sum()) < 33 * 21 / 4  # the single block covers few pixels


def test_rays_and_projection_agree_and_image_is_upright():
    camera = PinholeCamera.from_look_at((0.0, 0.0, 10.0), (0.0, 0.0, 0.0), 40, 30, fov_deg=60.0)
    origins, directions = camera.rays(dtype=torch.float64)
    pixels, depth = camera.project(origins + 5.0 * directions)
    rows, cols = torch.meshgrid(torch.arange(30) + 0.5, torch.arange(40) + 0.5, indexing="ij")
    torch.testing.assert_close(pixels, torch.stack([cols, rows], dim=-1).double())
    assert bool((depth > 0).all())
    above, right = camera.project(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64))[0]
    assert above[1] < 15.0 and right[0] > 20.0  # world up is image up; +x is to the right here
    assert camera.resized(20, 15).intrinsics[0, 0].item() == pytest.approx(camera.intrinsics[0, 0].item() / 2)


def test_orbit_circles_the_centre_above_the_ground(world):
    cameras = orbit(world, 12, 32, 24)
    assert len(cameras) == 12
    ground = world.heightmap() + 1
    centre = torch.tensor([16.0, 0.0, 16.0], dtype=torch.float64)
    radii = [float((c.position - centre)[[0, 2]].norm()) for c in cameras]
    assert max(radii) - min(radii) < 1e-6
    for camera in cameras:
        x, y, z = camera.position.tolist()
        assert y > ground[int(x), int(z)] + 1
        to_centre = centre[[0, 2]] - camera.position[[0, 2]]
        assert float(camera.forward[[0, 2]] @ to_centre) > 0  # faces the centre


def test_fly_through_is_smooth_above_the_terrain_and_seeded(world):
    cameras = fly_through(world, 48, 32, 24, seed=1, clearance=3.0)
    positions = torch.stack([c.position for c in cameras])  # [F, 3]
    ground = world.heightmap() + 1
    for x, y, z in positions.tolist():
        assert 0 < x < 32 and 0 < z < 32
        assert y >= ground[int(x), int(z)] + 3.0 - 1e-9
    steps = (positions - positions.roll(1, dims=0)).norm(dim=-1)  # closed loop
    assert float(steps.max()) < 4.0 * float(steps.mean())
    assert float((positions[:, 1] - positions.roll(1, dims=0)[:, 1]).abs().max()) <= 0.5 + 1e-9
    again = torch.stack([c.position for c in fly_through(world, 48, 32, 24, seed=1)])
    other = torch.stack([c.position for c in fly_through(world, 48, 32, 24, seed=2)])
    assert torch.equal(positions, again) and not torch.equal(positions, other)


def test_view_statistics():
    ids = torch.tensor([[3, 3], [-1, -1]]).unsqueeze(-1)  # half grass, half sky
    depth = torch.tensor([[2.0, 4.0], [math.inf, math.inf]]).unsqueeze(-1)
    hits = RayHits(ids, torch.zeros(2, 2, 1, 3, dtype=torch.long), depth, depth + 1, torch.zeros(2, 2, 1, 3))
    stats = view_statistics(hits)
    assert stats["entropy"] == pytest.approx(math.log(2))
    assert stats["sky_fraction"] == 0.5 and stats["mean_depth"] == pytest.approx(3.0)


def test_random_valid_poses_pass_the_rejection_test(world):
    cameras = random_valid_poses(world, 3, 48, 32, seed=0)
    assert len(cameras) == 3 and all(c.width == 48 and c.height == 32 for c in cameras)
    for camera in cameras:
        origins, directions = camera.resized(32, 21).rays()
        stats = view_statistics(ray_voxel_intersections(world.blocks, origins, directions, max_hits=1))
        assert stats["entropy"] >= 0.75 and stats["mean_depth"] >= 2.0 and stats["sky_fraction"] <= 0.7
    with pytest.raises(RuntimeError, match="no valid view"):
        random_valid_poses(flat_world(), 1, 32, 32, min_entropy=1.5, max_tries=5)  # stone and sky only


# --------------------------------------------------------------------------------------------
# Renders
# --------------------------------------------------------------------------------------------


def test_renders_have_the_right_shapes_ranges_and_sky(world):
    camera = random_valid_poses(world, 1, 40, 30, seed=1)[0]
    out = render_all(world, camera, max_hits=3)
    assert out["hits"].block_ids.shape == (30, 40, 3) and out["labels"].shape == (30, 40)
    for name in ("segmentation", "normals", "photo"):
        image = out[name]
        assert image.shape == (30, 40, 3) and image.dtype == torch.float32, name
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0, name
    sky = ~out["hits"].hit[..., 0]
    assert bool(sky.any() and (~sky).any())
    assert bool(torch.isinf(out["depth"][sky]).all() and torch.isfinite(out["depth"][~sky]).all())
    assert bool((out["segmentation"][sky] == world.label_colors()[0]).all())
    assert bool((out["normals"][sky] == 0).all())
    _, directions = camera.rays()
    torch.testing.assert_close(out["photo"][sky], sky_color(directions[sky], PhotoStyle()).clamp(0, 1))
    labels = out["labels"][~sky]
    assert bool((labels > 0).all()) and len(labels.unique()) >= 2
    grey = depth_to_rgb(out["depth"])
    assert grey.shape == (30, 40, 3) and bool((grey[sky] == 0).all())


def test_photo_shading_follows_the_sun_and_casts_shadows():
    world = flat_world(size=24, height=4)
    blocks = world.blocks.clone()
    blocks[11:13, 8, 11:13] = BLOCK_IDS["stone"]  # a floating slab over the middle of the floor
    world = BlockWorld(blocks)
    camera = PinholeCamera.from_look_at((4.0, 20.0, 4.0), (12.0, 4.0, 12.0), 48, 48, fov_deg=60.0)
    plain = dict(fog_distance=1e9, texture_seed=0)
    overhead = render_all(world, camera, PhotoStyle(sun_direction=(0.0, 1.0, 0.0), **plain))
    grazing = render_all(world, camera, PhotoStyle(sun_direction=(1.0, 0.05, 0.0), shadows=False, **plain))
    floor = (overhead["hits"].voxels[..., 0, 1] == 3) & (overhead["hits"].normals[..., 0, 1] == 1)
    assert float(overhead["photo"][floor].mean()) > float(grazing["photo"][floor].mean()) + 0.1
    # The floor right under the slab is in its shadow; the floor far from it is lit.
    voxels = overhead["hits"].voxels[..., 0, :]
    in_slab = ((voxels[..., 0] - 11.5).abs() < 1) & ((voxels[..., 2] - 11.5).abs() < 1)
    under = floor & in_slab
    far = floor & ((voxels[..., 0] - 12).abs() > 4)
    assert bool(under.any() and far.any())
    assert float(overhead["photo"][under].mean()) < 0.7 * float(overhead["photo"][far].mean())


def test_textures_and_png(tmp_path, world):
    textures = block_textures(world.labels, size=8, seed=1)
    assert textures.shape == (len(world.labels), 2, 8, 8, 3)
    assert float(textures.min()) >= 0 and float(textures.max()) <= 1
    assert torch.equal(textures, block_textures(world.labels, size=8, seed=1))
    grass_top, grass_side = textures[BLOCK_IDS["grass"]]
    assert float(grass_top[..., 1].mean()) > float(grass_side[..., 1].mean())  # green top, dirt sides
    image = torch.rand(6, 5, 3)
    save_png(image, tmp_path / "a.png")
    back = np.asarray(Image.open(tmp_path / "a.png"))
    assert back.shape == (6, 5, 3) and np.abs(back / 255.0 - image.numpy()).max() <= 0.5 / 255 + 1e-6
