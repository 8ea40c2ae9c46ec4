"""Block worlds (generation, files) and the ray-voxel DDA against its brute-force reference."""

import itertools
import math

import numpy as np
import pytest
import torch

from imaginate.data.blockworld import (
    BLOCK_IDS,
    DEFAULT_LABELS,
    BlockWorld,
    generate_world,
    load_world,
    ray_voxel_intersections,
    ray_voxel_intersections_reference,
    save_world,
)
from imaginate.data.errors import DataError


def random_blocks(shape, density, seed):
    g = torch.Generator().manual_seed(seed)
    solid = torch.rand(shape, generator=g) < density
    return (solid * torch.randint(1, 6, shape, generator=g)).int()


def assert_same_hits(fast, slow, atol=1e-4):
    assert torch.equal(fast.block_ids, slow.block_ids)
    assert torch.equal(fast.voxels, slow.voxels)
    hit = slow.block_ids >= 0
    assert torch.equal(torch.isinf(fast.entry_depth), ~hit)
    dtype = fast.entry_depth.dtype
    torch.testing.assert_close(fast.entry_depth[hit], slow.entry_depth[hit].to(dtype), atol=atol, rtol=0)
    torch.testing.assert_close(fast.exit_depth[hit], slow.exit_depth[hit].to(dtype), atol=atol, rtol=0)


# --------------------------------------------------------------------------------------------
# DDA vs brute force
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dda_matches_brute_force_on_random_rays(seed):
    g = torch.Generator().manual_seed(100 + seed)
    shape = tuple(torch.randint(3, 9, (3,), generator=g).tolist())
    blocks = random_blocks(shape, 0.25, seed)
    size = torch.tensor(shape, dtype=torch.float64)
    origins = torch.rand(300, 3, generator=g, dtype=torch.float64) * (size + 6) - 3  # inside and outside
    directions = torch.randn(300, 3, generator=g, dtype=torch.float64)
    fast = ray_voxel_intersections(blocks, origins, directions, max_hits=4)
    slow = ray_voxel_intersections_reference(blocks, origins, directions, max_hits=4)
    assert_same_hits(fast, slow, atol=1e-9)
    assert torch.equal(fast.normals, slow.normals)
    assert fast.hit.any() and (~fast.hit).any()  # the test saw both hits and misses
    # float32 rays give the same blocks as the float64 reference.
    fast32 = ray_voxel_intersections(blocks, origins.float(), directions.float(), max_hits=4)
    assert_same_hits(fast32, slow)


def test_dda_matches_brute_force_on_axis_edge_and_corner_rays():
    blocks = random_blocks((5, 4, 6), 0.35, seed=7)
    # Origins on voxel corners, edges and faces (integers), at centres (halves), and outside the grid.
    values = [-1.0, 0.0, 0.5, 2.0, 2.5, 4.0, 6.0]
    origins = torch.tensor(list(itertools.product(values, repeat=3)), dtype=torch.float64)  # [343, 3]
    axis_dirs = [v for v in itertools.product([-1, 0, 1], repeat=3) if sum(map(abs, v)) == 1]
    diagonal_dirs = [(1, 1, 0), (1, -1, 0), (0, 1, -1), (1, 1, 1), (-1, 1, -1), (1, 2, 0), (2, -1, 1)]
    directions = torch.tensor(axis_dirs + diagonal_dirs, dtype=torch.float64)
    directions = directions / directions.norm(dim=-1, keepdim=True)  # [13, 3]
    o = origins[:, None, :].expand(-1, len(directions), -1)
    d = directions[None, :, :].expand(len(origins), -1, -1)
    fast = ray_voxel_intersections(blocks, o, d, max_hits=3)
    slow = ray_voxel_intersections_reference(blocks, o, d, max_hits=3)
    assert fast.block_ids.shape == (343, 13, 3)
    assert_same_hits(fast, slow, atol=1e-9)
    assert int(fast.hit[..., 0].sum()) > 500


