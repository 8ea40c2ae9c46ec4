"""Detection data users bring: PASCAL VOC folders (XML) and COCO JSON (proposal pickles: ``proposal_files``).

Nothing here downloads anything. Every malformed file raises a one-line ``DataError`` naming the
file and the element or field at fault.

Box conventions: VOC annotations are stored 1-based and inclusive; ``read_voc_annotation``
subtracts 1 from all four coordinates (as py-faster-rcnn, detectron and wetectron do), giving
0-based inclusive pixel indices, for which ``imaginate.metrics.detection.voc_eval``'s default
``pixel_inclusive=True`` reproduces the devkit. COCO boxes ``[x, y, w, h]`` become continuous
``[x, y, x + w, y + h]``. Labels are contiguous foreground indices ``0 .. C-1`` (no background).
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from imaginate.data.errors import DataError
from imaginate.data.proposal_files import (  # noqa: F401  (re-exported: the readers' proposal API)
    ImageId,
    first_unique_rows,
    load_proposals,
    preprocess_proposals,
)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


@dataclass(frozen=True)
class VOCRecord:
    """One VOC annotation file.

    ``boxes`` are [M, 4] float32 xyxy, 0-based inclusive pixel indices (the file's 1-based values
    minus 1); ``labels`` [M] int64 indices into the class list; ``difficult`` [M] bool. Beyond VOC,
    an object may carry a click ``<point><x/><y/></point>`` and a polyline ``<scribble>x,y x,y
    ...</scribble>`` (written by ``imaginate.data.scenes.export_voc``; 1-based like the boxes, minus
    1 here): ``points`` [M, 2] float32 (NaN rows for objects without one) and ``scribbles``, M
    tensors [K, 2] (K = 0 without one); each is None when no object in the file has one.
    """

    filename: str
    width: int
    height: int
    boxes: Tensor
    labels: Tensor
    difficult: Tensor
    points: Tensor | None = None
    scribbles: list[Tensor] | None = None


def _text(element: ET.Element, tag: str, path: str, where: str) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(f"{path}: missing <{tag}> in {where}")
    return child.text.strip()


def _number(element: ET.Element, tag: str, path: str, where: str) -> float:
    text = _text(element, tag, path, where)
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: <{tag}> in {where} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}: <{tag}> in {where} is {text!r}, not a finite number")
    return value


def read_voc_annotation(xml_path: str, classes: Sequence[str] = VOC_CLASSES) -> VOCRecord:
    """Parse one PASCAL VOC annotation XML file.

    Class names are lower-cased and stripped before lookup. A missing ``<difficult>`` means 0 (as
    in VOC2012 test files); a missing ``<filename>`` falls back to the XML's stem + ".jpg".

    Args:
        xml_path: the ``Annotations/<id>.xml`` file.
        classes: the class names; a label is the index of the object's name here.

    Returns:
        a VOCRecord with 0-based inclusive boxes (VOC's 1-based coordinates minus 1).

    Raises:
        DataError: unreadable or malformed XML, a missing size or box field, a non-numeric value,
            a box with xmax < xmin or ymax < ymin, or a class name not in ``classes``.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{xml_path}: malformed XML: {e}") from e
    except OSError as e:
        raise DataError(f"cannot read VOC annotation {xml_path}: {e}") from e
    size = root.find("size")
    if size is None:
        raise DataError(f"{xml_path}: missing <size> in <annotation>")
    width, height = (
        int(_number(size, "width", xml_path, "<size>")),
        int(_number(size, "height", xml_path, "<size>")),
    )
    filename_element = root.find("filename")
    filename = (
        filename_element.text.strip()
        if filename_element is not None and filename_element.text
        else os.path.splitext(os.path.basename(xml_path))[0] + ".jpg"
    )
    class_index = {name.lower(): i for i, name in enumerate(classes)}
    boxes, labels, difficult, points, scribbles = [], [], [], [], []
    for k, obj in enumerate(root.iter("object")):
        where = f"<object> #{k}"
        name = _text(obj, "name", xml_path, where).lower()
        if name not in class_index:
            raise DataError(
                f"{xml_path}: {where} has unknown class name {name!r} (expected one of {', '.join(classes)})"
            )
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DataError(f"{xml_path}: missing <bndbox> in {where}")
        box = [
            _number(bndbox, tag, xml_path, f"{where} <bndbox>") - 1
            for tag in ("xmin", "ymin", "xmax", "ymax")
        ]
        if box[2] < box[0] or box[3] < box[1]:
            raise DataError(f"{xml_path}: {where} has xmax < xmin or ymax < ymin: {[v + 1 for v in box]}")
        if min(box[0], box[2]) < -width or max(box[0], box[2]) > 2 * width or min(box[1], box[3]) < -height \
                or max(box[1], box[3]) > 2 * height:
            raise DataError(f"{xml_path}: {where} box {[v + 1 for v in box]} lies far outside the {width}x{height} image")
        flag = obj.find("difficult")
        point = obj.find("point")
        points.append([math.nan, math.nan] if point is None else
                      [_number(point, tag, xml_path, f"{where} <point>") - 1 for tag in ("x", "y")])
        scribbles.append(_scribble(obj.find("scribble"), xml_path, where))
        boxes.append(box)
        labels.append(class_index[name])
        difficult.append(flag is not None and flag.text is not None and flag.text.strip() == "1")
    return VOCRecord(
        filename=filename,
        width=width,
        height=height,
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),  # [M, 4]
        labels=torch.tensor(labels, dtype=torch.int64),  # [M]
        difficult=torch.tensor(difficult, dtype=torch.bool),  # [M]
        points=torch.tensor(points, dtype=torch.float32).reshape(-1, 2) if any(not math.isnan(p[0]) for p in points)
        else None,  # [M, 2]
        scribbles=scribbles if any(len(line) for line in scribbles) else None,  # M x [K, 2]
    )


