"""UFO² label kinds: which form of annotation each training image carries, and where it comes from.

A training image has one kind (``LABEL_KINDS``):

* ``boxes``: a box and class per object (Fast R-CNN supervision);
* ``tags``: the classes present (MIL + MIST, the wetectron detector);
* ``points``: one click per object, with its class;
* ``scribbles``: one stroke (a polyline) per object, with its class;
* ``none``: no label at all (self-training on a teacher's confident predictions, never negatives).

Images that no label reaches are left out of training (the budget solver's leftovers, images a COCO
file does not list). The kinds are given, in this order of precedence, by (``LabelsConfig``):

1. ``labels.coco_file``: a COCO-format JSON that carries the annotations themselves (format below);
2. ``labels.budget`` > 0: the annotation-budget solver (``budget.py``) picks images and kinds under
   ``labels.policy``, using the ground truth of the procedural scenes as the simulated annotator;
3. ``labels.assignment_file``: a JSON object ``{"<image index>": "<kind>", ...}``;
4. ``labels.mix``: the share of images per kind, e.g. ``{boxes: 0.1, tags: 0.3, points: 0.2,
   scribbles: 0.2, none: 0.2}`` (a seeded permutation, largest-remainder rounding).

With 2-4 the annotations come from the scenes' ground truth (boxes, ``points`` clicked inside each
mask, ``scribbles`` along each mask's skeleton; ``imaginate.data.annotations``).

COCO-format label file (``read_coco_labels``; ``write_coco_labels`` writes one):

    {"categories": [{"id": 1, "name": "red_disk"}, ...],            # names must be the data's classes
     "images": [{"id": 0, "label_kind": "points", "file_name": ..., "width": ..., "height": ...}, ...],
     "annotations": [
        {"image_id": 0, "category_id": 1, "bbox": [x, y, w, h]},       # kind boxes (COCO's xywh)
        {"image_id": 0, "category_id": 1, "point": [x, y]},            # kind points
        {"image_id": 0, "category_id": 1, "scribble": [[x, y], ...]},  # kind scribbles, >= 2 vertices
        {"image_id": 0, "category_id": 1}]}                            # kind tags: the class is present

``label_kind`` defaults to ``boxes`` (plain COCO); an image of kind ``none`` ignores its annotations.
With the procedural scenes (and VOC folders) an image ``id`` is the index of the training image; with
``data.name=coco`` it is the COCO image id of the training JSON. Any malformed kind,
point, scribble, box or category raises ``DataError`` naming the file and the image id.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from imaginate.data.errors import DataError
from imaginate.systems.wsod.budget import POLICIES, AnnotationCosts

if TYPE_CHECKING:
    from imaginate.systems.wsod.data import DetectionSplit

LABEL_KINDS = ("boxes", "tags", "points", "scribbles", "none")


@dataclass
class LabelsConfig:
    """Args:
        mix: share of training images per label kind (shares >= 0, summing to 1); {} = not used.
        assignment_file: JSON {"<image index>": "<kind>"} ("" = not used).
        coco_file: COCO-format JSON with each image's kind and annotations ("" = not used).
        budget: annotator-seconds for the budget solver (0 = not used); policy: its policy.
        costs: seconds per label (``budget.AnnotationCosts``).
        seed: the seed of the mix's image order and of the solver's.
    Nothing set: UFO² is off and the detector trains as wetectron (every image tagged).
    """

    mix: dict[str, float] = field(default_factory=dict)
    assignment_file: str = ""
    coco_file: str = ""
    budget: float = 0.0
    policy: str = "tags"
    costs: AnnotationCosts = field(default_factory=AnnotationCosts)
    seed: int = 0

    def __post_init__(self) -> None:
        for kind, share in self.mix.items():
            if kind not in LABEL_KINDS:
                raise ValueError(f"labels.mix: unknown kind {kind!r} (one of {', '.join(LABEL_KINDS)})")
            if not share >= 0:
                raise ValueError(f"labels.mix.{kind}: must be >= 0, got {share}")
        if self.mix and abs(sum(self.mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"labels.mix: shares must sum to 1, got {sum(self.mix.values())}")
        if self.budget < 0:
            raise ValueError(f"labels.budget: must be >= 0 annotator-seconds, got {self.budget}")
        if self.policy not in POLICIES:
            raise ValueError(f"labels.policy: {self.policy!r} is not one of {', '.join(POLICIES)}")

    @property
    def enabled(self) -> bool:
        return bool(self.mix or self.assignment_file or self.coco_file or self.budget > 0)


@dataclass
class ImageLabels:
    """One image's labels, in the stored image's pixels (continuous xyxy, (x, y) points).

    Attributes:
        kind: one of ``LABEL_KINDS``.
        tags: [C] 0/1 classes present (all 0 for ``none``: unknown, not absent).
        classes: [n] int64 0-based class of each annotated object (boxes, points or scribbles).
        boxes: [n, 4] (kind boxes) or None; points: [n, 2] (kind points) or None;
        scribbles: n x [M_i, 2] (kind scribbles) or None.
    """

    kind: str
    tags: Tensor
    classes: Tensor
    boxes: Tensor | None = None
    points: Tensor | None = None
    scribbles: list[Tensor] | None = None

    def geometry(self) -> Tensor:
        """[K, 4] every coordinate as boxes (points and scribble vertices as [x, y, x, y]) so that a
        resize or flip of boxes maps them too; ``with_geometry`` reads them back."""
        parts = [self.boxes.float()] if self.boxes is not None else []
        if self.points is not None:
            parts.append(self.points.float().repeat(1, 2))
        for stroke in self.scribbles or []:
            parts.append(stroke.float().repeat(1, 2))
        return torch.cat(parts) if parts else torch.zeros(0, 4)

    def with_geometry(self, rows: Tensor) -> ImageLabels:
        """A copy whose coordinates are ``rows`` [K, 4], laid out as ``geometry()`` returns them."""
        at, boxes, points, scribbles = 0, None, None, None
        if self.boxes is not None:
            boxes, at = rows[: len(self.boxes)], len(self.boxes)
        if self.points is not None:
            points, at = rows[at: at + len(self.points), :2], at + len(self.points)
        if self.scribbles is not None:
            scribbles = []
            for stroke in self.scribbles:
                scribbles.append(rows[at: at + len(stroke), :2])
                at += len(stroke)
        return ImageLabels(self.kind, self.tags, self.classes, boxes, points, scribbles)

    def to(self, device: torch.device) -> ImageLabels:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return ImageLabels(self.kind, self.tags.to(device), self.classes.to(device), move(self.boxes),
                           move(self.points), None if self.scribbles is None else [move(s) for s in self.scribbles])


def labels_from_split(split: DetectionSplit, index: int, kind: str) -> ImageLabels:
    """Image ``index``'s labels of ``kind`` from the split's ground truth (the simulated annotator)."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"unknown label kind {kind!r}")
    classes = split.labels[index].to(torch.int64)
    tags = split.tags[index].clone()
    if kind == "none":
        return ImageLabels(kind, torch.zeros_like(tags), classes[:0])
    if kind == "tags":
        return ImageLabels(kind, tags, classes[:0])
    if kind == "boxes":
        return ImageLabels(kind, tags, classes, boxes=split.boxes[index].float())
    source = split.points if kind == "points" else split.scribbles
    if source is None:
        raise DataError(f"label kind {kind!r} needs {kind} in the data; only the procedural scenes or a "
                        f"labels.coco_file provide them")
    if kind == "points":
        return ImageLabels(kind, tags, classes, points=source[index].float())
    return ImageLabels(kind, tags, classes, scribbles=[s.float() for s in source[index]])


