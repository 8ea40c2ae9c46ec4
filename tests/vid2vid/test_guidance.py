import pytest
import torch

from imaginate.data.blockworld import BlockWorld, PinholeCamera, generate_world, make_label_video
from imaginate.data.blockworld.guidance import (
    PointStore,
    cell_keys,
    key_cell_centres,
    project,
    resize_guidance,
    snap_to_voxel_faces,
    splat,
    unproject,
)
from imaginate.data.blockworld.label_video import render_label_video


@pytest.fixture(scope="module")
def world():
    return generate_world((40, 24, 40), seed=7)


@pytest.fixture(scope="module")
def video(world):
    return make_label_video(world, "revisit", 12, 24, 48, style_seed=2, path_seed=0)


def cell_colours(keys):
    """A colour that is a fixed function of the cell (so every pixel of a cell has the same one)."""
    generator = torch.Generator().manual_seed(0)
    table = torch.rand(4099, 3, generator=generator)
    return table[(keys % 4099).clamp(min=0)]


def frame_of(video, t):
    return video.depth[t:t + 1], video.intrinsics[t:t + 1], video.cam_to_world[t:t + 1]


def test_unproject_then_project_returns_each_pixel(video, world):
    points = unproject(video.depth, video.intrinsics, video.cam_to_world)  # [T, H, W, 3]
    pixels, depth = project(points, video.intrinsics, video.cam_to_world)
    t, h, w = video.depth.shape
    rows, cols = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    seen = video.depth > 0
    assert float((pixels[..., 0] - cols)[seen].abs().max()) < 1e-3
    assert float((pixels[..., 1] - rows)[seen].abs().max()) < 1e-3
    torch.testing.assert_close(depth[seen], video.depth[seen], rtol=1e-5, atol=1e-5)
    # on block worlds the points lie on block faces, and snapping puts them inside the block hit
    on_plane = (points - points.round()).abs().amin(dim=-1)[seen]
    assert float(on_plane.max()) < 1e-3
    snapped = snap_to_voxel_faces(points, video.cam_to_world, 8)
    voxel = torch.floor(snapped).long()
    ids = world.blocks[voxel[..., 0].clamp(0, 39), voxel[..., 1].clamp(0, 23), voxel[..., 2].clamp(0, 39)]
    assert float((ids[seen] == video.labels[seen]).float().mean()) > 0.999
    assert bool(((snapped * 8 - 0.5) - (snapped * 8 - 0.5).round()).abs().max() < 1e-3)  # cell centres


def test_keys_round_trip_and_separate_sequences():
    points = torch.tensor([[[0.1, -5.2, 3.9], [1000.0, 2.0, -3.0]], [[0.1, -5.2, 3.9], [1e9, 0.0, 0.0]]])
    keys = cell_keys(points, 0.25, torch.ones(2, 2, dtype=torch.bool))
    assert keys[0, 0] != keys[1, 0] and int(keys[1, 1]) == -1  # out of range -> no key
    sequence, centres = key_cell_centres(keys[keys >= 0], 0.25)
    assert sequence.tolist() == [0, 0, 1]
    torch.testing.assert_close(centres, torch.tensor([[0.125, -5.125, 3.875], [1000.125, 2.125, -2.875],
                                                      [0.125, -5.125, 3.875]]))


def test_guidance_at_a_coloured_pose_reproduces_that_frame(video):
    store = PointStore(1, voxel_faces=True, cell_size=0.125)
    keys = store.pixel_keys(*frame_of(video, 0))[0]
    rgb = cell_colours(keys).T.reshape(1, 3, *video.size)
    store.update(rgb, *frame_of(video, 0))
    (guidance, mask), (small, small_mask) = store.render(*frame_of(video, 0), [video.size, (12, 24)])
    seen = (video.depth[0] > 0)[None, None]
    assert torch.equal(mask.bool(), seen)  # every surface pixel is guided, sky is not
    assert torch.equal(guidance * mask, rgb * mask)
    assert small.shape == (1, 3, 12, 24) and small_mask.shape == (1, 1, 12, 24)
    # the real photo too: wherever the mask is set the guidance is (nearly) the frame
    store = PointStore(1, voxel_faces=True, cell_size=1 / 32)
    store.update(video.photo[:1], *frame_of(video, 0))
    guidance, mask = store.render(*frame_of(video, 0), [video.size])[0]
    assert float(((guidance - video.photo[:1]).abs() * mask).sum() / mask.sum() / 3) < 0.01


