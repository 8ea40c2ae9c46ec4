"""Building blocks of face-vid2vid (arXiv 2011.15126), written once for 2D and 3D feature maps.

3D maps are ``[B, C, D, H, W]``; 3D down/up-sampling halves/doubles H and W only (the depth D of the
feature volume stays fixed, as in the paper's ``[32, 16, 64, 64]`` volume). Coordinates are in
``[-1, 1]`` in ``grid_sample`` order: ``(x, y)`` in 2D, ``(x, y, z)`` in 3D (x along W, y along H, z along D).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}


def norm(channels: int) -> nn.GroupNorm:
    """Group norm with up to 8 groups (batch-size independent, so a CPU batch of 4 trains like a big one)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class BatchNormND(nn.modules.batchnorm._BatchNorm):
    """Batch norm over dim 1 of a 2D ``[B, C, H, W]`` or 3D ``[B, C, D, H, W]`` map (one class for both)."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 3:
            raise ValueError(f"expected a [B, C, ...] map, got {input.dim()}D input")


def use_batch_norm(module: nn.Module) -> nn.Module:
    """Swap every ``GroupNorm`` in ``module`` for batch norm of the same width (in place; returns it).

    Why it matters: group norm normalises each image by its own statistics, so a constant colour (a plain
    background, a skin tone) is removed at every normalised layer and the generator must re-infer it; batch
    norm (the paper's, FOMM's) keeps each image's offset from the batch mean. Measured on the tiny preset:
    group norm gave colour-shifted outputs at 1000 steps (docs/results/face_vid2vid.md)."""
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm):
            setattr(module, name, BatchNormND(child.num_channels))
        else:
            use_batch_norm(child)
    return module


def conv(dim: int, cin: int, cout: int, kernel: int = 3) -> nn.Module:
    return _CONV[dim](cin, cout, kernel, padding=kernel // 2)


def _scale(dim: int) -> tuple[int, ...]:
    return (2, 2) if dim == 2 else (1, 2, 2)


class ResBlock(nn.Module):
    """``x + conv(relu(norm(conv(relu(norm(x))))))`` in 2D or 3D, channels kept."""

    def __init__(self, dim: int, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(norm(channels), nn.ReLU(), conv(dim, channels, channels),
                                  norm(channels), nn.ReLU(), conv(dim, channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DownBlock(nn.Module):
    """conv -> norm -> relu -> 2x average pool (H, W only)."""

    def __init__(self, dim: int, cin: int, cout: int) -> None:
        super().__init__()
        self.dim = dim
        self.body = nn.Sequential(conv(dim, cin, cout), norm(cout), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        pool = F.avg_pool2d if self.dim == 2 else F.avg_pool3d
        return pool(self.body(x), _scale(self.dim))


class UpBlock(nn.Module):
    """2x nearest upsampling (H, W only) -> conv -> norm -> relu."""

    def __init__(self, dim: int, cin: int, cout: int) -> None:
        super().__init__()
        self.dim = dim
        self.body = nn.Sequential(conv(dim, cin, cout), norm(cout), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.body(F.interpolate(x, scale_factor=_scale(self.dim), mode="nearest"))


class Hourglass(nn.Module):
    """U-Net (FOMM's hourglass) in 2D or 3D: ``num_blocks`` down blocks, up blocks with skip concatenation.

    ``[B, cin, *S] -> [B, cin + block_expansion, *S]`` (S divisible by ``2**num_blocks`` in H, W).
    """

    def __init__(self, dim: int, cin: int, block_expansion: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        widths = [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]
        self.down = nn.ModuleList(DownBlock(dim, cin if i == 0 else widths[i - 1], widths[i]) for i in range(num_blocks))
        ups = []
        for i in reversed(range(num_blocks)):
            inp = widths[i] * (1 if i == num_blocks - 1 else 2)
            out = widths[i - 1] if i > 0 else block_expansion
            ups.append(UpBlock(dim, inp, out))
        self.up = nn.ModuleList(ups)
        self.out_channels = block_expansion + cin

    def forward(self, x: Tensor) -> Tensor:
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


def coordinate_grid(shape: tuple[int, ...], device: torch.device | str | None = None) -> Tensor:
    """Identity sampling grid ``[*shape, len(shape)]`` in [-1, 1], last dim in (x, y[, z]) order
    (``align_corners=True`` pixel centres) for a spatial ``shape`` of ``(H, W)`` or ``(D, H, W)``."""
    axes = [torch.linspace(-1.0, 1.0, n, device=device) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")  # each [*shape], ordered (z,) y, x
    return torch.stack(mesh[::-1], dim=-1)


def warp(features: Tensor, grid: Tensor) -> Tensor:
    """Backward warp: ``out[v] = features[grid[v]]`` (bilinear in 2D, trilinear in 3D, zeros outside).

    features ``[B, C, *S]``; grid ``[B, *S', dim]`` in (x, y[, z]) order -> ``[B, C, *S']``."""
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def soft_argmax(heatmap_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """``[B, K, *S]`` logits -> (expected coordinates ``[B, K, dim]`` in (x, y[, z]), probabilities ``[B, K, *S]``)."""
    b, k = heatmap_logits.shape[:2]
    spatial = heatmap_logits.shape[2:]
    prob = F.softmax(heatmap_logits.flatten(2) / temperature, dim=2).view(b, k, *spatial)
    grid = coordinate_grid(tuple(spatial), heatmap_logits.device)  # [*S, dim]
    coords = (prob.unsqueeze(-1) * grid).flatten(2, -2).sum(2)  # [B, K, dim]
    return coords, prob


def gaussian_heatmaps(keypoints: Tensor, shape: tuple[int, ...], variance: float) -> Tensor:
    """``exp(-|v - x_k|^2 / (2 variance))`` on the grid of ``shape``: keypoints ``[B, K, dim]`` -> ``[B, K, *shape]``."""
    grid = coordinate_grid(shape, keypoints.device)  # [*S, dim]
    diff = grid.view(1, 1, *grid.shape) - keypoints.view(*keypoints.shape[:2], *([1] * len(shape)), -1)
    return torch.exp(-0.5 * diff.square().sum(-1) / variance)


class ImageDecoder(nn.Module):
    """The generator's 2D half: ``[B, cin, h, w]`` (warped, occlusion-masked features) -> RGB ``[B, 3, h*2^n, w*2^n]``
    in [0, 1]: a conv to ``channels``, ``num_res`` residual blocks, ``num_up`` upsampling blocks, 7x7 conv, sigmoid."""

    def __init__(self, cin: int, channels: int, num_res: int, num_up: int) -> None:
        super().__init__()
        self.stem = conv(2, cin, channels)
        self.res = nn.Sequential(*[ResBlock(2, channels) for _ in range(num_res)])
        ups, c = [], channels
        for _ in range(num_up):
            ups.append(UpBlock(2, c, max(c // 2, 8)))
            c = max(c // 2, 8)
        self.up = nn.Sequential(*ups)
        self.to_rgb = conv(2, c, 3, 7)

    def forward(self, x: Tensor, occlusion: Tensor | None = None) -> Tensor:
        x = self.stem(x)
        if occlusion is not None:
            x = x * occlusion  # [B, channels, h, w] * [B, 1, h, w]
        return torch.sigmoid(self.to_rgb(self.up(self.res(x))))


class ImageEncoder2D(nn.Module):
    """``[B, 3, H, W] -> [B, out, H / 2^n, W / 2^n]``: 7x7 conv, ``num_down`` down blocks (doubling), 1x1 conv."""

    def __init__(self, channels: int, num_down: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv(2, 3, channels, 7), norm(channels), nn.ReLU()]
        c = channels
        for _ in range(num_down):
            layers.append(DownBlock(2, c, c * 2))
            c *= 2
        layers.append(nn.Conv2d(c, out_channels, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class MotionFieldEstimator(nn.Module):
    """M: K+1 candidate flows (K keypoint-local motions + identity background) warp a compressed copy of the
    source features; with Gaussian heatmap differences an hourglass predicts soft masks over the K+1 flows
    (-> one dense flow) and an occlusion map. Works in 3D (face-vid2vid) and in 2D (the FOMM-like ablation).

    Args:
        dim: 3 (features ``[B, C, D, h, w]``) or 2 (``[B, C, h, w]``).
        feature_channels: C of the source features.
        num_keypoints: K.
        compressed: channels the features are compressed to before warping.
        block_expansion / num_blocks / max_features: the hourglass.
        depth: D of the 3D volume (the occlusion head folds depth into channels); 1 in 2D.
        variance: of the keypoint Gaussians, in [-1, 1] units squared.
    """

    def __init__(self, dim: int, feature_channels: int, num_keypoints: int, compressed: int,
                 block_expansion: int, num_blocks: int, max_features: int, depth: int = 1,
                 variance: float = 0.01) -> None:
        super().__init__()
        self.dim, self.k, self.variance = dim, num_keypoints, variance
        self.compress = nn.Sequential(_CONV[dim](feature_channels, compressed, 1), norm(compressed), nn.ReLU())
        self.hourglass = Hourglass(dim, (num_keypoints + 1) * (compressed + 1), block_expansion, num_blocks,
                                   max_features)
        hc = self.hourglass.out_channels
        self.mask = conv(dim, hc, num_keypoints + 1, 7 if dim == 2 else 3)
        self.occlusion = nn.Conv2d(hc * depth, 1, 7, padding=3)

    def sparse_flows(self, shape: tuple[int, ...], kp_source: Tensor, kp_driving: Tensor,
                     linear: Tensor | None) -> Tensor:
        """``w_k(v) = A (v - x_d,k) + x_s,k`` for each keypoint, identity for the background:
        ``[B, K+1, *shape, dim]``; ``linear`` A ``[B, dim, dim]`` (``R_s R_d^-1``) or None (identity)."""
        grid = coordinate_grid(shape, kp_source.device)  # [*S, dim]
        expand = (1, 1) + (1,) * len(shape)
        rel = grid.view(1, 1, *grid.shape) - kp_driving.view(*kp_driving.shape[:2], *expand[2:], -1)  # [B, K, *S, dim]
        if linear is not None:
            rel = torch.einsum("bij,bk...j->bk...i", linear, rel)
        flows = rel + kp_source.view(*kp_source.shape[:2], *expand[2:], -1)
        background = grid.unsqueeze(0).unsqueeze(0).expand(kp_source.shape[0], 1, *grid.shape)
        return torch.cat([background, flows], dim=1)

    def forward(self, features: Tensor, kp_source: Tensor, kp_driving: Tensor,
                linear: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """features ``[B, C, *S]``; keypoints ``[B, K, dim]`` -> (flow ``[B, *S, dim]``, occlusion ``[B, 1, h, w]``
        in (0, 1), masks ``[B, K+1, *S]``)."""
        b = features.shape[0]
        shape = tuple(features.shape[2:])
        compressed = self.compress(features)  # [B, c, *S]
        flows = self.sparse_flows(shape, kp_source, kp_driving, linear)  # [B, K+1, *S, dim]
        k1 = flows.shape[1]
        repeated = compressed.unsqueeze(1).expand(-1, k1, *compressed.shape[1:]).flatten(0, 1)  # [B(K+1), c, *S]
        deformed = warp(repeated, flows.flatten(0, 1)).view(b, k1, -1, *shape)  # [B, K+1, c, *S]
        heat = (gaussian_heatmaps(kp_driving, shape, self.variance)
                - gaussian_heatmaps(kp_source, shape, self.variance))  # [B, K, *S]
        heat = torch.cat([torch.zeros_like(heat[:, :1]), heat], dim=1).unsqueeze(2)  # [B, K+1, 1, *S]
        x = self.hourglass(torch.cat([heat, deformed], dim=2).flatten(1, 2))  # [B, hc, *S]
        masks = F.softmax(self.mask(x), dim=1)  # [B, K+1, *S]
        flow = (masks.unsqueeze(-1) * flows).sum(1)  # [B, *S, dim]
        x2d = x.flatten(1, 2) if self.dim == 3 else x  # [B, hc*D, h, w]
        occlusion = torch.sigmoid(self.occlusion(x2d))
        return flow, occlusion, masks
