"""A procedural "species" data set for few-shot image translation on a CPU.

Each of ``NUM_SPECIES`` species is a little creature with its own SHAPE (body, head and snout,
ears / horns, tail, legs or fins, each with species-specific sizes and placements), PALETTE (base,
pattern and accent colours) and TEXTURE (plain with a pale belly, stripes, spots, checker or
gradient, with a species-specific frequency and orientation); the appearance is a deterministic
function of the species id. Each image's CONTENT is drawn per image and known exactly: the pose
(rotation in the image plane and a left/right flip), position, scale and a background seed; the
renderer returns the creature's segmentation mask with the image. ``render_species(b, content_of_a)``
is "the content of image A in the appearance of species B", the ground truth of few-shot translation.

Coordinates: image positions are normalised to [-1, 1] (x to the right, y downwards, pixel centres);
a creature is drawn in its own frame (facing +x, y upwards, body centred at the origin, about 2.3
units long) and mapped into the image by flip, rotation, scale and translation. Rendering is
vectorised over pixels and images; edges are hard, so the mask is exact: outside it the image equals
``render_background`` of the same seed. Textures finer than about 2 pixels alias at 32 x 32.
The data sets built on it (the split, ``SpeciesDataset``, ``load_species``) are in ``species_sets.py``.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

NUM_SPECIES = 24
# ids from NUM_SPECIES up to MAX_SPECIES are extra procedural species, drawn by the same rules: a few-shot
# model may train on them (the more training species, the better it generalises to new ones); the split,
# the evaluation's classifier and the unseen species are always the first NUM_SPECIES
MAX_SPECIES = 4096
EARS = ("pointy", "round", "horns", "droopy")
TAILS = ("thin", "fan", "bushy")
LIMBS = ("legs", "fins")
TEXTURES = ("plain", "stripes", "spots", "checker", "gradient")
CONTENT_FIELDS = ("angle", "flip", "cx", "cy", "scale")  # the columns of a content tensor [..., 5]
MAX_ANGLE = 60.0  # degrees; sample_content draws angles in [-MAX_ANGLE, MAX_ANGLE]
_TEXTURED, _ACCENT, _EYE = 0, 1, 2  # colour roles of the parts
_EYE_COLOUR = (0.06, 0.05, 0.08)


@dataclass(frozen=True)
class SpeciesContent:
    """What an image shows apart from the species: pose, position, scale and background.

    Args:
        angle: rotation in degrees, counter-clockwise on screen (the nose of a right-facing
            creature turns up for a positive angle).
        flip: the creature faces left (mirrored) instead of right.
        cx: horizontal position of the body centre in [-1, 1], positive to the right.
        cy: vertical position of the body centre in [-1, 1], positive downwards.
        scale: image half-widths per creature unit (the creature is about 2.3 units long).
        background_seed: the seed of the species-independent background, in [0, 2**31).
    """

    angle: float = 0.0
    flip: bool = False
    cx: float = 0.0
    cy: float = 0.0
    scale: float = 0.55
    background_seed: int = 0

    def __post_init__(self) -> None:
        if not self.scale > 0.0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if not 0 <= self.background_seed < 2**31:
            raise ValueError(f"background_seed must be in [0, 2**31), got {self.background_seed}")

    def to_tensor(self) -> Tensor:
        """[5] float32 pose parameters in CONTENT_FIELDS order (the background seed is not included)."""
        return torch.tensor([self.angle, float(self.flip), self.cx, self.cy, self.scale], dtype=torch.float32)

    @classmethod
    def from_tensor(cls, pose: Tensor, background_seed: int) -> SpeciesContent:
        """The content with pose ``pose`` ([5], CONTENT_FIELDS order) and the given background seed."""
        angle, flip, cx, cy, scale = (float(v) for v in pose.tolist())
        return cls(angle, flip > 0.5, cx, cy, scale, int(background_seed))


def sample_contents(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` random contents: angle in [-60, 60] degrees, flip with probability 1/2, centre in
    [-0.2, 0.2]^2, scale in [0.45, 0.7] (the creature stays mostly inside the image).

    Args:
        count: how many contents to draw.
        generator: the random source; the same generator state gives the same contents.

    Returns:
        poses [count, 5] float32 (CONTENT_FIELDS order) and background seeds [count] int64.
    """
    u = torch.rand(count, 5, generator=generator, dtype=torch.float64)  # [count, 5]
    low = torch.tensor([-MAX_ANGLE, 0.0, -0.2, -0.2, 0.45], dtype=torch.float64)
    high = torch.tensor([MAX_ANGLE, 1.0, 0.2, 0.2, 0.7], dtype=torch.float64)
    poses = low + (high - low) * u
    poses[:, 1] = (u[:, 1] < 0.5).double()  # flip
    seeds = torch.randint(0, 2**31 - 1, (count,), generator=generator, dtype=torch.int64)
    return poses.float(), seeds


