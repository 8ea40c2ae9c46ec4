"""Procedural detection scenes: determinism, annotations derived exactly from masks, the hard cases
at their stated rates, the VOC export round trip, argument checks and the no-scikit-image fallback."""

import colorsys
import sys

import numpy as np
import pytest
import torch

from imaginate.data import scenes
from imaginate.data.detection import VOCDetection
from imaginate.data.scenes import SCENE_CLASSES, SceneArrays, SceneDataset, export_voc

SIZE = 96
FAMILY_HUES = (0.0, 0.33, 0.62)  # red_*, green_*, blue_*: two classes each


@pytest.fixture(scope="module")
def rendered() -> SceneArrays:
    """200 default scenes, rendered once for the property tests."""
    return SceneDataset(200, SIZE, seed=11).prerender()


def _items(arrays: SceneArrays):
    return (arrays[i] for i in range(len(arrays)))


def _tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """[N, 4] xyxy boxes of [N, H, W] masks, exclusive right/bottom edges (a slow, obvious reference)."""
    boxes = []
    for mask in masks:
        rows, cols = torch.nonzero(mask, as_tuple=True)
        boxes.append([cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1])
    return torch.tensor(boxes, dtype=torch.float32)


def _inside(mask: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """[M] bool: whether each (x, y) point lies in a pixel of ``mask`` [H, W] (pixel c spans [c, c+1))."""
    cols, rows = points[:, 0].floor().long(), points[:, 1].floor().long()
    h, w = mask.shape
    ok = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    return ok & mask[rows.clamp(0, h - 1), cols.clamp(0, w - 1)]


def test_same_seed_same_item_and_other_seed_differs():
    a, b = SceneDataset(8, SIZE, seed=3), SceneDataset(8, SIZE, seed=3)
    _ = b[0], b[7]  # rendering other items first must not matter
    first, second = a[5], b[5]
    for key in ("image", "boxes", "labels", "masks", "tags", "points", "part_boxes"):
        assert torch.equal(first[key], second[key]), key
    assert all(torch.equal(s, t) for s, t in zip(first["scribbles"], second["scribbles"]))
    other = SceneDataset(8, SIZE, seed=4)[5]
    assert (other["image"] - first["image"]).abs().mean() > 0.05
    assert not torch.equal(a[4]["image"], first["image"])  # and other indices differ too


def test_item_types_and_shapes():
    item = SceneDataset(3, 64, seed=0)[2]
    n, c = item["labels"].shape[0], len(SCENE_CLASSES)
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert torch.equal(item["image"] * 255, (item["image"] * 255).round())  # exactly 8-bit levels
    assert item["boxes"].shape == (n, 4) and item["boxes"].dtype == torch.float32
    assert item["labels"].dtype == torch.int64 and item["tags"].shape == (c,)
    assert item["masks"].shape == (n, 64, 64) and item["masks"].dtype == torch.bool
    assert item["points"].shape == (n, 2) and item["points"].dtype == torch.float32
    assert item["part_boxes"].shape == (n, 4) and item["image_id"] == 2
    assert len(item["scribbles"]) == n
    assert all(s.dtype == torch.float32 and s.dim() == 2 and s.shape[1] == 2 for s in item["scribbles"])
    with pytest.raises(IndexError):
        SceneDataset(3, 64)[3]


def test_boxes_are_tight_boxes_of_disjoint_visible_masks(rendered):
    for item in _items(rendered):
        assert item["masks"].flatten(1).any(dim=1).all()
        assert torch.equal(item["boxes"], _tight_boxes(item["masks"]))
        assert item["masks"].sum(dim=0).max() <= 1  # visible masks: each pixel shows one object


def test_points_and_scribble_vertices_lie_in_their_masks(rendered):
    for item in _items(rendered):
        for mask, point, scribble in zip(item["masks"], item["points"], item["scribbles"]):
            assert _inside(mask, point[None]).all()
            assert scribble.shape[0] >= 2 and _inside(mask, scribble).all()


def test_scribbles_span_the_object(rendered):
    """A scribble's box covers a good part of the object's long side (UFO² matches ROIs to it)."""
    spans = []
    for item in _items(rendered):
        for box, scribble in zip(item["boxes"], item["scribbles"]):
            extent = scribble.max(dim=0).values - scribble.min(dim=0).values  # [2]
            spans.append(float(extent.max() / (box[2:] - box[:2]).max()))
    assert np.median(spans) > 0.5


def test_tags_are_the_set_of_labels(rendered):
    for item in _items(rendered):
        expected = torch.zeros(len(SCENE_CLASSES))
        expected[item["labels"]] = 1.0
        assert torch.equal(item["tags"], expected)


def test_object_counts_and_duplicate_rate(rendered):
    counts = np.array([len(labels) for labels in rendered.labels])
    assert counts.min() >= 1 and counts.max() <= 4
    assert set(counts.tolist()) == {1, 2, 3, 4}
    duplicated = np.mean([len(set(labels.tolist())) < len(labels) for labels in rendered.labels])
    assert 0.25 <= duplicated <= 0.45  # duplicate_fraction = 0.35
    never = SceneDataset(40, SIZE, seed=11, duplicate_fraction=0.0)
    assert all(len(set(never[i]["labels"].tolist())) == len(never[i]["labels"]) for i in range(40))


def _gap(boxes: torch.Tensor) -> float:
    """The gap in pixels between two boxes (0 when they touch or overlap)."""
    gaps = torch.maximum(boxes[0, :2] - boxes[1, 2:], boxes[1, :2] - boxes[0, 2:])  # [2]
    return float(gaps.clamp(min=0).max())


def test_adjacent_duplicates_touch():
    def touching(adjacent: float) -> float:
        dataset = SceneDataset(
            30, SIZE, seed=2, max_objects=2, duplicate_fraction=1.0, adjacent_duplicates=adjacent
        )
        items = [dataset[i] for i in range(30)]
        assert all(item["labels"].tolist() == [item["labels"][0]] * 2 for item in items)
        return np.mean([_gap(item["boxes"]) == 0 for item in items])

    assert touching(1.0) >= 0.8 and touching(1.0) > touching(0.0) + 0.3


def test_part_boxes_are_small_and_inside_the_object(rendered):
    ratios = []
    for item in _items(rendered):
        boxes, parts = item["boxes"], item["part_boxes"]
        assert (parts[:, :2] >= boxes[:, :2]).all() and (parts[:, 2:] <= boxes[:, 2:]).all()
        area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
        ratios += (area(parts) / area(boxes)).tolist()  # = IoU(part, object): the part lies inside
        assert ((parts[:, 2:] - parts[:, :2]) >= 5).all()  # emblems stay recognisable
    assert max(ratios) < 0.3 and np.median(ratios) < 0.15  # boxing the part alone is a miss


def test_body_colour_tells_the_family_not_the_class(rendered):
    """Each body's hue is its family's; the two classes of a family have the same hues on average,
    so only the emblem separates them."""
    offsets = [[] for _ in SCENE_CLASSES]  # per class: hue minus the family's hue, in (-0.5, 0.5]
    for item in _items(rendered):
        for mask, part, label in zip(item["masks"], item["part_boxes"].long(), item["labels"]):
            body = mask.clone()
            body[part[1] : part[3], part[0] : part[2]] = False  # the emblem and around it
            red, green, blue = item["image"][:, body].median(dim=1).values.tolist()
            hue = colorsys.rgb_to_hsv(red, green, blue)[0]
            offsets[label].append((hue - FAMILY_HUES[label // 2] + 0.5) % 1.0 - 0.5)
    for label in range(len(SCENE_CLASSES)):
        assert len(offsets[label]) > 30 and np.abs(offsets[label]).max() < 0.07, SCENE_CLASSES[label]
    for family in range(3):
        assert abs(np.mean(offsets[2 * family]) - np.mean(offsets[2 * family + 1])) < 0.02


def test_object_sizes_vary(rendered):
    sides = torch.cat([(b[:, 2:] - b[:, :2]).max(dim=1).values for b in rendered.boxes]) / SIZE
    assert sides.min() < 0.25 and sides.max() > 0.45


def test_prerender_matches_items():
    dataset = SceneDataset(4, 64, seed=1)
    arrays = dataset.prerender()
    assert arrays.images.shape == (4, 3, 64, 64) and arrays.images.dtype == torch.uint8
    for index in range(4):
        item, stored = dataset[index], arrays[index]
        assert stored["image_id"] == item["image_id"]
        for key in ("image", "boxes", "labels", "masks", "tags", "points", "part_boxes"):
            assert torch.equal(stored[key], item[key]), key


def test_export_voc_round_trip(tmp_path):
    dataset = SceneDataset(5, SIZE, seed=9)
    ids = export_voc(dataset, str(tmp_path / "VOC"), image_set="train")
    assert ids == [f"{i:06d}" for i in range(5)]
    voc = VOCDetection(str(tmp_path / "VOC"), "train", classes=SCENE_CLASSES)
    assert len(voc) == 5
    for index in range(5):
        item, read = dataset[index], voc[index]
        # VOC stores inclusive pixels: the reader's x2, y2 are our exclusive edges minus one
        assert torch.equal(read["boxes"] + torch.tensor([0.0, 0.0, 1.0, 1.0]), item["boxes"])
        assert torch.equal(read["labels"], item["labels"]) and torch.equal(read["tags"], item["tags"])
        assert read["image"].shape == (3, SIZE, SIZE)
        assert (read["image"].float() / 255 - item["image"]).abs().mean() < 0.04  # JPEG is lossy


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"num_images": 0}, "num_images"),
        ({"image_size": 16}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"max_objects": 0}, "max_objects"),
        ({"max_objects": 7}, "max_objects"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"scale_range": (0.5, 0.2)}, "scale_range"),
        ({"duplicate_fraction": 1.5}, "duplicate_fraction"),
        ({"clutter_range": (3, 1)}, "clutter_range"),
        ({"min_visible": 0.0}, "min_visible"),
        ({"textures": "photos"}, "textures"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument} must be") as caught:
        SceneDataset(**{"num_images": 4, **kwargs})
    assert "\n" not in str(caught.value)


def test_noise_textures_without_scikit_image(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage now raises ImportError
    scenes._skimage_textures.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install scikit-image"):
            SceneDataset(4, SIZE, textures="skimage")
        fallback = SceneDataset(4, SIZE, seed=3)
        assert fallback.texture_source == "noise"
        item = fallback[1]
        assert torch.equal(item["image"], SceneDataset(4, SIZE, seed=3, textures="noise")[1]["image"])
        assert torch.equal(item["boxes"], _tight_boxes(item["masks"]))
    finally:
        scenes._skimage_textures.cache_clear()
