"""Fresh training views every step: each sampled camera passes the rejection rule, the views depend only on
(seed, step, index) (so any process count and a resumed run see the same ones), and over the same number
of steps they cover more of the world's surface corners than a fixed view set."""

import pytest
import torch

from imaginate.data.blockworld import generate_world, is_valid_view, ray_voxel_intersections, view_statistics
from imaginate.systems.gancraft.pseudo_gt import PseudoGTConfig
from imaginate.systems.gancraft.views import ViewSampler, cast_views
from imaginate.systems.gancraft.voxel_field import VoxelCornerFeatures

SIZE = 16


@pytest.fixture(scope="module")
def world():
    return generate_world((24, 16, 24), seed=1)


@pytest.fixture(scope="module")
def sampler(world):
    torch.manual_seed(0)
    translator = PseudoGTConfig(base_channels=8, spade_hidden=8, num_upsamples=2).build_translator(len(world.labels),
                                                                                                   SIZE)
    return ViewSampler(world, SIZE, 4, translator.eval(), random_style=True, seed=3)


def test_sampled_cameras_pass_the_rejection_rule(world, sampler):
    cameras = sampler.cameras(5, list(range(6)))
    for camera in cameras:
        origins, directions = camera.resized(32, 32).rays()  # the sampler's check resolution
        stats = view_statistics(ray_voxel_intersections(world.blocks, origins, directions, max_hits=1))
        assert is_valid_view(stats), stats
    positions = torch.stack([c.position for c in cameras])
    assert float(torch.cdist(positions, positions).max()) > 2.0  # not the same camera six times


def test_views_depend_only_on_seed_step_and_index(sampler):
    pair = sampler.views(7, [0, 1])
    single = sampler.views(7, [1])  # rank 1 of 2 processes
    for key in ("origins", "directions", "block_ids", "entry_depth", "labels", "pseudo_gt"):
        torch.testing.assert_close(pair[key][1:], single[key], msg=key)
    other_step = sampler.views(8, [1])
    assert not torch.equal(other_step["origins"], single["origins"])
    assert pair["pseudo_gt"].shape == (2, 3, SIZE, SIZE) and pair["labels"].shape == (2, SIZE, SIZE)
    assert float(pair["pseudo_gt"].abs().max()) <= 1.0


def corners_seen(world, views):
    field = VoxelCornerFeatures(world, 1)
    voxels = views["voxels"][..., 0, :][views["block_ids"][..., 0] >= 0]  # [P, 3] the visible (first-hit) blocks
    rows = field.corner_rows(voxels)
    return set(rows[rows >= 0].tolist()), field.num_corners


def test_fresh_views_cover_more_surface_corners_than_a_fixed_set(sampler):
    world = generate_world((64, 24, 64), seed=2)  # big enough that 16 views do not see all of it
    sampler = ViewSampler(world, SIZE, 1, sampler.translator, random_style=False, seed=3)
    steps, batch, fixed_views = 8, 2, 4
    fresh = [sampler.cameras(step, list(range(batch))) for step in range(steps)]
    seen_fresh, total = corners_seen(world, cast_views(world, [c for cams in fresh for c in cams], 1))
    # a fixed set of 4 views, cycled over the same 8 steps x 2 views, sees only its own 4
    seen_fixed, _ = corners_seen(world, cast_views(world, sampler.cameras(0, list(range(fixed_views))), 1))
    assert len(seen_fresh) > 1.5 * len(seen_fixed), (len(seen_fresh), len(seen_fixed), total)
