"""GANcraft's neural renderer (the generator side; arXiv 2104.07659, reference NVlabs/imaginaire
``generators/gancraft*.py``).

A pixel's ray samples the hit blocks (``voxel_field.sample_in_hits``); at each sample the voxel-corner
features are interpolated (``VoxelCornerFeatures``), partly positionally encoded, and fed with the
block's label to a style-modulated MLP that outputs a density and a feature. Volume rendering blends
the features; a sky MLP on the ray direction fills the remaining ``1 - sum(weights)``. A style-modulated
residual CNN turns the ``[B, F, H, W]`` feature image into RGB (tanh). The style code comes from
``z`` (128-d, N(0, I), or a style encoder's reparameterised output) through a style MLP (256-d).

Choices, with the reference's values:

- Positional encoding of the *feature values* (not of coordinates; the features start U(-1, 1)): the
  first ``posenc_dims`` = 24 of the 64 interpolated dims get ``posenc_freqs`` = 4 octaves of sin/cos
  without the raw values, the other 40 pass through raw (``pe_lvl_feat: 4``, ``pe_incl_orig_feat:
  False``, ``pe_no_pe_feat_dim: 40``), so the MLP input is 24 * 8 + 40 = 232 wide.
- Modulated layers as in the reference (``networks.py``); LeakyReLU(0.2) everywhere.
- Densities are ``ReLU(sigma)`` and the sample lengths are scaled by ``density_distance_scale`` = 0.25
  (``dists_scale``); MLP and sky features are clipped to [-1, 1] before blending (``clip_feat_map``).
- One deviation, in the init only: the density head's bias starts at ``density_bias_init`` = 3 (the
  reference: 0). With 0, half the ReLU densities start dead and the blocks start almost transparent
  (at init no pixel of a 64x64 tiny-config view had weights summing above 0.01); with 3 a ray through the 3 truncation voxels starts
  with weight 1 - exp(-3 * 0.75) = 0.89, so short CPU runs see geometry from the first step.
- ``keep_sky_out``: a ray whose hit list is full (all ``max_hits`` blocks hit: the sky is hidden), or one
  with a sample at or below ``sky_ground_level`` (the reference's ``is_gnd``: it reached the world's
  floor, e.g. under hollowed ground), fills its leftover transmittance with the image's mean sky feature,
  not the sky of its direction, so the sky does not leak through semi-transparent ground
  (``keep_sky_out_avgpool`` + ``sky_global_avgpool``).
- No view direction input to the render MLP (the released config's ``pe_lvl_raydir: 0``).
- The one-hot label input ``Linear(one_hot(label), bias=False)`` is an ``nn.Embedding`` (same function,
  same parameter count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.data.blockworld import (
    DEFAULT_LABELS,
    BlockWorld,
    PinholeCamera,
    RayHits,
    ray_voxel_intersections,
)
from imaginate.systems.gancraft.networks import RenderCNN, RenderMLP, SkyMLP, StyleEncoder, StyleMLP
from imaginate.systems.gancraft.voxel_field import (
    VoxelCornerFeatures,
    hits_from_depths,
    positional_encoding,
    sample_in_hits,
    volume_render_weights,
)

DENSITY_ACTIVATIONS = ("relu", "softplus")


@dataclass
class GANcraftModelConfig:
    """Sizes of the GANcraft generator; the defaults are the paper's / the reference's.

    Voxel field: ``feature_dims`` per-corner features, of which the first ``posenc_dims`` get
    ``posenc_freqs`` octaves of positional encoding (plus themselves when ``posenc_include_input``).
    Render MLP: width ``hidden``, outputs a density and ``render_feature_dims`` features. Rays:
    ``samples_per_ray`` (paper 24; the released config 4, inference 40 — ``forward`` may override it),
    the first ``max_hits`` blocks, sampling truncated at ``truncate_voxels`` voxel lengths, sample lengths
    scaled by ``density_distance_scale``; ``density_bias_init`` starts the density head's bias. Sky MLP:
    direction with ``sky_posenc_freqs`` octaves (+ itself). Style: ``z`` of ``style_dims``, a style MLP (``style_mlp_layers`` hidden layers of
    ``style_mlp_hidden``) to a code of ``style_code_dims``; the style encoder resizes images to
    ``style_encoder_size`` (a power of two) and halves it down to 4x4 with channels ``style_encoder_filters
    * 2^i`` (at most 8x). Render CNN: ``cnn_channels`` wide, ``image_channels`` out. ``num_labels``: the
    world's label table length (air included: label 0 is sky).
    """

    feature_dims: int = 64
    posenc_dims: int = 24
    posenc_freqs: int = 4
    posenc_include_input: bool = False
    hidden: int = 256
    render_feature_dims: int = 64
    samples_per_ray: int = 24
    max_hits: int = 6
    truncate_voxels: float = 3.0
    density_distance_scale: float = 0.25
    density_activation: str = "relu"
    density_bias_init: float = 3.0
    keep_sky_out: bool = True
    sky_ground_level: float = 1.0
    sky_posenc_freqs: int = 5
    style_dims: int = 128
    style_code_dims: int = 256
    style_mlp_hidden: int = 256
    style_mlp_layers: int = 5
    style_encoder_filters: int = 64
    style_encoder_size: int = 256
    cnn_channels: int = 256
    num_labels: int = len(DEFAULT_LABELS)
    image_channels: int = 3

    def __post_init__(self) -> None:
        minimums = {
            "feature_dims": 1, "posenc_dims": 0, "posenc_freqs": 0, "hidden": 1, "render_feature_dims": 1,
            "samples_per_ray": 1, "max_hits": 1, "sky_posenc_freqs": 0, "style_dims": 1, "style_code_dims": 1,
            "style_mlp_hidden": 1, "style_mlp_layers": 1, "style_encoder_filters": 1, "style_encoder_size": 8,
            "cnn_channels": 1, "num_labels": 2, "image_channels": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"model.{name}: must be an integer >= {minimum}, got {value!r}")
        if self.posenc_dims > self.feature_dims:
            raise ValueError(f"model.posenc_dims: must be <= feature_dims ({self.feature_dims}), got {self.posenc_dims}")
        if self.posenc_dims > 0 and self.posenc_freqs == 0 and not self.posenc_include_input:
            raise ValueError("model.posenc_freqs: must be >= 1 when posenc_dims > 0 and posenc_include_input is False")
        bias = self.density_bias_init
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
            raise ValueError(f"model.density_bias_init: must be a finite number, got {bias!r}")
        level = self.sky_ground_level
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level):
            raise ValueError(f"model.sky_ground_level: must be a finite number, got {level!r}")
        for name in ("truncate_voxels", "density_distance_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ValueError(f"model.{name}: must be a finite number > 0, got {value!r}")
        if self.density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(
                f"model.density_activation: must be one of {', '.join(DENSITY_ACTIVATIONS)}, "
                f"got {self.density_activation!r}"
            )
        size = self.style_encoder_size
        if size & (size - 1):
            raise ValueError(f"model.style_encoder_size: must be a power of two, got {size}")
        for name in ("posenc_include_input", "keep_sky_out"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model.{name}: must be a bool, got {getattr(self, name)!r}")

    @property
    def mlp_input_dims(self) -> int:
        """Width of the render MLP's feature input (232 for the paper)."""
        encoded = self.posenc_dims * (2 * self.posenc_freqs + int(self.posenc_include_input))
        return encoded + self.feature_dims - self.posenc_dims

    @classmethod
    def paper(cls, num_labels: int = len(DEFAULT_LABELS)) -> GANcraftModelConfig:
        """The paper's sizes: 64-d features, 256 hidden, 24 samples, 128-d z, 256-d code."""
        return cls(num_labels=num_labels)

    @classmethod
    def tiny(cls, num_labels: int = len(DEFAULT_LABELS)) -> GANcraftModelConfig:
        """A CPU-sized model for tests and 64x64 demos."""
        return cls(
            feature_dims=16, posenc_dims=8, posenc_freqs=2, hidden=64, render_feature_dims=16, samples_per_ray=8,
            sky_posenc_freqs=3, style_dims=32, style_code_dims=64, style_mlp_hidden=64, style_mlp_layers=2,
            style_encoder_filters=16, style_encoder_size=64, cnn_channels=32, num_labels=num_labels,
        )


