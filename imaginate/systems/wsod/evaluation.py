"""Evaluation of the weakly supervised detector: VOC07 mAP@0.5 on the test set, CorLoc on training
images, the failure modes the methods address, trivial baselines and a picture of detections.

Metrics (a flat dict of floats):

- ``map50``: VOC07 11-point mAP@0.5 on the test images (``ap50_<class>`` per class);
- ``corloc``: mean over classes of the share of training images containing the class whose top box
  of that class has IoU > 0.5 with one of its instances (the WSOD convention: measured on trainval);
- ``part_only``: share of those top boxes that miss (IoU <= 0.5) but lie on the class's
  discriminative part (IoU >= 0.5 with an instance's part box, or a box under half the instance's
  area that is mostly inside it) -- WSDDN's failure that Concrete DropBlock addresses (scenes only);
- ``merged``: share of (image, class) pairs with 2+ instances whose top box misses every instance
  but covers at least two of them by 70 % of their area -- the failure MIST addresses;
- ``dup_recall``: on test images with 2+ instances of a class, the share of instances found by the
  class's top-n detections (n = the number of instances; IoU >= 0.5, one detection per instance);
- ``proposal_recall``: share of test objects some proposal covers with IoU >= 0.5 (the ceiling);
- ``coco_ap`` / ``coco_ap50`` (``data.name=coco`` only): COCO AP@[.5:.95] and AP50 on the test images
  (pycocotools, crowd boxes as crowd).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from imaginate.engine import unwrap
from imaginate.metrics.detection import box_iou, corloc, top_box_per_class, voc_eval
from imaginate.systems.wsod.inference import detect
from imaginate.systems.wsod.proposals import proposal_recall

if TYPE_CHECKING:
    from imaginate.systems.wsod.data import DetectionSplit
    from imaginate.systems.wsod.system import WSODSystem

BASELINES = ("random", "largest", "whole_image")
Detections = list[tuple[Tensor, Tensor, Tensor]]


@torch.no_grad()
def run_detector(system: WSODSystem, split: DetectionSplit, indices: Sequence[int], score_source: str | None = None,
                 batch_size: int = 16) -> Detections:
    """(boxes, scores, labels) per image of ``split[indices]``, on the CPU."""
    from imaginate.systems.wsod.system import normalize

    net, dev = unwrap(system.net), system.ctx.device
    config = system.inference_config(score_source)
    out: Detections = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        images = [normalize(split.image(i)).to(dev) for i in chunk]
        proposals = [split.proposals[i].to(dev) for i in chunk]
        for d in detect(net, images, proposals, config):
            out.append((d["boxes"].float().cpu(), d["scores"].float().cpu(), d["labels"].cpu()))
    return out


def baseline_detections(split: DetectionSplit, indices: Sequence[int], kind: str, seed: int = 0) -> Detections:
    """One box per TRUE tag of each image (oracle tags): a random proposal, the largest proposal, or the
    whole image (score 1; random scores for ``random``)."""
    gen = torch.Generator().manual_seed(seed)
    out: Detections = []
    for i in indices:
        props, classes = split.proposals[i], split.tags[i].nonzero().flatten()
        height, width = split.image(i).shape[-2:]
        boxes = []
        for _ in classes:
            if kind == "random":
                boxes.append(props[int(torch.randint(props.shape[0], (1,), generator=gen))])
            elif kind == "largest":
                areas = (props[:, 2] - props[:, 0]) * (props[:, 3] - props[:, 1])
                boxes.append(props[areas.argmax()])
            else:
                boxes.append(torch.tensor([0.0, 0.0, float(width), float(height)]))
        scores = torch.rand(len(boxes), generator=gen) if kind == "random" else torch.ones(len(boxes))
        out.append((torch.stack(boxes) if boxes else torch.zeros(0, 4), scores, classes.long()))
    return out


def _intersections(box: Tensor, instances: Tensor) -> Tensor:
    """[M] intersection areas of ``box`` [4] with each instance box [M, 4]."""
    lt = torch.maximum(box[:2], instances[:, :2])
    rb = torch.minimum(box[2:], instances[:, 2:])
    return (rb - lt).clamp(min=0).prod(dim=1)


def failure_modes(detections: Detections, split: DetectionSplit, indices: Sequence[int]) -> dict[str, float]:
    """``part_only`` and ``merged`` rates of the top box per (image, present class) (module docstring)."""
    tops = top_box_per_class(detections, len(split.classes))
    part = pairs = merged = multi = 0
    for top, i in zip(tops, indices):
        boxes, labels = split.boxes[i].float(), split.labels[i]
        parts = split.part_boxes[i].float() if split.part_boxes is not None else None
        for c in labels.unique().tolist():
            mine = labels == c
            instances = boxes[mine]
            pairs += 1
            multi += int(instances.shape[0] >= 2)
            if c not in top:
                continue
            box = top[c].float()
            if float(box_iou(box[None], instances).max()) > 0.5:
                continue
            area = float((box[2:] - box[:2]).clamp(min=0).prod())
            areas = (instances[:, 2:] - instances[:, :2]).prod(dim=1)  # [M]
            inter = _intersections(box, instances)  # [M]
            own_share = inter / max(area, 1e-6)  # share of the box inside each instance
            covered = inter / areas.clamp(min=1e-6)  # share of each instance inside the box
            on_part = parts is not None and float(box_iou(box[None], parts[mine]).max()) >= 0.5
            small_inside = bool(((own_share >= 0.8) & (area < 0.5 * areas)).any())
            part += int(on_part or small_inside)
            merged += int(instances.shape[0] >= 2 and int((covered >= 0.7).sum()) >= 2)
    return {"part_only": part / max(1, pairs), "merged": merged / max(1, multi)}


def duplicate_recall(detections: Detections, split: DetectionSplit, indices: Sequence[int]) -> float:
    """Share of instances found in (image, class) pairs with 2+ instances (module docstring); nan if none."""
    found = total = 0
    for (boxes, scores, labels), i in zip(detections, indices):
        gt, gt_labels = split.boxes[i].float(), split.labels[i]
        for c in gt_labels.unique().tolist():
            instances = gt[gt_labels == c]
            if instances.shape[0] < 2:
                continue
            total += instances.shape[0]
            mine = (labels == c).nonzero().flatten()
            mine = mine[scores[mine].argsort(descending=True)][: instances.shape[0]]
            if mine.numel() == 0:
                continue
            overlaps = box_iou(boxes[mine], instances)  # [n, M]
            taken = torch.zeros(instances.shape[0], dtype=torch.bool)
            for row in overlaps:
                row = row.masked_fill(taken, -1)
                if float(row.max()) >= 0.5:
                    taken[int(row.argmax())] = True
            found += int(taken.sum())
    return found / total if total else float("nan")


def score_detections(test_dets: Detections, train_dets: Detections, splits: tuple[DetectionSplit, DetectionSplit],
                     test_idx: Sequence[int], train_idx: Sequence[int]) -> dict[str, float]:
    """mAP50 on test, CorLoc and failure modes on train, duplicate recall on test."""
    test, train = splits
    inclusive = test.pixel_inclusive
    ann_test = [test.annotations()[i] for i in test_idx]
    ann_train = [train.annotations()[i] for i in train_idx]
    ap = voc_eval(test_dets, ann_test, len(test.classes), 0.5, use_07_metric=True, pixel_inclusive=inclusive)
    loc = corloc(top_box_per_class(train_dets, len(train.classes)), ann_train, len(train.classes), 0.5, inclusive)
    metrics = {"map50": ap["map"], "corloc": loc["mean"]}
    metrics |= {f"ap50_{name}": value for name, value in zip(test.classes, ap["ap"])}
    metrics |= failure_modes(train_dets, train, train_idx)
    metrics["dup_recall"] = duplicate_recall(test_dets, test, test_idx)
    return metrics


def _indices(system: WSODSystem) -> tuple[list[int], list[int]]:
    e = system.cfg.eval
    n_test = len(system.test_split) if e.max_test_images == 0 else min(e.max_test_images, len(system.test_split))
    return list(range(n_test)), list(range(min(e.corloc_images, len(system.train_split))))


def evaluate_system(system: WSODSystem, score_source: str | None = None) -> dict[str, float]:
    test_idx, train_idx = _indices(system)
    test, train = system.test_split, system.train_split
    test_dets = run_detector(system, test, test_idx, score_source)
    metrics = score_detections(test_dets, run_detector(system, train, train_idx, score_source), (test, train),
                               test_idx, train_idx)
    if system.cfg.data.name == "coco":  # COCO's own metric beside VOC mAP50 (crowd boxes passed as crowd)
        from imaginate.metrics.detection import coco_ap

        stats = coco_ap(test_dets, [test.annotations()[i] for i in test_idx], len(test.classes))
        metrics |= {"coco_ap": stats["AP"], "coco_ap50": stats["AP50"]}
    metrics["proposal_recall"] = proposal_recall([test.proposals[i] for i in test_idx],
                                                 [test.boxes[i].float() for i in test_idx])
    return metrics


def evaluate_baselines(system: WSODSystem) -> dict[str, dict[str, float]]:
    """The trivial baselines' metrics, with the true tags of each image given (an oracle for mAP)."""
    test_idx, train_idx = _indices(system)
    test, train = system.test_split, system.train_split
    return {kind: score_detections(baseline_detections(test, test_idx, kind), baseline_detections(train, train_idx, kind),
                                   (test, train), test_idx, train_idx) for kind in BASELINES}