def test_near_and_far_limit_the_hits():
    g = torch.Generator().manual_seed(3)
    blocks = random_blocks((6, 6, 6), 0.3, seed=3)
    origins = torch.rand(100, 3, generator=g, dtype=torch.float64) * 6
    directions = torch.randn(100, 3, generator=g, dtype=torch.float64)
    fast = ray_voxel_intersections(blocks, origins, directions, max_hits=3, near=0.7, far=4.0)
    slow = ray_voxel_intersections_reference(blocks, origins, directions, max_hits=3, near=0.7, far=4.0)
    assert_same_hits(fast, slow, atol=1e-9)
    depths = fast.entry_depth[fast.hit]
    assert bool((depths >= 0.7).all() and (depths < 4.0).all())


def test_single_block_hit_is_exact():
    blocks = torch.zeros(6, 6, 6, dtype=torch.int32)
    blocks[2, 3, 4] = BLOCK_IDS["stone"]
    origin, direction = torch.tensor([2.5, 3.5, -3.0]), torch.tensor([0.0, 0.0, 1.0])
    hits = ray_voxel_intersections(blocks, origin, direction, max_hits=2)
    assert hits.block_ids.tolist() == [BLOCK_IDS["stone"], -1]
    assert hits.voxels[0].tolist() == [2, 3, 4]
    assert hits.entry_depth[0].item() == pytest.approx(7.0) and hits.exit_depth[0].item() == pytest.approx(8.0)
    assert hits.normals[0].tolist() == [0.0, 0.0, -1.0]  # entered through the block's -z face
    assert math.isinf(hits.entry_depth[1].item()) and hits.voxels[1].tolist() == [-1, -1, -1]


def test_ray_starting_inside_a_block_hits_it_at_depth_zero():
    blocks = torch.ones(3, 3, 3, dtype=torch.int32)
    origin, direction = torch.tensor([1.25, 1.5, 1.5]), torch.tensor([1.0, 0.0, 0.0])
    hits = ray_voxel_intersections(blocks, origin, direction, max_hits=3)
    assert hits.voxels.tolist() == [[1, 1, 1], [2, 1, 1], [-1, -1, -1]]
    assert hits.entry_depth[0].item() == 0.0 and hits.exit_depth[0].item() == pytest.approx(0.75)
    assert hits.normals[0].tolist() == [0.0, 0.0, 0.0] and hits.normals[1].tolist() == [-1.0, 0.0, 0.0]


