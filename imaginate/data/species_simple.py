"""The "simple" species variant: few large parts in bold colours, for few-shot translation on a CPU.

The default species (``species.py``) have thin legs, horns, a one-pixel dark outline and fine textures
that alias at 32 x 32 pixels; a small generator spends its CPU budget on those details and never gets
to the part that few-shot translation is about, drawing another species' body in this image's pose.
Here each species is four parts, each a few pixels wide at 32 px, with a colour of its own:

- a body ellipse (species-specific length and height) in the base colour, plain or with two or three
  broad stripes of the pattern colour;
- a head circle (species-specific size and height) in the accent colour, with a dark eye that shows
  where the creature faces;
- a tail: a fan, a round tuft or a long spike, in the accent colour;
- ears: a pair of large triangles, one round ear, or none, in the pattern colour.

3 tails x 3 ears x 2 textures give 18 shape types; with the colours (base hues spread by the golden
ratio) every one of the 24 species is distinct. No outline is drawn. The poses, the split, the
backgrounds and the renderer are those of ``species.py``: only the appearance differs.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from imaginate.data import species as sp

TAILS = ("fan", "tuft", "spike")
EARS = ("pointy", "round", "none")
TEXTURES = ("plain", "stripes")


@cache
def simple_species_appearance(species: int) -> sp.SpeciesAppearance:
    """The appearance of species ``species`` in [0, MAX_SPECIES) in the simple variant.

    Shape types: tail ``species % 3``, ears ``(species // 3) % 3``, texture ``(species // 9) % 2``;
    sizes and colours come from a generator seeded by the id.
    """
    if not 0 <= species < sp.MAX_SPECIES:
        raise ValueError(f"species must be in [0, {sp.MAX_SPECIES}), got {species}")
    rng = np.random.default_rng([species, 9173])
    tail, ears, texture = TAILS[species % 3], EARS[(species // 3) % 3], TEXTURES[(species // 9) % 2]
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    rx, ry = u(0.6, 0.85), u(0.32, 0.5)  # body radii
    hr = u(0.28, 0.4)  # head radius
    hx, hy = rx * 0.75 + hr * 0.6, ry * u(0.2, 0.7)  # head centre
    parts: list[sp._Part] = []
    if tail == "fan":
        spread = u(0.35, 0.5)
        parts.append(sp._triangle(-0.7 * rx, 0.0, -rx - 0.55, spread, -rx - 0.55, -spread))
    elif tail == "tuft":
        parts.append(sp._ellipse(-rx - 0.12, 0.25 * ry, u(0.22, 0.3), u(0.22, 0.3)))
    else:
        parts.append(sp._triangle(-0.7 * rx, 0.15, -0.7 * rx, -0.15, -rx - u(0.6, 0.8), u(0.1, 0.4)))
    top = hy + hr
    if ears == "pointy":
        for x in (hx - 0.45 * hr, hx + 0.35 * hr):
            parts.append(sp._Part("triangle", (x - 0.3 * hr, top - 0.4 * hr, x + 0.3 * hr, top - 0.4 * hr,
                                               x - 0.1 * hr, top + u(0.7, 1.0) * hr), sp._TEXTURED))
    elif ears == "round":
        r = hr * u(0.5, 0.65)
        parts.append(sp._Part("ellipse", (hx - 0.2 * hr, top - 0.05 * hr, r, r, 0.0), sp._TEXTURED))
    parts.append(sp._ellipse(0.0, 0.0, rx, ry, role=sp._TEXTURED))
    parts.append(sp._ellipse(hx, hy, hr, hr))  # head, accent colour
    eye = 0.3 * hr + 0.03
    parts.append(sp._ellipse(hx + 0.35 * hr, hy + 0.2 * hr, eye, eye, role=sp._EYE))
    hue = 0.07 + 0.618034 * species
    base = sp._hsv(hue, u(0.6, 0.9), u(0.75, 0.95))
    pattern = sp._hsv(hue + u(-0.05, 0.05), u(0.6, 0.9), u(0.3, 0.45))  # a dark shade of the base hue
    accent = sp._hsv(hue + u(0.4, 0.6), u(0.55, 0.85), u(0.55, 0.9))
    # "plain" keeps species.py's pale-belly texture off (threshold below the body); stripes are broad
    thresholds = {"plain": -10.0, "stripes": u(0.0, 0.4)}
    return sp.SpeciesAppearance(
        species=species, ears=ears, tail=tail, limbs="none", texture=texture, palette=(base, pattern, accent),
        texture_frequency=u(1.1, 1.5), texture_angle=u(-0.25, 0.25), texture_threshold=thresholds[texture],
        body=(rx, ry), parts=tuple(parts), outline=False,
    )  # fmt: skip
