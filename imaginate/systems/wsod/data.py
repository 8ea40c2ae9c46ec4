"""Training and test data of the weakly supervised detector: procedural scenes or a VOC folder, with proposals.

Scenes (``data.name=scenes``, offline) are rendered into memory and their Selective Search (or
sliding-window) proposals computed once per image and cached on disk (``ProposalCache``). A VOC
folder (``data.name=voc``) is read lazily, with a proposal pickle as wetectron reads them or, without
one, proposals computed and cached the same way. Boxes are continuous xyxy for scenes and VOC's
inclusive pixels for VOC (``pixel_inclusive`` says which, for the metrics).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import functional as F

from imaginate.config import check_choice
from imaginate.data.detection import VOC_CLASSES, COCODetection, VOCDetection, preprocess_proposals
from imaginate.data.errors import DataError
from imaginate.data.scenes import SCENE_CLASSES, SceneDataset
from imaginate.systems.wsod.inference import flip_boxes
from imaginate.systems.wsod.proposals import PROPOSAL_METHODS, ProposalCache, ProposalParams

DATASETS = ("scenes", "voc", "coco")
TEST_SEED_OFFSET = 1_000_003  # the scene test set's seed: disjoint from the training scenes


def default_proposal_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "imaginate", "wsod_proposals")


@dataclass
class WSODDataConfig:
    """Args:
        name: scenes (procedural, offline) | voc (a PASCAL VOC folder) | coco (an image folder and
            instances JSON files; the classes are the JSON's categories, crowd boxes are left out of
            training and ignored by the metrics; evaluation adds COCO AP and AP50).
        num_train / num_test: scene images of the training and test sets (scenes only).
        image_size: scene side in pixels (scenes only).
        seed: the training scenes' seed (the test scenes use a disjoint one).
        max_objects: objects per scene, at most.
        root: the VOC folder (voc) or the image folder (coco); train_set / test_set: VOC image-set names.
        train_json / test_json: COCO instances files (coco only; relative paths are tried under root).
        test_images: the test split's image folder (coco only; "" = root, e.g. val2014 beside train2014).
        classes: VOC class names (voc only; default the 20 PASCAL classes).
        train_proposals / test_proposals: proposal pickles (voc only; empty: compute and cache).
        proposal_method: auto | selective_search | sliding_window (for computed proposals).
        max_proposals: proposals kept per image.
        proposal_cache: folder of computed proposals ("" = ~/.cache/imaginate/wsod_proposals).
        train_scales: shorter-side sizes drawn per step for multi-scale training ([] = as stored).
        hflip: random horizontal flips in training.
    """

    name: str = "scenes"
    num_train: int = 1000
    num_test: int = 300
    image_size: int = 96
    seed: int = 0
    max_objects: int = 4
    root: str | None = None
    train_set: str = "trainval"
    test_set: str = "test"
    train_json: str = ""
    test_json: str = ""
    test_images: str = ""
    classes: list[str] = field(default_factory=lambda: list(VOC_CLASSES))
    train_proposals: str = ""
    test_proposals: str = ""
    proposal_method: str = "auto"
    max_proposals: int = 300
    proposal_cache: str = ""
    train_scales: list[int] = field(default_factory=list)
    hflip: bool = True

    def __post_init__(self) -> None:
        check_choice("data.name", self.name, DATASETS)
        check_choice("data.proposal_method", self.proposal_method, PROPOSAL_METHODS)
        for key in ("num_train", "num_test", "max_proposals"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.{key}: must be >= 1, got {getattr(self, key)}")
        if any(s < 16 for s in self.train_scales):
            raise ValueError(f"data.train_scales: sizes must be >= 16 px, got {list(self.train_scales)}")
        if self.name == "voc" and not self.root:
            raise ValueError("data.root: required when data.name=voc (data.root=VOCdevkit/VOC2007)")
        if self.name == "coco" and not (self.root and self.train_json and self.test_json):
            raise ValueError("data.root, data.train_json, data.test_json: required when data.name=coco "
                             "(the image folder and its instances JSON files)")


class DetectionSplit:
    """One split: images, tags, ground truth and proposals, indexable by position.

    Attributes:
        tags: [N, C] float32; boxes / labels / difficult: per image; part_boxes: per image or None
        (scenes: each object's discriminative part); proposals: per image [P_i, 4] float32.
    """

    def __init__(self, images: Tensor | VOCDetection, tags: Tensor, boxes: list[Tensor], labels: list[Tensor],
                 difficult: list[Tensor], proposals: list[Tensor], classes: tuple[str, ...],
                 pixel_inclusive: bool, part_boxes: list[Tensor] | None = None) -> None:
        self._images = images
        self.tags, self.boxes, self.labels, self.difficult = tags, boxes, labels, difficult
        self.proposals, self.classes, self.pixel_inclusive = proposals, classes, pixel_inclusive
        self.part_boxes = part_boxes
        self.points: list[Tensor] | None = None  # per image [n_i, 2] clicks (scenes; UFO² labels)
        self.scribbles: list[list[Tensor]] | None = None  # per image n_i x [M, 2] polylines (scenes)
        self.image_ids: list[int] | None = None  # COCO image ids by position (data.name=coco); None: positions

    def __len__(self) -> int:
        return int(self.tags.shape[0])

    def image(self, index: int) -> Tensor:
        """[3, H, W] float32 in [0, 1]."""
        if isinstance(self._images, Tensor):
            return self._images[index].float() / 255.0
        return self._images.image(index).float() / 255.0

    def annotations(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per image (boxes, labels, difficult), the metrics' ``Annotation``."""
        return list(zip(self.boxes, self.labels, self.difficult))


def _proposals_for(images: list[Tensor] | VOCDetection | COCODetection, ids: list, cfg: WSODDataConfig, desc: str) -> list[Tensor]:
    from tqdm import tqdm

    cache = ProposalCache(cfg.proposal_cache or default_proposal_cache(), cfg.proposal_method,
                          ProposalParams(max_proposals=cfg.max_proposals))
    out = []
    for i, image_id in enumerate(tqdm(ids, desc=f"proposals ({desc}, {cache.method})", leave=False,
                                      disable=len(ids) < 50)):
        pixels = images[i] if isinstance(images, list) else images.image(i)  # [3, H, W] uint8
        source = os.path.abspath(cfg.root) if cfg.root and cfg.name != "scenes" else cfg.name
        boxes = cache.get(image_id, pixels.permute(1, 2, 0).numpy(), source)  # keyed by folder and pixels too
        out.append(preprocess_proposals(boxes, pixels.shape[2], pixels.shape[1], 2.0, False))
    return out


def scene_split(cfg: WSODDataConfig, train: bool) -> DetectionSplit:
    seed = cfg.seed if train else cfg.seed + TEST_SEED_OFFSET
    arrays = SceneDataset(cfg.num_train if train else cfg.num_test, cfg.image_size, seed,
                          max_objects=cfg.max_objects).prerender()
    ids = [f"scene{cfg.image_size}-s{seed}-m{cfg.max_objects}-{i}" for i in range(len(arrays))]
    proposals = _proposals_for(list(arrays.images), ids, cfg, "train" if train else "test")
    difficult = [torch.zeros(len(b), dtype=torch.bool) for b in arrays.boxes]
    split = DetectionSplit(arrays.images, arrays.tags, arrays.boxes, arrays.labels, difficult, proposals,
                           SCENE_CLASSES, pixel_inclusive=False, part_boxes=arrays.part_boxes)
    split.points, split.scribbles = arrays.points, arrays.scribbles
    return split


def voc_split(cfg: WSODDataConfig, train: bool) -> DetectionSplit:
    assert cfg.root is not None  # checked by the config
    proposal_file = cfg.train_proposals if train else cfg.test_proposals
    data = VOCDetection(cfg.root, cfg.train_set if train else cfg.test_set, cfg.classes,
                        proposal_file=proposal_file or None)
    records = [data.record(i) for i in range(len(data))]
    keep_tags = [r.labels[~r.difficult] for r in records]
    tags = torch.zeros(len(data), len(cfg.classes))
    for i, labels in enumerate(keep_tags):
        tags[i, labels] = 1.0
    if proposal_file:
        proposals = [data.image_proposals(i, r) for i, r in enumerate(records)]
    else:
        proposals = _proposals_for(data, data.ids, cfg, cfg.train_set if train else cfg.test_set)
    if any(p.shape[0] == 0 for p in proposals):
        raise DataError(f"{cfg.root}: an image has no proposal left after clipping and size filtering")
    split = DetectionSplit(data, tags, [r.boxes for r in records], [r.labels for r in records],
                           [r.difficult for r in records], proposals, tuple(cfg.classes), pixel_inclusive=True)
    if all(r.points is not None and not r.points.isnan().any() for r in records):  # clicks in the XML
        split.points = [r.points for r in records]
    if all(r.scribbles is not None and all(len(s) for s in r.scribbles) for r in records):
        split.scribbles = [r.scribbles for r in records]
    return split


def coco_split(cfg: WSODDataConfig, train: bool) -> DetectionSplit:
    """A COCO image folder and instances file; the test split keeps crowd boxes as ``difficult`` (ignored)."""
    assert cfg.root is not None  # checked by the config
    name = cfg.train_json if train else cfg.test_json
    path = name if os.path.isabs(name) or os.path.exists(name) else os.path.join(cfg.root, name)
    proposal_file = cfg.train_proposals if train else cfg.test_proposals
    images = cfg.root if train or not cfg.test_images else cfg.test_images
    data = COCODetection(path, images, proposal_file=proposal_file or None, skip_crowd=train)
    targets = [data.target(i) for i in range(len(data))]
    tags = torch.zeros(len(data), data.num_classes)
    for i, t in enumerate(targets):
        tags[i, t["labels"][~t["crowd"]]] = 1.0
    if proposal_file:
        proposals = [data.image_proposals(i) for i in range(len(data))]
    else:
        proposals = _proposals_for(data, data.ids, cfg, "train" if train else "test")
    if any(p.shape[0] == 0 for p in proposals):
        raise DataError(f"{path}: an image has no proposal left after clipping and size filtering")
    split = DetectionSplit(data, tags, [t["boxes"] for t in targets], [t["labels"] for t in targets],
                           [t["crowd"] for t in targets], proposals, data.classes, pixel_inclusive=False)
    split.image_ids = list(data.ids)
    return split


def load_split(cfg: WSODDataConfig, train: bool) -> DetectionSplit:
    builders = {"scenes": scene_split, "voc": voc_split, "coco": coco_split}
    return builders[cfg.name](cfg, train)


def resize_view(image: Tensor, boxes: Tensor, size: int | None, flip: bool) -> tuple[Tensor, Tensor]:
    """An image [3, H, W] resized so its shorter side is ``size`` (None: kept) and optionally mirrored,
    with its boxes [P, 4] (continuous xyxy) mapped along."""
    height, width = image.shape[-2:]
    if size is not None and size != min(height, width):
        scale = size / min(height, width)
        new = (round(height * scale), round(width * scale))
        image = F.interpolate(image[None], size=new, mode="bilinear", align_corners=False)[0]
        boxes = boxes * torch.tensor([new[1] / width, new[0] / height] * 2)
        width = new[1]
    if flip:
        image, boxes = image.flip(-1), flip_boxes(boxes, width)
    return image, boxes
