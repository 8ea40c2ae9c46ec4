"""The wsod system: configs, one training step per method, sequential = plain at the system level, the
failure-mode metrics on hand-made cases, baselines."""

import math

import pytest
import torch

from imaginate.config import ConfigError, build_config
from imaginate.engine import RunContext
from imaginate.engine.distributed import DistEnv
from imaginate.registry import get_system
from imaginate.systems.wsod.data import DetectionSplit, resize_view
from imaginate.systems.wsod.evaluation import (
    baseline_detections,
    duplicate_recall,
    failure_modes,
    score_detections,
)

SMALL = ["data.num_train=12", "data.num_test=6", "eval.corloc_images=6", "model.width=8", "model.neck_dim=32",
         "data.proposal_method=sliding_window", "data.max_proposals=40", "train.batch_size=2"]


def _system(tmp_path, *overrides):
    spec = get_system("wsod")
    cfg = build_config(spec.config_cls, preset="tiny", system="wsod",
                       overrides=SMALL + [f"data.proposal_cache={tmp_path}", *overrides])
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), False, 1, 0, cfg.train.batch_size)
    return spec.system_cls(cfg, ctx)


@pytest.mark.parametrize("method", ["wsddn", "oicr", "mist", "supervised"])
def test_every_method_takes_a_finite_step(tmp_path, method):
    system = _system(tmp_path, f"method={method}", "refine_warmup_start=0")
    before = [p.detach().clone() for p in system.net.parameters()]
    batch = system.train_batch(0)
    logs = system.train_step(batch)
    assert math.isfinite(logs["detector_loss"])
    assert ("refine" in logs) == (method != "wsddn")
    assert any(not torch.equal(a, b) for a, b in zip(before, system.net.parameters()))


def test_cdb_takes_its_own_adversarial_step(tmp_path):
    system = _system(tmp_path, "cdb=true", "cdb_max_drop=0.5")
    cdb = system.net.roi_dropout
    before = [p.detach().clone() for p in cdb.parameters()]
    logs = system.train_step(system.train_batch(0))
    assert "cdb_loss" in logs and 0 <= logs["cdb_drop"] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, cdb.parameters()))
    assert all(p.grad is None for p in system.net.parameters())  # nothing left over for the next step


def _gradients(system, batch, plain_chunks: bool):
    """Every parameter's gradient of the detector loss, with the neck chunked (chunk_size) either by
    ``checkpointed_neck`` (sequential back-propagation, as training runs it) or by a plain chunked
    forward that stores every activation (the reference: the same random draws in the same order)."""
    from imaginate.systems.wsod import model as model_module
    from imaginate.systems.wsod.sequential import _chunks

    def stored_chunks(features, rois, neck, chunk_size):
        return torch.cat([neck(features, rois[part]) for part in _chunks(rois.shape[0], chunk_size)])

    system.net.zero_grad(set_to_none=True)
    saved = model_module.checkpointed_neck
    if plain_chunks:
        model_module.checkpointed_neck = stored_chunks
    try:
        torch.manual_seed(1)  # the same dropout and Concrete DropBlock draws
        loss, _ = system.detector_loss(batch)
        loss.backward()
    finally:
        model_module.checkpointed_neck = saved
    return {name: p.grad.clone() for name, p in system.net.named_parameters() if p.grad is not None}


def test_sequential_backprop_gives_the_plain_gradients(tmp_path):
    torch.manual_seed(0)
    system = _system(tmp_path, "method=mist", "refine_warmup_start=0", "chunk_size=7", "cdb=true",
                     "cdb_max_drop=0.5")
    system.net.double()
    batch = system.train_batch(0)
    batch = {**batch, "images": batch["images"].double(), "proposals": [p.double() for p in batch["proposals"]]}
    assert sum(p.shape[0] for p in batch["proposals"]) > 3 * 7  # several chunks
    plain = _gradients(system, batch, plain_chunks=True)
    sequential = _gradients(system, batch, plain_chunks=False)
    assert plain.keys() == sequential.keys() and len(plain) >= 20
    for name, want in plain.items():
        error = float((sequential[name] - want).norm() / want.norm().clamp(min=1e-30))
        assert error < 1e-6, (name, error)
    assert float(plain["roi_neck.fc6.weight"].norm()) > 0 and float(plain["backbone.body.0.weight"].norm()) > 0


