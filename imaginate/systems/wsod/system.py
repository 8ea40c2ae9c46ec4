"""Weakly supervised detection (wetectron, arXiv 2004.04725): training from image tags only.

One step: a batch of images (one random training scale, random flips) with their proposals; the
backbone runs once, ROI pooling and the fc neck over all proposals (in chunks with recomputation
when ``chunk_size`` > 0: sequential batch back-propagation), then

- ``method=wsddn``: the WSDDN MIL loss (BCE of the image scores against the tags);
- ``method=oicr``: + 3 refinement branches taught by the top-1 ROI per tag (no box regression);
- ``method=mist``: + 3 refinement branches with MIST pseudo-boxes and box regression;
- ``method=supervised``: the upper bound: the refinement branches learn from the TRUE boxes
  (Fast R-CNN targets), the same network and schedule;

the refinement losses are weighted by a warm-up ramp (``refine_warmup_start``, ``refine_warmup_length``):
with a backbone trained from scratch the teacher is noise at first and MIST collapses without it.
With ``cdb=true`` a Concrete DropBlock sits between ROI pooling and the neck and, after each
detector step, takes its own adversarial SGD step on ``-cdb_weight * loss`` (a second forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from imaginate.config import TrainConfig, check_choice
from imaginate.engine import RunContext, System, unwrap
from imaginate.systems.wsod.cdb import ConcreteDropBlock, cdb_adversarial_step, cdb_lr_factor, cdb_optimizer
from imaginate.systems.wsod.data import DetectionSplit, WSODDataConfig, load_split, resize_view
from imaginate.systems.wsod.inference import InferenceConfig
from imaginate.systems.wsod.labels import LabelsConfig
from imaginate.systems.wsod.losses import (
    box_supervised_targets,
    mist_pseudo_labels,
    oicr_pseudo_labels,
    refinement_losses,
    refinement_warmup,
    wsddn_loss,
)
from imaginate.systems.wsod.model import WSODModelConfig, WSODNet
from imaginate.systems.wsod.omni import OmniConfig, OmniSupervision, load_initial_weights

METHODS = ("wsddn", "oicr", "mist", "supervised")
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]  # ImageNet statistics, as the VGG16 configs
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def normalize(image: Tensor) -> Tensor:
    """[3, H, W] in [0, 1] -> the network's input."""
    return (image - MEAN.to(image.device)) / STD.to(image.device)


