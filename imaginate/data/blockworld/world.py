"""Block worlds: a dense grid of block ids, a label table, a procedural generator and ``.npy`` files.

Coordinates. A world is an integer tensor ``blocks[X, Y, Z]`` (int32) with **Y up** (Minecraft's
order: X east, Y up, Z south; a right-handed frame). Block ``(i, j, k)`` fills the unit cube
``[i, i+1) x [j, j+1) x [k, k+1)`` of world space, so world coordinates are voxel coordinates: the
grid's corner is the origin and one block is one unit. Id 0 is air; every other id indexes the
label table (name and colour).

Files. ``save_world`` / ``load_world`` take a ``layout``: the file's axis order as a permutation of
``"xyz"`` (default ``"xyz"``, this module's own). The reference implementation (imaginaire's GANcraft)
makes its voxel ``.npy`` with ``projects/gancraft/sch2vox``: a schematic's ``Blocks`` reshaped to
``(Height, Length, Width)``, i.e. ``[Y, Z, X]`` in Minecraft's axes (its own docstrings call the axes
``[Y, X, Z]``, naming Minecraft's Z "X"), so its files load with ``layout="yzx"`` (``REFERENCE_LAYOUT``).
Reading them as ``"yxz"`` gives the mirror image of the world (X and Z swapped). Reference worlds use
Minecraft's ~680 block ids; ``imaginate.data.blockworld.minecraft`` reduces ids to a label table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from imaginate.data.errors import DataError


@dataclass(frozen=True)
class BlockLabel:
    """One entry of a label table.

    Args:
        id: the block id stored in the grid.
        name: a lower-case name (``"grass"``).
        color: the segmentation colour, RGB in 0..255.
    """

    id: int
    name: str
    color: tuple[int, int, int]


# The blocks the procedural generator makes. Air (0) is drawn as sky in segmentation maps.
DEFAULT_LABELS: tuple[BlockLabel, ...] = (
    BlockLabel(0, "air", (119, 178, 235)),
    BlockLabel(1, "stone", (128, 128, 128)),
    BlockLabel(2, "dirt", (134, 96, 67)),
    BlockLabel(3, "grass", (96, 168, 48)),
    BlockLabel(4, "sand", (219, 207, 163)),
    BlockLabel(5, "water", (44, 84, 200)),
    BlockLabel(6, "snow", (250, 250, 250)),
    BlockLabel(7, "wood", (102, 76, 40)),
    BlockLabel(8, "leaves", (40, 110, 30)),
    BlockLabel(9, "gravel", (150, 140, 135)),
)
AIR = 0
BLOCK_IDS: dict[str, int] = {label.name: label.id for label in DEFAULT_LABELS}
LAYOUTS = ("xyz", "xzy", "yxz", "yzx", "zxy", "zyx")  # a file's axis order
REFERENCE_LAYOUT = "yzx"  # imaginaire's sch2vox .npy files: [Y, Z, X]


def _check_labels(labels: tuple[BlockLabel, ...]) -> None:
    if not labels or any(label.id != i for i, label in enumerate(labels)):
        raise ValueError("labels must be numbered 0, 1, 2, ... in order, starting with air")


@dataclass
class BlockWorld:
    """A dense block world.

    Args:
        blocks: ``[X, Y, Z]`` integer block ids, Y up (stored as int32, on any device).
        labels: the label table; every id in ``blocks`` must be below ``len(labels)``.
    """

    blocks: Tensor  # [X, Y, Z] int32 block ids, 0 = air
    labels: tuple[BlockLabel, ...] = field(default=DEFAULT_LABELS)

    def __post_init__(self) -> None:
        _check_labels(self.labels)
        if not isinstance(self.blocks, Tensor):
            self.blocks = torch.as_tensor(np.asarray(self.blocks))
        if self.blocks.ndim != 3 or min(self.blocks.shape) == 0:
            raise ValueError(f"blocks must be a non-empty [X, Y, Z] grid, got shape {tuple(self.blocks.shape)}")
        dtype = self.blocks.dtype
        if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
            raise ValueError(f"blocks must hold integer ids, got {self.blocks.dtype}")
        self.blocks = self.blocks.to(torch.int32)
        low, high = int(self.blocks.min()), int(self.blocks.max())
        if low < 0 or high >= len(self.labels):
            raise ValueError(f"block ids must lie in 0..{len(self.labels) - 1}, found {low}..{high}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(X, Y, Z)``."""
        x, y, z = self.blocks.shape
        return int(x), int(y), int(z)

    @property
    def device(self) -> torch.device:
        return self.blocks.device

    def to(self, device: torch.device | str) -> BlockWorld:
        """The same world with its grid on ``device``."""
        return BlockWorld(self.blocks.to(device), self.labels)

    def label_colors(self, device: torch.device | str | None = None) -> Tensor:
        """``[L, 3]`` float label colours in [0, 1]."""
        colors = torch.tensor([label.color for label in self.labels], dtype=torch.float32) / 255.0
        return colors.to(device or self.device)

    def heightmap(self) -> Tensor:
        """``[X, Z]`` int64: the Y index of the highest non-air block of each column, -1 where empty."""
        solid = self.blocks != AIR  # [X, Y, Z]
        y = torch.arange(solid.shape[1], device=solid.device).view(1, -1, 1)
        return torch.where(solid, y, -1).amax(dim=1)

    def counts(self) -> dict[str, int]:
        """Number of blocks of each label, by name (air included)."""
        counts = torch.bincount(self.blocks.flatten().long().cpu(), minlength=len(self.labels))
        return {label.name: int(counts[label.id]) for label in self.labels}