def _scribble(element: ET.Element | None, path: str, where: str) -> Tensor:
    """[K, 2] 0-based vertices of a ``<scribble>x,y x,y ...</scribble>`` element (1-based in the file)."""
    if element is None or not (element.text or "").strip():
        return torch.zeros(0, 2)
    try:
        vertices = [[float(v) - 1 for v in pair.split(",")] for pair in element.text.split()]
    except ValueError:
        vertices = [[]]
    if any(len(v) != 2 or not all(math.isfinite(c) for c in v) for v in vertices):
        raise DataError(f"{path}: <scribble> in {where} is not 'x,y x,y ...' pairs of numbers")
    return torch.tensor(vertices, dtype=torch.float32)  # [K, 2]


def _read_image(path: str) -> Tensor:
    """[3, H, W] uint8 RGB."""
    from PIL import Image

    try:
        with Image.open(path) as stored:
            pixels = np.asarray(stored.convert("RGB"), dtype=np.uint8)  # [H, W, 3]
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def _tags(labels: Tensor, num_classes: int) -> Tensor:
    """[C] float32 multi-hot image-level tags from [M] labels."""
    tags = torch.zeros(num_classes, dtype=torch.float32)
    tags[labels] = 1.0
    return tags


class VOCDetection(Dataset):
    """A PASCAL VOC folder: ``ImageSets/Main/<set>.txt``, ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``.

    The id list is read at construction; annotations and images are read lazily per item. An
    item is a dict: ``image`` [3, H, W] uint8 RGB, ``image_id`` str, ``boxes`` [M, 4] float32
    (0-based inclusive, see read_voc_annotation), ``labels`` [M] int64, ``difficult`` [M] bool,
    ``tags`` [C] float32 image-level multi-hot labels, and with a proposal file ``proposals``
    [P, 4] float32 (de-duplicated, clipped to the image, boxes under ``min_proposal_size`` px
    dropped, in the inclusive-pixel convention). All boxes are kept, difficult ones flagged; the
    tags come from the non-difficult objects only unless ``tags_include_difficult`` (wetectron
    trains without difficult objects).

    Args:
        root: the VOC folder (e.g. ``VOCdevkit/VOC2007``).
        image_set: the image-set name, e.g. "trainval" or "test".
        classes: class names; labels index into it.
        proposal_file: optional proposal pickle (see load_proposals); integer ids in it match
            VOC ids by value ("000005" and 5 are the same image, and VOC2012's "2008_000002" and
            2008000002, as wetectron reads them).
        min_proposal_size: proposals narrower or shorter than this (in pixels) are dropped.
        tags_include_difficult: derive tags from difficult objects too.

    Raises:
        DataError: a missing or empty image-set file; a proposal file that does not match the ids.
    """

    def __init__(
        self,
        root: str,
        image_set: str,
        classes: Sequence[str] = VOC_CLASSES,
        proposal_file: str | None = None,
        min_proposal_size: float = 2.0,
        tags_include_difficult: bool = False,
    ) -> None:
        set_file = os.path.join(root, "ImageSets", "Main", f"{image_set}.txt")
        try:
            with open(set_file) as f:
                ids = [line.split()[0] for line in f if line.strip()]
        except OSError as e:
            raise DataError(f"cannot read VOC image set {set_file}: {e}") from e
        if not ids:
            raise DataError(f"VOC image set {set_file} lists no images")
        self.root = root
        self.image_set = image_set
        self.classes = tuple(classes)
        self.ids: list[str] = ids
        self.min_proposal_size = min_proposal_size
        self.tags_include_difficult = tags_include_difficult
        self.proposals = load_proposals(proposal_file, image_ids=ids) if proposal_file else None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def annotation_path(self, index: int) -> str:
        return os.path.join(self.root, "Annotations", f"{self.ids[index]}.xml")

    def image_path(self, index: int) -> str:
        return os.path.join(self.root, "JPEGImages", f"{self.ids[index]}.jpg")

    def record(self, index: int) -> VOCRecord:
        """The parsed annotation of item ``index`` (no image read)."""
        return read_voc_annotation(self.annotation_path(index), self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, index: int) -> Tensor:
        """[3, H, W] uint8 RGB of one image (no annotation read)."""
        return _read_image(self.image_path(index))

    def image_proposals(self, index: int, record: VOCRecord | None = None) -> Tensor:
        """[P, 4] the preprocessed proposals of one image (a proposal file is required)."""
        if self.proposals is None:
            raise DataError(f"{self.root}: no proposal file was given")
        record = record or self.record(index)
        return preprocess_proposals(
            self.proposals[self.ids[index]], record.width, record.height, self.min_proposal_size, True
        )

    def __getitem__(self, index: int) -> dict:
        record = self.record(index)
        tag_labels = record.labels if self.tags_include_difficult else record.labels[~record.difficult]
        item = {
            "image": self.image(index),
            "image_id": self.ids[index],
            "boxes": record.boxes,
            "labels": record.labels,
            "difficult": record.difficult,
            "tags": _tags(tag_labels, self.num_classes),
        }
        if self.proposals is not None:
            item["proposals"] = self.image_proposals(index, record)
        return item