@dataclass
class WSODOptimConfig:
    """SGD with momentum (the paper: lr 0.01 at batch 8, momentum 0.9, weight decay 1e-4) or Adam
    (``name=adam``: betas (momentum, 0.999); a backbone trained from scratch on the CPU learns far
    faster with it), a linear warm-up over ``warmup_steps`` and x0.1 decays at the fractions
    ``decay_at`` of the run. The CDB net always uses SGD as the reference (``cdb.cdb_optimizer``):
    ``cdb_lr`` (biases 2x, no decay), ``cdb_weight_decay``, a warm-up from 1/3 over
    ``cdb_warmup_steps``, x``cdb_gamma`` at ``decay_at``."""

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    decay_at: list[float] = field(default_factory=lambda: [0.67, 0.89])
    cdb_lr: float = 1e-4  # wetectron VOC07 SOLVER_CDB, at batch 8
    cdb_weight_decay: float = 1e-4
    cdb_warmup_steps: int = 500
    cdb_gamma: float = 3.0

    def __post_init__(self) -> None:
        check_choice("optim.name", self.name, ("sgd", "adam"))
        for key in ("lr", "cdb_lr"):
            if not getattr(self, key) > 0:
                raise ValueError(f"optim.{key}: must be > 0, got {getattr(self, key)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"optim.momentum: must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError("optim.weight_decay and optim.warmup_steps: must be >= 0")
        if self.cdb_weight_decay < 0 or self.cdb_warmup_steps < 0 or not self.cdb_gamma > 0:
            raise ValueError("optim.cdb_weight_decay, optim.cdb_warmup_steps: must be >= 0; optim.cdb_gamma: > 0")
        if any(not 0 < f < 1 for f in self.decay_at):
            raise ValueError(f"optim.decay_at: fractions in (0, 1), got {list(self.decay_at)}")


@dataclass
class WSODEvalConfig:
    """Args:
        scales: test shorter-side sizes ([] = as stored); hflip: add mirrored views (test-time augmentation).
        corloc_images: training images on which CorLoc is measured (the WSOD convention: trainval).
        max_test_images: test images evaluated (0 = all).
        nms_iou / max_detections: per-class NMS and detections kept per image.
    """

    scales: list[int] = field(default_factory=list)
    hflip: bool = False
    corloc_images: int = 300
    max_test_images: int = 0
    nms_iou: float = 0.3
    max_detections: int = 100

    def __post_init__(self) -> None:
        if self.corloc_images < 1 or self.max_test_images < 0:
            raise ValueError("eval.corloc_images: must be >= 1; eval.max_test_images: >= 0")


@dataclass
class WSODTrainConfig(TrainConfig):
    """The engine's settings plus ``init_from``: a run folder, a weights file (``.pt`` checkpoint or
    ``.safetensors``) or a zoo entry (``zoo:wsod_mist_tiny``) whose detector weights start this run, e.g.
    a tag-trained model fine-tuned with boxes, points, scribbles or unlabeled images (UFO²). Loaded with
    ``weights_only``; "" = from scratch."""

    init_from: str = ""


@dataclass
class WSODConfig:
    """Args:
        method: wsddn | oicr | mist | supervised (module docstring).
        refine_warmup_start / refine_warmup_length: steps of MIL only, then of the linear ramp of the
            refinement losses' weight to 1.
        cdb: Concrete DropBlock between ROI pooling and the neck, trained adversarially.
        cdb_weight: its adversarial weight (wetectron: 0.01); cdb_max_drop: the largest drop share.
        chunk_size: ROIs per neck chunk for sequential batch back-propagation (0 = plain).
        train_rois: proposals sampled per image per step (0 = all of them, as the paper).
        labels / omni: UFO²'s label kinds per image and their losses (``labels.py``, ``omni.py``);
            off unless ``labels`` says where the kinds come from.
    """

    train: WSODTrainConfig = field(default_factory=lambda: WSODTrainConfig(steps=30000, batch_size=8, eval_every=5000))
    data: WSODDataConfig = field(default_factory=WSODDataConfig)
    model: WSODModelConfig = field(default_factory=lambda: WSODModelConfig(num_classes=6, backbone="small"))
    optim: WSODOptimConfig = field(default_factory=WSODOptimConfig)
    eval: WSODEvalConfig = field(default_factory=WSODEvalConfig)
    method: str = "mist"
    refine_warmup_start: int = 0
    refine_warmup_length: int = 0
    cdb: bool = False
    cdb_weight: float = 0.01
    cdb_max_drop: float = 0.3
    chunk_size: int = 0
    train_rois: int = 0
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    omni: OmniConfig = field(default_factory=OmniConfig)

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        if self.labels.enabled and self.method not in ("mist", "oicr"):
            raise ValueError(f"method: UFO² labels (labels.*) need method mist or oicr, got {self.method}")
        for key in ("refine_warmup_start", "refine_warmup_length", "chunk_size", "train_rois"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if self.cdb_weight < 0 or not 0 <= self.cdb_max_drop < 1:
            raise ValueError("cdb_weight: must be >= 0; cdb_max_drop: in [0, 1)")


class WSODSystem(System):
    """The weakly supervised detector and its training step (module docstring)."""

    def __init__(self, cfg: WSODConfig, ctx: RunContext) -> None:
        super().__init__(cfg, ctx)
        self._train: DetectionSplit | None = None
        self._test: DetectionSplit | None = None
        net = WSODNet(cfg.model)
        if cfg.cdb:
            net.roi_dropout = ConcreteDropBlock(net.backbone.out_channels, cfg.model.roi_size,
                                                max_drop=cfg.cdb_max_drop)
        if cfg.train.init_from:
            load_initial_weights(net, cfg.train.init_from)
        self.net = ctx.prepare(net)
        self.modules = {"detector": self.net}
        self.omni: OmniSupervision | None = None
        if cfg.labels.enabled:
            self.omni = OmniSupervision(cfg.labels, cfg.omni, net, oicr_pseudo_labels if cfg.method == "oicr"
                                        else mist_pseudo_labels, cfg.method != "oicr",
                                        (cfg.refine_warmup_start, cfg.refine_warmup_length), cfg.train.seed)
            self.modules["teacher"] = self.omni.teacher.to(ctx.device)
            self.omni.prepare(self.train_split)  # label files are read (and checked) before training starts
        o = cfg.optim
        params = list(net.detector_parameters())
        if o.name == "adam":
            detector_opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=o.lr, betas=(o.momentum, 0.999),
                                                                   weight_decay=o.weight_decay)
        else:
            detector_opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        self.optimizers = {"detector": detector_opt}
        if net.roi_dropout is not None:
            self.optimizers["cdb"] = cdb_optimizer(net.roi_dropout, o.cdb_lr, o.momentum, o.cdb_weight_decay)
        steps = cfg.train.steps
        milestones = [int(f * steps) for f in o.decay_at]

        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else 1.0
            return warm * 0.1 ** sum(step >= m for m in milestones)

        self.schedulers = {"detector": torch.optim.lr_scheduler.LambdaLR(self.optimizers["detector"], factor)}
        if "cdb" in self.optimizers:
            self.schedulers["cdb"] = torch.optim.lr_scheduler.LambdaLR(
                self.optimizers["cdb"], lambda step: cdb_lr_factor(step, o.cdb_warmup_steps, milestones, o.cdb_gamma))

    # -- data ---------------------------------------------------------------------------------
    @property
    def train_split(self) -> DetectionSplit:
        if self._train is None:
            self._train = load_split(self.cfg.data, train=True)
            self._check_classes(self._train)
        return self._train

    @property
    def test_split(self) -> DetectionSplit:
        if self._test is None:
            self._test = load_split(self.cfg.data, train=False)
            self._check_classes(self._test)
        return self._test

    def _check_classes(self, split: DetectionSplit) -> None:
        from imaginate.config import ConfigError

        if len(split.classes) != self.cfg.model.num_classes:
            raise ConfigError(f"model.num_classes: {self.cfg.model.num_classes}, but the data has "
                              f"{len(split.classes)} classes")

    def train_batch(self, step: int) -> dict:
        """Images [B, 3, H, W] (one scale per step, zero-padded to the largest), per-image proposals,
        tags [B, C], the ground truth (used by ``method=supervised`` only) and the step."""
        split, d = self.train_split, self.cfg.data
        pool = self.omni.prepare(split) if self.omni is not None else list(range(len(split)))
        indices = [pool[j] for j in self.ctx.batch_indices(step, len(pool)).tolist()]
        gen = torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + step)
        size = d.train_scales[int(torch.randint(len(d.train_scales), (1,), generator=gen))] if d.train_scales else None
        images, proposals, gt_boxes, labels = [], [], [], []
        dev = self.ctx.device
        for i in indices:
            flip = d.hflip and bool(torch.rand(1, generator=gen) < 0.5)
            props = split.proposals[i]
            if self.cfg.train_rois and props.shape[0] > self.cfg.train_rois:
                props = props[torch.randperm(props.shape[0], generator=gen)[: self.cfg.train_rois]]
            extra = self.omni.geometry(i) if self.omni is not None else torch.zeros(0, 4)  # UFO² labels' coordinates
            n_props, n_gt = props.shape[0], split.boxes[i].shape[0]
            both = torch.cat([props, split.boxes[i].float(), extra])
            image, both = resize_view(split.image(i), both, size, flip)
            images.append(normalize(image))
            proposals.append(both[:n_props])
            gt_boxes.append(both[n_props:n_props + n_gt])
            if self.omni is not None:
                labels.append(self.omni.labels[i].with_geometry(both[n_props + n_gt:]).to(dev))
        height, width = max(im.shape[1] for im in images), max(im.shape[2] for im in images)
        batch = torch.zeros(len(images), 3, height, width)
        for b, im in enumerate(images):
            batch[b, :, : im.shape[1], : im.shape[2]] = im
        return {"images": batch.to(dev), "proposals": [p.to(dev) for p in proposals],
                "tags": split.tags[indices].to(dev), "gt_boxes": [g.to(dev) for g in gt_boxes],
                "gt_labels": [split.labels[i].to(dev) for i in indices], "step": step, "labels": labels}

    # -- losses -------------------------------------------------------------------------------
    def detector_loss(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        cfg = self.cfg
        outputs = self.net(batch["images"], batch["proposals"], neck_chunk_size=cfg.chunk_size)
        if self.omni is not None:  # UFO²: each image by its label kind
            return self.omni.loss(outputs, batch)
        mil = wsddn_loss(outputs["image_scores"].float(), batch["tags"])
        loss, logs = mil, {"mil": float(mil.detach())}
        if cfg.method == "wsddn":
            return loss, logs
        weight = 1.0 if cfg.method == "supervised" else refinement_warmup(
            batch["step"], cfg.refine_warmup_start, cfg.refine_warmup_length)
        targets = None
        if cfg.method == "supervised":
            targets = [box_supervised_targets(b, lab, p.float()) for b, lab, p in
                       zip(batch["gt_boxes"], batch["gt_labels"], batch["proposals"])]
        pseudo = oicr_pseudo_labels if cfg.method == "oicr" else mist_pseudo_labels
        refine = refinement_losses({k: v.float() for k, v in outputs.items()}, batch["proposals"], batch["tags"],
                                   pseudo, regression=cfg.method != "oicr", image_targets=targets)
        total = sum(refine.values())
        logs |= {"refine": float(total.detach()), "refine_weight": weight}
        return loss + weight * total, logs

    def train_step(self, batch: dict) -> dict[str, float]:
        # 1. the detector step (WSDDN + refinement branches, CDB sampled inside the forward)
        logs = self.ctx.update("detector", self.optimizers["detector"], batch, self.detector_loss,
                               self.schedulers.get("detector"))
        if self.omni is not None:
            self.omni.update_teacher(self.net)
        # 2. the Concrete DropBlock's adversarial step on -cdb_weight * loss (a second forward)
        net = unwrap(self.net)
        if net.roi_dropout is not None:
            adversarial = cdb_adversarial_step(net.roi_dropout, self.optimizers["cdb"],
                                               lambda: self.detector_loss(batch)[0], self.cfg.cdb_weight)
            net.zero_grad(set_to_none=True)  # the second forward left gradients on the detector
            self.schedulers["cdb"].step()
            logs |= {"cdb_loss": float(adversarial), "cdb_drop": net.roi_dropout.last_drop_fraction,
                     "cdb_lr": self.optimizers["cdb"].param_groups[0]["lr"]}
        return logs

    # -- using it -----------------------------------------------------------------------------
    def inference_config(self, score_source: str | None = None) -> InferenceConfig:
        e = self.cfg.eval
        source = score_source or ("wsddn" if self.cfg.method == "wsddn" else "refine")
        return InferenceConfig(score_source=source, box_regression=self.cfg.method in ("mist", "supervised"),
                               nms_iou=e.nms_iou, max_detections=e.max_detections, scales=tuple(e.scales),
                               hflip=e.hflip)

    def evaluate(self) -> dict[str, float]:
        from imaginate.systems.wsod.evaluation import evaluate_system

        return evaluate_system(self)

    def sample(self) -> dict[str, Tensor]:
        from imaginate.systems.wsod.evaluation import detection_picture

        return {"detections": detection_picture(self, count=8)}
