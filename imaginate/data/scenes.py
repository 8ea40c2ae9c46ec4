"""Procedural scenes for weakly supervised object detection (wetectron, UFO²): offline and seeded.

An image is a textured background (a colour-jittered crop of scikit-image's bundled brick, grass or
gravel photograph, or numpy fractal noise), unlabelled clutter, and 1 to ``max_objects`` objects,
painted in order (later ones occlude earlier ones). An object is a BODY, an elongated rounded shape
(ellipse to rounded rectangle, aspect 1.5 to 3, any angle) whose shape is the same for every class
and whose colour only tells the family (red, green, blue: two classes each), plus a small upright
EMBLEM (disk, plus, triangle, ring, square, x) that alone tells the class. Built-in hard cases:

* part-only: the emblem's box is at most ~1/6 of the object's box and sits anywhere along the long
  axis, so boxing the most discriminative region misses the object (IoU far under 0.5);
  ``part_boxes`` lets an evaluation count this failure.
* several instances: ``duplicate_fraction`` of the images hold 2+ instances of one class, of similar
  size; a copy lies beside an earlier one, at a similar angle, with probability
  ``adjacent_duplicates`` (a box around both is the merged-instance failure).
* clutter sharing colours: blobs in body colours (some body-shaped, without emblem), blobs in emblem
  colours, and strokes; none is labelled.
* size variation: the body's long side is log-uniform in ``scale_range`` times the image side, with
  a floor that keeps the emblem ``MIN_PART_PIXELS`` wide (it binds below ~96 px).

A placement is kept only if every earlier object keeps ``min_visible`` of its area and all of its
emblem visible. Boxes are continuous xyxy pixels: column c spans [c, c + 1), x2 and y2 are
exclusive. An object's box is the tight box of its VISIBLE mask; its part box that of its emblem.
Images are quantised to 8 bits (float image = uint8 / 255 exactly). Item i depends on (seed, i) and
the arguments only (numpy Generators, no global state), and with ``textures="auto"`` on whether
scikit-image is installed (``SceneDataset.texture_source`` says which was used).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from imaginate.data.annotations import skeleton_scribble

# (name, family hue, emblem): a family shares its body colour, the emblem tells the class
_CLASS_TABLE = (
    ("red_disk", 0.0, "disk"), ("red_plus", 0.0, "plus"),
    ("green_triangle", 0.33, "triangle"), ("green_ring", 0.33, "ring"),
    ("blue_square", 0.62, "square"), ("blue_x", 0.62, "x"),
)  # fmt: skip
SCENE_CLASSES: tuple[str, ...] = tuple(name for name, _, _ in _CLASS_TABLE)
SCENE_PARTS: tuple[str, ...] = tuple(part for _, _, part in _CLASS_TABLE)  # the emblem of each class
_FAMILY_HUES = tuple(sorted({hue for _, hue, _ in _CLASS_TABLE}))
TEXTURE_SOURCES = ("auto", "skimage", "noise")
MIN_PART_PIXELS = 7  # the smallest emblem width in pixels
MIN_IMAGE_SIZE = 48
_PART_TO_BODY = 0.5  # emblem half-size / body half-width
_PLACEMENT_TRIES = 40


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """[3] float32 RGB of one HSV colour (hue wraps, s and v clipped to [0, 1])."""
    h, s, v = h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


# ---------------------------------------------------------------- backgrounds


@functools.cache
def _skimage_textures() -> tuple[np.ndarray, ...]:
    """scikit-image's bundled grey textures (brick, grass, gravel), [512, 512] float32 each."""
    try:
        from skimage import data
    except ImportError as e:
        raise ImportError("textures='skimage' needs scikit-image: pip install scikit-image") from e
    return tuple(np.asarray(getattr(data, name)(), dtype=np.float32) for name in ("brick", "grass", "gravel"))