def detection_picture(system: WSODSystem, count: int = 8, threshold: float = 0.3, tile: int = 192,
                      best_per_class: bool = True) -> Tensor:
    """Test images with true boxes (white, thin) and detections scoring over ``threshold`` (coloured by
    class, labelled), with ``best_per_class`` the best detection of each detected class too -> [3, H, W]
    in [0, 1]."""
    import numpy as np
    from PIL import Image, ImageDraw

    from imaginate.engine.images import to_uint8

    test = system.test_split
    idx = list(range(min(count, len(test))))
    dets = run_detector(system, test, idx)
    palette = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
               (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]
    tiles = []
    for (boxes, scores, labels), i in zip(dets, idx):
        image = test.image(i)
        scale = tile / max(image.shape[-2:])
        canvas = Image.fromarray(to_uint8(image)).resize((round(image.shape[2] * scale), round(image.shape[1] * scale)))
        draw = ImageDraw.Draw(canvas)
        for box in test.boxes[i].float().tolist():
            draw.rectangle([v * scale for v in box], outline=(255, 255, 255), width=1)
        keep = scores > threshold
        for c in labels.unique() if best_per_class else []:
            of_c = (labels == c).nonzero().flatten()
            keep[of_c[scores[of_c].argmax()]] = True
        for box, score, label in zip(boxes[keep].tolist(), scores[keep].tolist(), labels[keep].tolist()):
            color = palette[label % len(palette)]
            draw.rectangle([v * scale for v in box], outline=color, width=2)
            draw.text((box[0] * scale + 2, box[1] * scale + 1), f"{test.classes[label]} {score:.2f}", fill=color)
        tiles.append(torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255)
    from imaginate.engine.images import make_grid

    height = max(t.shape[1] for t in tiles)
    width = max(t.shape[2] for t in tiles)
    padded = torch.ones(len(tiles), 3, height, width)
    for n, t in enumerate(tiles):
        padded[n, :, : t.shape[1], : t.shape[2]] = t
    return make_grid(padded, nrow=4)
