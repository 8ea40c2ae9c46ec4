"""UFO² (arXiv 2010.10804): one detector trained from boxes, tags, points, scribbles and unlabeled images.

The network is the wetectron detector (WSDDN MIL head + K refinement branches with box regression);
each image of a batch is supervised according to its label kind (``labels.py``):

* ``boxes``: Fast R-CNN targets for every refinement branch: a ROI with IoU >= ``fg_iou`` with a true
  box is foreground of its class, ``box_rois`` ROIs sampled at ``fg_fraction`` foreground (the rest
  weight 0); classification + smooth-L1 box regression; plus the MIL loss on the tags the boxes imply.
* ``tags``: the MIL loss and MIST (or OICR) pseudo-labels, as wetectron.
* ``points``: a ROI *contains* an object when the click lies in it. The MIL bag of a tagged class is
  the ROIs containing one of its clicks (the image score of class c sums the ROI scores over those
  ROIs only, so every other ROI acts as background for c); MIST seeds are drawn from those ROIs, and
  after MIST a foreground pseudo-label is reset to background (its weight kept) unless the ROI
  contains a click of the same class (``filter_by_annotations``).
* ``scribbles``: the same with containment = area(ROI ∩ scribble box) / area(scribble box) >=
  ``scribble_overlap`` (the scribble box is the tight box of its vertices, at least 1 px a side).
* ``none``: self-training: the teacher, an exponential moving average of the detector
  (``imaginate.nn.ema.ModelEMA``), scores the ROIs (its refinement branches' mean softmax); per
  class, ROIs over ``teacher_threshold`` after NMS are seeds, assigned as pseudo-boxes (MIST's
  rule). No MIL loss (the tags are unknown, not absent) and an image without a confident seed gives
  no loss at all: unlabeled images are never negatives.

Pseudo-label losses (tags, points, scribbles, none) are weighted by the refinement warm-up; box
losses are not. Every kind's loss is logged on its own (``loss_<kind>``, summing to the total), with
``teacher_seeds`` (confident seeds per unlabeled image; 0 for long = self-training inert) and
``annotation_misses`` (share of annotated classes no ROI contains: the proposals' failure).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from imaginate.systems.wsod.labels import LABEL_KINDS, ImageLabels, LabelsConfig, image_labels
from imaginate.systems.wsod.losses import (
    RoITargets,
    assign_to_seeds,
    box_supervised_targets,
    refinement_losses,
    refinement_warmup,
    wsddn_loss,
)


@dataclass
class OmniConfig:
    """Args:
        box_rois: ROIs sampled per box image (UFO²: 512; capped by the proposals).
        fg_fraction: foreground share of that sample; fg_iou: IoU from which a ROI is foreground.
        scribble_overlap: area(ROI ∩ scribble box) / area(scribble box) from which a ROI contains it.
        teacher_beta: EMA decay of the teacher; teacher_threshold: score of a confident seed;
        teacher_nms: NMS IoU among a class's seeds.
        unlabeled_weight: weight of the unlabeled images' loss.
    """

    box_rois: int = 512
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    scribble_overlap: float = 0.5
    teacher_beta: float = 0.99
    teacher_threshold: float = 0.7
    teacher_nms: float = 0.3
    unlabeled_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.box_rois < 1:
            raise ValueError(f"omni.box_rois: must be >= 1, got {self.box_rois}")
        for key in ("fg_fraction", "fg_iou", "scribble_overlap", "teacher_beta", "teacher_threshold", "teacher_nms"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"omni.{key}: must be in [0, 1], got {getattr(self, key)}")
        if self.unlabeled_weight < 0:
            raise ValueError(f"omni.unlabeled_weight: must be >= 0, got {self.unlabeled_weight}")


# -- which ROIs hold an annotation --------------------------------------------------------------
def point_containment(rois: Tensor, points: Tensor) -> Tensor:
    """[R, 4] ROIs, [n, 2] (x, y) clicks -> [R, n] bool: the click lies in the ROI (edges included)."""
    x, y = points[:, 0][None], points[:, 1][None]  # [1, n]
    return (rois[:, 0:1] <= x) & (x <= rois[:, 2:3]) & (rois[:, 1:2] <= y) & (y <= rois[:, 3:4])


def scribble_boxes(scribbles: list[Tensor]) -> Tensor:
    """n x [M, 2] polylines -> [n, 4] their tight boxes, grown about the centre to at least 1 px a side."""
    if not scribbles:
        return torch.zeros(0, 4)
    low = torch.stack([s.min(dim=0).values for s in scribbles])  # [n, 2]
    high = torch.stack([s.max(dim=0).values for s in scribbles])
    centre, half = (low + high) / 2, ((high - low) / 2).clamp(min=0.5)
    return torch.cat([centre - half, centre + half], dim=1)


def scribble_containment(rois: Tensor, scribbles: list[Tensor], min_overlap: float = 0.5) -> Tensor:
    """[R, 4] ROIs, n scribbles -> [R, n] bool: area(ROI ∩ scribble box) / area(scribble box) >= min_overlap."""
    boxes = scribble_boxes(scribbles).to(rois)  # [n, 4]
    low = torch.maximum(rois[:, None, :2], boxes[None, :, :2])
    high = torch.minimum(rois[:, None, 2:], boxes[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(dim=2)  # [R, n]
    area = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)  # [n]
    return inter >= min_overlap * area[None]


def class_bags(contains: Tensor, classes: Tensor, tags: Tensor) -> tuple[Tensor, int]:
    """[R, n] containment, [n] classes, [C] tags -> ([R, C] bool: ROI r may be class c, misses).

    For a tagged class with annotations: the ROIs containing one of them; every other class: all ROIs.
    A tagged class whose annotations no ROI contains keeps all ROIs (counted in ``misses``)."""
    rois, num_classes = contains.shape[0], tags.shape[0]
    bags = torch.ones(rois, num_classes, dtype=torch.bool, device=contains.device)
    misses = 0
    for c in classes.unique().tolist():
        if tags[c] <= 0:
            continue
        inside = contains[:, classes == c].any(dim=1)  # [R]
        if inside.any():
            bags[:, c] = inside
        else:
            misses += 1
    return bags, misses


def filter_by_annotations(targets: RoITargets, bags: Tensor) -> RoITargets:
    """Reset a foreground pseudo-label to background (weight kept) unless its ROI may be that class
    (``bags`` [R, C]: for points and scribbles, the ROI contains an annotation of that class)."""
    labels = targets.labels.clone()
    foreground = (labels > 0).nonzero().flatten()
    allowed = bags[foreground, labels[foreground] - 1]
    labels[foreground[~allowed]] = 0
    return RoITargets(labels, targets.weights, targets.target_boxes, targets.seed_boxes, targets.seed_labels,
                      targets.seed_scores)


def masked_mil_loss(roi_scores: Tensor, bags: Tensor, tags: Tensor) -> Tensor:
    """WSDDN's BCE with the image score of class c summed over the ROIs of its bag only.

    roi_scores [R, C], bags [R, C] bool, tags [C] -> scalar."""
    image_scores = (roi_scores * bags.to(roi_scores.dtype)).sum(dim=0, keepdim=True)  # [1, C]
    return wsddn_loss(image_scores, tags[None])


@torch.no_grad()
def teacher_seeds(probs: Tensor, rois: Tensor, threshold: float, nms_iou: float, fg_iou: float = 0.5) -> RoITargets | None:
    """Self-training targets from a teacher's ROI probabilities [R, C + 1] (background first): per class,
    the ROIs scoring >= ``threshold`` after NMS are seeds; None when there is none (never all background)."""
    from torchvision.ops import nms

    boxes, labels, scores = [], [], []
    for c in range(probs.shape[1] - 1):
        confident = (probs[:, c + 1] >= threshold).nonzero().flatten()
        if confident.numel() == 0:
            continue
        keep = confident[nms(rois[confident].float(), probs[confident, c + 1].float(), nms_iou)]
        boxes.append(rois[keep])
        labels.append(torch.full((keep.numel(),), c + 1, dtype=torch.int64, device=rois.device))
        scores.append(probs[keep, c + 1].to(rois.dtype))
    if not boxes:
        return None
    return assign_to_seeds(rois, torch.cat(boxes), torch.cat(labels), torch.cat(scores), fg_iou)


# -- the training side --------------------------------------------------------------------------
class OmniSupervision:
    """Holds every training image's labels and the teacher; computes the per-kind losses of a batch.

    Args:
        labels: where the label kinds come from; config: the losses' settings.
        net: the detector (unwrapped), copied into the teacher.
        pseudo_labels: MIST or OICR (teacher [R, C], boxes [R, 4], tags [C] -> RoITargets).
        regression: whether the refinement branches learn box regression.
        warmup: (start, length) of the pseudo-label losses' ramp (``losses.refinement_warmup``).
        seed: the run's seed (box-ROI sampling).
    """

    def __init__(self, labels: LabelsConfig, config: OmniConfig, net: nn.Module,
                 pseudo_labels: Callable[[Tensor, Tensor, Tensor], RoITargets], regression: bool,
                 warmup: tuple[int, int], seed: int) -> None:
        from imaginate.nn.ema import ModelEMA

        self.labels_cfg, self.cfg = labels, config
        self.pseudo_labels, self.regression, self.warmup, self.seed = pseudo_labels, regression, warmup, seed
        self.teacher = ModelEMA(net, beta=config.teacher_beta)
        self.labels: list[ImageLabels | None] | None = None

    def prepare(self, split) -> list[int]:
        """Read or draw the labels once; the indices of the images that take part in training."""
        from imaginate.data.errors import DataError

        if self.labels is None:
            self.labels = image_labels(self.labels_cfg, split)
            if all(label is None for label in self.labels):
                raise DataError("labels: no training image has a label (budget too small, or an empty label file)")
        return [i for i, label in enumerate(self.labels) if label is not None]

    def kind_counts(self) -> dict[str, int]:
        assert self.labels is not None
        return {k: sum(1 for lab in self.labels if lab is not None and lab.kind == k) for k in LABEL_KINDS}

    def geometry(self, index: int) -> Tensor:
        assert self.labels is not None and self.labels[index] is not None
        return self.labels[index].geometry()

    def update_teacher(self, net: nn.Module) -> None:
        self.teacher.update(net)

    def loss(self, outputs: dict[str, Tensor], batch: dict) -> tuple[Tensor, dict[str, float]]:
        """The batch's loss, summed over images and divided by the batch size, and its logs.

        ``batch`` needs ``images`` [B, 3, H, W], ``proposals`` (per image [R_i, 4]), ``labels`` (per image
        ``ImageLabels`` in the batch's view) and ``step``."""
        proposals, labels, step = batch["proposals"], batch["labels"], batch["step"]
        counts = [int(p.shape[0]) for p in proposals]
        offsets = [0]
        for n in counts:
            offsets.append(offsets[-1] + n)
        ramp = refinement_warmup(step, *self.warmup)
        per_kind: dict[str, Tensor] = {}
        seeds, unlabeled, misses, annotated = 0, 0, 0, 0
        teacher_probs = self._teacher_probs(batch, [b for b, lab in enumerate(labels) if lab.kind == "none"])
        anchor = outputs["refine_logits"].sum() * 0.0  # keeps the graph when no image gives a loss
        for b, lab in enumerate(labels):
            rows = slice(offsets[b], offsets[b + 1])
            rois = proposals[b].float()
            out_b = {"roi_scores": outputs["roi_scores"][rows].float(),
                     "refine_logits": outputs["refine_logits"][:, rows].float(),
                     "refine_deltas": outputs["refine_deltas"][:, rows].float()}
            tags = lab.tags.to(rois)
            loss_b = anchor
            if lab.kind == "boxes":
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step * 97 + b)
                targets = box_supervised_targets(lab.boxes.to(rois), lab.classes, rois, self.cfg.fg_iou,
                                                 min(self.cfg.box_rois, rois.shape[0]), self.cfg.fg_fraction, gen)
                refine = refinement_losses(out_b, [rois], tags[None], regression=self.regression,
                                           image_targets=[targets])
                loss_b = wsddn_loss(outputs["image_scores"][b:b + 1].float(), tags[None]) + sum(refine.values())
            elif lab.kind == "tags":
                refine = refinement_losses(out_b, [rois], tags[None], self.pseudo_labels, regression=self.regression)
                loss_b = wsddn_loss(outputs["image_scores"][b:b + 1].float(), tags[None]) + ramp * sum(refine.values())
            elif lab.kind in ("points", "scribbles"):
                if lab.kind == "points":
                    contains = point_containment(rois, lab.points.to(rois))
                else:
                    contains = scribble_containment(rois, [s.to(rois) for s in lab.scribbles], self.cfg.scribble_overlap)
                bags, missed = class_bags(contains, lab.classes, tags)
                misses, annotated = misses + missed, annotated + int(lab.classes.unique().numel())
                bag_f = bags.to(rois.dtype)

                def restricted(teacher: Tensor, boxes: Tensor, image_tags: Tensor, bag_f: Tensor = bag_f) -> RoITargets:
                    return self.pseudo_labels(teacher * bag_f, boxes, image_tags)

                refine = refinement_losses(out_b, [rois], tags[None], restricted, regression=self.regression,
                                           target_filter=lambda _i, _k, t, bags=bags: filter_by_annotations(t, bags))
                loss_b = masked_mil_loss(out_b["roi_scores"], bags, tags) + ramp * sum(refine.values())
            else:  # none: self-training on the teacher's confident predictions
                unlabeled += 1
                targets = teacher_seeds(teacher_probs[b], rois, self.cfg.teacher_threshold, self.cfg.teacher_nms,
                                        self.cfg.fg_iou)
                if targets is not None:
                    seeds += int(targets.seed_boxes.shape[0])
                    refine = refinement_losses(out_b, [rois], tags[None], regression=self.regression,
                                               image_targets=[targets])
                    loss_b = ramp * self.cfg.unlabeled_weight * sum(refine.values())
            per_kind[lab.kind] = per_kind.get(lab.kind, anchor) + loss_b / len(labels)
        total = sum(per_kind.values(), anchor)
        logs = {f"loss_{kind}": float(value.detach()) for kind, value in per_kind.items()}
        logs["refine_weight"] = ramp
        if unlabeled:
            logs["teacher_seeds"] = seeds / unlabeled
        if annotated:
            logs["annotation_misses"] = misses / annotated
        return total, logs

    @torch.no_grad()
    def _teacher_probs(self, batch: dict, images: list[int]) -> dict[int, Tensor]:
        """The teacher's mean refinement softmax [R_b, C + 1] on the given images of the batch."""
        if not images:
            return {}
        teacher = self.teacher.module
        outputs = teacher(batch["images"][images], [batch["proposals"][b] for b in images])
        probs = outputs["refine_logits"].float().softmax(dim=2).mean(dim=0)  # [R, C + 1]
        split = probs.split([int(batch["proposals"][b].shape[0]) for b in images])
        return dict(zip(images, split))