def test_batches_are_a_function_of_the_step_and_views_map_boxes(tmp_path):
    system = _system(tmp_path)
    a, b = system.train_batch(3), system.train_batch(3)
    assert torch.equal(a["images"], b["images"])
    image = torch.rand(3, 40, 60)
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0]])
    view, mapped = resize_view(image, boxes, 20, flip=True)  # half size, mirrored
    assert view.shape == (3, 20, 30)
    torch.testing.assert_close(mapped, torch.tensor([[15.0, 2.5, 25.0, 12.5]]))


def test_wrong_class_count_is_a_clear_error(tmp_path):
    system = _system(tmp_path, "model.num_classes=5")
    with pytest.raises(ConfigError, match="model.num_classes"):
        system.train_batch(0)


def _split(boxes, labels, parts, proposals):
    n = len(boxes)
    tags = torch.zeros(n, 3)
    for i, lab in enumerate(labels):
        tags[i, lab] = 1
    return DetectionSplit(torch.zeros(n, 3, 100, 100, dtype=torch.uint8), tags, boxes, labels,
                          [torch.zeros(len(b), dtype=torch.bool) for b in boxes], proposals, ("a", "b", "c"),
                          pixel_inclusive=False, part_boxes=parts)


def test_failure_modes_and_duplicate_recall_on_hand_made_cases():
    # image 0: one object of class 0 with its part in the corner; image 1: two instances of class 1
    boxes = [torch.tensor([[0.0, 0.0, 40.0, 40.0]]), torch.tensor([[0.0, 0.0, 30.0, 30.0], [32.0, 0.0, 62.0, 30.0]])]
    labels = [torch.tensor([0]), torch.tensor([1, 1])]
    parts = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[0.0, 0.0, 8.0, 8.0], [32.0, 0.0, 40.0, 8.0]])]
    split = _split(boxes, labels, parts, [torch.zeros(1, 4)] * 2)
    part_only_det = (torch.tensor([[0.0, 0.0, 11.0, 11.0]]), torch.tensor([0.9]), torch.tensor([0]))
    merged_det = (torch.tensor([[0.0, 0.0, 62.0, 30.0], [0.0, 0.0, 30.0, 30.0]]), torch.tensor([0.9, 0.5]),
                  torch.tensor([1, 1]))
    rates = failure_modes([part_only_det, merged_det], split, [0, 1])
    assert rates == {"part_only": 0.5, "merged": 1.0}
    # top-2 of class 1: the merged box finds nothing, the second finds instance 0 -> 1 of 2
    assert duplicate_recall([part_only_det, merged_det], split, [0, 1]) == 0.5
    good = (torch.tensor([[0.0, 0.0, 30.0, 30.0], [32.0, 0.0, 62.0, 30.0]]), torch.tensor([0.9, 0.8]), torch.tensor([1, 1]))
    assert duplicate_recall([part_only_det, good], split, [0, 1]) == 1.0
    assert failure_modes([part_only_det, good], split, [0, 1])["merged"] == 0.0


def test_baselines_use_the_tags_and_score_as_documented():
    boxes = [torch.tensor([[0.0, 0.0, 100.0, 100.0]]), torch.tensor([[10.0, 10.0, 20.0, 20.0]])]
    labels = [torch.tensor([2]), torch.tensor([0])]
    proposals = [torch.tensor([[0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 90.0, 95.0]])] * 2
    split = _split(boxes, labels, None, proposals)
    whole = baseline_detections(split, [0, 1], "whole_image")
    assert [int(d[2][0]) for d in whole] == [2, 0]
    metrics = score_detections(whole, whole, (split, split), [0, 1], [0, 1])
    assert metrics["corloc"] == pytest.approx(0.5)  # right on the full-frame object, wrong on the small one
    largest = baseline_detections(split, [0, 1], "largest")
    torch.testing.assert_close(largest[0][0], torch.tensor([[0.0, 0.0, 90.0, 95.0]]))


def test_a_voc_folder_trains_through_the_same_system(tmp_path):
    from imaginate.data.scenes import SCENE_CLASSES, SceneDataset, export_voc

    scenes = SceneDataset(6, 64, seed=3)
    export_voc(scenes, str(tmp_path / "voc"), image_set="trainval")
    export_voc(scenes, str(tmp_path / "voc"), image_set="test")
    classes = "[" + ",".join(SCENE_CLASSES) + "]"
    system = _system(tmp_path, "data.name=voc", f"data.root={tmp_path / 'voc'}", f"data.classes={classes}")
    split = system.train_split
    assert split.pixel_inclusive and len(split) == 6
    torch.testing.assert_close(split.tags, torch.stack([scenes[i]["tags"] for i in range(6)]))
    logs = system.train_step(system.train_batch(0))
    assert math.isfinite(logs["detector_loss"])
