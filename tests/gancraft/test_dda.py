"""The windowed DDA against the brute-force reference, including rays shifted ~1e-13 off voxel edges and
corners (issue 18): there the segments inside some voxels are within an ulp of the tolerance, and the old
one-voxel-per-step DDA (which crossed planes closer than the tolerance together) skipped segments the
reference counts. The windowed DDA crosses planes one at a time with the reference's own expressions, so
the two agree exactly; the old DDA is kept (``ray_voxel_intersections_stepwise``) for the benchmark."""

import itertools

import pytest
import torch

from imaginate.data.blockworld import generate_world, orbit
from imaginate.data.blockworld.raycast import (
    ray_voxel_intersections,
    ray_voxel_intersections_reference,
    ray_voxel_intersections_stepwise,
)


def random_blocks(shape, density, seed):
    g = torch.Generator().manual_seed(seed)
    solid = torch.rand(shape, generator=g) < density
    return (solid * torch.randint(1, 6, shape, generator=g)).int()


def near_corner_rays(seed):
    values = [-1.0, 0.0, 0.5, 2.0, 2.5, 4.0, 6.0]
    origins = torch.tensor(list(itertools.product(values, repeat=3)), dtype=torch.float64)  # [343, 3]
    axis = [v for v in itertools.product([-1, 0, 1], repeat=3) if sum(map(abs, v)) == 1]
    diagonal = [(1, 1, 0), (1, -1, 0), (0, 1, -1), (1, 1, 1), (-1, 1, -1), (1, 2, 0), (2, -1, 1), (1, 1, 2),
                (3, 1, -2), (-1, -1, 1)]
    directions = torch.tensor(axis + diagonal, dtype=torch.float64)
    directions = directions / directions.norm(dim=-1, keepdim=True)  # [16, 3]
    o = origins[:, None, :].expand(-1, len(directions), -1)
    d = directions[None, :, :].expand(len(origins), -1, -1)
    shift = torch.randn(o.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1e-13
    return o + shift, d


def same(a, b):
    return torch.equal(a.block_ids, b.block_ids) and torch.equal(a.voxels, b.voxels) and \
        torch.equal(a.entry_depth, b.entry_depth) and torch.equal(a.exit_depth, b.exit_depth) and \
        torch.equal(a.normals, b.normals)


@pytest.mark.parametrize("seed", [5])
def test_rays_1e13_off_edges_and_corners_agree_with_the_reference_exactly(seed):
    blocks = random_blocks((5, 4, 6), 0.35, seed=seed)
    o, d = near_corner_rays(seed)
    slow = ray_voxel_intersections_reference(blocks, o, d, max_hits=6)
    fast = ray_voxel_intersections(blocks, o, d, max_hits=6)
    assert same(fast, slow)  # bit for bit: the same expressions for every segment
    assert int(slow.hit.sum()) > 2000
    # the old DDA differs on this world (3 rays of 5488): the test can see the bug
    old = ray_voxel_intersections_stepwise(blocks, o, d, max_hits=6)
    assert not torch.equal(old.block_ids, slow.block_ids)


@pytest.mark.parametrize("window", [1, 3, 8, 32])
def test_every_window_gives_the_same_hits(window):
    world = generate_world((32, 16, 32), seed=2)
    origins, directions = orbit(world, 4, 24, 24)[1].rays()
    base = ray_voxel_intersections(world.blocks, origins, directions, max_hits=6, window=8)
    assert same(ray_voxel_intersections(world.blocks, origins, directions, max_hits=6, window=window), base)
    old = ray_voxel_intersections_stepwise(world.blocks, origins, directions, max_hits=6)
    assert torch.equal(old.block_ids, base.block_ids) and torch.equal(old.voxels, base.voxels)
    assert float(base.hit[..., 0].float().mean()) > 0.3


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window"):
        ray_voxel_intersections(torch.ones(2, 2, 2, dtype=torch.int32), torch.zeros(1, 3), torch.ones(1, 3), window=0)
