"""Export procedural scenes (SceneDataset / SceneArrays) as a PASCAL VOC folder or a COCO json, the
formats the wsod readers take for real data (split from scenes.py; ``imaginate.data.scenes`` re-exports both)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from imaginate.data.scenes import SceneArrays, SceneDataset


def _children(parent: ET.Element, **texts: object) -> None:
    """Append one child element per keyword, its text the value."""
    for tag, text in texts.items():
        ET.SubElement(parent, tag).text = str(text)


def export_voc(
    dataset: SceneDataset | SceneArrays, root: str, image_set: str = "trainval", jpeg_quality: int = 95
) -> list[str]:
    """Write scenes as a PASCAL VOC folder that ``imaginate.data.detection.VOCDetection`` reads.

    Writes ``JPEGImages/<id>.jpg`` (JPEG, the only format VOCDetection reads: lossy),
    ``Annotations/<id>.xml`` and ``ImageSets/Main/<image_set>.txt`` (rewritten), ids
    ``f"{image_id:06d}"``. A box [x1, y1, x2, y2] (x2, y2 exclusive) is stored 1-based inclusive as
    xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2; ``read_voc_annotation`` subtracts 1 and so
    returns exactly [x1, y1, x2 - 1, y2 - 1]. Each object also gets its click and its scribble
    (elements beyond VOC's, ignored by other VOC readers), 1-based like the box, 3 decimals:
    ``<point><x>X + 1</x><y>Y + 1</y></point>`` and ``<scribble>x1,y1 x2,y2 ...</scribble>`` (vertices
    + 1); ``read_voc_annotation`` subtracts 1 and returns them as ``points`` [M, 2] and ``scribbles``.
    Read back with ``VOCDetection(root, image_set, classes=SCENE_CLASSES)``.

    Args:
        dataset: the scenes to write.
        root: the VOC folder (created if missing).
        image_set: the image-set name.
        jpeg_quality: JPEG quality, 1 to 100.

    Returns:
        the ids written, in order.
    """
    from PIL import Image

    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    for folder in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    ids = []
    for index in range(len(dataset)):
        item = dataset[index]
        image_id = f"{item['image_id']:06d}"
        pixels = torch.round(item["image"] * 255.0).to(torch.uint8).permute(1, 2, 0).numpy()  # [H, W, 3]
        image_path = os.path.join(root, "JPEGImages", f"{image_id}.jpg")
        Image.fromarray(pixels).save(image_path, quality=jpeg_quality)
        annotation = ET.Element("annotation")
        _children(annotation, folder=os.path.basename(os.path.normpath(root)), filename=f"{image_id}.jpg")
        _children(ET.SubElement(annotation, "size"), width=pixels.shape[1], height=pixels.shape[0], depth=3)
        for k, ((x1, y1, x2, y2), label) in enumerate(zip(item["boxes"].round().int().tolist(), item["labels"].tolist())):
            obj = ET.SubElement(annotation, "object")
            _children(obj, name=dataset.classes[label], pose="Unspecified", truncated=0, difficult=0)
            _children(ET.SubElement(obj, "bndbox"), xmin=x1 + 1, ymin=y1 + 1, xmax=x2, ymax=y2)
            px, py = item["points"][k].tolist()
            _children(ET.SubElement(obj, "point"), x=f"{px + 1:.3f}", y=f"{py + 1:.3f}")
            _children(obj, scribble=" ".join(f"{x + 1:.3f},{y + 1:.3f}" for x, y in item["scribbles"][k].tolist()))
        ET.indent(annotation)
        ET.ElementTree(annotation).write(os.path.join(root, "Annotations", f"{image_id}.xml"))
        ids.append(image_id)
    with open(os.path.join(root, "ImageSets", "Main", f"{image_set}.txt"), "w") as f:
        f.write("".join(f"{image_id}\n" for image_id in ids))
    return ids


def export_coco(dataset: SceneDataset | SceneArrays, image_root: str, annotation_json: str,
                jpeg_quality: int = 95) -> list[int]:
    """Write scenes as a COCO-style detection set that ``imaginate.data.detection.COCODetection`` reads.

    Writes ``<image_root>/<image_id:012d>.jpg`` (JPEG: lossy) and one instances JSON: ``images``
    (``id`` = the scene index, ``file_name``, ``width``, ``height``), ``categories`` (ids 1..C, the
    scene class names) and ``annotations`` with ``bbox`` [x, y, w, h] (continuous pixels, the tight
    box of the visible mask), ``area``, ``iscrowd`` 0 and, beyond COCO's fields, the object's click
    ``point`` [x, y] and ``scribble`` [[x, y], ...] (the UFO² label fields).

    Returns:
        the image ids written, in order.
    """
    import json

    from PIL import Image

    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    os.makedirs(image_root, exist_ok=True)
    images, annotations = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        image_id = int(item["image_id"])
        pixels = torch.round(item["image"] * 255.0).to(torch.uint8).permute(1, 2, 0).numpy()  # [H, W, 3]
        file_name = f"{image_id:012d}.jpg"
        Image.fromarray(pixels).save(os.path.join(image_root, file_name), quality=jpeg_quality)
        images.append({"id": image_id, "file_name": file_name, "width": pixels.shape[1], "height": pixels.shape[0]})
        for k, ((x1, y1, x2, y2), label) in enumerate(zip(item["boxes"].tolist(), item["labels"].tolist())):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                                "point": item["points"][k].tolist(), "scribble": item["scribbles"][k].tolist()})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(dataset.classes)]
    folder = os.path.dirname(os.path.abspath(annotation_json))
    os.makedirs(folder, exist_ok=True)
    with open(annotation_json, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return [image["id"] for image in images]