def test_rays_that_miss_or_leave_the_world():
    blocks = torch.ones(4, 4, 4, dtype=torch.int32)
    origins = torch.tensor([[-1.0, 2.0, 2.0], [5.0, 5.0, 5.0], [2.0, 10.0, 2.0]])
    directions = torch.tensor([[-1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # away, away, above
    hits = ray_voxel_intersections(blocks, origins, directions, max_hits=2)
    assert (hits.block_ids == -1).all() and torch.isinf(hits.entry_depth).all()


def test_hits_are_ordered_and_a_prefix_of_more_hits():
    world = generate_world((20, 16, 20), seed=1)
    g = torch.Generator().manual_seed(0)
    origins = torch.tensor([10.0, 15.5, 10.0]).expand(200, 3)
    directions = torch.randn(200, 3, generator=g) * torch.tensor([1.0, 0.3, 1.0])
    directions[:, 1] -= 0.5  # mostly downwards
    many = ray_voxel_intersections(world.blocks, origins, directions, max_hits=6)
    few = ray_voxel_intersections(world.blocks, origins, directions, max_hits=2)
    assert torch.equal(few.block_ids, many.block_ids[:, :2])
    both = many.hit[:, 1:] & many.hit[:, :-1]
    assert bool((many.entry_depth[:, 1:][both] >= many.exit_depth[:, :-1][both] - 1e-5).all())
    assert bool((many.exit_depth[many.hit] > many.entry_depth[many.hit]).all())
    assert int(many.hit[:, 5].sum()) > 0  # some rays cross six blocks (leaves, water, ground)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dda_on_cuda_matches_cpu():
    world = generate_world((32, 24, 32), seed=0)
    g = torch.Generator().manual_seed(0)
    origins = torch.rand(4000, 3, generator=g) * torch.tensor([32.0, 24.0, 32.0])
    directions = torch.randn(4000, 3, generator=g)
    cpu = ray_voxel_intersections(world.blocks, origins, directions, max_hits=4)
    gpu = ray_voxel_intersections(world.blocks.cuda(), origins.cuda(), directions.cuda(), max_hits=4)
    assert_same_hits(gpu.to("cpu"), cpu)


# --------------------------------------------------------------------------------------------
# Worlds
# --------------------------------------------------------------------------------------------


def test_generation_is_deterministic_by_seed():
    a, b = generate_world((24, 16, 24), seed=3), generate_world((24, 16, 24), seed=3)
    assert torch.equal(a.blocks, b.blocks)
    assert not torch.equal(a.blocks, generate_world((24, 16, 24), seed=4).blocks)
    assert a.blocks.dtype == torch.int32 and a.shape == (24, 16, 24)


def test_generated_world_has_the_expected_blocks():
    world = generate_world((64, 32, 64), seed=0)
    counts = world.counts()
    for name in ("stone", "dirt", "grass", "sand", "water", "snow", "wood", "leaves"):
        assert counts[name] > 0, name
    ys = torch.arange(32).view(1, -1, 1).expand_as(world.blocks)
    water_top = int(ys[world.blocks == BLOCK_IDS["water"]].max())
    snow_bottom = int(ys[world.blocks == BLOCK_IDS["snow"]].min())
    assert water_top < snow_bottom  # the sea is below the snow line
    # Water never floats on air, and every wood block stands on something.
    below = world.blocks[:, :-1, :]
    assert not bool(((world.blocks[:, 1:, :] == BLOCK_IDS["water"]) & (below == 0)).any())
    assert not bool(((world.blocks[:, 1:, :] == BLOCK_IDS["wood"]) & (below == 0)).any())
    heights = world.heightmap()
    assert heights.shape == (64, 64) and int(heights.min()) >= 1


def test_block_world_rejects_bad_grids():
    with pytest.raises(ValueError, match="0..9"):
        BlockWorld(torch.full((2, 2, 2), 10))
    with pytest.raises(ValueError, match="integer"):
        BlockWorld(torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="X, Y, Z"):
        BlockWorld(torch.zeros(2, 2, dtype=torch.int32))


@pytest.mark.parametrize("layout", ["xyz", "yxz"])
def test_save_load_round_trip(tmp_path, layout):
    world = generate_world((12, 10, 8), seed=5)
    path = tmp_path / "world.npy"
    save_world(world, path, layout=layout)
    stored = np.load(path)
    assert stored.dtype == np.int32
    assert stored.shape == ((12, 10, 8) if layout == "xyz" else (10, 12, 8))
    assert torch.equal(load_world(path, layout=layout).blocks, world.blocks)


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content, allow_pickle=True)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (np.zeros((4, 4, 4), dtype=np.float32), "integer block ids"),
        (np.zeros((4, 4), dtype=np.int32), "3-D grid"),
        (np.full((4, 4, 4), 99, dtype=np.int64), "outside the label table"),
        (np.full((4, 4, 4), -1, dtype=np.int16), "outside the label table"),
        (np.array([{"a": 1}], dtype=object), "not a readable .npy"),
        ("this is not an array\n", "not a readable .npy"),
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<i4', 'fortran_order': False, 'shape': (4, 4, 4), }",
         "not a readable .npy"),
    ],
    ids=["float", "2d", "id-too-large", "negative", "pickle", "text", "truncated"],
)
def test_malformed_world_files_give_one_line_errors(tmp_path, content, message):
    path = _write(tmp_path / "bad.npy", content)
    with pytest.raises(DataError, match=message) as info:
        load_world(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_world_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_world(tmp_path / "nowhere.npy")
    assert DEFAULT_LABELS[0].name == "air"