def sample_content(generator: torch.Generator) -> SpeciesContent:
    """One random content (see ``sample_contents`` for the ranges)."""
    poses, seeds = sample_contents(1, generator)
    return SpeciesContent.from_tensor(poses[0], int(seeds[0]))


def facing_difference(poses_a: Tensor, poses_b: Tensor) -> Tensor:
    """[...] degrees in [0, 180] between the on-screen directions the creatures face, for poses [..., 5].

    A measure of how different two poses are (for stratifying few-shot results): 0 for the same
    angle and flip; the mirror image of a pose at angle 0 differs from it by 180.
    """
    # the nose points along (cos angle, sin angle) on screen (y up), reversed when flipped
    sign_a, sign_b = 1.0 - 2.0 * poses_a[..., 1].double(), 1.0 - 2.0 * poses_b[..., 1].double()
    cosine = sign_a * sign_b * torch.cos(torch.deg2rad(poses_a[..., 0].double() - poses_b[..., 0].double()))
    return torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0))).float()


# ---------------------------------------------------------------- species appearance


@dataclass(frozen=True)
class _Part:
    kind: str  # "ellipse" (cx, cy, rx, ry, rotation) | "capsule" (x0, y0, x1, y1, r) | "triangle" (6 coords)
    params: tuple[float, ...]
    role: int  # _TEXTURED, _ACCENT or _EYE


@dataclass(frozen=True)
class SpeciesAppearance:
    """Everything that makes a species look the way it does (a function of its id only).

    ``parts`` are the shape primitives in painting order, in the creature frame.
    """

    species: int
    ears: str
    tail: str
    limbs: str
    texture: str
    palette: tuple[tuple[float, float, float], ...]  # (base, pattern, accent) RGB in [0, 1]
    texture_frequency: float  # cycles per creature unit
    texture_angle: float  # radians
    texture_threshold: float  # stripe duty / spot radius / belly line, by texture
    body: tuple[float, float]  # body ellipse radii (rx, ry)
    parts: tuple[_Part, ...]
    outline: bool = True  # darken the mask's border pixels

    def describe(self) -> str:
        return f"{self.ears} ears, {self.tail} tail, {self.limbs}, {self.texture}"


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (r, g, b)


def _ellipse(cx: float, cy: float, rx: float, ry: float, rotation: float = 0.0, role: int = _ACCENT) -> _Part:
    return _Part("ellipse", (cx, cy, rx, ry, rotation), role)


def _capsule(x0: float, y0: float, x1: float, y1: float, r: float) -> _Part:
    return _Part("capsule", (x0, y0, x1, y1, r), _ACCENT)


def _triangle(*corners: float) -> _Part:
    return _Part("triangle", corners, _ACCENT)


