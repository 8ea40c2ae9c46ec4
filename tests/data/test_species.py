"""The procedural species data set: determinism, distinct species, exact masks, pose geometry, split."""

from __future__ import annotations

import itertools
import time

import pytest
import torch

from imaginate.data import (
    MAX_SPECIES,
    NUM_SPECIES,
    SPLIT,
    ArrayDataset,
    SpeciesContent,
    SpeciesDataset,
    facing_difference,
    load_species,
    render_species,
    render_species_batch,
    sample_content,
)
from imaginate.data.species import render_background, sample_contents, species_appearance


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a & b).sum() / (a | b).sum()).item()


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    """[2] (row, column) mean of the pixels of a [H, W] bool mask."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return torch.stack([rows.double().mean(), cols.double().mean()])


# ---------------------------------------------------------------- determinism and data set API


def test_same_seed_same_images_and_other_seed_other_contents() -> None:
    first, again = load_species("unseen", 3, size=32, seed=5), load_species("unseen", 3, size=32, seed=5)
    for i in (0, 7, 14):
        a, b = first[i], again[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert torch.equal(a["content"], b["content"]) and a["background_seed"] == b["background_seed"]
    other = load_species("unseen", 3, size=32, seed=6)
    assert not torch.equal(first.poses, other.poses)
    assert torch.equal(
        sample_content(torch.Generator().manual_seed(3)).to_tensor(),
        sample_content(torch.Generator().manual_seed(3)).to_tensor(),
    )


def test_contents_depend_on_seed_and_species_only() -> None:
    """A species gets the same images in the "all" set as in the "unseen" set (same seed)."""
    unseen, everything = load_species("unseen", 4, size=32, seed=1), load_species("all", 4, size=32, seed=1)
    for row, species in enumerate(SPLIT.unseen):
        i, j = row * 4 + 2, species * 4 + 2
        assert unseen[i]["species"] == everything[j]["species"] == species
        assert unseen[i]["label"] == row and everything[j]["label"] == species
        assert torch.equal(unseen[i]["image"], everything[j]["image"])


def test_item_fields_prerender_and_render_on_demand_agree() -> None:
    data = SpeciesDataset([4, 0, 9], images_per_species=3, size=32, seed=2)
    arrays = data.prerender(batch_size=4)  # several batches
    assert isinstance(arrays, ArrayDataset) and len(arrays) == len(data) == 9
    assert arrays.class_names == data.class_names == ["species04", "species00", "species09"]
    assert arrays.images.shape == (9, 3, 32, 32) and arrays.masks.shape == (9, 32, 32)
    assert arrays.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and arrays.species.tolist()[3:6] == [0, 0, 0]
    for i in range(len(data)):
        item = data[i]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["mask"].dtype == torch.bool and item["content"].shape == (5,)
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert torch.equal(item["image"], arrays.images[i]) and torch.equal(item["mask"], arrays.masks[i])
        content = data.content(i)
        assert torch.equal(content.to_tensor(), item["content"])
        assert torch.equal(data.render(item["species"], content)[0], item["image"])
    with pytest.raises(ValueError, match="species_ids"):
        SpeciesDataset([0, 0], 2)
    with pytest.raises(ValueError, match="split"):
        load_species("test")


@pytest.mark.parametrize("size", [32, 64, 128])
def test_sizes(size: int) -> None:
    image, mask = render_species(7, SpeciesContent(angle=20.0, background_seed=11), size)
    assert image.shape == (3, size, size) and mask.shape == (size, size)
    assert 0.03 < mask.float().mean() < 0.3  # a creature, not a dot and not the whole frame


def test_split_holds_out_at_least_five_species() -> None:
    assert len(SPLIT.unseen) >= 5 and not set(SPLIT.seen) & set(SPLIT.unseen)
    assert sorted(SPLIT.seen + SPLIT.unseen) == list(range(NUM_SPECIES))
    unseen = load_species("unseen", 2, size=32)
    assert unseen.num_classes == len(SPLIT.unseen) and set(unseen.species.tolist()) == set(SPLIT.unseen)
    # every unseen shape and texture type also occurs among the seen species
    for field in ("ears", "tail", "limbs", "texture"):
        seen_types = {getattr(species_appearance(s), field) for s in SPLIT.seen}
        assert {getattr(species_appearance(s), field) for s in SPLIT.unseen} <= seen_types


# ---------------------------------------------------------------- species differ


def test_every_pair_of_species_differs_in_shape() -> None:
    masks = torch.stack([render_species(s, SpeciesContent(), 64)[1] for s in range(NUM_SPECIES)])
    ious = {}
    for a, b in itertools.combinations(range(NUM_SPECIES), 2):
        ious[a, b] = _iou(masks[a], masks[b])
        assert ious[a, b] < 0.9, (a, b, ious[a, b])
    # species with more shape types in common overlap more, on average
    shared = {
        pair: sum(
            getattr(species_appearance(pair[0]), k) == getattr(species_appearance(pair[1]), k)
            for k in ("ears", "tail", "limbs")
        )
        for pair in ious
    }
    mean_iou = {
        n: sum(v for p, v in ious.items() if shared[p] == n) / sum(shared[p] == n for p in ious)
        for n in (0, 2)
    }
    assert mean_iou[2] > mean_iou[0] + 0.03


def test_nearest_centroid_on_colour_statistics_separates_species() -> None:
    """Mean and spread of the creature's colour (pose-invariant) name the species on unseen contents."""
    data = load_species("all", 8, size=32, seed=3).prerender()
    m = data.masks[:, None].float()  # [N, 1, H, W]
    n = m.sum((2, 3))
    mean = (data.images * m).sum((2, 3)) / n  # [N, 3]
    spread = (((data.images - mean[:, :, None, None]) ** 2 * m).sum((2, 3)) / n).sqrt()  # [N, 3]
    features, labels = torch.cat([mean, spread], 1), data.labels
    train = torch.arange(len(labels)) % 8 < 4
    centroids = torch.stack([features[train & (labels == k)].mean(0) for k in range(NUM_SPECIES)])
    predicted = torch.cdist(features[~train], centroids).argmin(1)
    assert (predicted == labels[~train]).float().mean() >= 0.95


