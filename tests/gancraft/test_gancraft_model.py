"""GANcraft's neural renderer: the voxel corner field against ``grid_sample``, sampling inside the hit
blocks, volume rendering against its loop reference, and the generator at its tiny and paper sizes."""

import itertools
import math

import pytest
import torch

from imaginate.data.blockworld import (
    BLOCK_IDS,
    BlockWorld,
    PinholeCamera,
    generate_world,
    random_valid_poses,
    ray_voxel_intersections,
)
from imaginate.systems.gancraft.model import GANcraftGenerator, GANcraftModelConfig
from imaginate.systems.gancraft.networks import gaussian_kl
from imaginate.systems.gancraft.voxel_field import (
    CORNER_OFFSETS,
    VoxelCornerFeatures,
    positional_encoding,
    sample_in_hits,
    trilinear_interpolate,
    trilinear_reference,
    volume_render_weights,
    volume_render_weights_reference,
)


def random_blocks(shape, density, seed):
    g = torch.Generator().manual_seed(seed)
    solid = torch.rand(shape, generator=g) < density
    return (solid * torch.randint(1, 6, shape, generator=g)).int()


def points_in_solid_blocks(blocks, count, seed):
    """``count`` random points inside random solid blocks: ``(points [N, 3] float64, voxels [N, 3])``."""
    g = torch.Generator().manual_seed(seed)
    solid = torch.nonzero(blocks != 0)
    voxels = solid[torch.randint(len(solid), (count,), generator=g)]
    return voxels.double() + torch.rand(count, 3, generator=g, dtype=torch.float64), voxels


@pytest.fixture(scope="module")
def world():
    return generate_world((24, 16, 24), seed=1)


@pytest.fixture(scope="module")
def camera(world):
    return random_valid_poses(world, 1, 32, 32, seed=3)[0]


# --------------------------------------------------------------------------------------------
# Corner features and trilinear interpolation
# --------------------------------------------------------------------------------------------


def test_trilinear_matches_grid_sample_float64():
    blocks = random_blocks((5, 4, 6), 0.5, seed=0)  # air and solid mixed: the table is sparse
    field = VoxelCornerFeatures(blocks, dims=5).double()
    assert field.num_corners < 6 * 5 * 7
    points, voxels = points_in_solid_blocks(blocks, 200, seed=1)
    fast = field(points, voxels)  # [N, 5]
    dense = field.dense_grid()  # [5, 6, 5, 7]
    slow = trilinear_reference(dense, points)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    # The same gradient reaches the feature table through both paths.
    w = torch.randn_like(fast)
    grad_fast = torch.autograd.grad((fast * w).sum(), field.features)[0]
    grad_slow = torch.autograd.grad((trilinear_reference(field.dense_grid(), points) * w).sum(), field.features)[0]
    torch.testing.assert_close(grad_fast, grad_slow, rtol=0, atol=1e-12)
    assert grad_fast.abs().sum() > 0