def kinds_by_share(num_images: int, shares: dict[str, float], seed: int) -> list[str]:
    """One kind per image: counts by largest-remainder rounding of ``shares`` x ``num_images``, placed
    on a seeded permutation of the images (kinds in ``LABEL_KINDS`` order)."""
    kinds = [k for k in LABEL_KINDS if shares.get(k, 0) > 0]
    exact = [shares[k] * num_images for k in kinds]
    counts = [int(math.floor(e)) for e in exact]
    order = sorted(range(len(kinds)), key=lambda j: (-(exact[j] - counts[j]), j))
    for j in order[: num_images - sum(counts)]:
        counts[j] += 1
    sequence = [k for k, n in zip(kinds, counts) for _ in range(n)]
    perm = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed)).tolist()
    out = [""] * num_images
    for position, image in enumerate(perm):
        out[image] = sequence[position]
    return out


def _load_json(path: str) -> object:
    if not os.path.isfile(path):
        raise DataError(f"{path}: label file not found")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not readable JSON ({type(exc).__name__})") from None


def read_assignment_file(path: str, num_images: int) -> list[str | None]:
    """Kinds from ``{"<index>": "<kind>"}``; images not listed are left out (None)."""
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{\"<image index>\": \"<kind>\"}}")
    out: list[str | None] = [None] * num_images
    for key, kind in data.items():
        if not str(key).isdigit() or not int(key) < num_images:
            raise DataError(f"{path}: image {key!r} is not an index below {num_images}")
        if kind not in LABEL_KINDS:
            raise DataError(f"{path}: image {key}: label kind {kind!r} is not one of {', '.join(LABEL_KINDS)}")
        out[int(key)] = kind
    return out