def _bilinear(texture: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """[len(ys), len(xs)] samples of a [h, w] array at fractional rows ys and columns xs (clamped)."""
    h, w = texture.shape
    ys, xs = np.clip(ys, 0.0, h - 1.0), np.clip(xs, 0.0, w - 1.0)
    y0, x0 = np.minimum(ys.astype(np.int64), h - 2), np.minimum(xs.astype(np.int64), w - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = texture[y0][:, x0] * (1 - fx) + texture[y0][:, x0 + 1] * fx
    bottom = texture[y0 + 1][:, x0] * (1 - fx) + texture[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _noise_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """[size, size] fractal value noise: four octaves of upsampled random grids (no scikit-image)."""
    out = np.zeros((size, size), dtype=np.float64)
    for octave in range(4):
        cells = 3 * 2**octave
        grid = rng.random((cells + 1, cells + 1))
        coords = (np.arange(size) + 0.5) * cells / size
        out += 0.55**octave * _bilinear(grid, coords, coords)
    return out


def _background(rng: np.random.Generator, size: int, source: str) -> np.ndarray:
    """[size, size, 3] float32 in [0, 1]: a tinted grey texture with a soft light gradient."""
    if source == "skimage":
        textures = _skimage_textures()
        texture = textures[int(rng.integers(len(textures)))]
        crop = size * math.exp(rng.uniform(math.log(0.6), math.log(2.5)))  # zoom in or out
        y0, x0 = rng.uniform(0, texture.shape[0] - crop - 1), rng.uniform(0, texture.shape[1] - crop - 1)
        steps = (np.arange(size) + 0.5) * crop / size
        grey = _bilinear(texture, y0 + steps, x0 + steps)
        grey = np.rot90(grey, int(rng.integers(4)))
    else:
        grey = _noise_texture(rng, size)
    grey = (grey - grey.mean()) / (grey.std() + 1e-6)
    grey = np.clip(0.5 + rng.uniform(0.12, 0.3) * grey, 0.0, 1.0)[..., None]  # [H, W, 1]
    hue, sat = rng.random(), rng.uniform(0.0, 0.55)
    dark = _hsv(hue, sat, rng.uniform(0.1, 0.45))
    light = _hsv(hue + rng.uniform(-0.08, 0.08), sat * rng.uniform(0.4, 1.0), rng.uniform(0.55, 0.95))
    image = dark + (light - dark) * grey
    angle, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.25)
    ramp = (np.arange(size) + 0.5) / size - 0.5
    light_gradient = 1.0 + strength * (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None])
    return np.clip(image * light_gradient[..., None], 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- shapes


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: x [1, size] and y [size, 1] (pixel c spans [c, c + 1))."""
    centres = np.arange(size, dtype=np.float64) + 0.5
    return centres[None, :], centres[:, None]


def _superellipse(x, y, cx: float, cy: float, a: float, b: float, angle: float, power: float) -> np.ndarray:
    """[H, W] bool: |u / a|^p + |v / b|^p <= 1 in the frame rotated by ``angle`` about (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, (y - cy) * c - (x - cx) * s
    return np.abs(u / a) ** power + np.abs(v / b) ** power <= 1.0


def _emblem(x, y, cx: float, cy: float, h: float, kind: str) -> np.ndarray:
    """[H, W] bool: an upright emblem of half-size ``h`` centred at (cx, cy); it fits in radius 1.2 h."""
    dx, dy = x - cx, y - cy
    if kind == "disk":
        return dx * dx + dy * dy <= h * h
    if kind == "ring":
        r2 = dx * dx + dy * dy
        return (r2 <= h * h) & (r2 >= (0.5 * h) ** 2)
    if kind == "square":
        return (np.abs(dx) <= 0.85 * h) & (np.abs(dy) <= 0.85 * h)
    if kind == "triangle":  # apex up (y grows downwards)
        return (dy >= -h) & (dy <= 0.8 * h) & (np.abs(dx) <= (dy + h) / 1.8)
    if kind == "x":
        dx, dy = (dx + dy) / math.sqrt(2.0), (dx - dy) / math.sqrt(2.0)
    thin, long = 0.3 * h, h  # plus, or x after the 45-degree turn
    return ((np.abs(dx) <= thin) & (np.abs(dy) <= long)) | ((np.abs(dy) <= thin) & (np.abs(dx) <= long))


def _stroke(x, y, vertices: np.ndarray, half_width: float) -> np.ndarray:
    """[H, W] bool: pixels within ``half_width`` of a polyline given as [K, 2] (x, y) vertices."""
    inside = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices[:-1], vertices[1:]):
        ax, ay = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * ax + (y - y0) * ay) / max(ax * ax + ay * ay, 1e-9), 0.0, 1.0)
        inside |= (x - x0 - t * ax) ** 2 + (y - y0 - t * ay) ** 2 <= half_width**2
    return inside