# ---------------------------------------------------------------- masks and content geometry


def test_mask_marks_exactly_the_pixels_that_differ_from_the_background() -> None:
    poses, seeds = sample_contents(24, torch.Generator().manual_seed(0))
    species = torch.arange(24) % NUM_SPECIES
    for size in (32, 64):
        images, masks = render_species_batch(species, poses, seeds, size)
        for image, mask, seed in zip(images, masks, seeds.tolist()):
            difference = (image - render_background(seed, size)).abs().amax(0)  # [H, W]
            assert mask.any() and torch.all(difference[~mask] == 0.0)
            assert torch.all(difference[mask] > 0.01)


def test_position_moves_the_mask_centroid() -> None:
    size = 64
    base = _centroid(render_species(2, SpeciesContent(), size)[1])
    for cx, cy in ((0.25, 0.0), (0.0, 0.25), (-0.125, 0.25)):
        moved = _centroid(render_species(2, SpeciesContent(cx=cx, cy=cy), size)[1])
        expected = torch.tensor([cy, cx], dtype=torch.float64) * size / 2  # pixels, cy downwards
        assert torch.allclose(moved - base, expected, atol=0.01)


def test_flip_mirrors_the_mask() -> None:
    for species in (0, 13):
        plain = render_species(species, SpeciesContent(), 64)
        flipped = render_species(species, SpeciesContent(flip=True), 64)
        assert torch.equal(flipped[1], plain[1].flip(-1)) and not torch.equal(flipped[1], plain[1])
        # in general: flipped at (angle, cx) is the mirror image of unflipped at (-angle, -cx)
        a = SpeciesContent(angle=35.0, flip=True, cx=0.1, cy=0.05)
        b = SpeciesContent(angle=-35.0, flip=False, cx=-0.1, cy=0.05)
        agree = (
            (render_species(species, a, 64)[1] == render_species(species, b, 64)[1].flip(-1)).float().mean()
        )
        assert agree > 0.998


def test_rotation_turns_the_mask_counter_clockwise() -> None:
    upright, mask = (
        render_species(5, SpeciesContent(angle=90.0), 64)[1],
        render_species(5, SpeciesContent(), 64)[1],
    )
    assert _iou(upright, mask) < 0.6  # the turn changes the mask ...
    assert (upright == torch.rot90(mask, 1, dims=(0, 1))).float().mean() > 0.995  # ... by a quarter turn CCW


def test_scale_scales_the_mask_area() -> None:
    small = render_species(11, SpeciesContent(scale=0.3), 128)[1].sum().item()
    large = render_species(11, SpeciesContent(scale=0.6), 128)[1].sum().item()
    assert 3.7 < large / small < 4.3


def test_mask_depends_on_species_and_content() -> None:
    a, b = (
        SpeciesContent(angle=-40.0, cx=0.1, background_seed=1),
        SpeciesContent(angle=25.0, flip=True, cy=-0.1, background_seed=2),
    )
    assert torch.equal(
        render_species(3, a, 32)[1], render_species(3, SpeciesContent(-40.0, False, 0.1, 0.0, 0.55, 9), 32)[1]
    )
    assert not torch.equal(render_species(3, a, 32)[1], render_species(3, b, 32)[1])  # content
    assert not torch.equal(render_species(3, a, 32)[1], render_species(16, a, 32)[1])  # species


