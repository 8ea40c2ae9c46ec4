"""Losses and per-ROI targets of the weakly supervised detector (wetectron, arXiv 2004.04725).

* ``wsddn_loss``: the MIL loss, BCE between WSDDN image scores and image tags.
* Per-ROI supervision of the refinement branches is a ``RoITargets``: a label per ROI (0 background,
  c + 1 for class c), a weight, a target box, and the seed boxes it came from. Pseudo-labels from a
  teacher (``oicr_pseudo_labels``, ``mist_pseudo_labels``) and true boxes (``box_supervised_targets``,
  Fast R-CNN style) produce the same type, so points, scribbles or boxes (UFO²) plug in by producing
  or filtering a ``RoITargets``.
* ``roi_losses`` / ``refinement_losses``: weighted cross-entropy and smooth-L1 regression per branch.
* ``refinement_warmup``: the weight of the refinement losses by step. From a backbone trained from
  scratch the teacher is noise at first and MIST collapses (0.42 vs 0.88 mAP50 in the notes' prototype)
  unless the refinement losses wait for a MIL-only warm-up.

Boxes are continuous xyxy. Class ids given by callers (tags, gt labels) are 0-based, 0..C-1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from imaginate.metrics.detection import box_iou

DEFAULT_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
BRANCH_WEIGHTS = (3.0, 1.0)  # the first refinement branch's loss weight, then every later branch's


def wsddn_loss(image_scores: Tensor, tags: Tensor, eps: float = 1e-8) -> Tensor:
    """Binary cross-entropy between image scores and tags, the scores clamped to [eps, 1 - eps].

    Args:
        image_scores: [B, C] WSDDN image scores in [0, 1].
        tags: [B, C] 0/1 image-level labels.
        eps: clamp (wetectron's 1e-10 lets log blow up in float32; 1e-8 does not).

    Returns:
        scalar, the mean over images and classes.
    """
    if image_scores.shape != tags.shape:
        raise ValueError(
            f"image_scores {list(image_scores.shape)} and tags {list(tags.shape)} differ in shape"
        )
    scores = image_scores.clamp(eps, 1.0 - eps)
    return F.binary_cross_entropy(scores, tags.to(scores.dtype))


class BoxCoder:
    """Encodes xyxy boxes as (dx, dy, dw, dh) deltas relative to reference boxes, and back.

    Continuous coordinates: width = x2 - x1, centre = x1 + width / 2 (wetectron adds 1 to widths,
    VOC's inclusive-pixel convention; our boxes are continuous).

    Args:
        weights: (wx, wy, ww, wh) multipliers of the deltas (Fast R-CNN's 10, 10, 5, 5).
        max_log_scale: clamp of dw, dh before exp when decoding (log(1000 / 16)).
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float] = DEFAULT_BOX_WEIGHTS,
        max_log_scale: float = math.log(1000.0 / 16),
    ) -> None:
        if len(weights) != 4 or any(w <= 0 for w in weights):
            raise ValueError(f"weights must be 4 positive numbers, got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.max_log_scale = max_log_scale

    @staticmethod
    def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights

    def encode(self, boxes: Tensor, reference: Tensor) -> Tensor:
        """[..., 4] target boxes relative to [..., 4] reference boxes (positive sizes) -> [..., 4] deltas."""
        wx, wy, ww, wh = self.weights
        x, y, w, h = self._centre_size(boxes)
        rx, ry, rw, rh = self._centre_size(reference)
        deltas = (wx * (x - rx) / rw, wy * (y - ry) / rh, ww * torch.log(w / rw), wh * torch.log(h / rh))
        return torch.stack(deltas, dim=-1)

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """[..., 4] deltas applied to [..., 4] reference boxes (broadcast) -> [..., 4] xyxy boxes."""
        wx, wy, ww, wh = self.weights
        rx, ry, rw, rh = self._centre_size(reference)
        x = deltas[..., 0] / wx * rw + rx
        y = deltas[..., 1] / wy * rh + ry
        w = torch.exp((deltas[..., 2] / ww).clamp(max=self.max_log_scale)) * rw
        h = torch.exp((deltas[..., 3] / wh).clamp(max=self.max_log_scale)) * rh
        return torch.stack((x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h), dim=-1)


@dataclass
class RoITargets:
    """Per-ROI supervision of one image's refinement branches (or of a supervised detector).

    Attributes:
        labels: [R] int64, 0 = background, c + 1 = class c.
        weights: [R] loss weight per ROI (the seed's teacher score for pseudo-labels; 1 or 0 for boxes).
        target_boxes: [R, 4] the seed box each ROI is matched to (regression targets for positives).
        seed_boxes: [S, 4] the pseudo- or true boxes selected, grouped by class in class order.
        seed_labels: [S] int64 in 1..C.
        seed_scores: [S] teacher scores of the seeds (1 for true boxes).
    """

    labels: Tensor
    weights: Tensor
    target_boxes: Tensor
    seed_boxes: Tensor
    seed_labels: Tensor
    seed_scores: Tensor

    def seeds_of(self, label: int) -> Tensor:
        """[S_c, 4] seed boxes with label ``label`` (1..C)."""
        return self.seed_boxes[self.seed_labels == label]


def _empty_targets(boxes: Tensor) -> RoITargets:
    """No seeds (an image without tags): every ROI background with weight 0."""
    rois = boxes.shape[0]
    return RoITargets(
        labels=torch.zeros(rois, dtype=torch.int64, device=boxes.device),
        weights=boxes.new_zeros(rois),
        target_boxes=boxes.clone(),
        seed_boxes=boxes.new_zeros(0, 4),
        seed_labels=torch.zeros(0, dtype=torch.int64, device=boxes.device),
        seed_scores=boxes.new_zeros(0),
    )


def assign_to_seeds(
    boxes: Tensor, seed_boxes: Tensor, seed_labels: Tensor, seed_scores: Tensor, fg_iou: float = 0.5
) -> RoITargets:
    """Match each ROI to the seed of highest IoU (the first on ties): its label and score as weight;
    ROIs whose best IoU is below ``fg_iou`` become background but keep the weight.

    Args:
        boxes: [R, 4] ROIs.
        seed_boxes: [S, 4]; seed_labels: [S] in 1..C; seed_scores: [S].
        fg_iou: IoU from which a ROI is foreground.
    """
    if seed_boxes.shape[0] == 0:
        return _empty_targets(boxes)
    overlaps = box_iou(boxes, seed_boxes)  # [R, S]
    best_iou, match = overlaps.max(dim=1)
    labels = torch.where(best_iou >= fg_iou, seed_labels[match], torch.zeros_like(seed_labels[match]))
    return RoITargets(
        labels=labels,
        weights=seed_scores[match].to(boxes.dtype),
        target_boxes=seed_boxes[match],
        seed_boxes=seed_boxes,
        seed_labels=seed_labels,
        seed_scores=seed_scores,
    )


def _tagged_classes(tags: Tensor) -> Tensor:
    return (tags.reshape(-1) > 0).nonzero().reshape(-1)


@torch.no_grad()
def oicr_pseudo_labels(teacher: Tensor, boxes: Tensor, tags: Tensor, fg_iou: float = 0.5) -> RoITargets:
    """OICR (Tang et al., 2017): the top-scoring ROI of each tagged class is its seed.

    Classes are taken in index order; a ROI already chosen by an earlier class is not chosen again
    (its scores are zeroed, as in wetectron).

    Args:
        teacher: [R, C] foreground probabilities (WSDDN ROI scores or a branch's softmax[:, 1:]).
        boxes: [R, 4] ROIs.
        tags: [C] 0/1 image tags.
        fg_iou: IoU from which a ROI is foreground.
    """
    scores = teacher.detach().clone()
    seed_index, seed_class, seed_score = [], [], []
    if boxes.shape[0] > 0:
        for c in _tagged_classes(tags).tolist():
            best = int(scores[:, c].argmax())
            seed_index.append(best)
            seed_class.append(c + 1)
            seed_score.append(scores[best, c].clone())
            scores[best] = 0.0
    if not seed_index:
        return _empty_targets(boxes)
    device = boxes.device
    return assign_to_seeds(
        boxes,
        boxes[torch.tensor(seed_index, device=device)],
        torch.tensor(seed_class, dtype=torch.int64, device=device),
        torch.stack(seed_score).to(boxes.dtype),
        fg_iou,
    )


@torch.no_grad()
def mist_pseudo_labels(
    teacher: Tensor,
    boxes: Tensor,
    tags: Tensor,
    top_fraction: float = 0.15,
    nms_iou: float = 0.2,
    fg_iou: float = 0.5,
) -> RoITargets:
    """MIST (wetectron's instance-aware self-training): several seeds per tagged class.

    For each tagged class: rank the ROIs by teacher score, take the top ``top_fraction`` (at least
    one), keep the best, then keep a candidate only if its IoU with *every* higher-ranked candidate
    (kept or not, as wetectron's code does; greedy NMS would compare with kept ones only) is below
    ``nms_iou``. Then ``assign_to_seeds``.

    Args:
        teacher: [R, C] foreground probabilities.
        boxes: [R, 4] ROIs.
        tags: [C] 0/1 image tags.
        top_fraction: fraction of the ROIs that are candidates (p = 0.15).
        nms_iou: candidates overlapping a higher-ranked one at this IoU or more are dropped.
        fg_iou: IoU from which a ROI is foreground.
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must lie in (0, 1], got {top_fraction}")
    rois = boxes.shape[0]
    classes = _tagged_classes(tags)
    if rois == 0 or classes.numel() == 0:
        return _empty_targets(boxes)
    count = max(1, int(rois * top_fraction + 1e-6))
    seed_boxes, seed_labels, seed_scores = [], [], []
    for c in classes.tolist():
        ranked_scores, order = teacher[:, c].detach().sort(descending=True, stable=True)
        candidates, candidate_scores = boxes[order[:count]], ranked_scores[:count]  # [k, 4], [k]
        overlaps = box_iou(candidates, candidates).tril(diagonal=-1)  # [k, k], IoU with higher-ranked ones
        keep = overlaps.max(dim=1).values < nms_iou  # the first row is all zeros: always kept
        seed_boxes.append(candidates[keep])
        seed_labels.append(torch.full((int(keep.sum()),), c + 1, dtype=torch.int64, device=boxes.device))
        seed_scores.append(candidate_scores[keep].to(boxes.dtype))
    return assign_to_seeds(
        boxes, torch.cat(seed_boxes), torch.cat(seed_labels), torch.cat(seed_scores), fg_iou
    )


@torch.no_grad()
def box_supervised_targets(
    gt_boxes: Tensor,
    gt_labels: Tensor,
    rois: Tensor,
    fg_iou: float = 0.5,
    num_samples: int | None = None,
    fg_fraction: float = 0.25,
    generator: torch.Generator | None = None,
) -> RoITargets:
    """Fast R-CNN targets from true boxes: IoU >= fg_iou with a box -> its class, else background.

    Args:
        gt_boxes: [M, 4] true boxes.
        gt_labels: [M] 0-based class ids.
        rois: [R, 4] ROIs (add the true boxes to them beforehand if wanted, as Fast R-CNN does).
        fg_iou: IoU from which a ROI is foreground.
        num_samples: when set, sample this many ROIs, at most ``fg_fraction`` of them foreground; the
            others get weight 0 (the losses then ignore them). None: every ROI has weight 1.
        fg_fraction: foreground share of the sample.
        generator: random generator of the sampling.
    """
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples must be >= 1 or None, got {num_samples}")
    if not 0.0 <= fg_fraction <= 1.0:
        raise ValueError(f"fg_fraction must lie in [0, 1], got {fg_fraction}")
    if gt_boxes.shape[0] == 0:
        targets = _empty_targets(rois)
        targets.weights = rois.new_ones(rois.shape[0])
    else:
        labels = gt_labels.reshape(-1).to(torch.int64) + 1
        targets = assign_to_seeds(
            rois, gt_boxes.to(rois.dtype), labels, rois.new_ones(labels.shape[0]), fg_iou
        )
    if num_samples is not None:
        foreground = (targets.labels > 0).nonzero().reshape(-1)
        background = (targets.labels == 0).nonzero().reshape(-1)

        def sample(indices: Tensor, count: int) -> Tensor:
            order = torch.randperm(indices.numel(), generator=generator).to(indices.device)
            return indices[order[:count]]

        chosen_fg = sample(foreground, min(foreground.numel(), int(num_samples * fg_fraction)))
        chosen_bg = sample(background, min(background.numel(), num_samples - chosen_fg.numel()))
        weights = torch.zeros_like(targets.weights)
        weights[torch.cat([chosen_fg, chosen_bg])] = 1.0
        targets.weights = weights
    return targets


def roi_losses(
    logits: Tensor, deltas: Tensor | None, rois: Tensor, targets: RoITargets, box_coder: BoxCoder
) -> tuple[Tensor, Tensor]:
    """Weighted cross-entropy and weighted smooth-L1 (beta 1) of one branch on one image.

    Both are normalised by the number of ROIs with a non-zero weight (all R for pseudo-labels, as in
    wetectron; the sampled ROIs for box supervision). Regression covers foreground ROIs only, on the
    deltas of their label's class.

    Args:
        logits: [R, C + 1].
        deltas: [R, C + 1, 4] or None (no regression: the second loss is 0).
        rois: [R, 4] ROIs.
        targets: the ROIs' ``RoITargets``.
        box_coder: encodes the targets.

    Returns:
        (classification loss, regression loss), scalars.
    """
    weights = targets.weights.to(logits.dtype)
    normaliser = (weights > 0).sum().clamp(min=1)
    cls_loss = (F.cross_entropy(logits, targets.labels, reduction="none") * weights).sum() / normaliser
    if deltas is None:
        return cls_loss, logits.new_zeros(())
    positive = (targets.labels > 0).nonzero().reshape(-1)
    predicted = deltas[positive, targets.labels[positive]]  # [P, 4]
    wanted = box_coder.encode(targets.target_boxes[positive], rois[positive]).to(predicted.dtype)
    reg = F.smooth_l1_loss(predicted, wanted, beta=1.0, reduction="none") * weights[positive, None]
    return cls_loss, reg.sum() / normaliser


TargetFunction = Callable[[Tensor, Tensor, Tensor], RoITargets]  # (teacher [R, C], boxes [R, 4], tags [C])
TargetFilter = Callable[[int, int, RoITargets], RoITargets]  # (image, branch, targets) -> targets


def refinement_losses(
    outputs: dict[str, Tensor],
    proposals: Sequence[Tensor],
    tags: Tensor,
    pseudo_labels: TargetFunction = mist_pseudo_labels,
    box_coder: BoxCoder | None = None,
    regression: bool = True,
    branch_weights: tuple[float, float] = BRANCH_WEIGHTS,
    image_targets: Sequence[RoITargets | None] | None = None,
    target_filter: TargetFilter | None = None,
) -> dict[str, Tensor]:
    """Losses of the K refinement branches, averaged over images.

    Branch k's teacher is the WSDDN ROI scores (k = 0) or branch k - 1's softmax without its
    background column, detached; its pseudo-labels come from ``pseudo_labels`` (e.g. a
    ``functools.partial`` of ``mist_pseudo_labels`` or ``oicr_pseudo_labels``).

    Args:
        outputs: ``WSODNet.heads`` output (``roi_scores``, ``refine_logits``, ``refine_deltas``).
        proposals: per-image [R_i, 4] ROIs, in the order of the outputs' rows.
        tags: [B, C] 0/1 image tags.
        pseudo_labels: teacher, boxes, tags -> ``RoITargets``.
        box_coder: regression encoding (default weights 10, 10, 5, 5).
        regression: whether to add the smooth-L1 box loss.
        branch_weights: loss weight of the first branch, and of every later one (3, 1).
        image_targets: per image, ``RoITargets`` that replace the pseudo-labels of every branch
            (e.g. ``box_supervised_targets`` for an image with boxes), or None to use pseudo-labels.
        target_filter: called on each image's pseudo-labels per branch (UFO²'s points and scribbles
            reset labels to background).

    Returns:
        ``refine{k}_cls`` and, with regression, ``refine{k}_reg`` for each branch k.
    """
    box_coder = box_coder or BoxCoder()
    logits_all, deltas_all = outputs["refine_logits"], outputs["refine_deltas"]  # [K, R, C+1], [K, R, C+1, 4]
    counts = [int(p.shape[0]) for p in proposals]
    if sum(counts) != logits_all.shape[1]:
        raise ValueError(f"proposals hold {sum(counts)} ROIs but the outputs have {logits_all.shape[1]}")
    if image_targets is not None and len(image_targets) != len(proposals):
        raise ValueError(f"image_targets has {len(image_targets)} entries for {len(proposals)} images")
    teachers = outputs["roi_scores"].detach().split(counts)
    losses: dict[str, Tensor] = {}
    for k in range(logits_all.shape[0]):
        weight = branch_weights[0] if k == 0 else branch_weights[1]
        logits_k, deltas_k = logits_all[k].split(counts), deltas_all[k].split(counts)
        cls_total, reg_total = logits_all.new_zeros(()), logits_all.new_zeros(())
        for image, boxes in enumerate(proposals):
            given = image_targets[image] if image_targets is not None else None
            if given is None:
                given = pseudo_labels(teachers[image], boxes, tags[image])
                if target_filter is not None:
                    given = target_filter(image, k, given)
            cls_loss, reg_loss = roi_losses(
                logits_k[image], deltas_k[image] if regression else None, boxes, given, box_coder
            )
            cls_total, reg_total = cls_total + weight * cls_loss, reg_total + weight * reg_loss
        losses[f"refine{k}_cls"] = cls_total / max(1, len(proposals))
        if regression:
            losses[f"refine{k}_reg"] = reg_total / max(1, len(proposals))
        teachers = logits_all[k].detach().softmax(dim=1)[:, 1:].split(counts)
    return losses


def refinement_warmup(step: int, warmup_start: int, warmup_length: int) -> float:
    """Weight of the refinement losses at ``step``: 0 before ``warmup_start``, then a linear ramp
    reaching 1 at ``warmup_start + warmup_length`` (a step at ``warmup_length`` = 0).

    With a backbone trained from scratch, set ``warmup_start`` to a few MIL-only epochs' steps.
    """
    if warmup_start < 0:
        raise ValueError(f"warmup_start must be >= 0, got {warmup_start}")
    if warmup_length < 0:
        raise ValueError(f"warmup_length must be >= 0, got {warmup_length}")
    if step < warmup_start:
        return 0.0
    if warmup_length == 0:
        return 1.0
    return min(1.0, (step - warmup_start) / warmup_length)