def test_trilinear_gradcheck():
    g = torch.Generator().manual_seed(0)
    corner_features = torch.randn(6, 8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    local = (0.05 + 0.9 * torch.rand(6, 3, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(trilinear_interpolate, (corner_features, local))


def test_trilinear_at_a_corner_is_that_corners_feature():
    g = torch.Generator().manual_seed(0)
    corner_features = torch.randn(8, 8, 4, generator=g)
    local = CORNER_OFFSETS.float()  # point n sits on corner n
    out = trilinear_interpolate(corner_features, local)
    assert torch.equal(out, corner_features[torch.arange(8), torch.arange(8)])
    # Through the table: a block corner gets the feature row of that corner, from either block.
    blocks = torch.zeros(3, 3, 3, dtype=torch.int32)
    blocks[1, 1, 1] = blocks[2, 1, 1] = 1
    field = VoxelCornerFeatures(blocks, dims=4)
    corner = torch.tensor([[2, 1, 2]])  # shared by blocks (1, 1, 1) and (2, 1, 1)
    row = field.corner_index[2, 1, 2].long()
    for voxel in ([1, 1, 1], [2, 1, 1]):
        out = field(corner.double(), torch.tensor([voxel]))
        assert torch.equal(out[0], field.features[row].detach())


def test_corner_table_holds_exactly_the_corners_of_solid_blocks():
    blocks = torch.zeros(4, 3, 5, dtype=torch.int32)
    solid = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (3, 2, 4)]  # an L of three blocks and one in the far corner
    for x, y, z in solid:
        blocks[x, y, z] = BLOCK_IDS["stone"]
    field = VoxelCornerFeatures(BlockWorld(blocks), dims=2)
    expected = {(x + dx, y + dy, z + dz) for x, y, z in solid for dx, dy, dz in itertools.product((0, 1), repeat=3)}
    assert len(expected) == 8 + 4 + 4 + 8  # the L shares two faces
    table = field.corner_index
    assert table.shape == (5, 4, 6)
    assert {tuple(c) for c in torch.nonzero(table >= 0).tolist()} == expected
    assert field.num_corners == len(expected)
    assert sorted(table[table >= 0].tolist()) == list(range(len(expected)))
    assert field.features.min() >= -1 and field.features.max() <= 1  # U(-1, 1)


def test_positional_encoding_values():
    x = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    out = positional_encoding(x, 2, include_input=True)  # [1, (2 * 2 + 1) * 2]
    a = math.pi * torch.tensor([0.25, -0.5], dtype=torch.float64)
    expected = torch.cat([torch.sin(a), torch.cos(a), torch.sin(2 * a), torch.cos(2 * a), x[0]])
    torch.testing.assert_close(out[0], expected)


# --------------------------------------------------------------------------------------------
# Sampling and volume rendering
# --------------------------------------------------------------------------------------------


def test_volume_rendering_weights():
    g = torch.Generator().manual_seed(0)
    sigma = torch.rand(50, 12, generator=g, dtype=torch.float64) * 5
    delta = torch.rand(50, 12, generator=g, dtype=torch.float64)
    delta[:, -3:] = 0  # masked samples
    weights = volume_render_weights(sigma, delta)
    assert weights.min() >= 0 and weights.max() <= 1
    assert (weights[:, -3:] == 0).all()
    total = weights.sum(dim=-1)
    assert (total <= 1).all()
    torch.testing.assert_close(total, 1 - torch.exp(-(sigma * delta).sum(dim=-1)))
    torch.testing.assert_close(weights, volume_render_weights_reference(sigma, delta))
    # A very dense voxel is opaque: all weight on its first sample, nothing left for the sky.
    opaque = volume_render_weights(torch.full((1, 4), 1e4, dtype=torch.float64), torch.full((1, 4), 0.25))
    assert 1 - opaque.sum() < 1e-12 and opaque[0, 0] > 1 - 1e-12


def test_samples_lie_inside_hits_and_respect_truncation(world, camera):
    origins, directions = camera.rays(dtype=torch.float64)
    directions = 2.5 * directions  # depths are ray parameters; distances are in world units
    hits = ray_voxel_intersections(world.blocks, origins, directions, max_hits=6).reshape(-1)
    directions = directions.reshape(-1, 3)
    g = torch.Generator().manual_seed(0)
    samples = sample_in_hits(hits, directions, 16, truncate=3.0, generator=g)
    hit_any = hits.hit.any(dim=-1)
    assert hit_any.any() and (~hit_any).any()  # the view has ground and sky
    assert torch.equal(samples.valid, hit_any[:, None].expand(-1, 16))
    valid, idx = samples.valid, samples.hit_index
    assert hits.hit.gather(1, idx)[valid].all()
    entry, leave = hits.entry_depth.gather(1, idx), hits.exit_depth.gather(1, idx)
    eps = 1e-9
    assert (samples.depth[valid] >= entry[valid] - eps).all() and (samples.depth[valid] <= leave[valid] + eps).all()
    # Distance travelled inside blocks before each sample: at most 3 voxel lengths.
    speed = directions.norm(dim=-1, keepdim=True)
    length = torch.where(hits.hit, (hits.exit_depth - hits.entry_depth) * speed, 0.0)
    before = (length.cumsum(dim=-1) - length).gather(1, idx)
    inside = before + (samples.depth - entry) * speed
    assert (inside[valid] <= 3.0 + eps).all() and (inside[valid] >= -eps).all()
    assert (inside[valid].reshape(-1, 16).diff(dim=-1) >= 0).all()  # stratified: ordered along the ray
    torch.testing.assert_close(samples.delta.sum(dim=-1), length.sum(dim=-1).clamp(max=3.0))
    assert (samples.delta[~valid] == 0).all()


def test_sampling_skips_air_gaps_and_truncates_in_a_column():
    blocks = torch.zeros(10, 10, 3, dtype=torch.int32)
    blocks[2, 5, 1] = blocks[5, 5, 1] = BLOCK_IDS["stone"]  # two blocks with air between them
    blocks[8, :, 0] = BLOCK_IDS["dirt"]  # a deep column
    origins = torch.tensor([[0.0, 5.5, 1.5], [8.5, 10.0, 0.5], [0.0, 0.5, 2.5]], dtype=torch.float64)
    directions = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [1.0, 0, 0]], dtype=torch.float64)
    hits = ray_voxel_intersections(blocks, origins, directions, max_hits=6)
    samples = sample_in_hits(hits, directions, 8, truncate=3.0, deterministic=True)
    # Ray 0: 2 blocks of inside length 1 -> 4 samples in each, none in the gap (3, 5).
    assert hits.hit[0].sum() == 2
    depth0 = samples.depth[0]
    assert ((depth0 > 2) & (depth0 < 3)).sum() == 4 and ((depth0 > 5) & (depth0 < 6)).sum() == 4
    assert torch.allclose(samples.delta[0], torch.full((8,), 2 / 8, dtype=torch.float64))
    # Ray 1 goes down the 10-block column: samples stop 3 blocks below its top.
    assert hits.hit[1].all()
    assert (samples.depth[1] > 0).all() and (samples.depth[1] < 3).all() and samples.depth[1].max() > 2.5
    # Ray 2 hits nothing.
    assert not samples.valid[2].any() and (samples.delta[2] == 0).all()


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