@cache
def species_appearance(species: int) -> SpeciesAppearance:
    """The appearance of species ``species`` in [0, MAX_SPECIES) (ids >= NUM_SPECIES: extra species).

    The shape types are the 4 x 3 x 2 = 24 combinations of ears, tail and limbs (one per species);
    sizes, placements, colours and texture parameters come from a generator seeded by the id.
    """
    if not 0 <= species < MAX_SPECIES:
        raise ValueError(f"species must be in [0, {MAX_SPECIES}), got {species}")
    rng = np.random.default_rng([species, 7431])
    ears, tail, limbs = EARS[species % 4], TAILS[(species // 4) % 3], LIMBS[(species // 12) % 2]
    texture = TEXTURES[species % 5]
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    rx, ry = u(0.45, 0.72), u(0.25, 0.42)  # body radii
    hr, h_aspect = u(0.2, 0.32), u(0.85, 1.15)  # head radius and height / width
    hx, hy = rx * 0.8 + hr * 0.55, ry * u(0.3, 0.8)  # head centre
    top = hy + hr * h_aspect  # the top of the head
    back, front = [], []  # parts painted under / over the body and head
    for x in (hx - 0.4 * hr, hx + 0.2 * hr):  # ears or horns on the head
        if ears == "pointy":
            w, h = 0.32 * hr, hr * u(0.7, 1.2)
            back.append(_triangle(x - w, top - 0.3 * hr, x + w, top - 0.3 * hr, x - 0.25 * hr, top + h))
        elif ears == "round":
            r = hr * u(0.35, 0.5)
            back.append(_ellipse(x, top - 0.1 * hr, r, r))
        elif ears == "horns":
            length = u(0.3, 0.5)
            back.append(_capsule(x, top - 0.2 * hr, x - 0.45 * length, top + length, 0.055))
    if ears == "droopy":
        front.append(_ellipse(hx - 0.45 * hr, hy - 0.1 * hr, 0.3 * hr, hr * u(0.9, 1.3), -0.4))
    length, lift = u(0.35, 0.55), u(0.3, 0.9)  # the tail, at the back of the body
    end = (-rx - length * math.cos(lift), 0.1 * ry + length * math.sin(lift))
    if tail == "thin":
        back += [_capsule(-0.8 * rx, 0.1 * ry, *end, u(0.04, 0.06)), _ellipse(*end, 0.11, 0.08, lift)]
    elif tail == "fan":
        spread = u(0.45, 0.75) * length
        back.append(_triangle(-0.75 * rx, 0.0, -rx - length, spread, -rx - length, -spread))
    else:
        tail_width, tail_height, tail_tilt = u(0.14, 0.2), u(0.32, 0.45), -u(0.2, 0.6)
        back.append(_ellipse(-rx + 0.02, 0.5 * ry + 0.12, tail_width, tail_height, tail_tilt, _TEXTURED))
    if limbs == "legs":
        leg_x = (-0.6, -0.3, 0.3, 0.6) if rng.uniform() < 0.6 else (-0.4, 0.4)
        leg_length, leg_r = u(0.2, 0.38), u(0.05, 0.08)
        back += [_capsule(x * rx, -0.5 * ry, x * rx + 0.05, -ry - leg_length, leg_r) for x in leg_x]
    else:  # a dorsal and a belly fin
        fin = u(0.2, 0.35)
        back.append(_triangle(-0.35 * rx, 0.8 * ry, 0.25 * rx, 0.8 * ry, -0.5 * rx, ry + fin))
        back.append(_triangle(0.05 * rx, -0.6 * ry, 0.4 * rx, -0.6 * ry, -0.15 * rx, -ry - 0.6 * fin))
    body = [
        _ellipse(0.0, 0.0, rx, ry, role=_TEXTURED),
        _ellipse(hx, hy, hr, hr * h_aspect, role=_TEXTURED),
        _ellipse(hx + 0.8 * hr, hy - 0.25 * hr, hr * u(0.35, 0.7), 0.42 * hr, role=_TEXTURED),  # snout
    ]
    eye = _ellipse(hx + 0.3 * hr, hy + 0.3 * hr, 0.2 * hr + 0.02, 0.2 * hr + 0.02, role=_EYE)
    # palette: base hue spread by the golden ratio; a darker or paler pattern colour; a contrasting accent
    hue, s1, v1 = 0.07 + 0.618034 * species, u(0.55, 0.9), u(0.6, 0.95)
    if rng.uniform() < 0.5:
        pattern = _hsv(hue + u(-0.08, 0.08), s1, v1 * u(0.3, 0.5))
    else:
        pattern = _hsv(hue + u(-0.08, 0.08), s1 * 0.35, min(1.0, v1 + 0.3))
    accent = _hsv(hue + u(0.35, 0.65), u(0.5, 0.85), u(0.35, 0.8))
    frequency = u(2.2, 3.2) if texture == "spots" else u(1.4, 2.6)
    thresholds = {"plain": -u(0.3, 0.6) * ry, "stripes": u(-0.3, 0.3), "spots": u(0.25, 0.38)}
    return SpeciesAppearance(
        species=species, ears=ears, tail=tail, limbs=limbs, texture=texture,
        palette=(_hsv(hue, s1, v1), pattern, accent), texture_frequency=frequency,
        texture_angle=u(0.0, math.pi), texture_threshold=thresholds.get(texture, 0.0), body=(rx, ry),
        parts=tuple(back + body + front + [eye]),
    )  # fmt: skip


VARIANTS = ("full", "simple")  # the appearance sets: this file's, and species_simple.py's few-part one


def appearance(species: int, variant: str = "full") -> SpeciesAppearance:
    """The appearance of ``species`` in the given variant (``VARIANTS``)."""
    if variant == "full":
        return species_appearance(species)
    if variant == "simple":
        from imaginate.data.species_simple import simple_species_appearance

        return simple_species_appearance(species)
    raise ValueError(f"species variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def species_name(species: int) -> str:
    """The class name of a species, e.g. ``species07``."""
    return f"species{species:02d}"


# ---------------------------------------------------------------- rendering


def _inside(part: _Part, x: Tensor, y: Tensor) -> Tensor:
    """[B, H, W] bool: which creature-frame points (x, y) ([B, H, W] each) lie inside ``part``."""
    p = part.params
    if part.kind == "ellipse":
        cx, cy, rx, ry, rotation = p
        c, s = math.cos(rotation), math.sin(rotation)
        dx, dy = x - cx, y - cy
        return ((c * dx + s * dy) / rx) ** 2 + ((c * dy - s * dx) / ry) ** 2 <= 1.0
    if part.kind == "capsule":
        x0, y0, x1, y1, r = p
        ax, ay = x1 - x0, y1 - y0
        t = (((x - x0) * ax + (y - y0) * ay) / (ax * ax + ay * ay)).clamp(0.0, 1.0)
        return (x - x0 - t * ax) ** 2 + (y - y0 - t * ay) ** 2 <= r * r
    x0, y0, x1, y1, x2, y2 = p  # triangle: all three edge functions share a sign inside
    e0 = (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)
    e1 = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
    e2 = (x0 - x2) * (y - y2) - (y0 - y2) * (x - x2)
    return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))


def _texture(app: SpeciesAppearance, x: Tensor, y: Tensor) -> Tensor:
    """[B, H, W] float in [0, 1]: the share of the pattern colour at creature-frame points."""
    c, s = math.cos(app.texture_angle), math.sin(app.texture_angle)
    u, v = (c * x + s * y) * app.texture_frequency, (c * y - s * x) * app.texture_frequency  # cycles
    if app.texture == "plain":  # a pale belly under a species-specific line
        return (y < app.texture_threshold).float()
    if app.texture == "stripes":
        return (torch.sin(2.0 * math.pi * u) > app.texture_threshold).float()
    if app.texture == "spots":
        du, dv = u - torch.floor(u) - 0.5, v - torch.floor(v) - 0.5
        return (du * du + dv * dv < app.texture_threshold**2).float()
    if app.texture == "checker":
        return torch.remainder(torch.floor(u) + torch.floor(v), 2.0)
    return (0.5 + 0.5 * (c * x + s * y) / app.body[0]).clamp(0.0, 1.0)  # gradient


def _hsv_array(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[..., 3] RGB of HSV arrays (colorsys.hsv_to_rgb, vectorised); s and v are clipped to [0, 1]."""
    h, s, v = np.mod(h, 1.0), np.clip(s, 0.0, 1.0), np.clip(v, 0.0, 1.0)
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    table = np.stack([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)])  # [6, 3, ...]
    return np.moveaxis(np.take_along_axis(table, sector.astype(np.int64)[None, None] % 6, axis=0)[0], 0, -1)


def _hash_uniform(seeds: np.ndarray, count: int) -> np.ndarray:
    """[B, count] float64 in [0, 1): splitmix64 of (seed, k), so each background depends on its seed only."""
    with np.errstate(over="ignore"):
        z = seeds.astype(np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.arange(1, count + 1, dtype=np.uint64)[None, :] * np.uint64(0xD1B54A32D192ED03)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _pixel_grid(size: int) -> Tensor:
    """[size] pixel-centre coordinates in (-1, 1), exactly antisymmetric (mirrors are exact)."""
    return (2.0 * torch.arange(size, dtype=torch.float64) + 1.0 - size) / size


def render_backgrounds(background_seeds: Tensor, size: int) -> Tensor:
    """Species-independent backgrounds: muted two-colour gradients, horizons or soft blobs.

    Args:
        background_seeds: [B] int64 seeds in [0, 2**31).
        size: image height and width in pixels.

    Returns:
        [B, 3, size, size] float32 in [0, 1]; each image is a function of its seed only.
    """
    b = background_seeds.shape[0]
    r = _hash_uniform(background_seeds.numpy(), 26)  # [B, 26]
    hue, sat, val = r[:, 0], 0.05 + 0.25 * r[:, 1], 0.45 + 0.4 * r[:, 2]
    second = _hsv_array(hue + 0.2 * r[:, 3] - 0.1, sat * r[:, 4], val + 0.3 * r[:, 5] - 0.15)
    colours = np.stack([_hsv_array(hue, sat, val), second], axis=1)  # [B, 2, 3]: muted, of similar hue
    r_t = torch.from_numpy(r).float()
    grid = _pixel_grid(size).float()
    y, x = grid[None, :, None], grid[None, None, :]  # [1, H, 1], [1, 1, W]
    direction = (2.0 * math.pi * r_t[:, 7])[:, None, None]  # [B, 1, 1]
    gradient = 0.5 + 0.5 * (torch.cos(direction) * x + torch.sin(direction) * y) / math.sqrt(2.0)
    horizon_height, tilt = (r_t[:, 8] * 0.9 - 0.3)[:, None, None], (r_t[:, 9] * 0.6 - 0.3)[:, None, None]
    horizon = (y > horizon_height + tilt * x).float()
    coarse = r_t[:, 10:26].reshape(b, 1, 4, 4)  # soft blobs: a 4 x 4 grid of random levels, upsampled
    blobs = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[:, 0].clamp(0, 1)
    kind = (r_t[:, 6] * 3).long()[:, None, None]  # [B, 1, 1]
    t = torch.where(kind == 0, gradient, torch.where(kind == 1, horizon, blobs))  # [B, H, W]
    c = torch.from_numpy(colours).float()  # [B, 2, 3]
    image = c[:, 0, :, None, None] + (c[:, 1] - c[:, 0])[:, :, None, None] * t[:, None]
    return image.clamp(0.0, 1.0)


def render_background(background_seed: int, size: int = 64) -> Tensor:
    """[3, size, size] float32: the background of ``background_seed`` (the image outside the mask)."""
    return render_backgrounds(torch.tensor([background_seed], dtype=torch.int64), size)[0]


def _creature_frame(poses: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Creature-frame coordinates (x, y), [B, H, W] float32 each, of every pixel, given poses [B, 5]."""
    p = poses.float()
    angle = torch.deg2rad(p[:, 0])[:, None, None]
    flip, cx, cy, scale = (p[:, i][:, None, None] for i in range(1, 5))
    grid = _pixel_grid(size).float()
    dx, dy_up = grid[None, None, :] - cx, cy - grid[None, :, None]  # [B, 1, W], [B, H, 1]: y upwards
    c, s = torch.cos(angle), torch.sin(angle)
    x = (c * dx + s * dy_up) / scale  # rotate by -angle into the creature frame
    y = (c * dy_up - s * dx) / scale
    return torch.where(flip > 0.5, -x, x), y


def _render_one_species(app: SpeciesAppearance, poses: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Creature colours [B, 3, H, W] (defined inside the mask) and masks [B, H, W] for one species."""
    x, y = _creature_frame(poses, size)
    role = torch.full(x.shape, -1, dtype=torch.int8)  # [B, H, W]: the top-most part's colour role
    for part in app.parts:
        role = torch.where(_inside(part, x, y), part.role, role)
    mask = role >= 0
    base, pattern, accent = (torch.tensor(c, dtype=torch.float32)[None, :, None, None] for c in app.palette)
    t = _texture(app, x, y).float()[:, None]  # [B, 1, H, W]
    colour = base + (pattern - base) * t
    colour = torch.where((role == _ACCENT)[:, None], accent, colour)
    colour = torch.where((role == _EYE)[:, None], torch.tensor(_EYE_COLOUR)[None, :, None, None], colour)
    if app.outline:  # a darker outline: mask pixels with a 4-neighbour outside the mask
        eroded = -F.max_pool2d(-mask[:, None].float(), 3, stride=1, padding=1)  # [B, 1, H, W]
        colour = torch.where((eroded < 0.5) & mask[:, None], colour * 0.55, colour)
    return colour, mask


PLAIN_BACKGROUND = (0.5, 0.5, 0.5)  # the grey of ``plain_background=True``


def render_species_batch(
    species: Tensor | Sequence[int], poses: Tensor, background_seeds: Tensor, size: int = 64,
    plain_background: bool = False, variant: str = "full",
) -> tuple[Tensor, Tensor]:
    """Render a batch: image b shows species ``species[b]`` with pose ``poses[b]`` on its background.

    Args:
        species: [B] species ids in [0, MAX_SPECIES).
        poses: [B, 5] pose parameters in CONTENT_FIELDS order.
        background_seeds: [B] int64 background seeds.
        size: image height and width in pixels (e.g. 32, 64, 128).
        plain_background: a uniform grey (``PLAIN_BACKGROUND``) instead of the seeds' backgrounds.
        variant: the appearance set (``VARIANTS``): "full" or the few-part "simple" one.

    Returns:
        images [B, 3, size, size] float32 in [0, 1] and masks [B, size, size] bool.
    """
    species_t = torch.as_tensor(species, dtype=torch.int64).reshape(-1)
    if poses.dim() != 2 or poses.shape != (species_t.shape[0], 5):
        raise ValueError(f"poses must be [B, 5] with B = {species_t.shape[0]}, got {tuple(poses.shape)}")
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    if plain_background:
        grey = torch.tensor(PLAIN_BACKGROUND, dtype=torch.float32)[None, :, None, None]
        images = grey.expand(species_t.shape[0], 3, size, size).clone()
    else:
        images = render_backgrounds(torch.as_tensor(background_seeds, dtype=torch.int64).reshape(-1), size)
    masks = torch.zeros(species_t.shape[0], size, size, dtype=torch.bool)
    for s in torch.unique(species_t).tolist():
        rows = torch.nonzero(species_t == s).flatten()  # [b_s]
        colour, mask = _render_one_species(appearance(s, variant), poses[rows], size)
        images[rows] = torch.where(mask[:, None], colour, images[rows])
        masks[rows] = mask
    return images, masks


def render_species(species: int, content: SpeciesContent, size: int = 64) -> tuple[Tensor, Tensor]:
    """One image of ``species`` showing ``content``: (image [3, H, W] float32 in [0, 1], mask [H, W] bool)."""
    seeds = torch.tensor([content.background_seed], dtype=torch.int64)
    images, masks = render_species_batch([species], content.to_tensor()[None], seeds, size)
    return images[0], masks[0]