# --------------------------------------------------------------------------------------------
# Procedural generation
# --------------------------------------------------------------------------------------------


def smooth_noise(shape: tuple[int, int], period: float, rng: np.random.Generator) -> np.ndarray:
    """Value noise: a random lattice every ``period`` cells, interpolated with a smoothstep.

    Args:
        shape: ``(A, B)`` output size.
        period: lattice spacing in cells (> 0).
        rng: the random generator (consumed deterministically).

    Returns:
        ``[A, B]`` float64 values in [0, 1].
    """
    a, b = shape
    lattice = rng.random((int(np.ceil(a / period)) + 2, int(np.ceil(b / period)) + 2))
    u = np.arange(a) / period + rng.random()  # [A] lattice coordinates, random offset
    v = np.arange(b) / period + rng.random()  # [B]
    iu, iv = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)  # smoothstep weights
    c00 = lattice[iu[:, None], iv[None, :]]
    c10 = lattice[iu[:, None] + 1, iv[None, :]]
    c01 = lattice[iu[:, None], iv[None, :] + 1]
    c11 = lattice[iu[:, None] + 1, iv[None, :] + 1]
    top = c00 + (c10 - c00) * fu[:, None]
    bottom = c01 + (c11 - c01) * fu[:, None]
    return top + (bottom - top) * fv[None, :]