class GANcraftGenerator(nn.Module):
    """The GANcraft generator: voxel features, render MLP, sky MLP, render CNN, style encoder and MLP.

    Args:
        config: the sizes.
        world: the block world; its ids must be below ``config.num_labels``. The grid is kept as a
            buffer (not saved in the state dict) for ``cast_rays``.
    """

    def __init__(self, config: GANcraftModelConfig, world: BlockWorld) -> None:
        super().__init__()
        if len(world.labels) > config.num_labels:
            raise ValueError(
                f"model.num_labels: the world's label table has {len(world.labels)} labels, "
                f"more than num_labels={config.num_labels}"
            )
        self.config = config
        c = config
        self.register_buffer("blocks", world.blocks, persistent=False)  # [X, Y, Z] int32
        self.voxel_features = VoxelCornerFeatures(world.blocks, c.feature_dims)
        self.render_mlp = RenderMLP(c.mlp_input_dims, c.num_labels, c.hidden, c.style_code_dims, c.render_feature_dims,
                                    density_bias_init=c.density_bias_init)
        self.sky_mlp = SkyMLP(c.sky_posenc_freqs, c.hidden, c.style_code_dims, c.render_feature_dims)
        self.render_cnn = RenderCNN(c.render_feature_dims, c.cnn_channels, c.style_code_dims, c.image_channels)
        self.style_encoder = StyleEncoder(c.image_channels, c.style_encoder_filters, c.style_dims, c.style_encoder_size)
        self.style_mlp = StyleMLP(c.style_dims, c.style_code_dims, c.style_mlp_hidden, c.style_mlp_layers)

    # ---- style ------------------------------------------------------------------------------

    def sample_z(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """``[batch, style_dims]`` z ~ N(0, I) on the model's device."""
        p = self.voxel_features.features
        return torch.randn(batch, self.config.style_dims, generator=generator, dtype=p.dtype, device=p.device)

    def encode_style(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """image ``[B, 3, H, W]`` in [-1, 1] -> ``(mu, logvar)``, each ``[B, style_dims]``."""
        return self.style_encoder(image)

    def style_code(self, z: Tensor) -> Tensor:
        """z ``[B, style_dims]`` -> style code ``[B, style_code_dims]``."""
        return self.style_mlp(z)

    # ---- rays -------------------------------------------------------------------------------

    def cast_rays(self, origins: Tensor, directions: Tensor) -> RayHits:
        """The first ``max_hits`` blocks along rays ``[..., 3]`` (no gradient)."""
        return ray_voxel_intersections(self.blocks, origins, directions, max_hits=self.config.max_hits)

    def sky_features(self, directions: Tensor, code: Tensor, batch_index: Tensor) -> Tensor:
        """The sky dome's features ``[R, F]`` in [-1, 1] of rays ``directions [R, 3]`` with style ``code [B, C]``
        (``batch_index [R]``: each ray's image)."""
        return self.sky_mlp(directions, code, batch_index).clamp(-1, 1)

    def render(self, cameras: Sequence[PinholeCamera], z: Tensor | None = None,
               style_code: Tensor | None = None, **kwargs: object) -> dict[str, Tensor]:
        """Cast the rays of ``cameras`` (same size) and call ``forward``; ``kwargs`` go to ``forward``."""
        p = self.voxel_features.features
        rays = [camera.rays(device=p.device, dtype=p.dtype) for camera in cameras]
        origins = torch.stack([o for o, _ in rays])  # [B, H, W, 3]
        directions = torch.stack([d for _, d in rays])
        return self(self.cast_rays(origins, directions), origins, directions, z=z, style_code=style_code, **kwargs)

    # ---- rendering --------------------------------------------------------------------------

    def forward(
        self,
        hits: RayHits | tuple[Tensor, Tensor],
        origins: Tensor,
        directions: Tensor,
        z: Tensor | None = None,
        style_code: Tensor | None = None,
        num_samples: int | None = None,
        deterministic: bool | None = None,
        generator: torch.Generator | None = None,
        sky_mean: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Render ``B`` views.

        Args:
            hits: ``RayHits`` with batch shape ``[B, H, W]`` (``cast_rays``), or the reference's
                ``(block_ids [B, H, W, N], depths [B, H, W, N, 2])`` (see ``hits_from_depths``).
            origins: ``[B, H, W, 3]`` ray origins (world = voxel coordinates).
            directions: ``[B, H, W, 3]`` ray directions (any length; ``t`` is their parameter).
            z: ``[B, style_dims]`` style latent, mapped by the style MLP; or give ``style_code``.
            style_code: ``[B, style_code_dims]``, used as is.
            num_samples: samples per ray (default ``config.samples_per_ray``).
            deterministic: stratum-centre samples; default ``not self.training``.
            generator: random generator of the stratified sampling.
            sky_mean: ``[B, F]`` the mean sky feature of each whole image (``keep_sky_out``); default:
                the mean over these rays. Tiled rendering (``tiled.py``) passes the whole frame's.

        Returns:
            ``rgb`` ``[B, 3, H, W]`` in [-1, 1]; ``features`` ``[B, F, H, W]`` the blended feature image
            (in [-1, 1]); ``weights`` ``[B, H, W, S]`` volume-rendering weights; ``sky_fraction``
            ``[B, 1, H, W]`` = ``1 - sum(weights)`` in [0, 1]; ``labels`` ``[B, H, W]`` int64 label of the
            first hit, 0 (air = sky) where none; ``style_code`` ``[B, style_code_dims]``.
        """
        c = self.config
        if (z is None) == (style_code is None):
            raise ValueError("give exactly one of z and style_code")
        params = self.voxel_features.features
        device, dtype = params.device, params.dtype
        if origins.shape != directions.shape or origins.ndim != 4 or origins.shape[-1] != 3:
            raise ValueError(f"origins and directions must both be [B, H, W, 3], got {tuple(origins.shape)}, "
                             f"{tuple(directions.shape)}")
        batch, height, width, _ = origins.shape
        origins, directions = origins.to(device, dtype), directions.to(device, dtype)
        if isinstance(hits, tuple):
            hits = hits_from_depths(hits[0].to(device), hits[1].to(device, dtype), origins, directions)
        hits = hits.to(device).reshape(-1)  # batch shape [R]
        code = self.style_code(z.to(device, dtype)) if z is not None else style_code.to(device, dtype)  # [B, C]
        if code.shape[0] != batch:
            raise ValueError(f"the style has batch {code.shape[0]}, the rays {batch}")
        num_samples = num_samples or c.samples_per_ray
        deterministic = (not self.training) if deterministic is None else deterministic

        # Samples inside the hit blocks.
        o_flat, d_flat = origins.reshape(-1, 3), directions.reshape(-1, 3)  # [R, 3]
        ray_batch = torch.arange(batch, device=device).repeat_interleave(height * width)  # [R]
        samples = sample_in_hits(hits, d_flat, num_samples, c.truncate_voxels, deterministic, generator)
        ray, slot = torch.nonzero(samples.valid, as_tuple=True)  # [P] each
        hit_index = samples.hit_index[ray, slot]  # [P]
        points = o_flat[ray] + samples.depth[ray, slot, None] * d_flat[ray]  # [P, 3]
        voxels = hits.voxels[ray, hit_index]  # [P, 3]
        labels = hits.block_ids[ray, hit_index]  # [P] block ids = label indices

        # Per-sample MLP.
        feature = self.voxel_features(points, voxels)  # [P, D]
        encoded = positional_encoding(feature[:, :c.posenc_dims], c.posenc_freqs, c.posenc_include_input)
        mlp_input = torch.cat([encoded, feature[:, c.posenc_dims:]], dim=-1)  # [P, mlp_input_dims]
        raw_sigma, sample_feature = self.render_mlp(mlp_input, labels, code, ray_batch[ray])
        sigma = F.relu(raw_sigma) if c.density_activation == "relu" else F.softplus(raw_sigma)
        rays = o_flat.shape[0]
        sigma_grid = sigma.new_zeros(rays, num_samples).index_put((ray, slot), sigma)  # [R, S]
        feature_grid = sigma.new_zeros(rays, num_samples, c.render_feature_dims).index_put(
            (ray, slot), sample_feature.clamp(-1, 1))  # [R, S, F]

        # Volume rendering, then the sky fills what the blocks leave.
        weights = volume_render_weights(sigma_grid, samples.delta * c.density_distance_scale)  # [R, S]
        sky_fraction = (1 - weights.sum(dim=-1, keepdim=True)).clamp(0, 1)  # [R, 1]
        sky = self.sky_features(d_flat, code, ray_batch)  # [R, F]
        if c.keep_sky_out:
            if sky_mean is None:
                sky_mean = sky.reshape(batch, -1, sky.shape[-1]).mean(dim=1)  # [B, F]
            mean_sky = sky_mean.to(device, dtype)[ray_batch]  # [R, F]
            low = (points[:, 1] <= c.sky_ground_level).to(dtype)  # [P] samples at the world's floor
            ground = low.new_zeros(rays).scatter_reduce(0, ray, low, reduce="amax") > 0  # [R]
            sky = torch.where(hits.hit[:, -1:] | ground[:, None], mean_sky, sky)
        blended = (weights[..., None] * feature_grid).sum(dim=1) + sky_fraction * sky  # [R, F]
        feature_image = blended.reshape(batch, height, width, -1).permute(0, 3, 1, 2)  # [B, F, H, W]

        rgb = torch.tanh(self.render_cnn(feature_image, code))  # [B, 3, H, W]
        first = hits.block_ids[:, 0].clamp(min=0).reshape(batch, height, width)  # [B, H, W]
        return {
            "rgb": rgb,
            "features": feature_image,
            "weights": weights.reshape(batch, height, width, num_samples),
            "sky_fraction": sky_fraction.reshape(batch, height, width, 1).permute(0, 3, 1, 2),
            "labels": first,
            "style_code": code,
        }