# -- fine-tuning --------------------------------------------------------------------------------
def load_initial_weights(net: nn.Module, source: str) -> None:
    """Load the detector weights of a finished run (its folder: the newest checkpoint), of a file
    (a training checkpoint ``.pt`` or an exported ``.safetensors``) or of a zoo entry (``zoo:NAME``,
    its verified weights file) into ``net``; never unpickles code (``weights_only``). A missing or
    altered file or weights that do not fit raise ``ConfigError`` naming ``train.init_from``."""
    from imaginate.config import ConfigError
    from imaginate.engine.checkpoint import CheckpointError, load_checkpoint, newest_readable_checkpoint

    if source.startswith("zoo:"):
        from imaginate.zoo import ZooError, zoo_weights_file

        try:
            path = zoo_weights_file(source)
        except ZooError as exc:
            raise ConfigError(f"train.init_from: {exc}") from None
    else:
        path = Path(source)
    try:
        if path.is_dir():
            found = newest_readable_checkpoint(path)
            if found is None:
                raise ConfigError(f"train.init_from: {path} holds no checkpoint")
            state = found[1]["modules"].get("detector")
        elif path.suffix == ".safetensors" and path.is_file():
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as exc:
                raise ConfigError(f"train.init_from: {path}: not a readable safetensors file "
                                  f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
            state = {k[len("detector."):]: v for k, v in tensors.items() if k.startswith("detector.")}
        elif path.is_file():
            ckpt = load_checkpoint(path)
            state = ckpt.get("modules", {}).get("detector") if isinstance(ckpt, dict) else None
        else:
            raise ConfigError(f"train.init_from: {path} is neither a run folder nor a weights file")
    except CheckpointError as exc:
        raise ConfigError(f"train.init_from: {exc}") from None
    if not state:
        raise ConfigError(f"train.init_from: {path} has no 'detector' weights")
    if not isinstance(state, dict):
        raise ConfigError(f"train.init_from: {path}: 'detector' is not a state dict")
    nonfinite = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
                 and not torch.isfinite(v).all()]
    if nonfinite:
        raise ConfigError(f"train.init_from: {path}: weights hold NaN or inf ({nonfinite[0]})")
    own = net.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("roi_dropout.") or k in own}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise ConfigError(f"train.init_from: {path}: weights do not fit ({lines[-1].strip()})") from None
    missing = [k for k in missing if not k.startswith("roi_dropout.")]
    if missing or unexpected:
        raise ConfigError(f"train.init_from: {path}: weights do not fit (missing {missing[:3]}, unexpected "
                          f"{list(unexpected)[:3]})")

