"""Annotation cost model and budget solver (UFO²'s budget-aware omni-supervised study).

Cost of one image with ``n`` objects and a label set of ``C`` classes (``image_cost``):

    tags       C * tag_per_class                  (the annotator answers "present?" for each class)
    points     C * tag_per_class + n * point      (plus one click per object)
    scribbles  C * tag_per_class + n * scribble   (plus one stroke per object)
    boxes      C * tag_per_class + n * box        (plus one box per object)
    none       0

Default seconds and their sources (docs/results/ufo2.md repeats them):

* ``tag_per_class`` = 1.0 s and ``point`` = 2.4 s per click, ``scribble`` = 10.9 s per squiggle:
  Bearman et al., "What's the Point: Semantic Segmentation with Point Supervision", ECCV 2016
  (arXiv 1506.02106), measured on PASCAL VOC (their per-image totals: 20.0 s image-level for 20
  classes, 22.1 s with points, 239.7 s full masks).
* ``box`` = 7.0 s per box with extreme clicking; 35 s (``box=35`` to use it) for the classic
  two-corner drawing with quality control as on ILSVRC: Papadopoulos et al., "Extreme clicking for
  efficient object annotation", ICCV 2017 (arXiv 1708.02750).

UFO² (arXiv 2010.10804) bases its budget study on these published per-label times as well.

The solver (``solve_budget``) walks the images in a seeded order and gives each the policy's kind when
its cost still fits the remaining budget (an image that does not fit is skipped and a cheaper later
one may still fit), so it never spends more than the budget and the same inputs give the same answer.
Policies:

* ``boxes`` | ``tags`` | ``points`` | ``scribbles``: that kind on as many images as the budget pays for;
  the rest are left out;
* ``boxes+tags`` | ``boxes+points``: half the budget on boxes, the rest (with what boxes left) on the
  weak kind for further images;
* ``boxes+unlabeled``: boxes on as many images as fit, every other image joins unlabeled (free).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

POLICIES = ("boxes", "tags", "points", "scribbles", "boxes+tags", "boxes+points", "boxes+unlabeled")


@dataclass
class AnnotationCosts:
    """Annotator-seconds per label (module docstring for the sources)."""

    tag_per_class: float = 1.0
    point: float = 2.4
    scribble: float = 10.9
    box: float = 7.0

    def __post_init__(self) -> None:
        for key in ("tag_per_class", "point", "scribble", "box"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"labels.costs.{key}: must be >= 0 seconds, got {getattr(self, key)}")


def image_cost(kind: str, num_objects: int, num_classes: int, costs: AnnotationCosts) -> float:
    """Annotator-seconds to give one image ``kind`` labels (module docstring)."""
    if kind == "none":
        return 0.0
    per_object = {"tags": 0.0, "points": costs.point, "scribbles": costs.scribble, "boxes": costs.box}
    if kind not in per_object:
        raise ValueError(f"unknown label kind {kind!r}")
    return num_classes * costs.tag_per_class + num_objects * per_object[kind]


def solve_budget(object_counts: Sequence[int], num_classes: int, budget: float, policy: str,
                 costs: AnnotationCosts, seed: int = 0) -> list[str | None]:
    """One kind per image (None: left out of training) whose total cost is at most ``budget``.

    Args:
        object_counts: objects per image (what the simulated annotator will label).
        num_classes: C, the size of the label set.
        budget: annotator-seconds.
        policy: one of ``POLICIES``.
        costs: seconds per label.
        seed: the order in which images are considered.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    order = torch.randperm(len(object_counts), generator=torch.Generator().manual_seed(seed)).tolist()
    kinds: list[str | None] = [None] * len(object_counts)
    strong, _, weak = policy.partition("+")
    spent = 0.0

    def fill(kind: str, limit: float) -> None:
        nonlocal spent
        for i in order:
            if kinds[i] is not None:
                continue
            cost = image_cost(kind, object_counts[i], num_classes, costs)
            if spent + cost <= limit:
                kinds[i] = kind
                spent += cost

    if not weak:
        fill(strong, budget)
    elif weak == "unlabeled":
        fill(strong, budget)
        kinds = [k if k is not None else "none" for k in kinds]
    else:
        fill(strong, budget / 2)
        fill(weak, budget)
    return kinds


def total_cost(kinds: Sequence[str | None], object_counts: Sequence[int], num_classes: int,
               costs: AnnotationCosts) -> float:
    """Annotator-seconds of an assignment (None and ``none`` cost nothing)."""
    return sum(image_cost(k, n, num_classes, costs) for k, n in zip(kinds, object_counts) if k is not None)