def _xywh(value: Any) -> list[float]:
    """A COCO bbox as four floats with non-negative width and height."""
    box = [float(v) for v in value]
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] < 0 or box[3] < 0:
        raise ValueError(value)
    return box


def _image_side(value: Any) -> int:
    """An image width or height: an integer in 1..100000 pixels."""
    side = int(value)
    if side != value or not 1 <= side <= 100_000:
        raise ValueError(value)
    return side


_EXPECTED = {int: "an integer", str: "a string", _xywh: "[x, y, w >= 0, h >= 0] (finite)",
             _image_side: "an image size of 1..100000 pixels"}


def _field(entry: object, key: str, path: str, where: str, kind: Callable = int) -> Any:
    """``kind(entry[key])``, or a DataError naming the file and the field."""
    if not isinstance(entry, dict) or key not in entry:
        raise DataError(f"{path}: {where} has no {key!r} field")
    try:
        return kind(entry[key])
    except (TypeError, ValueError):
        raise DataError(f"{path}: {where}.{key} is {entry[key]!r}, not {_EXPECTED[kind]}") from None


class COCODetection(Dataset):
    """A COCO-style detection set: one instances JSON file and a folder of images.

    The JSON is read with the standard library (no pycocotools). Category ids, sorted, map to
    contiguous labels ``0 .. C-1`` (``category_ids[label]`` maps back). Images are sorted by id
    and read lazily. An item is a dict: ``image`` [3, H, W] uint8, ``image_id`` int, ``boxes``
    [M, 4] float32 continuous xyxy, ``labels`` [M] int64, ``crowd`` [M] bool, ``tags`` [C] float32
    multi-hot from the kept boxes, and with a proposal file ``proposals`` [P, 4] (de-duplicated,
    clipped, boxes under ``min_proposal_size`` px dropped). Crowd boxes are skipped by default
    (for training); keep them (``skip_crowd=False``) to pass crowd flags to ``coco_ap``. Boxes with
    zero width or height are skipped.

    Args:
        annotation_json: the instances JSON file (``images``, ``annotations``, ``categories``).
        image_root: the folder holding each image's ``file_name``.
        proposal_file: optional proposal pickle (see load_proposals), keyed by COCO image id.
        skip_crowd: drop ``iscrowd`` annotations.
        min_proposal_size: proposals narrower or shorter than this (in pixels) are dropped.

    Raises:
        DataError: unreadable JSON, a missing key or field (named, e.g. ``annotations[3].bbox``),
            an annotation for an unknown image or category, a negative box size.
    """

    def __init__(
        self,
        annotation_json: str,
        image_root: str,
        proposal_file: str | None = None,
        skip_crowd: bool = True,
        min_proposal_size: float = 2.0,
    ) -> None:
        path = annotation_json
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read COCO annotations {path}: {e}") from e
        for key in ("images", "annotations", "categories"):
            if not isinstance(data, dict) or not isinstance(data.get(key), list):
                raise DataError(f"{path}: missing list {key!r} at the top level")
        names = {
            _field(c, "id", path, f"categories[{i}]"): _field(c, "name", path, f"categories[{i}]", str)
            for i, c in enumerate(data["categories"])
        }
        self.category_ids: list[int] = sorted(names)
        self.classes: tuple[str, ...] = tuple(names[c] for c in self.category_ids)
        label_of = {c: label for label, c in enumerate(self.category_ids)}
        self.images: dict[int, dict] = {}
        for i, image in enumerate(data["images"]):
            where = f"images[{i}]"
            self.images[_field(image, "id", path, where)] = {
                "file_name": _field(image, "file_name", path, where, str),
                "width": _field(image, "width", path, where, _image_side),
                "height": _field(image, "height", path, where, _image_side),
                "boxes": [],
                "labels": [],
                "crowd": [],
            }
        for i, annotation in enumerate(data["annotations"]):
            where = f"annotations[{i}]"
            image_id = _field(annotation, "image_id", path, where)
            category = _field(annotation, "category_id", path, where)
            box = _field(annotation, "bbox", path, where, _xywh)
            if image_id not in self.images:
                raise DataError(f"{path}: {where}.image_id {image_id} is not in 'images'")
            if category not in label_of:
                raise DataError(f"{path}: {where}.category_id {category} is not in 'categories'")
            crowd = bool(annotation.get("iscrowd", 0))
            if box[2] == 0 or box[3] == 0 or (crowd and skip_crowd):
                continue
            entry = self.images[image_id]
            entry["boxes"].append([box[0], box[1], box[0] + box[2], box[1] + box[3]])  # xywh -> xyxy
            entry["labels"].append(label_of[category])
            entry["crowd"].append(crowd)
        self.ids: list[int] = sorted(self.images)
        self.annotation_json = path
        self.image_root = image_root
        self.min_proposal_size = min_proposal_size
        self.proposals = load_proposals(proposal_file, image_ids=self.ids) if proposal_file else None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def target(self, index: int) -> dict:
        """Boxes, labels, crowd flags and tags of item ``index`` (no image read)."""
        entry = self.images[self.ids[index]]
        labels = torch.tensor(entry["labels"], dtype=torch.int64)  # [M]
        return {
            "image_id": self.ids[index],
            "boxes": torch.tensor(entry["boxes"], dtype=torch.float32).reshape(-1, 4),  # [M, 4]
            "labels": labels,
            "crowd": torch.tensor(entry["crowd"], dtype=torch.bool),  # [M]
            "tags": _tags(labels, self.num_classes),  # [C]
        }

    def image_path(self, index: int) -> str:
        return os.path.join(self.image_root, self.images[self.ids[index]]["file_name"])

    def image(self, index: int) -> Tensor:
        """[3, H, W] uint8 RGB of one image (no annotation read)."""
        return _read_image(self.image_path(index))

    def image_proposals(self, index: int) -> Tensor:
        """[P, 4] the preprocessed proposals of one image (a proposal file is required)."""
        if self.proposals is None:
            raise DataError(f"{self.annotation_json}: no proposal file was given")
        entry = self.images[self.ids[index]]
        return preprocess_proposals(
            self.proposals[self.ids[index]], entry["width"], entry["height"], self.min_proposal_size, False
        )

    def __getitem__(self, index: int) -> dict:
        item = {"image": self.image(index), **self.target(index)}
        if self.proposals is not None:
            item["proposals"] = self.image_proposals(index)
        return item