def _finite_pair(value: object) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def read_coco_labels(path: str, classes: Sequence[str], num_images: int,
                     image_ids: Sequence[int] | None = None) -> list[ImageLabels | None]:
    """The labels of a COCO-format file (module docstring), one entry per training image (None: not in
    the file). ``image_ids``: the training split's COCO image ids by position (None: ids are positions).
    Raises ``DataError`` naming the file and image id on any malformed entry."""
    position = ({int(i): k for k, i in enumerate(image_ids)} if image_ids is not None
                else {i: i for i in range(num_images)})
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO-format file (no 'images' list)")
    names = {}
    for cat in data.get("categories", []):
        if not isinstance(cat, dict) or cat.get("name") not in classes:
            raise DataError(f"{path}: category {cat!r} is not one of the data's classes ({', '.join(classes)})")
        names[cat.get("id")] = classes.index(cat["name"])
    kinds: dict[int, str] = {}
    for image in data["images"]:
        image_id = image.get("id") if isinstance(image, dict) else None
        if not isinstance(image_id, int) or image_id not in position:
            what = "a COCO image id of the training set" if image_ids is not None else \
                f"a training image index below {num_images}"
            raise DataError(f"{path}: image id {image_id!r} is not {what}")
        kind = image.get("label_kind", "boxes")
        if kind not in LABEL_KINDS:
            raise DataError(f"{path}: image {image_id}: label_kind {kind!r} is not one of {', '.join(LABEL_KINDS)}")
        kinds[image_id] = kind
    objects: dict[int, list[tuple[int, object]]] = {i: [] for i in kinds}
    for ann in data.get("annotations", []):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if image_id not in kinds:
            raise DataError(f"{path}: annotation {ann!r} names image id {image_id!r}, which 'images' does not list")
        kind = kinds[image_id]
        if kind == "none":
            continue
        if ann.get("category_id") not in names:
            raise DataError(f"{path}: image {image_id}: category_id {ann.get('category_id')!r} is not in 'categories'")
        key = {"boxes": "bbox", "points": "point", "scribbles": "scribble"}.get(kind)
        value = ann.get(key) if key else None
        if kind == "boxes" and not (isinstance(value, list) and len(value) == 4 and _finite_pair(value[:2])
                                    and _finite_pair(value[2:]) and value[2] > 0 and value[3] > 0):
            raise DataError(f"{path}: image {image_id}: bbox {value!r} is not [x, y, w, h] with w, h > 0")
        if kind == "points" and not _finite_pair(value):
            raise DataError(f"{path}: image {image_id}: point {value!r} is not [x, y] (two finite numbers)")
        if kind == "scribbles" and not (isinstance(value, list) and len(value) >= 2 and all(map(_finite_pair, value))):
            raise DataError(f"{path}: image {image_id}: scribble {value!r} is not a polyline of >= 2 [x, y] vertices")
        objects[image_id].append((names[ann["category_id"]], value))
    out: list[ImageLabels | None] = [None] * num_images
    for image_id, kind in kinds.items():
        found = objects[image_id]
        classes_t = torch.tensor([c for c, _ in found], dtype=torch.int64)
        tags = torch.zeros(len(classes))
        if kind != "none":
            tags[classes_t] = 1.0
        values = [v for _, v in found]
        if kind == "boxes":
            xywh = torch.tensor(values, dtype=torch.float32).reshape(-1, 4)
            out[position[image_id]] = ImageLabels(kind, tags, classes_t, boxes=torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))
        elif kind == "points":
            out[position[image_id]] = ImageLabels(kind, tags, classes_t, points=torch.tensor(values, dtype=torch.float32).reshape(-1, 2))
        elif kind == "scribbles":
            out[position[image_id]] = ImageLabels(kind, tags, classes_t, scribbles=[torch.tensor(v, dtype=torch.float32) for v in values])
        else:
            out[position[image_id]] = ImageLabels(kind, tags, classes_t[:0])
    return out