def test_tiny_generator_renders_and_backpropagates_to_corner_features(world, camera):
    torch.manual_seed(0)
    model = GANcraftGenerator(GANcraftModelConfig.tiny(), world)
    origins, directions = camera.rays()
    origins, directions = origins[None], directions[None]  # [1, 32, 32, 3]
    hits = model.cast_rays(origins, directions)
    out = model(hits, origins, directions, z=model.sample_z(1))
    rgb = out["rgb"]
    assert rgb.shape == (1, 3, 32, 32) and torch.isfinite(rgb).all() and rgb.abs().max() <= 1
    assert out["features"].shape == (1, 16, 32, 32)
    assert out["weights"].shape == (1, 32, 32, 8)
    total = out["weights"].sum(dim=-1)
    torch.testing.assert_close(total + out["sky_fraction"][:, 0], torch.ones_like(total))
    sky = ~hits.hit[..., 0]
    assert (out["sky_fraction"][:, 0][sky] == 1).all() and (out["sky_fraction"][:, 0][~sky] < 0.9).any()
    assert torch.equal(out["labels"], hits.block_ids[..., 0].clamp(min=0))

    (rgb.square().mean() + out["features"].square().mean()).backward()
    grad = model.voxel_features.features.grad
    assert grad is not None and torch.isfinite(grad).all()
    touched = torch.nonzero(grad.abs().sum(dim=1) > 0).squeeze(1)
    assert len(touched) > 0
    # Only the corners of blocks the rays sampled receive gradient.
    hit_voxels = hits.voxels[hits.hit]
    allowed = model.voxel_features.corner_rows(hit_voxels).flatten()
    assert set(touched.tolist()) <= set(allowed.tolist())
    for name in ("render_mlp", "sky_mlp", "render_cnn", "style_mlp"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_generator_input_forms_and_sky_only_views(world, camera):
    torch.manual_seed(0)
    model = GANcraftGenerator(GANcraftModelConfig.tiny(), world).eval()
    origins, directions = (t[None] for t in camera.rays())
    hits = model.cast_rays(origins, directions)
    code = model.style_code(model.sample_z(1))
    with torch.no_grad():
        a = model(hits, origins, directions, style_code=code)
        depths = torch.stack([hits.entry_depth, hits.exit_depth], dim=-1)  # the reference's layout
        b = model((hits.block_ids.clamp(min=0), depths), origins, directions, style_code=code)
    torch.testing.assert_close(a["rgb"], b["rgb"])  # eval mode samples deterministically
    # A camera looking at the sky sees only the sky dome.
    up = PinholeCamera.from_look_at((12, 30, 12), (12, 60, 13), 16, 16)
    with torch.no_grad():
        sky = model.render([up], style_code=code)
    assert (sky["sky_fraction"] == 1).all() and (sky["weights"] == 0).all() and (sky["labels"] == 0).all()
    assert torch.isfinite(sky["rgb"]).all()
    with pytest.raises(ValueError, match="exactly one"):
        model(hits, origins, directions, z=model.sample_z(1), style_code=code)


def test_tiny_generator_fits_a_target_colour(world, camera):
    torch.manual_seed(0)
    model = GANcraftGenerator(GANcraftModelConfig.tiny(), world)
    origins, directions = (t[None] for t in camera.resized(16, 16).rays())
    hits = model.cast_rays(origins, directions)
    z = model.sample_z(1)
    target = torch.tensor([0.6, -0.2, 0.1]).view(1, 3, 1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.0, 0.999))
    losses = []
    for _ in range(25):
        loss = (model(hits, origins, directions, z=z)["rgb"] - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_style_encoder_and_kl():
    torch.manual_seed(0)
    model = GANcraftGenerator(GANcraftModelConfig.tiny(), BlockWorld(random_blocks((4, 4, 4), 0.5, 0)))
    mu, logvar = model.encode_style(torch.rand(2, 3, 40, 48) * 2 - 1)  # resized to 64x64 inside
    assert mu.shape == logvar.shape == (2, 32)
    assert float(gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5))) == 0
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)).sum() / 2
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)


