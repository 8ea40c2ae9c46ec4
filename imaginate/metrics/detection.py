"""Detection metrics: box IoU, PASCAL VOC average precision (VOC07 11-point and area), CorLoc, COCO AP.

Conventions shared by every function here:

* Boxes are ``[x1, y1, x2, y2]``. Labels are foreground class indices in ``[0, num_classes)``;
  a detector's background class is not a class here (shift it out before calling).
* Detections are given per image as ``(boxes [N, 4], scores [N], labels [N])``; annotations per
  image as ``(boxes [M, 4], labels [M], difficult [M] bool)``, in the same image order.
* ``pixel_inclusive``: the PASCAL VOC devkit treats box coordinates as inclusive pixel indices, so
  a box's width is ``x2 - x1 + 1`` (the "+1" convention; py-faster-rcnn and wetectron do the same).
  ``voc_eval`` and ``corloc`` default to it (``pixel_inclusive=True``) so that VOC annotations read
  by ``imaginate.data.detection.read_voc_annotation`` reproduce the devkit's numbers; pass
  ``pixel_inclusive=False`` for continuous coordinates (procedural scenes, COCO, torchvision).
  ``box_iou`` defaults to continuous coordinates, as torchvision does.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torchvision
from torch import Tensor

Detection = tuple[Tensor, Tensor, Tensor]  # (boxes [N, 4], scores [N], labels [N])
Annotation = tuple[Tensor, Tensor, Tensor]  # (boxes [M, 4], labels [M], difficult [M] bool)


def box_iou(boxes_a: Tensor, boxes_b: Tensor, pixel_inclusive: bool = False) -> Tensor:
    """Pairwise intersection over union of two sets of xyxy boxes.

    Args:
        boxes_a: [N, 4] boxes.
        boxes_b: [M, 4] boxes.
        pixel_inclusive: coordinates are inclusive pixel indices (VOC "+1": width = x2 - x1 + 1).

    Returns:
        [N, M] IoU in the promoted floating dtype of the inputs (float32 for integer boxes).
    """
    dtype = torch.promote_types(boxes_a.dtype, boxes_b.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    a, b = boxes_a.to(dtype), boxes_b.to(dtype)
    if pixel_inclusive:  # inclusive [x1, x2] covers the continuous interval [x1, x2 + 1)
        a = torch.cat([a[:, :2], a[:, 2:] + 1], dim=1)
        b = torch.cat([b[:, :2], b[:, 2:] + 1], dim=1)
    return torchvision.ops.box_iou(a, b)


def voc_ap(recall: np.ndarray | Tensor, precision: np.ndarray | Tensor, use_07_metric: bool) -> float:
    """Average precision from a precision/recall curve, as the PASCAL VOC devkit computes it.

    Args:
        recall: [K] recall after each detection, in score order (non-decreasing).
        precision: [K] precision after each detection.
        use_07_metric: True: VOC2007's 11-point interpolation, the mean over t in {0, 0.1, ..., 1}
            of the highest precision at recall >= t (0 when recall never reaches t). The
            thresholds are exactly k / 10; references that build them with ``np.arange(0, 1.1,
            0.1)`` use 0.30000000000000004 etc. and can differ when a recall hits 0.3, 0.6 or 0.7
            exactly. False: VOC2010+'s area under the monotone precision envelope
            (precision made non-increasing from the right, integrated over recall steps).

    Returns:
        AP in [0, 1]; 0 for an empty curve.
    """
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    prec = np.nan_to_num(np.asarray(precision, dtype=np.float64).reshape(-1))
    if rec.shape != prec.shape:
        raise ValueError(f"recall {rec.shape} and precision {prec.shape} must have the same shape")
    if rec.size == 0:
        return 0.0
    if use_07_metric:
        total = 0.0
        for k in range(11):
            reached = rec >= k / 10
            total += float(prec[reached].max()) if reached.any() else 0.0
        return total / 11
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope: best precision at recall >= r
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _check_lengths(detections: Sequence, annotations: Sequence) -> None:
    if len(detections) != len(annotations):
        raise ValueError(f"{len(detections)} images of detections but {len(annotations)} of annotations")


def _check_labels(labels: Tensor, num_classes: int, what: str, image: int) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"image {image}: {what} labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )


def voc_eval(
    detections: Sequence[Detection],
    annotations: Sequence[Annotation],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
    pixel_inclusive: bool = True,
) -> dict:
    """PASCAL VOC detection AP per class and its mean (mAP), with the devkit's matching rules.

    For each class, detections of all images are ranked by score (ties keep image order, then
    detection order). Each detection takes the ground-truth box of its class in its image with the
    highest IoU (difficult boxes and already-matched boxes included). If that IoU is >= the
    threshold (the devkit's ``>=``): a difficult box makes the detection ignored (neither TP nor
    FP); an unmatched box makes it a TP and marks the box matched; an already-matched box makes it
    an FP (duplicates are FPs). Below the threshold, or with no box of its class, it is an FP.
    Difficult boxes do not count as positives.

    Args:
        detections: per image ``(boxes [N, 4], scores [N], labels [N])``.
        annotations: per image ``(boxes [M, 4], labels [M], difficult [M] bool)``.
        num_classes: classes are ``0 .. num_classes - 1``.
        iou_threshold: the overlap a TP needs (0.5 for mAP@0.5).
        use_07_metric: 11-point AP (VOC2007, the WSOD papers' metric) or area AP (see voc_ap).
        pixel_inclusive: VOC "+1" box areas (default True, the devkit's); False for continuous
            coordinates.

    Returns:
        ``{"ap": [num_classes] floats (nan for a class with no non-difficult ground truth),
        "map": mean over the classes with ground truth (nan when none has any),
        "num_positives": [num_classes] ints, "recall": [num_classes] final recall (nan as ap)}``.
    """
    _check_lengths(detections, annotations)
    ranked_per_class: list[list[tuple[float, int, int]]] = [[] for _ in range(num_classes)]
    best_gt: list[list[int]] = []  # per image, per detection: its best same-class GT box, -1 if none
    best_iou: list[list[float]] = []  # per image, per detection: that IoU
    difficult_flags: list[list[bool]] = []  # per image, per GT box
    num_positives = [0] * num_classes
    for image, ((det_boxes, det_scores, det_labels), (gt_boxes, gt_labels, gt_difficult)) in enumerate(
        zip(detections, annotations)
    ):
        det_labels, gt_labels = det_labels.reshape(-1).long(), gt_labels.reshape(-1).long()
        _check_labels(det_labels, num_classes, "detection", image)
        _check_labels(gt_labels, num_classes, "annotation", image)
        gt_difficult = gt_difficult.reshape(-1).bool()
        for c in gt_labels[~gt_difficult].tolist():
            num_positives[c] += 1
        for i, (score, c) in enumerate(zip(det_scores.reshape(-1).tolist(), det_labels.tolist())):
            ranked_per_class[c].append((score, image, i))
        overlaps = box_iou(
            det_boxes.reshape(-1, 4).double(), gt_boxes.reshape(-1, 4).double(), pixel_inclusive
        )
        overlaps[det_labels[:, None] != gt_labels[None, :]] = -1.0  # [N, M], other classes never match
        if gt_labels.numel():
            iou, index = overlaps.max(dim=1)  # the first maximum, as the devkit's max()
            index[iou < 0] = -1
        else:
            iou, index = torch.full((det_labels.numel(),), -1.0), torch.full((det_labels.numel(),), -1)
        best_iou.append(iou.tolist())
        best_gt.append(index.tolist())
        difficult_flags.append(gt_difficult.tolist())

    aps, recalls = [], []
    for c in range(num_classes):
        ranked = sorted(ranked_per_class[c], key=lambda item: -item[0])  # stable: ties keep input order
        matched: set[tuple[int, int]] = set()  # (image, GT index) already matched
        is_tp: list[bool] = []  # one entry per non-ignored detection, in rank order
        for _, image, i in ranked:
            gt_index = best_gt[image][i]
            if gt_index < 0 or best_iou[image][i] < iou_threshold:
                is_tp.append(False)
            elif difficult_flags[image][gt_index]:
                continue  # matches a difficult box: ignored, neither TP nor FP
            else:
                is_tp.append((image, gt_index) not in matched)
                matched.add((image, gt_index))
        if num_positives[c] == 0:
            aps.append(math.nan)
            recalls.append(math.nan)
            continue
        tp = np.cumsum(np.asarray(is_tp, dtype=np.float64))
        fp = np.cumsum(1.0 - np.asarray(is_tp, dtype=np.float64))
        recall = tp / num_positives[c]
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(voc_ap(recall, precision, use_07_metric))
        recalls.append(float(recall[-1]) if recall.size else 0.0)
    valid = [ap for ap in aps if not math.isnan(ap)]
    return {
        "ap": aps,
        "map": float(np.mean(valid)) if valid else math.nan,
        "num_positives": num_positives,
        "recall": recalls,
    }


def top_box_per_class(detections: Sequence[Detection], num_classes: int) -> list[dict[int, Tensor]]:
    """Per image, the highest-scoring detection box of each detected class (CorLoc's input).

    Args:
        detections: per image ``(boxes [N, 4], scores [N], labels [N])``.
        num_classes: classes are ``0 .. num_classes - 1``.

    Returns:
        per image ``{class: box [4]}`` for the classes with at least one detection.
    """
    result = []
    for image, (boxes, scores, labels) in enumerate(detections):
        labels = labels.reshape(-1).long()
        _check_labels(labels, num_classes, "detection", image)
        top: dict[int, Tensor] = {}
        for c in labels.unique().tolist():
            of_class = (labels == c).nonzero().reshape(-1)
            top[c] = boxes.reshape(-1, 4)[of_class[scores.reshape(-1)[of_class].argmax()]]
        result.append(top)
    return result


def corloc(
    top_boxes_per_image_per_class: Sequence[Mapping[int, Tensor]],
    annotations: Sequence[Annotation] | Sequence[tuple[Tensor, Tensor]],
    num_classes: int,
    iou_threshold: float = 0.5,
    pixel_inclusive: bool = True,
) -> dict:
    """Correct localisation: per class, the fraction of images containing it whose top box is right.

    For every image with at least one ground-truth box of class c, the image's top-scoring box of
    class c (``top_box_per_class`` builds these from detections) is correct when its IoU with some
    ground-truth box of class c exceeds the threshold (strictly, as wetectron's ``dis_eval``). An
    image containing c with no box for c counts as wrong. Difficult boxes count like any other (as
    in wetectron); the difficult flags, when given, are not used.

    Args:
        top_boxes_per_image_per_class: per image ``{class: box [4]}``.
        annotations: per image ``(boxes [M, 4], labels [M], ...)``.
        num_classes: classes are ``0 .. num_classes - 1``.
        iou_threshold: the IoU a correct box must exceed.
        pixel_inclusive: VOC "+1" box areas (default True, as wetectron); False for continuous
            coordinates.

    Returns:
        ``{"corloc": [num_classes] (nan for a class in no image), "mean": mean over classes present
        (nan when none is), "num_images": [num_classes] images containing each class}``.
    """
    _check_lengths(top_boxes_per_image_per_class, annotations)
    correct = [0] * num_classes
    present = [0] * num_classes
    for image, (top, annotation) in enumerate(zip(top_boxes_per_image_per_class, annotations)):
        gt_boxes, gt_labels = annotation[0].reshape(-1, 4), annotation[1].reshape(-1).long()
        _check_labels(gt_labels, num_classes, "annotation", image)
        for c in gt_labels.unique().tolist():
            present[c] += 1
            if c not in top:
                continue
            box = torch.as_tensor(top[c]).reshape(1, 4).double()
            overlaps = box_iou(box, gt_boxes[gt_labels == c].double(), pixel_inclusive)
            correct[c] += int(float(overlaps.max()) > iou_threshold)
    per_class = [correct[c] / present[c] if present[c] else math.nan for c in range(num_classes)]
    valid = [value for value in per_class if not math.isnan(value)]
    return {"corloc": per_class, "mean": float(np.mean(valid)) if valid else math.nan, "num_images": present}


COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_ap(
    detections: Sequence[Detection],
    annotations: Sequence[Annotation],
    num_classes: int,
    max_detections: int = 100,
) -> dict[str, float]:
    """COCO box AP (AP@[.5:.95], AP50, AP75, by size, and AR) through pycocotools.

    pycocotools is optional and imported here only (``pip install pycocotools``). Boxes are
    continuous xyxy pixels; the third annotation field is passed as COCO ``iscrowd`` (a detection
    matched to it is ignored, and its IoU is intersection over the detection's area), so pass
    crowd flags, not VOC difficult flags, when COCO semantics matter. Size ranges use box areas.

    Args:
        detections: per image ``(boxes [N, 4], scores [N], labels [N])``.
        annotations: per image ``(boxes [M, 4], labels [M], crowd [M] bool)``.
        num_classes: classes are ``0 .. num_classes - 1`` (COCO category ids 1 .. num_classes).
        max_detections: the most detections per image AP counts (COCO's 100).

    Returns:
        ``{name: value}`` for the 12 names in ``COCO_STAT_NAMES`` (-1 where COCO has no data).

    Raises:
        ImportError: pycocotools is not installed.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError("coco_ap needs pycocotools: pip install pycocotools") from e
    _check_lengths(detections, annotations)
    images, gts, results = [], [], []
    for image, ((det_boxes, det_scores, det_labels), annotation) in enumerate(zip(detections, annotations)):
        gt_boxes, gt_labels, crowd = annotation[0].reshape(-1, 4), annotation[1].reshape(-1), annotation[2]
        _check_labels(gt_labels.long(), num_classes, "annotation", image)
        _check_labels(det_labels.reshape(-1).long(), num_classes, "detection", image)
        images.append({"id": image})
        for box, label, is_crowd in zip(gt_boxes.tolist(), gt_labels.tolist(), crowd.reshape(-1).tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": image,
                    "category_id": int(label) + 1,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": int(bool(is_crowd)),
                }
            )
        for box, score, label in zip(
            det_boxes.reshape(-1, 4).tolist(),
            det_scores.reshape(-1).tolist(),
            det_labels.reshape(-1).tolist(),
        ):
            results.append(
                {
                    "image_id": image,
                    "category_id": int(label) + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": float(score),
                }
            )
    if not results:  # pycocotools cannot load an empty result list
        return {name: 0.0 for name in COCO_STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the table
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": images,
            "annotations": gts,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
        }
        ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="bbox")
        evaluator.params.maxDets = [1, 10, max_detections]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluator.stats)}