def test_revisit_pose_gets_the_outbound_colours_exactly(video):
    store = PointStore(1, voxel_faces=True)
    out, back = video.revisit_pairs[0]
    for t in range(back):
        store.update(video.photo[t:t + 1], *frame_of(video, t))
    expected = PointStore(1, voxel_faces=True)
    expected.update(video.photo[out:out + 1], *frame_of(video, out))
    guidance, mask = store.render(*frame_of(video, back), [video.size])[0]
    reference, _ = expected.render(*frame_of(video, out), [video.size])[0]
    assert torch.equal(mask[0, 0].bool(), video.depth[back] > 0)
    assert torch.equal(guidance, reference)  # first colouring wins: later frames changed nothing


def test_first_colouring_wins_and_average(video):
    depth, k, pose = frame_of(video, 3)
    keys = PointStore(1, voxel_faces=True).pixel_keys(depth, k, pose)[0]
    first = cell_colours(keys).T.reshape(1, 3, *video.size)
    second = cell_colours(keys + 17).T.reshape(1, 3, *video.size)
    third = cell_colours(keys + 41).T.reshape(1, 3, *video.size)
    results = {}
    for mode in ("first", "average"):
        store = PointStore(1, mode=mode, voxel_faces=True)
        for rgb in (first, second, third):
            store.update(rgb, depth, k, pose)
        results[mode], mask = store.render(depth, k, pose, [video.size])[0]
        assert int(store.counts.max()) == (1 if mode == "first" else 3)
    m = mask.bool().expand_as(first)
    torch.testing.assert_close(results["first"][m], first[m], rtol=0, atol=0)
    torch.testing.assert_close(results["average"][m], ((first + second + third) / 3)[m], rtol=0, atol=1e-6)


def test_a_wall_in_front_hides_the_points_behind_it():
    blocks = torch.zeros(24, 12, 16, dtype=torch.int32)
    blocks[:, 0, :] = 1  # floor
    blocks[10, 1:5, :] = 2  # a wall of height 4 across the whole floor
    world = BlockWorld(blocks)
    above = PinholeCamera.from_look_at((4.0, 9.0, 8.0), (13.0, 0.0, 8.0), 64, 48)  # sees the wall and beyond
    facing = PinholeCamera.from_look_at((5.0, 2.5, 8.0), (16.0, 1.0, 8.0), 64, 48)  # the wall fills the middle
    video = render_label_video(world, [above, facing])
    colours = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # floor red, wall blue
    rgb = colours[video.labels].permute(0, 3, 1, 2)
    points = unproject(video.depth, video.intrinsics, video.cam_to_world)
    beyond = (video.depth[0] > 0) & (points[0, ..., 0] > 11)
    assert int(beyond.sum()) > 100  # the first view sees floor behind the wall
    wall = video.labels[1] == 2
    assert float(wall.float().mean()) > 0.3

    for mode in ("depth", "splat"):
        store = PointStore(1, voxel_faces=True, cell_size=0.25)
        store.update(rgb[:1], *frame_of(video, 0))
        if mode == "depth":
            guidance, mask = store.render(*frame_of(video, 1), [(48, 64)])[0]
        else:
            guidance, mask = store.render_splat(video.intrinsics[1:], video.cam_to_world[1:], (48, 64), [(48, 64)])[0]
        on_wall = wall & mask[0, 0].bool()
        assert float(on_wall.float().sum()) > 0.5 * float(wall.float().sum())
        assert float(guidance[0, 0][on_wall].max()) == 0.0, mode  # no red floor shows through the wall
        assert float(guidance[0, 2][on_wall].min()) == 1.0, mode

    # without the wall in the store, the same floor points do reach those pixels (the test can fail)
    store = PointStore(1, voxel_faces=True, cell_size=0.25)
    store.update(rgb[:1] * (video.labels[:1] == 1), *frame_of(video, 0))
    points, colours_, valid = store.stored_points()
    floor_only = valid & (colours_[..., 0] > 0)
    guidance, mask = splat(points, colours_, video.intrinsics[1:], video.cam_to_world[1:], 48, 64, floor_only)
    assert float((mask[0, 0].bool() & wall).float().sum()) > 20


