"""VOC XML and COCO JSON readers, proposal pickles (both layouts, restricted unpickling), preprocessing."""

import json
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from imaginate.data.detection import (
    COCODetection,
    VOCDetection,
    load_proposals,
    preprocess_proposals,
    read_voc_annotation,
)
from imaginate.data.errors import DataError

CLASSES = ("cat", "dog", "person")

VOC_XML = """<annotation>
  <folder>VOC2007</folder>
  <filename>000005.jpg</filename>
  <size><width>40</width><height>30</height><depth>3</depth></size>
  <object>
    <name>Dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>
  </object>
  <object>
    <name>person</name><difficult>1</difficult>
    <bndbox><xmin>11</xmin><ymin>5</ymin><xmax>40</xmax><ymax>15</ymax></bndbox>
  </object>
</annotation>
"""


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _pickle(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)


def test_voc_annotation_round_trip(tmp_path):
    record = read_voc_annotation(_write(tmp_path / "000005.xml", VOC_XML), CLASSES)
    assert (record.filename, record.width, record.height) == ("000005.jpg", 40, 30)
    # 1-based inclusive in the file -> 0-based inclusive: every coordinate minus 1
    assert torch.equal(record.boxes, torch.tensor([[0.0, 1, 19, 29], [10, 4, 39, 14]]))
    assert record.labels.tolist() == [1, 2]  # "Dog" is lower-cased
    assert record.difficult.tolist() == [False, True]


@pytest.mark.parametrize(
    "text, message",
    [
        ("<annotation><size><width>4</width>", "malformed XML"),
        (VOC_XML.replace("<name>Dog</name>", "<name>horse</name>"), "unknown class name 'horse'"),
        (VOC_XML.replace("<xmax>20</xmax>", ""), "missing <xmax> in <object> #0 <bndbox>"),
        (VOC_XML.replace("<height>30</height>", "<height>tall</height>"), "<height> in <size> is 'tall'"),
        (VOC_XML.replace("<xmax>20</xmax>", "<xmax>0</xmax>"), "xmax < xmin"),
    ],
)
def test_malformed_voc_annotation_names_the_file(tmp_path, text, message):
    path = _write(tmp_path / "bad.xml", text)
    with pytest.raises(DataError, match=message) as caught:
        read_voc_annotation(path, CLASSES)
    assert path in str(caught.value) and "\n" not in str(caught.value)


def _voc_folder(tmp_path):
    root = tmp_path / "VOC2007"
    _write(root / "ImageSets" / "Main" / "trainval.txt", "000005\n")
    _write(root / "Annotations" / "000005.xml", VOC_XML)
    os.makedirs(root / "JPEGImages")
    Image.fromarray(np.full((30, 40, 3), 128, dtype=np.uint8)).save(root / "JPEGImages" / "000005.jpg")
    return str(root)


def test_voc_detection_items_with_tags_and_proposals(tmp_path):
    root = _voc_folder(tmp_path)
    boxes = np.array([[0, 0, 50, 50], [0, 0, 50, 50], [3, 3, 3.5, 9], [2, 2, 12, 12]], dtype=np.float32)
    proposals = _pickle(tmp_path / "ss.pkl", {"boxes": [boxes], "indexes": [5]})  # wetectron: int ids
    dataset = VOCDetection(root, "trainval", classes=CLASSES, proposal_file=proposals)
    item = dataset[0]
    assert item["image"].shape == (3, 30, 40) and item["image"].dtype == torch.uint8
    assert item["image_id"] == "000005"
    assert item["tags"].tolist() == [0.0, 1.0, 0.0]  # the difficult person is not a tag
    assert item["difficult"].tolist() == [False, True]
    # clipped to [0, W-1] x [0, H-1] (inclusive pixels), the duplicate and the 1-px-wide box dropped
    assert torch.equal(item["proposals"], torch.tensor([[0.0, 0, 39, 29], [2, 2, 12, 12]]))
    with_difficult = VOCDetection(root, "trainval", classes=CLASSES, tags_include_difficult=True)
    assert with_difficult[0]["tags"].tolist() == [0.0, 1.0, 1.0] and "proposals" not in with_difficult[0]