def test_paper_config_has_the_reference_sizes():
    config = GANcraftModelConfig.paper(num_labels=12)  # the reference's 12 reduced labels
    assert (config.feature_dims, config.hidden, config.samples_per_ray, config.style_dims) == (64, 256, 24, 128)
    assert (config.style_code_dims, config.max_hits, config.truncate_voxels) == (256, 6, 3.0)
    assert config.mlp_input_dims == 24 * 8 + 40
    blocks = torch.zeros(4, 3, 4, dtype=torch.int32)
    blocks[:, 0] = 1
    model = GANcraftGenerator(config, BlockWorld(blocks))

    def count(module):
        return sum(p.numel() for p in module.parameters())

    # Counted from the reference's layers (imaginaire generators/gancraft_base.py, demoworld.yaml).
    assert count(model.render_mlp) == 1_065_025
    assert count(model.sky_mlp) == 353_856
    assert count(model.render_cnn) == 2_771_971
    assert count(model.style_encoder) == 8_368_000
    assert count(model.style_mlp) == 361_984
    assert model.voxel_features.features.shape == (5 * 2 * 5, 64)  # corners of the bottom layer


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("feature_dims", 0), ("posenc_dims", 65), ("hidden", 2.5), ("samples_per_ray", 0), ("max_hits", 0),
        ("truncate_voxels", 0.0), ("truncate_voxels", math.inf), ("density_distance_scale", -1.0),
        ("density_activation", "exp"), ("density_bias_init", math.nan), ("style_encoder_size", 100),
        ("num_labels", 1), ("keep_sky_out", "yes"), ("style_dims", True),
    ],
)
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"model.{field}"):
        GANcraftModelConfig(**{field: value})


def test_generator_rejects_a_label_table_longer_than_num_labels(world):
    with pytest.raises(ValueError, match="model.num_labels"):
        GANcraftGenerator(GANcraftModelConfig.tiny(num_labels=4), world)


@torch.no_grad()
def test_rays_reaching_the_floor_take_the_mean_sky_not_their_directions_sky():
    import dataclasses

    blocks = torch.zeros(8, 8, 8, dtype=torch.int32)
    blocks[:, 0] = BLOCK_IDS["stone"]  # a one-block floor: rays hit 1 block (hit list not full) at y <= 1
    camera = PinholeCamera.from_look_at((4.0, 6.0, 3.9), (4.0, 0.0, 4.1), 6, 6, 40.0)
    origins, directions = camera.rays()
    origins, directions = origins[None], directions[None]
    means = torch.randn(2, 1, GANcraftModelConfig.tiny().render_feature_dims, generator=torch.Generator().manual_seed(0))
    for level, expect_mean in ((1.0, True), (-100.0, False)):
        torch.manual_seed(0)
        config = dataclasses.replace(GANcraftModelConfig.tiny(), sky_ground_level=level, density_bias_init=0.0)
        net = GANcraftGenerator(config, BlockWorld(blocks)).eval()
        hits = net.cast_rays(origins, directions)
        assert bool(hits.hit[..., 0].all()) and not bool(hits.hit[..., -1].any())  # hit lists not full
        code = net.style_code(torch.zeros(1, config.style_dims))
        a, b = (net(hits, origins, directions, style_code=code, sky_mean=m) for m in means)
        difference = a["features"] - b["features"]  # [1, F, H, W]
        if expect_mean:
            expected = a["sky_fraction"] * (means[0] - means[1])[:, :, None, None]
            torch.testing.assert_close(difference, expected, atol=1e-5, rtol=0)
            assert float(a["sky_fraction"].min()) > 0.05  # some sky weight is left to replace
        else:
            assert float(difference.abs().max()) == 0.0