def _outline(mask: np.ndarray) -> np.ndarray:
    """[H, W] bool: mask pixels with a 4-neighbour outside the mask."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def _tight_box(mask: np.ndarray) -> list[float]:
    """[x1, y1, x2, y2] of a non-empty [H, W] bool mask, exclusive right and bottom edges."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


# ---------------------------------------------------------------- objects and layout


@dataclass
class _Instance:
    label: int
    cx: float
    cy: float
    a: float  # body half-length (along the long axis)
    b: float  # body half-width
    angle: float  # radians, long axis against +x (y downwards)
    body: np.ndarray  # [H, W] bool, the whole body
    part: np.ndarray  # [H, W] bool, the emblem (inside the body)
    visible: np.ndarray  # [H, W] bool, what later objects leave of the body


def _body_colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    return _hsv(hue + rng.uniform(-0.04, 0.04), rng.uniform(0.55, 0.95), rng.uniform(0.5, 0.95))


def _emblem_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return _hsv(rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.88, 1.0))  # near white
    return _hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.03, 0.18))  # near black


class _Layout:
    """Samples object shapes and positions for one image, keeping each earlier object visible enough."""

    def __init__(
        self, rng: np.random.Generator, size: int, scale_range: tuple[float, float], min_visible: float
    ):
        self.rng, self.size, self.scale_range, self.min_visible = rng, size, scale_range, min_visible
        self.x, self.y = _grid(size)
        self.instances: list[_Instance] = []

    def _shape(self, like: _Instance | None) -> tuple[float, float, float, float]:
        """(a, b, angle, power) of a new body; copies of ``like`` get a similar size and angle."""
        rng = self.rng
        low, high = self.scale_range
        if like is None:
            a = 0.5 * self.size * math.exp(rng.uniform(math.log(low), math.log(high)))
            b, angle = a / rng.uniform(1.5, 3.0), rng.uniform(0.0, math.pi)
        else:
            a, b = like.a * rng.uniform(0.85, 1.15), like.b * rng.uniform(0.85, 1.15)
            angle = like.angle + rng.uniform(-0.35, 0.35)
        b = max(b, MIN_PART_PIXELS / (2 * _PART_TO_BODY))  # the emblem floor
        a = max(a, 1.5 * b)
        return a, b, angle, rng.uniform(2.0, 4.0)

    def place(self, label: int, near: _Instance | None) -> _Instance | None:
        """Add an object of class ``label`` (next to ``near`` if given); None when no place is found."""
        rng, size = self.rng, self.size
        for attempt in range(_PLACEMENT_TRIES):
            adjacent = near is not None and attempt < _PLACEMENT_TRIES // 2
            a, b, angle, power = self._shape(near if adjacent else None)
            ex = a * abs(math.cos(angle)) + b * abs(math.sin(angle)) + 1.0  # half extents of the body
            ey = a * abs(math.sin(angle)) + b * abs(math.cos(angle)) + 1.0
            if 2 * ex >= size or 2 * ey >= size:
                continue
            if adjacent:  # beside the earlier copy, about touching it
                tilt = rng.uniform(-0.4, 0.4)  # off the perpendicular of the earlier copy's long axis
                direction = near.angle + tilt + math.pi * (rng.integers(2) - 0.5)
                distance = rng.uniform(0.9, 1.3) * (near.b + b) / math.cos(tilt)
                cx, cy = near.cx + distance * math.cos(direction), near.cy + distance * math.sin(direction)
                if not (ex <= cx <= size - ex and ey <= cy <= size - ey):
                    continue
            else:
                cx, cy = rng.uniform(ex, size - ex), rng.uniform(ey, size - ey)
            body = _superellipse(self.x, self.y, cx, cy, a, b, angle, power)
            h = _PART_TO_BODY * b
            slide = max(a - 1.4 * b, 0.0) * rng.uniform(-1.0, 1.0)  # where along the long axis
            for offset in (slide, 0.0):  # back to the centre if the emblem pokes out of the body
                ox, oy = cx + offset * math.cos(angle), cy + offset * math.sin(angle)
                part = _emblem(self.x, self.y, ox, oy, h, SCENE_PARTS[label])
                if not (part & ~body).any():
                    break
            part &= body
            keeps_others = all(  # each earlier object keeps its whole emblem and min_visible of its area
                not (other.part & body).any()
                and (other.visible & ~body).sum() >= self.min_visible * other.body.sum()
                for other in self.instances
            )
            if not part.any() or not keeps_others:
                continue
            for other in self.instances:
                other.visible &= ~body
            instance = _Instance(label, cx, cy, a, b, angle, body, part, body.copy())
            self.instances.append(instance)
            return instance
        return None