def test_voc_detection_errors_name_the_file(tmp_path):
    root = _voc_folder(tmp_path)
    with pytest.raises(DataError, match="test.txt"):
        VOCDetection(root, "test", classes=CLASSES)
    stranger = _pickle(tmp_path / "p.pkl", {"boxes": [np.zeros((1, 4)), np.zeros((1, 4))], "ids": [5, 7]})
    with pytest.raises(DataError, match="p.pkl: proposals for image id 7, which is not in the data set"):
        VOCDetection(root, "trainval", classes=CLASSES, proposal_file=stranger)
    none = _pickle(tmp_path / "none.pkl", {"boxes": [], "ids": []})
    with pytest.raises(DataError, match="none.pkl: no proposals for image id '000005'"):
        VOCDetection(root, "trainval", classes=CLASSES, proposal_file=none)


COCO = {
    "images": [
        {"id": 42, "file_name": "a.png", "width": 20, "height": 10},
        {"id": 7, "file_name": "b.png", "width": 20, "height": 10},
    ],
    "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
    "annotations": [
        {"id": 1, "image_id": 42, "category_id": 18, "bbox": [1, 2, 3, 4], "iscrowd": 0},
        {"id": 2, "image_id": 42, "category_id": 3, "bbox": [0, 0, 20, 10], "iscrowd": 1},
        {"id": 3, "image_id": 7, "category_id": 3, "bbox": [5, 5, 2.5, 2], "iscrowd": 0},
        {"id": 4, "image_id": 7, "category_id": 3, "bbox": [5, 5, 0, 2], "iscrowd": 0},  # empty: skipped
    ],
}


def test_coco_detection_tiny_json(tmp_path):
    path = _write(tmp_path / "instances.json", json.dumps(COCO))
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((10, 20, 3), dtype=np.uint8)).save(tmp_path / name)
    dataset = COCODetection(path, str(tmp_path))
    assert dataset.classes == ("car", "dog") and dataset.category_ids == [3, 18]
    assert dataset.ids == [7, 42]  # sorted
    first, second = dataset[0], dataset[1]
    assert first["image_id"] == 7 and first["image"].shape == (3, 10, 20)
    assert torch.equal(first["boxes"], torch.tensor([[5.0, 5, 7.5, 7]])) and first["labels"].tolist() == [0]
    assert torch.equal(second["boxes"], torch.tensor([[1.0, 2, 4, 6]]))  # the crowd box is skipped
    assert second["tags"].tolist() == [0.0, 1.0]
    with_crowd = COCODetection(path, str(tmp_path), skip_crowd=False).target(1)
    assert with_crowd["crowd"].tolist() == [False, True] and with_crowd["tags"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("categories"), "missing list 'categories'"),
        (lambda d: d["images"][1].pop("width"), r"images\[1\] has no 'width' field"),
        (lambda d: d["annotations"][2].pop("bbox"), r"annotations\[2\] has no 'bbox' field"),
        (lambda d: d["annotations"][0].update(category_id=99), r"annotations\[0\].category_id 99"),
        (lambda d: d["annotations"][0].update(image_id=1), r"annotations\[0\].image_id 1"),
        (
            lambda d: d["annotations"][1].update(bbox=[1, 2, 3]),
            r"annotations\[1\].bbox is \[1, 2, 3\], not \[x",
        ),
        (
            lambda d: d["annotations"][1].update(bbox=[0, 0, -1, 2]),
            r"annotations\[1\].bbox is \[0, 0, -1, 2\]",
        ),
        (lambda d: d["categories"][1].update(id="car"), r"categories\[1\].id is 'car', not an integer"),
    ],
)
def test_malformed_coco_json_names_file_and_field(tmp_path, edit, message):
    data = json.loads(json.dumps(COCO))
    edit(data)
    path = _write(tmp_path / "broken.json", json.dumps(data))
    with pytest.raises(DataError, match=message) as caught:
        COCODetection(path, str(tmp_path))
    assert path in str(caught.value)
    with pytest.raises(DataError, match="cannot read COCO annotations"):
        COCODetection(_write(tmp_path / "cut.json", json.dumps(COCO)[:50]), str(tmp_path))