def test_facing_difference() -> None:
    poses = torch.tensor(
        [[0.0, 0, 0, 0, 0.5], [0.0, 1, 0.3, 0, 0.6], [30.0, 0, 0, 0, 0.5], [-30.0, 1, 0, 0, 0.5]]
    )
    difference = facing_difference(poses[:, None], poses[None, :])  # [4, 4]
    assert torch.allclose(difference.diagonal(), torch.zeros(4), atol=1e-3)
    assert torch.allclose(difference[0], torch.tensor([0.0, 180.0, 30.0, 150.0]), atol=1e-3)
    assert torch.allclose(difference, difference.T)


def test_render_speed_sanity() -> None:
    """24 x 50 images at 64 px render in one batched call (a few seconds on one core; not asserted)."""
    poses, seeds = sample_contents(24 * 50, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    images, masks = render_species_batch(torch.arange(24).repeat_interleave(50), poses, seeds, 64)
    elapsed = time.perf_counter() - start
    assert images.shape == (1200, 3, 64, 64) and masks.shape == (1200, 64, 64)
    print(f"rendered 1200 species images at 64 px in {elapsed:.2f} s")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scale"):
        SpeciesContent(scale=0.0)
    with pytest.raises(ValueError, match="species"):
        render_species(MAX_SPECIES, SpeciesContent())
    with pytest.raises(ValueError, match="species"):
        render_species(-1, SpeciesContent())
    with pytest.raises(ValueError, match="species_ids"):
        SpeciesDataset([0, MAX_SPECIES], 1)


def test_extra_species_follow_the_same_rules_and_differ() -> None:
    """Ids past NUM_SPECIES (extra training species) are drawn by the same rules, distinct from the 24."""
    for variant in ("full", "simple"):
        masks = torch.stack([render_species_batch([s], torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.6]]), torch.zeros(1),
                                                  64, True, variant)[1][0] for s in range(NUM_SPECIES + 12)])
        images = torch.stack([render_species_batch([s], torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.6]]), torch.zeros(1),
                                                   64, True, variant)[0][0] for s in range(NUM_SPECIES + 12)])
        assert all(m.float().mean() > 0.03 for m in masks)  # every extra species draws a creature
        extra = images[NUM_SPECIES:]
        assert (extra[:, None] - images[None]).abs().flatten(2).amax(2).gt(0).sum() == 12 * (NUM_SPECIES + 12) - 12
    with pytest.raises(ValueError, match="poses"):
        render_species_batch([0, 1], torch.zeros(3, 5), torch.zeros(2, dtype=torch.int64))


# ---------------------------------------------------------------- the simple variant


def test_simple_variant_species_differ_in_shape_and_colour_and_keep_the_geometry() -> None:
    from imaginate.data.species import appearance

    masks = torch.stack([render_species_batch([s], SpeciesContent().to_tensor()[None], torch.zeros(1, dtype=torch.int64),
                                              64, True, "simple")[1][0] for s in range(NUM_SPECIES)])
    # species with the same shape types differ in size: no two masks are the same
    for a, b in itertools.combinations(range(NUM_SPECIES), 2):
        assert _iou(masks[a], masks[b]) < 0.95, (a, b)
    # the renderer draws the variant asked for: the simple masks are not the full variant's
    full = render_species_batch(list(range(4)), SpeciesContent().to_tensor()[None].repeat(4, 1),
                                torch.zeros(4, dtype=torch.int64), 64, True)[1]
    assert all(_iou(full[s], masks[s]) < 0.9 for s in range(4))
    # not the full variant's appearances, and no outline
    assert all(not appearance(s, "simple").outline and appearance(s, "simple") != appearance(s) for s in range(4))
    # the renderer's geometry is shared: a flip mirrors the simple creature's mask too
    flipped = render_species_batch([5], SpeciesContent(flip=True).to_tensor()[None], torch.zeros(1, dtype=torch.int64),
                                   64, True, "simple")[1][0]
    assert torch.equal(flipped, masks[5].flip(-1))
    # colour statistics name the species (as for the full variant)
    data = load_species("all", 6, size=32, seed=3, plain_background=True, variant="simple").prerender()
    m = data.masks[:, None].float()
    n = m.sum((2, 3))
    mean = (data.images * m).sum((2, 3)) / n
    train = torch.arange(len(data.labels)) % 6 < 3
    centroids = torch.stack([mean[train & (data.labels == k)].mean(0) for k in range(NUM_SPECIES)])
    assert (torch.cdist(mean[~train], centroids).argmin(1) == data.labels[~train]).float().mean() >= 0.9


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="variant"):
        load_species("seen", 2, 32, variant="cartoon")