def _point(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """[2] (x, y) inside a random pixel of a non-empty mask."""
    rows, cols = np.nonzero(mask)
    k = int(rng.integers(rows.shape[0]))
    return np.array([cols[k] + rng.uniform(0.2, 0.8), rows[k] + rng.uniform(0.2, 0.8)], dtype=np.float32)


# ---------------------------------------------------------------- the data set


class SceneDataset(Dataset):
    """Procedural detection scenes, rendered on demand from (``seed``, index).

    An item is a dict: ``image`` [3, H, W] float32 in [0, 1]; ``boxes`` [N, 4] float32 xyxy,
    continuous pixels, the tight box of each visible mask (x2, y2 exclusive); ``labels`` [N] int64
    in [0, C); ``masks`` [N, H, W] bool visible masks; ``tags`` [C] float32 multi-hot; ``points``
    [N, 2] float32 (x, y), one click inside each mask; ``scribbles`` a list of N [M_i, 2] float32
    polylines along each mask's skeleton (``data.annotations.skeleton_scribble``), vertices inside the masks; ``part_boxes`` [N, 4] float32, the box of each
    emblem; ``image_id`` int (the index). Objects are listed in painting order (later on top).

    Args:
        num_images: the number of images.
        image_size: image height and width in pixels (at least 48; 64 to 128 is typical).
        seed: the seed of every image (non-negative).
        max_objects: the most objects in an image, 1 to len(SCENE_CLASSES).
        min_objects: the fewest objects drawn for an image, 1 to ``max_objects`` (an object that
            finds no free place is dropped, rarely; an image always keeps its first).
        scale_range: (low, high) of the body's long side as a fraction of the image side.
        duplicate_fraction: the share of images drawn with 2 or more instances of one class.
        adjacent_duplicates: the probability that a copy is placed beside an earlier one.
        clutter_range: (low, high) inclusive number of unlabelled clutter shapes.
        min_visible: the share of each object's area that later objects must leave visible.
        textures: "skimage" (photographed textures, needs scikit-image), "noise" (numpy fractal
            noise) or "auto" (skimage when installed, else noise).

    Raises:
        ValueError: an argument out of range (the message names it).
        ImportError: ``textures="skimage"`` without scikit-image.
    """

    def __init__(
        self,
        num_images: int,
        image_size: int = 96,
        seed: int = 0,
        max_objects: int = 4,
        min_objects: int = 1,
        scale_range: tuple[float, float] = (0.2, 0.5),
        duplicate_fraction: float = 0.35,
        adjacent_duplicates: float = 0.5,
        clutter_range: tuple[int, int] = (2, 6),
        min_visible: float = 0.6,
        textures: str = "auto",
    ) -> None:
        most = len(SCENE_CLASSES)
        checks = (  # (argument, value, valid, requirement)
            ("num_images", num_images, num_images >= 1, "at least 1"),
            ("image_size", image_size, image_size >= MIN_IMAGE_SIZE, f"at least {MIN_IMAGE_SIZE}"),
            ("seed", seed, seed >= 0, "non-negative"),
            ("max_objects", max_objects, 1 <= max_objects <= most, f"in [1, {most}]"),
            ("min_objects", min_objects, 1 <= min_objects <= max_objects, "in [1, max_objects]"),
            ("scale_range", scale_range, 0.05 <= scale_range[0] <= scale_range[1] <= 0.6, "in [0.05, 0.6]"),
            ("duplicate_fraction", duplicate_fraction, 0.0 <= duplicate_fraction <= 1.0, "in [0, 1]"),
            ("adjacent_duplicates", adjacent_duplicates, 0.0 <= adjacent_duplicates <= 1.0, "in [0, 1]"),
            ("clutter_range", clutter_range, 0 <= clutter_range[0] <= clutter_range[1], "0 <= low <= high"),
            ("min_visible", min_visible, 0.0 < min_visible <= 1.0, "in (0, 1]"),
            ("textures", textures, textures in TEXTURE_SOURCES, f"one of {', '.join(TEXTURE_SOURCES)}"),
        )
        for name, value, valid, requirement in checks:
            if not valid:
                raise ValueError(f"{name} must be {requirement}, got {value!r}")
        self.texture_source = "noise"
        if textures != "noise":
            try:
                _skimage_textures()
                self.texture_source = "skimage"
            except ImportError:
                if textures == "skimage":
                    raise
        self.num_images, self.image_size, self.seed = num_images, image_size, seed
        self.max_objects, self.min_objects = max_objects, min_objects
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.duplicate_fraction, self.adjacent_duplicates = duplicate_fraction, adjacent_duplicates
        self.clutter_range, self.min_visible = (int(clutter_range[0]), int(clutter_range[1])), min_visible
        self.classes: tuple[str, ...] = SCENE_CLASSES

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.num_images

    def _labels(self, rng: np.random.Generator) -> tuple[list[int], int]:
        """The classes to place, copies of the duplicated class first, and how many copies (0 if none)."""
        num_classes = len(self.classes)
        duplicate = self.max_objects >= 2 and rng.random() < self.duplicate_fraction
        count = int(rng.integers(max(self.min_objects, 2 if duplicate else 1), self.max_objects + 1))
        if not duplicate:
            return [int(c) for c in rng.choice(num_classes, size=count, replace=False)], 0
        label, copies = int(rng.integers(num_classes)), int(rng.integers(2, count + 1))
        others = rng.choice([c for c in range(num_classes) if c != label], size=count - copies, replace=False)
        return [label] * copies + [int(c) for c in others], copies

    def _clutter(self, rng: np.random.Generator, image: np.ndarray) -> None:
        """Paint unlabelled blobs and strokes in object-like colours onto ``image`` [H, W, 3]."""
        size = self.image_size
        x, y = _grid(size)
        for _ in range(int(rng.integers(self.clutter_range[0], self.clutter_range[1] + 1))):
            pick = rng.random()
            if pick < 0.5:
                colour = _body_colour(rng, _FAMILY_HUES[int(rng.integers(len(_FAMILY_HUES)))])
            elif pick < 0.7:
                colour = _emblem_colour(rng)
            else:
                colour = _hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.95))
            cx, cy = rng.uniform(0, size, 2)
            if rng.random() < 0.35:  # a stroke: a short random walk
                steps = rng.normal(0.0, 0.15 * size, (int(rng.integers(2, 5)), 2))
                mask = _stroke(x, y, np.cumsum(np.vstack([[cx, cy], steps]), axis=0), rng.uniform(0.8, 2.5))
            elif rng.random() < 0.4:  # a body without an emblem
                a = 0.5 * size * math.exp(rng.uniform(*np.log(self.scale_range)))
                aspect, angle, power = rng.uniform(1.5, 3.0), rng.uniform(0, math.pi), rng.uniform(2.0, 4.0)
                mask = _superellipse(x, y, cx, cy, a, a / aspect, angle, power)
                edge = _outline(mask)
                image[edge] = colour * 0.5
                mask &= ~edge
            else:  # a blob, from star-like (power < 1) to boxy
                a = rng.uniform(0.03, 0.15) * size
                aspect, angle, power = rng.uniform(1.0, 3.0), rng.uniform(0, math.pi), rng.uniform(0.7, 4.0)
                mask = _superellipse(x, y, cx, cy, a, a / aspect, angle, power)
            image[mask] = colour

    def render(self, index: int) -> dict:
        """Item ``index`` (see the class docstring); the same (seed, index, arguments) give the same item."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        rng = np.random.default_rng([self.seed, index])
        size = self.image_size
        image = _background(rng, size, self.texture_source)  # [H, W, 3]
        self._clutter(rng, image)
        labels, copies = self._labels(rng)
        layout = _Layout(rng, size, self.scale_range, self.min_visible)
        for k, label in enumerate(labels):
            near = None
            if 0 < k < copies and rng.random() < self.adjacent_duplicates:
                near = layout.instances[int(rng.integers(len(layout.instances)))]
            layout.place(label, near)
        x, y = _grid(size)
        for instance in layout.instances:  # paint: shaded body, dark outline, emblem
            light = rng.uniform(0, 2 * math.pi)  # the direction of a linear shading across the body
            shade = (x - instance.cx) * math.cos(light) + (y - instance.cy) * math.sin(light)  # [H, W]
            shade = np.clip(1.0 + 0.15 * shade / instance.a, 0.7, 1.3)
            body = _body_colour(rng, _CLASS_TABLE[instance.label][1]) * shade[..., None]  # [H, W, 3]
            image[instance.body] = body[instance.body]
            image[_outline(instance.body)] = body[_outline(instance.body)] * 0.55
            image[instance.part] = _emblem_colour(rng)
        image = np.clip(image + rng.normal(0.0, 0.015, image.shape), 0.0, 1.0)
        pixels = np.round(image * 255.0).astype(np.uint8).transpose(2, 0, 1)  # [3, H, W]
        instances = layout.instances
        label_tensor = torch.tensor([i.label for i in instances], dtype=torch.int64)  # [N]
        tags = torch.zeros(len(self.classes), dtype=torch.float32)
        tags[label_tensor] = 1.0
        return {
            "image": torch.from_numpy(pixels).float() / 255.0,  # [3, H, W]
            "boxes": torch.tensor([_tight_box(i.visible) for i in instances]).reshape(-1, 4),  # [N, 4]
            "labels": label_tensor,
            "masks": torch.from_numpy(np.stack([i.visible for i in instances])),  # [N, H, W] bool
            "tags": tags,  # [C]
            "points": torch.from_numpy(np.stack([_point(rng, i.visible) for i in instances])),  # [N, 2]
            "scribbles": [torch.from_numpy(skeleton_scribble(rng, i.visible)) for i in instances],  # N x [M_i, 2]
            "part_boxes": torch.tensor([_tight_box(i.part) for i in instances]).reshape(-1, 4),  # [N, 4]
            "image_id": index,
        }

    def __getitem__(self, index: int) -> dict:
        return self.render(index)

    def prerender(self) -> SceneArrays:
        """Every item rendered into memory: images as one uint8 tensor, the rest as per-image lists."""
        images, tags, lists = [], [], {key: [] for key in _PER_IMAGE_KEYS}
        for index in range(self.num_images):
            item = self.render(index)
            images.append(torch.round(item["image"] * 255.0).to(torch.uint8))  # exact: image = uint8 / 255
            tags.append(item["tags"])
            for key in _PER_IMAGE_KEYS:
                lists[key].append(item[key])
        image_ids = torch.arange(self.num_images)
        return SceneArrays(torch.stack(images), torch.stack(tags), image_ids, **lists, classes=self.classes)


_PER_IMAGE_KEYS = ("boxes", "labels", "masks", "points", "scribbles", "part_boxes")


@dataclass(eq=False)
class SceneArrays(Dataset):
    """Pre-rendered scenes (``SceneDataset.prerender``); indexing gives the same dicts as the data set.

    Args:
        images: [N, 3, H, W] uint8.
        tags: [N, C] float32 multi-hot.
        image_ids: [N] int64.
        boxes, labels, masks, points, scribbles, part_boxes: per-image lists, each entry shaped as
            in a SceneDataset item.
        classes: the class names.
    """

    images: Tensor  # [N, 3, H, W] uint8
    tags: Tensor  # [N, C] float32
    image_ids: Tensor  # [N] int64
    boxes: list[Tensor]  # N x [n_i, 4]
    labels: list[Tensor]  # N x [n_i]
    masks: list[Tensor]  # N x [n_i, H, W] bool
    points: list[Tensor]  # N x [n_i, 2]
    scribbles: list[list[Tensor]]  # N x n_i x [M, 2]
    part_boxes: list[Tensor]  # N x [n_i, 4]
    classes: tuple[str, ...] = SCENE_CLASSES

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict:
        item = {key: getattr(self, key)[index] for key in _PER_IMAGE_KEYS}
        image = self.images[index].float() / 255.0  # [3, H, W]
        return {"image": image, "tags": self.tags[index], "image_id": int(self.image_ids[index]), **item}




from imaginate.data.scene_export import export_coco, export_voc  # noqa: E402, F401  (re-exported)