def fractal_noise(shape: tuple[int, int], period: float, octaves: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of ``octaves`` value-noise layers, each half the period and amplitude: ``[A, B]`` in [0, 1]."""
    total = np.zeros(shape)
    weight = 0.0
    for octave in range(octaves):
        amplitude = 0.5**octave
        total += amplitude * smooth_noise(shape, max(period / 2**octave, 1.0), rng)
        weight += amplitude
    return total / weight


def _place_tree(blocks: np.ndarray, x: int, base: int, z: int, trunk: int) -> None:
    """A trunk of ``trunk`` wood blocks on top of ``(x, base - 1, z)`` and a rounded crown of leaves
    (placed in air only)."""
    size_x, size_y, size_z = blocks.shape
    top = min(base + trunk, size_y)  # first y above the trunk
    blocks[x, base:top, z] = BLOCK_IDS["wood"]
    centre_y = top - 1
    for dy in range(-2, 3):
        radius = 2 if dy <= 0 else 1
        for dx in range(-radius, radius + 1):
            for dz in range(-radius, radius + 1):
                if dy == 1 and abs(dx) == 1 and abs(dz) == 1 or dy < 0 and abs(dx) == 2 and abs(dz) == 2:
                    continue  # round the crown's corners
                px, py, pz = x + dx, centre_y + dy, z + dz
                if 0 <= px < size_x and 0 <= py < size_y and 0 <= pz < size_z and blocks[px, py, pz] == AIR:
                    blocks[px, py, pz] = BLOCK_IDS["leaves"]


def generate_world(
    size: tuple[int, int, int] = (64, 32, 64),
    seed: int = 0,
    sea_level: float = 0.35,
    snow_line: float = 0.72,
    tree_density: float = 0.01,
    feature_size: float = 24.0,
) -> BlockWorld:
    """A procedural landscape: height-map terrain, a water level, beaches, snowy peaks and trees.

    Columns are stone under three layers of dirt under grass; sand where the surface is within a
    block of the water level; gravel or sand under water, which fills every column up to the water
    level; snow above the snow line; bare stone on steep slopes. Trees (a wood trunk, a crown of
    leaves) grow on grass, at least three blocks apart. The same arguments give the same world.

    Args:
        size: ``(X, Y, Z)`` in blocks; each at least 4, and Y at least 8.
        seed: the random seed.
        sea_level: the water level as a fraction of Y.
        snow_line: the height, as a fraction of Y, above which surfaces are snow.
        tree_density: probability that a grass column is a tree candidate.
        feature_size: the period of the largest terrain features, in blocks.

    Returns:
        the world, with ``DEFAULT_LABELS``.
    """
    size_x, size_y, size_z = (int(s) for s in size)
    if min(size_x, size_z) < 4 or size_y < 8:
        raise ValueError(f"size must be at least (4, 8, 4), got {tuple(size)}")
    if not 0.0 < sea_level < snow_line < 1.0:
        raise ValueError(f"need 0 < sea_level < snow_line < 1, got {sea_level}, {snow_line}")
    rng = np.random.default_rng(seed)

    # Height map: fractal noise, sharpened so that there are plains and peaks.
    noise = fractal_noise((size_x, size_z), feature_size, 4, rng)  # [X, Z] in [0, 1]
    noise = (noise - noise.min()) / max(noise.max() - noise.min(), 1e-9)
    relief = 0.15 + 0.8 * noise**1.6  # fraction of Y
    height = np.clip(np.round(relief * (size_y - 1)), 1, size_y - 2).astype(int)  # [X, Z] surface y
    water_y = int(round(sea_level * (size_y - 1)))
    snow_y = int(round(snow_line * (size_y - 1)))
    slope = np.maximum(
        np.abs(np.diff(height, axis=0, append=height[-1:, :])),
        np.abs(np.diff(height, axis=1, append=height[:, -1:])),
    )  # [X, Z] steepness in blocks per block

    # Columns.
    y = np.arange(size_y)[None, :, None]  # [1, Y, 1]
    surface = height[:, None, :]  # [X, 1, Z]
    blocks = np.zeros((size_x, size_y, size_z), dtype=np.int32)
    blocks[y <= surface] = BLOCK_IDS["stone"]
    blocks[(y > surface - 4) & (y < surface)] = BLOCK_IDS["dirt"]
    top = np.full((size_x, size_z), BLOCK_IDS["grass"])
    top[height <= water_y + 1] = BLOCK_IDS["sand"]
    top[height < water_y - 2] = BLOCK_IDS["gravel"]
    top[(slope >= 3) & (height > water_y + 1)] = BLOCK_IDS["stone"]
    top[height >= snow_y] = BLOCK_IDS["snow"]
    blocks[y == surface] = np.broadcast_to(top[:, None, :], blocks.shape)[y == surface]
    beach = (height <= water_y + 1)[:, None, :] & (y > surface - 3) & (y < surface)
    blocks[beach] = BLOCK_IDS["sand"]
    blocks[(y > surface) & (y <= water_y)] = BLOCK_IDS["water"]

    # Trees on grass, away from the border and from each other.
    candidates = np.argwhere((top == BLOCK_IDS["grass"]) & (rng.random((size_x, size_z)) < tree_density))
    trunks = rng.integers(3, 6, size=len(candidates))
    planted: list[tuple[int, int]] = []
    for (x, z), trunk in zip(candidates, trunks):
        if not (2 <= x < size_x - 2 and 2 <= z < size_z - 2) or height[x, z] + trunk + 2 >= size_y:
            continue
        if any(abs(x - px) < 3 and abs(z - pz) < 3 for px, pz in planted):
            continue
        _place_tree(blocks, int(x), int(height[x, z]) + 1, int(z), int(trunk))
        planted.append((int(x), int(z)))
    return BlockWorld(torch.from_numpy(blocks), DEFAULT_LABELS)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def to_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """An ``[X, Y, Z]`` array with its axes reordered as ``layout`` (e.g. ``"yzx"``: ``[Y, Z, X]``)."""
    _check_layout(layout)
    return array.transpose(["xyz".index(axis) for axis in layout])


def from_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The inverse of ``to_layout``: an array in ``layout`` order back to ``[X, Y, Z]``."""
    _check_layout(layout)
    return array.transpose([layout.index(axis) for axis in "xyz"])


def save_world(world: BlockWorld, path: str | os.PathLike, layout: str = "xyz") -> None:
    """Write the grid as a ``.npy`` int32 array.

    Args:
        world: the world.
        path: the file to write.
        layout: the file's axis order, a permutation of ``"xyz"`` (``"yzx"``: the reference's ``[Y, Z, X]``).
    """
    array = to_layout(world.blocks.cpu().numpy().astype(np.int32), layout)
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def load_world(
    path: str | os.PathLike, layout: str = "xyz", labels: tuple[BlockLabel, ...] = DEFAULT_LABELS
) -> BlockWorld:
    """Read a world from a ``.npy`` integer array.

    Args:
        path: the ``.npy`` file.
        layout: the file's axis order, as in ``save_world`` (``"yzx"`` for the reference's files).
        labels: the label table the ids index.

    Raises:
        DataError: the file is missing, not an ``.npy`` array, not a 3-D integer array, or holds
            ids outside the label table (a one-line message naming the file).
    """
    _check_layout(layout)
    _check_labels(labels)
    if not os.path.isfile(path):
        raise DataError(f"world file {path} does not exist")
    try:
        with open(path, "rb") as f:
            np.lib.format.read_magic(f)  # a clear error for files that are not .npy at all
            f.seek(0)
            array = np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, EOFError, OSError, MemoryError) as error:  # MemoryError: a header claiming a huge grid
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"world file {path} is not a readable .npy array ({first_line})") from None
    if array.ndim != 3 or array.size == 0:
        raise DataError(f"world file {path} must hold a non-empty 3-D grid, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise DataError(f"world file {path} must hold integer block ids, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= len(labels):
        raise DataError(
            f"world file {path} has block ids {low}..{high}, outside the label table's 0..{len(labels) - 1}"
        )
    array = from_layout(array, layout)
    return BlockWorld(torch.from_numpy(np.ascontiguousarray(array).astype(np.int32)), labels)
