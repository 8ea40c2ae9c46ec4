"""Test-time detection for ``WSODNet`` (wetectron, arXiv 2004.04725).

Per ROI, the refinement branches' softmax scores are averaged, and so are their box deltas, which
are then decoded (wetectron's "AVG" heuristic); or, to evaluate plain WSDDN, the WSDDN ROI scores are
used with the proposals as boxes. With test-time augmentation the image is rescaled so its shorter
side takes each of ``scales`` (and flipped horizontally when ``hflip``); each view's ROI scores and
decoded boxes, mapped back to the original image, are averaged over the views. Then, per class,
boxes above ``score_thresh`` go through NMS at 0.3 and the best 100 per image are kept.

Output per image: ``{"boxes": [D, 4] xyxy in the input image's pixels, "scores": [D],
"labels": [D] int64}`` with labels the 0-based foreground class ids 0..C-1, the convention of
``imaginate.metrics.detection`` (voc_eval, corloc, coco_ap): no background class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

from imaginate.systems.wsod.losses import BoxCoder
from imaginate.systems.wsod.model import WSODNet, rois_from_proposals

SCORE_SOURCES = ("refine", "wsddn")


@dataclass
class InferenceConfig:
    """How detections are produced.

    Args:
        score_source: "refine" (mean of the refinement branches) or "wsddn" (the MIL head alone).
        box_regression: decode the averaged refinement deltas (False: the proposals are the boxes).
        nms_iou: IoU of the per-class NMS (0.3).
        max_detections: detections kept per image, over all classes (100).
        score_thresh: scores at or below this are dropped before NMS (wetectron: 0).
        scales: shorter-side sizes of the test views; empty: the image as given only.
        max_size: cap on a view's longer side.
        hflip: add the horizontally flipped view of every scale.
    """

    score_source: str = "refine"
    box_regression: bool = True
    nms_iou: float = 0.3
    max_detections: int = 100
    score_thresh: float = 0.0
    scales: tuple[int, ...] = ()
    max_size: int = 2000
    hflip: bool = False

    def __post_init__(self) -> None:
        if self.score_source not in SCORE_SOURCES:
            raise ValueError(
                f"score_source must be one of {', '.join(SCORE_SOURCES)}, got {self.score_source!r}"
            )
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must lie in (0, 1], got {self.nms_iou}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")
        if any(scale < 1 for scale in self.scales):
            raise ValueError(f"scales must be positive sizes, got {list(self.scales)}")
        if self.max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {self.max_size}")


@torch.no_grad()
def roi_predictions(
    net: WSODNet,
    images: Tensor,
    proposals: Sequence[Tensor],
    score_source: str = "refine",
    box_regression: bool = True,
    box_coder: BoxCoder | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """One view's per-ROI class scores and boxes (the net should be in eval mode).

    Args:
        images: [B, 3, H, W].
        proposals: per-image [R_i, 4] boxes in these images' pixels.

    Returns:
        per image, scores [R_i, C] and boxes [R_i, C, 4] in the same pixels.
    """
    rois, counts = rois_from_proposals(proposals)
    outputs = net.heads(net.neck(net.roi_features(net.features(images), rois)), counts)
    boxes = rois[:, None, 1:].expand(-1, net.num_classes, 4)  # [R, C, 4] the proposals themselves
    if score_source == "wsddn":
        scores = outputs["roi_scores"]  # [R, C]
    elif outputs["refine_logits"].shape[0] == 0:
        raise ValueError("score_source 'refine' needs num_refinements >= 1; use 'wsddn'")
    else:
        scores = outputs["refine_logits"].softmax(dim=-1).mean(dim=0)[:, 1:]  # [R, C]
        if box_regression:
            deltas = outputs["refine_deltas"].mean(dim=0)[:, 1:]  # [R, C, 4]
            boxes = (box_coder or BoxCoder()).decode(deltas, rois[:, None, 1:])
    return list(zip(scores.split(counts), boxes.split(counts)))


def flip_boxes(boxes: Tensor, width: float) -> Tensor:
    """Mirror [..., 4] xyxy boxes in an image of this width."""
    return torch.stack((width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]), dim=-1)


def _view_size(height: int, width: int, scale: int | None, max_size: int) -> tuple[int, int]:
    if scale is None:
        return height, width
    factor = min(scale / min(height, width), max_size / max(height, width))
    return max(1, round(height * factor)), max(1, round(width * factor))


@torch.no_grad()
def tta_roi_predictions(
    net: WSODNet, images: Sequence[Tensor], proposals: Sequence[Tensor], config: InferenceConfig
) -> list[tuple[Tensor, Tensor]]:
    """Per-ROI scores [R_i, C] and boxes [R_i, C, 4] averaged over the scale and flip views.

    Args:
        images: per image [3, H_i, W_i] (images of one size are batched together).
        proposals: per image [R_i, 4] boxes in that image's pixels.
    """
    if len(images) != len(proposals):
        raise ValueError(f"got {len(images)} images and {len(proposals)} proposal sets")
    views = [
        (scale, flip)
        for scale in (config.scales or (None,))
        for flip in ((False, True) if config.hflip else (False,))
    ]
    sums: list[tuple[Tensor, Tensor] | None] = [None] * len(images)
    for scale, flip in views:
        view_images, view_boxes, factors = [], [], []
        for image, boxes in zip(images, proposals):
            height, width = image.shape[-2:]
            new_height, new_width = _view_size(height, width, scale, config.max_size)
            if (new_height, new_width) != (height, width):
                image = F.interpolate(
                    image[None], size=(new_height, new_width), mode="bilinear", align_corners=False
                )[0]
            factor = boxes.new_tensor([new_width / width, new_height / height] * 2)
            boxes = boxes * factor
            if flip:
                image, boxes = image.flip(-1), flip_boxes(boxes, new_width)
            view_images.append(image)
            view_boxes.append(boxes)
            factors.append(factor)
        if len({tuple(image.shape) for image in view_images}) == 1:  # one batch
            predictions = roi_predictions(
                net, torch.stack(view_images), view_boxes, config.score_source, config.box_regression
            )
        else:
            predictions = [
                roi_predictions(net, image[None], [boxes], config.score_source, config.box_regression)[0]
                for image, boxes in zip(view_images, view_boxes)
            ]
        for index, ((scores, boxes), image, factor) in enumerate(zip(predictions, view_images, factors)):
            if flip:
                boxes = flip_boxes(boxes, image.shape[-1])
            boxes = boxes / factor
            total = sums[index]
            sums[index] = (scores, boxes) if total is None else (total[0] + scores, total[1] + boxes)
    return [(scores / len(views), boxes / len(views)) for scores, boxes in sums]


def postprocess(
    scores: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int] | None = None,
    nms_iou: float = 0.3,
    max_detections: int = 100,
    score_thresh: float = 0.0,
) -> dict[str, Tensor]:
    """Per-class NMS and the best detections of one image.

    Args:
        scores: [R, C] per-ROI class scores.
        boxes: [R, C, 4] per-ROI, per-class boxes.
        image_size: (height, width) to clip the boxes to, or None.
        nms_iou: IoU of the per-class NMS.
        max_detections: detections kept, best first.
        score_thresh: scores at or below this are dropped.

    Returns:
        ``boxes`` [D, 4], ``scores`` [D], ``labels`` [D] int64 in 0..C-1, D <= max_detections.
    """
    rois, classes = scores.shape
    if image_size is not None:
        height, width = image_size
        boxes = torch.stack(
            (
                boxes[..., 0].clamp(0, width),
                boxes[..., 1].clamp(0, height),
                boxes[..., 2].clamp(0, width),
                boxes[..., 3].clamp(0, height),
            ),
            dim=-1,
        )
    flat_scores, flat_boxes = scores.reshape(-1), boxes.reshape(-1, 4)
    labels = torch.arange(classes, device=scores.device).repeat(rois)  # [R * C], class of each entry
    above = (flat_scores > score_thresh).nonzero().reshape(-1)
    flat_scores, flat_boxes, labels = flat_scores[above], flat_boxes[above], labels[above]
    keep = torchvision.ops.batched_nms(flat_boxes.float(), flat_scores.float(), labels, nms_iou)[
        :max_detections
    ]
    return {"boxes": flat_boxes[keep], "scores": flat_scores[keep], "labels": labels[keep]}


@torch.no_grad()
def detect(
    net: WSODNet, images: Sequence[Tensor], proposals: Sequence[Tensor], config: InferenceConfig | None = None
) -> list[dict[str, Tensor]]:
    """Detections per image (module docstring); runs the net in eval mode and restores its mode.

    Args:
        net: the detector.
        images: per image [3, H_i, W_i], normalised as in training.
        proposals: per image [R_i, 4] xyxy proposals in that image's pixels.
        config: scoring, NMS and test-time augmentation.
    """
    config = config or InferenceConfig()
    was_training = net.training
    net.eval()
    try:
        predictions = tta_roi_predictions(net, images, proposals, config)
    finally:
        net.train(was_training)
    return [
        postprocess(
            scores, boxes, tuple(image.shape[-2:]), config.nms_iou, config.max_detections, config.score_thresh
        )
        for (scores, boxes), image in zip(predictions, images)
    ]