def test_splat_z_buffer_keeps_the_nearest_point():
    k = torch.tensor([[[10.0, 0.0, 4.0], [0.0, 10.0, 4.0], [0.0, 0.0, 1.0]]])
    pose = torch.eye(4)[None]
    points = torch.tensor([[[0.05, 0.05, 2.0], [0.05, 0.05, 1.0], [0.1, 0.1, 3.0]]])  # two on one pixel
    colours = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    image, mask = splat(points, colours, k, pose, 8, 8, hole_radius=0)
    assert mask.sum() == 1 and image[0, :, 4, 4].tolist() == [0.0, 1.0, 0.0]  # the far points are hidden
    image, mask = splat(points[:, 2:], colours[:, 2:], k, pose, 8, 8, hole_radius=0)
    assert image[0, :, 4, 4].tolist() == [0.0, 0.0, 1.0]


def test_batched_sequences_do_not_mix(video):
    depth, k, pose = (torch.cat([a, a]) for a in frame_of(video, 2))
    rgb = torch.stack([torch.zeros(3, *video.size), torch.ones(3, *video.size)])
    store = PointStore(2, voxel_faces=True)
    store.update(rgb, depth, k, pose)
    guidance, mask = store.render(depth, k, pose, [video.size])[0]
    assert float(guidance[0].max()) == 0.0 and float(guidance[1][mask[1].expand(3, -1, -1).bool()].min()) == 1.0
    assert store.num_points().tolist()[0] == store.num_points().tolist()[1] > 0


def test_memory_is_capped_and_keeps_recent_cells(video):
    store = PointStore(1, voxel_faces=True, max_points=300)
    for t in range(6):
        store.update(video.photo[t:t + 1], *frame_of(video, t))
        assert len(store) <= 300
    assert int(store.last_seen.min()) >= 4  # only the latest frames' cells remain
    store.reset()
    assert len(store) == 0 and store.render(*frame_of(video, 0), [video.size])[0][1].sum() == 0


def test_resize_guidance_averages_guided_pixels_only():
    image = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    image[0, :, 0, 0], mask[0, 0, 0, 0] = 0.8, 1.0
    small, small_mask = resize_guidance(image, mask, (2, 2))
    assert small[0, 0, 0, 0] == pytest.approx(0.8) and small_mask.sum() == 1
    big, big_mask = resize_guidance(image, mask, (8, 8))
    assert big_mask.sum() == 4


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="mode"):
        PointStore(1, mode="last")
    with pytest.raises(ValueError, match="cell_size"):
        PointStore(1, voxel_faces=True, cell_size=0.3)
    store = PointStore(2)
    with pytest.raises(ValueError, match="2 sequences"):
        store.update(torch.zeros(1, 3, 4, 4), torch.ones(1, 4, 4), torch.eye(3)[None], torch.eye(4)[None])


def test_sky_is_remembered_by_direction_only_when_asked(video):
    out, back = video.revisit_pairs[0]
    sky = video.depth[back] == 0
    assert bool(sky.any())
    for remember_sky in (False, True):
        store = PointStore(1, voxel_faces=True, sky=remember_sky)
        for t in range(back):
            store.update(video.photo[t:t + 1], *frame_of(video, t))
        guidance, mask = store.render(*frame_of(video, back), [video.size])[0]
        sky_guided = mask[0, 0][sky].bool()
        assert bool(sky_guided.all()) if remember_sky else not bool(sky_guided.any())
        if remember_sky:  # the revisited sky is the outbound frame's sky
            torch.testing.assert_close(guidance[0][:, sky], video.photo[out][:, sky], rtol=0, atol=1e-6)
        points, _, valid = store.stored_points()
        assert int(valid.sum()) == int((store.keys >> 36 & (2**18 - 1) != 2**18 - 1).sum())
    # the sky is at infinity: moving the camera without turning it keeps the sky's keys
    depth, k, pose = frame_of(video, back)
    moved = pose.clone()
    moved[:, :3, 3] += torch.tensor([3.0, 1.0, -2.0])
    store = PointStore(1, sky=True)
    assert torch.equal(store.pixel_keys(torch.zeros_like(depth), k, pose),
                       store.pixel_keys(torch.zeros_like(depth), k, moved))