def write_coco_labels(path: str, split: DetectionSplit, kinds: Sequence[str | None]) -> None:
    """Write the split's ground truth as a COCO-format label file with one kind per image (None: left out)."""
    images, annotations = [], []
    for index, kind in enumerate(kinds):
        if kind is None:
            continue
        height, width = split.image(index).shape[-2:]
        images.append({"id": index, "label_kind": kind, "width": int(width), "height": int(height)})
        if kind == "none":
            continue
        labels = labels_from_split(split, index, kind)
        if kind == "tags":
            annotations += [{"image_id": index, "category_id": int(c) + 1} for c in labels.tags.nonzero().flatten()]
            continue
        for n, c in enumerate(labels.classes.tolist()):
            ann: dict[str, object] = {"image_id": index, "category_id": c + 1}
            if kind == "boxes":
                x1, y1, x2, y2 = labels.boxes[n].tolist()
                ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            elif kind == "points":
                ann["point"] = labels.points[n].tolist()
            else:
                ann["scribble"] = labels.scribbles[n].tolist()
            annotations.append(ann)
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(split.classes)]
    with open(path, "w") as f:
        json.dump({"categories": categories, "images": images, "annotations": annotations}, f)


def image_labels(cfg: LabelsConfig, split: DetectionSplit) -> list[ImageLabels | None]:
    """Every training image's labels under ``cfg`` (module docstring; None: left out of training)."""
    from imaginate.systems.wsod.budget import solve_budget

    n = len(split)
    if cfg.coco_file:
        return read_coco_labels(cfg.coco_file, list(split.classes), n, split.image_ids)
    if cfg.budget > 0:
        counts = [int(b.shape[0]) for b in split.boxes]
        kinds: Sequence[str | None] = solve_budget(counts, len(split.classes), cfg.budget, cfg.policy, cfg.costs,
                                                   cfg.seed)
    elif cfg.assignment_file:
        kinds = read_assignment_file(cfg.assignment_file, n)
    else:
        kinds = kinds_by_share(n, cfg.mix, cfg.seed)
    return [None if k is None else labels_from_split(split, i, k) for i, k in enumerate(kinds)]
