"""UFO²: label kinds, the per-kind targets (points, scribbles, boxes, unlabeled), label files, fine-tuning,
and the ufo2_tiny preset training end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from imaginate.cli import main
from imaginate.config import ConfigError
from imaginate.data.errors import DataError
from imaginate.systems.wsod.inference import flip_boxes
from imaginate.systems.wsod.labels import ImageLabels, LabelsConfig, read_coco_labels
from imaginate.systems.wsod.losses import RoITargets, box_supervised_targets, mist_pseudo_labels, wsddn_loss
from imaginate.systems.wsod.model import WSODModelConfig, WSODNet
from imaginate.systems.wsod.omni import (
    OmniConfig,
    OmniSupervision,
    class_bags,
    filter_by_annotations,
    load_initial_weights,
    masked_mil_loss,
    point_containment,
    scribble_containment,
    teacher_seeds,
)

ROIS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0], [12.0, 12.0, 30.0, 30.0], [0.0, 0.0, 30.0, 30.0]])
FAST = ["data.num_train=24", "data.num_test=6", "eval.corloc_images=6", "data.proposal_method=sliding_window",
        "data.max_proposals=40", "train.device=cpu", "train.num_threads=1"]


def _targets(labels: list[int]) -> RoITargets:
    n = len(labels)
    return RoITargets(torch.tensor(labels), torch.full((n,), 0.5), ROIS[:n].clone(), torch.zeros(0, 4),
                      torch.zeros(0, dtype=torch.int64), torch.zeros(0))


def test_point_filter_keeps_exactly_the_rois_holding_a_click_of_their_class():
    clicks = torch.tensor([[6.0, 6.0], [25.0, 25.0]])  # class 0 in ROIs 0, 1, 3; class 1 in ROIs 2, 3
    contains = point_containment(ROIS, clicks)
    assert contains.tolist() == [[True, False], [True, False], [False, True], [True, True]]
    bags, misses = class_bags(contains, torch.tensor([0, 1]), torch.tensor([1.0, 1.0, 0.0]))
    assert misses == 0
    assert bags[:, 2].all()  # an untagged class: every ROI stays in its (negative) bag
    # pseudo-labels: every ROI foreground of class 0, then of class 1, then mixed
    assert filter_by_annotations(_targets([1, 1, 1, 1]), bags).labels.tolist() == [1, 1, 0, 1]
    assert filter_by_annotations(_targets([2, 2, 2, 2]), bags).labels.tolist() == [0, 0, 2, 2]
    filtered = filter_by_annotations(_targets([0, 2, 1, 2]), bags)
    assert filtered.labels.tolist() == [0, 0, 0, 2]
    assert filtered.weights.tolist() == [0.5] * 4  # reset ROIs keep their weight, as background


def test_scribble_containment_is_intersection_over_scribble_box_area():
    stroke = [torch.tensor([[10.0, 10.0], [20.0, 10.0]])]  # flat: its box grows to [10, 9.5, 20, 10.5], area 10
    rois = torch.tensor([[0.0, 0.0, 15.0, 20.0], [0.0, 0.0, 14.9, 20.0], [12.0, 0.0, 30.0, 30.0], [0.0, 10.2, 30.0, 30.0]])
    # overlaps: 5 / 10 = 0.5 (kept), 4.9 / 10 (not), 8 / 10 (kept), 10 x 0.3 / 10 = 0.3 (not)
    assert scribble_containment(rois, stroke, 0.5).flatten().tolist() == [True, False, True, False]
    assert scribble_containment(rois, stroke, 0.25).flatten().tolist() == [True, True, True, True]


def test_a_tagged_class_no_roi_contains_keeps_every_roi_and_is_counted():
    contains = point_containment(ROIS[:2], torch.tensor([[50.0, 50.0]]))
    bags, misses = class_bags(contains, torch.tensor([1]), torch.tensor([0.0, 1.0]))
    assert misses == 1 and bags.all()


def test_masked_mil_sums_scores_over_each_class_bag_only():
    scores = torch.rand(4, 3) / 4
    bags = torch.tensor([[True, False, True], [False, False, True], [True, True, True], [False, True, True]])
    tags = torch.tensor([1.0, 1.0, 0.0])
    expected = wsddn_loss((scores * bags).sum(0, keepdim=True), tags[None])
    assert torch.allclose(masked_mil_loss(scores, bags, tags), expected)
    assert not torch.allclose(masked_mil_loss(scores, torch.ones_like(bags), tags), expected)


def test_box_sampling_keeps_a_quarter_foreground():
    torch.manual_seed(0)
    gt = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    jitter = torch.randn(300, 4) * 2
    near = gt + jitter  # IoU well above 0.5
    far = torch.tensor([[60.0, 60.0, 90.0, 90.0]]) + torch.rand(300, 4) * 5
    rois = torch.cat([near, far])
    targets = box_supervised_targets(gt, torch.tensor([2]), rois, num_samples=64, fg_fraction=0.25,
                                     generator=torch.Generator().manual_seed(1))
    chosen = targets.weights > 0
    assert int(chosen.sum()) == 64
    assert int((chosen & (targets.labels == 3)).sum()) == 16 and int((chosen & (targets.labels == 0)).sum()) == 48
    # fewer foreground ROIs than a quarter: all of them, background fills the sample
    few = box_supervised_targets(gt, torch.tensor([2]), torch.cat([near[:5], far]), num_samples=64,
                                 generator=torch.Generator().manual_seed(1))
    assert int(((few.weights > 0) & (few.labels > 0)).sum()) == 5 and int((few.weights > 0).sum()) == 64


def test_teacher_seeds_are_none_rather_than_all_background():
    rois = ROIS[:3]
    unsure = torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.4, 0.3, 0.3]])
    assert teacher_seeds(unsure, rois, threshold=0.6, nms_iou=0.3) is None
    sure = torch.tensor([[0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.4, 0.3, 0.3]])
    targets = teacher_seeds(sure, rois, threshold=0.6, nms_iou=0.3)
    assert targets is not None and targets.labels.tolist() == [1, 0, 0] and targets.seed_labels.tolist() == [1]


def test_an_unlabeled_image_without_confident_predictions_gives_no_loss():
    torch.manual_seed(0)
    net = WSODNet(WSODModelConfig(num_classes=3, backbone="small", width=4, neck_dim=16))
    omni = OmniSupervision(LabelsConfig(mix={"none": 1.0}), OmniConfig(teacher_threshold=1.0), net,
                           mist_pseudo_labels, True, (0, 0), 0)
    images, proposals = torch.rand(2, 3, 32, 32), [ROIS[:3], ROIS[1:]]
    outputs = net(images, proposals)
    none = ImageLabels("none", torch.zeros(3), torch.zeros(0, dtype=torch.int64))
    loss, logs = omni.loss(outputs, {"images": images, "proposals": proposals, "labels": [none, none], "step": 5})
    loss.backward()
    assert float(loss.detach()) == 0.0 and logs["teacher_seeds"] == 0.0
    assert all(p.grad is None or not p.grad.any() for p in net.parameters())  # no background push at all


def test_label_geometry_follows_a_flip_and_resize():
    labels = ImageLabels("scribbles", torch.tensor([1.0, 0.0]), torch.tensor([0]),
                         scribbles=[torch.tensor([[2.0, 3.0], [6.0, 7.0]])])
    moved = labels.with_geometry(flip_boxes(labels.geometry() * 2, 40.0))
    assert moved.scribbles[0].tolist() == [[36.0, 6.0], [28.0, 14.0]]


def _coco(tmp_path, point=(3.0, 4.0), scribble=((1.0, 1.0), (5.0, 2.0)), kind="points"):
    data = {"categories": [{"id": 1, "name": "red_disk"}, {"id": 2, "name": "blue_x"}],
            "images": [{"id": 0, "label_kind": "scribbles"}, {"id": 3, "label_kind": kind},
                       {"id": 5, "label_kind": "none"}],
            "annotations": [{"image_id": 0, "category_id": 2, "scribble": [list(v) for v in scribble]},
                            {"image_id": 3, "category_id": 1, "point": list(point)},
                            {"image_id": 5, "category_id": 1, "point": [1.0, 1.0]}]}
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_coco_labels_read_each_kind(tmp_path):
    classes = ["red_disk", "green_ring", "blue_x"]
    labels = read_coco_labels(_coco(tmp_path), classes, 8)
    assert [lab.kind if lab else None for lab in labels] == ["scribbles", None, None, "points", None, "none", None, None]
    assert labels[3].points.tolist() == [[3.0, 4.0]] and labels[3].tags.tolist() == [1.0, 0.0, 0.0]
    assert labels[0].classes.tolist() == [2] and len(labels[0].scribbles[0]) == 2
    assert labels[5].tags.sum() == 0  # unlabeled: tags unknown, annotations ignored


def test_coco_labels_match_a_coco_split_by_image_id_not_position(tmp_path):
    """With data.name=coco the file's ids are COCO ids: image 5 is the split's first image here."""
    classes = ["red_disk", "green_ring", "blue_x"]
    labels = read_coco_labels(_coco(tmp_path), classes, 3, image_ids=[5, 0, 3])
    assert [lab.kind for lab in labels] == ["none", "scribbles", "points"]
    with pytest.raises(DataError, match="image id 3 is not a COCO image id of the training set"):
        read_coco_labels(_coco(tmp_path), classes, 2, image_ids=[5, 0])


@pytest.mark.parametrize("bad, words", [
    ({"point": (3.0,)}, "image 3: point"),
    ({"point": (3.0, float("nan"))}, "image 3: point"),
    ({"scribble": ((1.0, 1.0),)}, "image 0: scribble"),
    ({"scribble": ((1.0, 1.0), (2.0, "x"))}, "image 0: scribble"),
    ({"kind": "polygons"}, "image 3: label_kind"),
])
def test_malformed_coco_labels_name_the_image(tmp_path, bad, words):
    with pytest.raises(DataError, match=words):
        read_coco_labels(_coco(tmp_path, **bad), ["red_disk", "blue_x"], 8)


def test_malformed_coco_file_is_one_line_and_exit_2_from_the_cli(tmp_path, capsys):
    path = _coco(tmp_path, point=("a", 1))
    code = main(["train", "wsod", "--preset", "ufo2_tiny", "--out", str(tmp_path / "run"), f"labels.coco_file={path}",
                 f"data.proposal_cache={tmp_path / 'cache'}", "train.steps=2", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "image 3: point" in err[0] and "labels.json" in err[0]


def test_init_from_loads_the_detector_and_rejects_a_mismatch(tmp_path):
    config = WSODModelConfig(num_classes=3, backbone="small", width=4, neck_dim=16)
    trained = WSODNet(config)
    path = tmp_path / "step.pt"
    torch.save({"step": 1, "modules": {"detector": trained.state_dict()}}, path)
    fresh = WSODNet(config)
    load_initial_weights(fresh, str(path))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))
    other = WSODNet(WSODModelConfig(num_classes=4, backbone="small", width=4, neck_dim=16))
    with pytest.raises(ConfigError, match="train.init_from"):
        load_initial_weights(other, str(path))
    with pytest.raises(ConfigError, match="train.init_from"):
        load_initial_weights(fresh, str(tmp_path / "missing.pt"))


def test_ufo2_tiny_trains_20_steps_on_mixed_labels_with_finite_losses(tmp_path):
    run = tmp_path / "run"
    code = main(["train", "wsod", "--preset", "ufo2_tiny", "--out", str(run), "train.steps=20", "train.log_every=1",
                 "train.ckpt_every=0", "refine_warmup_start=0", "refine_warmup_length=0", "omni.teacher_threshold=0.0",
                 f"data.proposal_cache={tmp_path / 'cache'}", *FAST])
    assert code == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert len(train) == 20
    seen = {key for r in train for key in r if key.startswith("loss_")}
    assert seen == {"loss_boxes", "loss_tags", "loss_points", "loss_scribbles", "loss_none"}
    assert all(math.isfinite(v) for r in train for k, v in r.items() if isinstance(v, float))
    assert any(r.get("teacher_seeds", 0) > 0 for r in train)  # the unlabeled images did get targets
    # fine-tuning from it starts from its weights
    code = main(["train", "wsod", "--preset", "ufo2_tiny", "--out", str(tmp_path / "tuned"), "train.steps=2",
                 f"train.init_from={run}", f"data.proposal_cache={tmp_path / 'cache'}", *FAST])
    assert code == 0