def test_proposal_pickle_layouts_round_trip(tmp_path):
    first, second = np.array([[0, 0, 5, 5], [1, 1, 4, 9]], np.float32), np.zeros((0, 4), np.float64)
    expected = {3: torch.from_numpy(first), 9: torch.zeros(0, 4)}
    for protocol in (2, 4, 5):  # python 2-era detectron pickles down to protocol 5
        lists = {"boxes": [first, second], "indexes": np.array([3, 9]), "scores": [np.ones(2), np.ones(0)]}
        for layout in (lists, {"boxes": [first, second], "ids": [3, 9]}, {3: first, np.int64(9): second}):
            loaded = load_proposals(_pickle(tmp_path / "p.pkl", layout, protocol))
            assert loaded.keys() == expected.keys()
            assert all(
                torch.equal(loaded[k], v) and loaded[k].dtype == torch.float32 for k, v in expected.items()
            )
    string_ids = load_proposals(
        _pickle(tmp_path / "s.pkl", {"2008_000001": first}), image_ids=["2008_000001"]
    )
    assert torch.equal(string_ids["2008_000001"], torch.from_numpy(first))


def test_detectron2_xywh_proposals(tmp_path, monkeypatch):
    """detectron2 stores a BoxMode enum member; it is read as its integer without importing detectron2."""
    import enum

    module = types.ModuleType("detectron2.structures.boxes")
    box_mode = enum.IntEnum("BoxMode", {"XYXY_ABS": 0, "XYWH_ABS": 1}, module=module.__name__)
    module.BoxMode = box_mode
    for name in ("detectron2", "detectron2.structures"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    data = {"ids": [1], "boxes": [np.array([[2.0, 3, 4, 5]])], "objectness_logits": [np.zeros(1)]}
    path = _pickle(tmp_path / "d2.pkl", {**data, "bbox_mode": box_mode.XYWH_ABS})
    monkeypatch.delitem(sys.modules, module.__name__)  # loading must not need detectron2
    assert torch.equal(load_proposals(path)[1], torch.tensor([[2.0, 3, 6, 8]]))


class _RunsACommand:
    def __reduce__(self):
        return (os.system, ("true",))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    path = _pickle(tmp_path / "evil.pkl", {"boxes": [_RunsACommand()], "indexes": [1]})
    calls = []
    monkeypatch.setattr(os, "system", lambda command: calls.append(command) or 0)
    with pytest.raises(
        DataError, match=r"evil.pkl: refusing to unpickle proposals: global (posix|nt).system"
    ):
        load_proposals(path)
    assert calls == []


@pytest.mark.parametrize(
    "data, message",
    [
        ([np.zeros((1, 4))], "expected a dict"),
        ({"boxes": [np.zeros((1, 4))]}, "neither 'indexes' nor 'ids'"),
        ({"boxes": [np.zeros((1, 4))], "ids": [1, 2]}, "1 entries in 'boxes' but 2"),
        ({"boxes": [np.zeros((2, 5))], "ids": [1]}, r"image id 1 have shape \[2, 5\]"),
        ({"boxes": [np.zeros((1, 4))] * 2, "ids": [1, 1]}, "appears twice"),
    ],
)
def test_malformed_proposal_files(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        load_proposals(_pickle(tmp_path / "bad.pkl", data))
    with pytest.raises(DataError, match="cannot read proposal file"):
        load_proposals(_write(tmp_path / "text.pkl", "not a pickle"))


def test_preprocess_clips_deduplicates_and_drops_small_boxes():
    boxes = torch.tensor(
        [
            [-5.0, -5, 10, 10],  # clipped to [0, 0, 10, 10]
            [0.2, 0.1, 10.3, 9.8],  # the same box after rounding: a duplicate
            [50, 5, 70, 15],  # clips to [40, 5, 40, 15]: zero width, dropped
            [30, 30, 31.5, 35],  # 1.5 px wide: dropped
            [5, 5, 7, 7],  # exactly 2 px: kept
            [30, 30, 45, 45],  # clips to [30, 30, 40, 40], the same as the next one
            [30, 30, 40, 40],
        ]
    )
    kept = preprocess_proposals(boxes, width=40, height=40, min_size=2.0)
    assert torch.equal(kept, torch.tensor([[0.0, 0, 10, 10], [5, 5, 7, 7], [30, 30, 40, 40]]))
    inclusive = preprocess_proposals(torch.tensor([[0.0, 0, 60, 60], [4, 4, 5, 5]]), 40, 40, 2.0, True)
    assert torch.equal(inclusive, torch.tensor([[0.0, 0, 39, 39], [4, 4, 5, 5]]))  # 2 pixels wide inclusive
    assert preprocess_proposals(torch.zeros(0, 4), 10, 10).shape == (0, 4)
