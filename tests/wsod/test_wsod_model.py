"""WSOD networks, weak-supervision targets and losses, and inference."""

import math

import pytest
import torch

from imaginate.metrics.detection import box_iou
from imaginate.systems.wsod.inference import (
    InferenceConfig,
    detect,
    postprocess,
    roi_predictions,
    tta_roi_predictions,
)
from imaginate.systems.wsod.losses import (
    BoxCoder,
    box_supervised_targets,
    mist_pseudo_labels,
    oicr_pseudo_labels,
    refinement_losses,
    refinement_warmup,
    roi_losses,
    wsddn_loss,
)
from imaginate.systems.wsod.model import (
    SmallBackbone,
    VGG16Backbone,
    WSODModelConfig,
    WSODNet,
    rois_from_proposals,
    wsddn_scores,
)


def _tiny_config(**overrides):
    settings = dict(num_classes=3, backbone="small", width=4, neck_dim=32, dropout=0.0, num_refinements=3)
    settings.update(overrides)
    return WSODModelConfig(**settings)


# ---------------------------------------------------------------- pseudo-labels


def _mist_scene():
    """40 ROIs in a 100 x 100 image, teacher scores for C = 3 classes, tags {0, 2}."""
    boxes = [
        [0, 0, 20, 20],  # 0 A: class 0's best
        [10, 0, 30, 20],  # 1 B: IoU 1/3 with A -> dropped
        [20, 0, 40, 20],  # 2 C: IoU 0 with A but 1/3 with the dropped B -> dropped (not plain NMS)
        [60, 60, 80, 80],  # 3 D: far -> kept
        [61, 61, 81, 81],  # 4 E: IoU 0.82 with D -> dropped
        [0, 60, 20, 80],  # 5 F: far -> kept (6th = last of the top 15%)
        [40, 0, 60, 20],  # 6 G: far, but 7th -> not a candidate
        [70, 0, 100, 30],  # 7 H: class 2's best
        [71, 0, 100, 30],  # 8-12: near-copies of H
        [70, 1, 100, 30],
        [70, 0, 99, 30],
        [70, 0, 100, 29],
        [71, 1, 100, 30],
        [1, 1, 21, 21],  # 13: IoU 0.82 with A
        [0, 0, 14, 20],  # 14: IoU 0.7 with A
        [0, 0, 10, 20],  # 15: IoU exactly 0.5 with A -> foreground
        [0, 0, 8, 20],  # 16: IoU 0.4 with A -> background, keeps A's weight
    ]
    boxes += [[25 + i, 30, 40 + i, 45] for i in range(23)]  # 17-39: overlap no seed
    teacher = torch.full((40, 3), 0.01)
    teacher[:6, 0] = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    teacher[6, 0] = 0.35
    teacher[6, 1] = 0.99  # class 1 is not tagged: ignored
    teacher[7:13, 2] = torch.tensor([0.95, 0.9, 0.85, 0.8, 0.75, 0.7])
    return teacher, torch.tensor(boxes, dtype=torch.float32), torch.tensor([1.0, 0.0, 1.0])


def test_mist_selects_top_fraction_suppresses_and_assigns_exactly():
    teacher, boxes, tags = _mist_scene()
    targets = mist_pseudo_labels(teacher, boxes, tags)  # top 15% of 40 = 6 candidates per class
    A, D, F, H = boxes[0], boxes[3], boxes[5], boxes[7]
    assert torch.equal(targets.seed_boxes, torch.stack([A, D, F, H]))
    assert targets.seed_labels.tolist() == [1, 1, 1, 3]
    assert torch.allclose(targets.seed_scores, torch.tensor([0.9, 0.6, 0.4, 0.95]))
    assert torch.equal(targets.seeds_of(3), H[None])
    expected_labels = [1, 0, 0, 1, 1, 1, 0, 3, 3, 3, 3, 3, 3, 1, 1, 1, 0] + [0] * 23
    expected_weights = [0.9, 0.9, 0.9, 0.6, 0.6, 0.4, 0.9] + [0.95] * 6 + [0.9] * 4 + [0.9] * 23
    assert targets.labels.dtype == torch.int64
    assert targets.labels.tolist() == expected_labels
    assert torch.allclose(targets.weights, torch.tensor(expected_weights))
    expected_targets = {0: A, 3: D, 4: D, 5: F, 7: H, 12: H, 13: A, 15: A, 16: A}
    for roi, box in expected_targets.items():
        assert torch.equal(targets.target_boxes[roi], box), roi


def test_mist_suppression_threshold_and_fraction_matter():
    teacher, boxes, tags = _mist_scene()
    loose = mist_pseudo_labels(teacher, boxes, tags, nms_iou=0.5)  # B, C (IoU 1/3) now survive
    assert loose.seeds_of(1).shape[0] == 5
    wide = mist_pseudo_labels(teacher, boxes, tags, top_fraction=7 / 40)  # G becomes a candidate
    assert any(torch.equal(box, boxes[6]) for box in wide.seeds_of(1))


def test_oicr_takes_the_top_box_per_tagged_class():
    teacher, boxes, tags = _mist_scene()
    targets = oicr_pseudo_labels(teacher, boxes, tags)
    assert torch.equal(targets.seed_boxes, boxes[[0, 7]])
    assert targets.seed_labels.tolist() == [1, 3]
    assert torch.allclose(targets.seed_scores, torch.tensor([0.9, 0.95]))
    assert targets.labels[[0, 3, 7, 13]].tolist() == [1, 0, 3, 1]  # D is no seed any more
    # two classes whose best ROI is the same: the second class takes its next best
    teacher = torch.tensor([[0.9, 0.8], [0.1, 0.7], [0.0, 0.1]])
    targets = oicr_pseudo_labels(teacher, boxes[[0, 3, 7]], torch.tensor([1, 1]))
    assert torch.equal(targets.seed_boxes, boxes[[0, 3]])


def test_no_tags_give_zero_weight_background():
    teacher, boxes, _ = _mist_scene()
    for assign in (mist_pseudo_labels, oicr_pseudo_labels):
        targets = assign(teacher, boxes, torch.zeros(3))
        assert (
            (targets.labels == 0).all()
            and (targets.weights == 0).all()
            and targets.seed_boxes.shape == (0, 4)
        )


def test_box_supervised_targets_match_and_sample():
    rois = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 5, 10], [30, 30, 40, 40]])
    gt_boxes, gt_labels = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 61]]), torch.tensor([2, 0])
    targets = box_supervised_targets(gt_boxes, gt_labels, rois)
    assert targets.labels.tolist() == [3, 3, 1, 3, 0]  # IoU 1, 0.68, 0.91, 0.5, 0
    assert targets.weights.tolist() == [1.0] * 5
    sampled = box_supervised_targets(gt_boxes, gt_labels, rois, num_samples=2, fg_fraction=0.5)
    assert sampled.weights.sum() == 2 and sampled.weights[4] == 1  # one foreground, the one background


# ---------------------------------------------------------------- losses and heads


def test_wsddn_scores_equal_a_hand_computation():
    cls = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    det = torch.tensor([[0.0, 1.0], [1.0, 0.0], [3.0, -1.0]])
    roi_scores, image_scores = wsddn_scores(cls, det, [2, 1])
    e = math.exp
    image0_class0 = e(1) / (e(1) + 1) * 1 / (1 + e(1)) + 1 / (1 + e(2)) * e(1) / (1 + e(1))
    image0_class1 = 1 / (e(1) + 1) * e(1) / (e(1) + 1) + e(2) / (1 + e(2)) * 1 / (e(1) + 1)
    assert torch.allclose(image_scores, torch.tensor([[image0_class0, image0_class1], [0.5, 0.5]]))
    assert torch.allclose(roi_scores[2], torch.tensor([0.5, 0.5]))
    many = wsddn_scores(torch.randn(50, 4) * 5, torch.randn(50, 4) * 5, [20, 30])[1]
    assert ((many >= 0) & (many <= 1)).all()


def test_wsddn_loss_is_clamped_bce():
    scores, tags = torch.tensor([[0.0, 0.25, 1.0]]), torch.tensor([[1.0, 0.0, 1.0]])
    expected = -(math.log(1e-8) + math.log(0.75) + math.log(1 - 1e-8)) / 3
    assert math.isclose(wsddn_loss(scores, tags).item(), expected, rel_tol=1e-5)


def test_box_coder_round_trip_and_known_value():
    coder = BoxCoder()
    reference = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), size 20 x 40
    target = torch.tensor([[12.0, 20.0, 52.0, 80.0]])  # centre (32, 50), size 40 x 60
    deltas = coder.encode(target, reference)
    assert torch.allclose(
        deltas, torch.tensor([[10 * 12 / 20, 10 * 10 / 40, 5 * math.log(2), 5 * math.log(1.5)]])
    )
    torch.manual_seed(0)
    corners = torch.rand(64, 2) * 100
    boxes = torch.cat([corners, corners + 1 + torch.rand(64, 2) * 50], dim=1).double()
    reference = torch.cat([corners, corners + 1 + torch.rand(64, 2) * 50], dim=1).double()
    assert torch.allclose(coder.decode(coder.encode(boxes, reference), reference), boxes)


def test_refinement_loss_is_weighted_ce_with_branch_weights_and_detached_teacher():
    torch.manual_seed(0)
    _, boxes, tags = _mist_scene()
    logits = torch.randn(2, 40, 4, requires_grad=True)
    deltas = torch.zeros(2, 40, 4, 4, requires_grad=True)
    roi_scores = torch.rand(40, 3, requires_grad=True)
    outputs = dict(roi_scores=roi_scores, refine_logits=logits, refine_deltas=deltas)
    losses = refinement_losses(outputs, [boxes], tags[None])
    first = mist_pseudo_labels(roi_scores.detach(), boxes, tags)
    expected = (
        3
        * (
            torch.nn.functional.cross_entropy(logits[0], first.labels, reduction="none") * first.weights
        ).mean()
    )
    assert torch.allclose(losses["refine0_cls"], expected)
    second = mist_pseudo_labels(logits[0].detach().softmax(1)[:, 1:], boxes, tags)
    assert torch.allclose(losses["refine1_cls"], roi_losses(logits[1], None, boxes, second, BoxCoder())[0])
    assert losses["refine0_reg"] > 0  # positives whose box differs from their seed's
    sum(losses.values()).backward()
    assert roi_scores.grad is None and deltas.grad.abs().sum() > 0


def test_refinement_warmup_ramps_linearly():
    assert [refinement_warmup(s, 10, 4) for s in (0, 9, 10, 12, 14, 99)] == [0, 0, 0, 0.5, 1, 1]
    assert refinement_warmup(0, 0, 0) == 1.0
    with pytest.raises(ValueError, match="warmup_length"):
        refinement_warmup(0, 0, -1)


# ---------------------------------------------------------------- networks


def test_backbones_have_stride_8():
    images = torch.randn(1, 3, 64, 48)
    assert SmallBackbone(width=4)(images).shape == (1, 16, 8, 6)
    with torch.no_grad():
        vgg = VGG16Backbone(frozen_stages=2)
        assert vgg(images).shape == (1, 512, 8, 6)
    frozen = [p.requires_grad for stage in vgg.stages for p in stage.parameters()]
    assert frozen[:8] == [False] * 8 and all(frozen[8:])


@pytest.mark.parametrize("roi_op", ["pool", "align"])
def test_wsodnet_pipeline_shapes(roi_op):
    net = WSODNet(_tiny_config(roi_op=roi_op))
    proposals = [torch.tensor([[0.0, 0, 32, 32], [8, 8, 40, 56]]), torch.tensor([[4.0, 4, 60, 60]])]
    rois, counts = rois_from_proposals(proposals)
    features = net.features(torch.randn(2, 3, 64, 64))
    pooled = net.roi_features(features, rois)
    assert features.shape == (2, 16, 8, 8) and pooled.shape == (3, 16, 7, 7)
    out = net.heads(net.neck(pooled), counts)
    assert out["image_scores"].shape == (2, 3) and out["roi_scores"].shape == (3, 3)
    assert out["refine_logits"].shape == (3, 3, 4) and out["refine_deltas"].shape == (3, 3, 4, 4)
    net.roi_dropout = torch.nn.Identity()
    assert len(list(net.detector_parameters())) == len(list(net.parameters()))


def test_small_wsodnet_overfits_the_wsddn_loss():
    torch.manual_seed(0)
    net = WSODNet(_tiny_config(num_refinements=0))
    images = torch.randn(2, 3, 48, 48)
    images[0, :, 8:24, 8:24] += 3.0  # a bright square in image 0 only
    proposals = [torch.tensor([[8.0, 8, 24, 24], [24, 24, 48, 48], [0, 0, 48, 48]])] * 2
    tags = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = wsddn_loss(net(images, proposals)["image_scores"], tags)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


# ---------------------------------------------------------------- inference


def test_postprocess_removes_duplicates_and_keeps_the_best_100():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10.5], [50, 50, 60, 60]])[:, None].expand(3, 2, 4)
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.3, 0.0]])
    out = postprocess(scores, boxes)
    # class 0: 0.8 duplicates 0.9; class 1: 0.1 duplicates 0.7, and the 0.0 score is below the threshold
    assert out["labels"].tolist() == [0, 1, 0] and torch.allclose(
        out["scores"], torch.tensor([0.9, 0.7, 0.3])
    )
    torch.manual_seed(0)
    corners = torch.rand(300, 2) * 200
    many = torch.cat([corners, corners + 5], 1)[:, None].expand(300, 4, 4)  # little overlap
    assert postprocess(torch.rand(300, 4), many)["boxes"].shape == (100, 4)


def _symmetrise(net):
    """Mirror-symmetric conv kernels and fc6 weights: the net becomes flip-invariant per mirrored ROI."""
    with torch.no_grad():
        for module in net.backbone.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.copy_((module.weight + module.weight.flip(-1)) / 2)
        fc6 = net.roi_neck.fc6.weight.view(net.config.neck_dim, -1, 7, 7)
        fc6.copy_((fc6 + fc6.flip(-1)) / 2)
        for regressor in net.refinement.regressors:
            regressor.weight.zero_()
        for head in [*net.refinement.classifiers, net.wsddn.cls_stream, net.wsddn.det_stream]:
            head.weight.normal_(std=1.0)  # spread the scores so that equal scores mean something


def _mirror(boxes, width):
    return torch.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]], -1)


def test_detect_limits_and_flip_tta_is_consistent_on_a_symmetric_input():
    torch.manual_seed(0)
    net = WSODNet(_tiny_config(roi_op="align"))
    _symmetrise(net)
    image = torch.randn(3, 64, 64)
    image = image + image.flip(-1)  # mirror-symmetric
    half = torch.tensor([[0.0, 0, 30, 30], [4, 10, 28, 60], [10, 20, 40, 50], [0, 0, 64, 64]])
    boxes = torch.cat([half, _mirror(half, 64)])  # closed under mirroring
    plain = tta_roi_predictions(net.eval(), [image], [boxes], InferenceConfig())[0]
    assert torch.allclose(plain[0][:4], plain[0][4:], atol=1e-6)  # the net is mirror-invariant
    flipped = tta_roi_predictions(net, [image], [boxes], InferenceConfig(hflip=True))[0]
    assert torch.allclose(plain[0], flipped[0], atol=1e-6) and torch.allclose(plain[1], flipped[1], atol=1e-4)
    net.train()
    out = detect(net, [image, image], [boxes, boxes], InferenceConfig(hflip=True, scales=(48, 64)))
    assert net.training and len(out) == 2
    for detections in out:
        assert detections["boxes"].shape[0] <= 100 and detections["labels"].max() < 3
        for c in range(3):  # NMS ran: no two boxes of a class overlap by more than 0.3
            of_class = detections["boxes"][detections["labels"] == c]
            assert (box_iou(of_class, of_class).triu(diagonal=1) <= 0.3).all()
    wsddn = detect(net, [image], [boxes], InferenceConfig(score_source="wsddn"))[0]
    assert wsddn["boxes"].shape[0] > 0 and box_iou(wsddn["boxes"], boxes).max(dim=1).values.min() > 1 - 1e-6


def test_flip_view_maps_scores_and_boxes_back_to_the_original_image():
    torch.manual_seed(0)
    net = WSODNet(_tiny_config()).eval()
    for regressor in net.refinement.regressors:
        torch.nn.init.normal_(regressor.weight, std=0.5)  # boxes move away from the proposals
    image, boxes = torch.randn(3, 48, 64), torch.tensor([[0.0, 0, 30, 30], [4, 10, 28, 40], [30, 5, 60, 45]])
    plain = tta_roi_predictions(net, [image], [boxes], InferenceConfig())[0]
    both = tta_roi_predictions(net, [image], [boxes], InferenceConfig(hflip=True))[0]
    mirrored = roi_predictions(net, image.flip(-1)[None], [_mirror(boxes, 64)])[0]
    assert not torch.allclose(mirrored[1], boxes[:, None].expand_as(mirrored[1]))
    assert torch.allclose(both[0], (plain[0] + mirrored[0]) / 2, atol=1e-6)
    assert torch.allclose(both[1], (plain[1] + _mirror(mirrored[1], 64)) / 2, atol=1e-4)
    same = tta_roi_predictions(net, [image], [boxes], InferenceConfig(scales=(48,)))[0]  # the input's size
    assert torch.allclose(same[0], plain[0]) and torch.allclose(same[1], plain[1])
    for regressor in net.refinement.regressors:
        torch.nn.init.zeros_(regressor.weight)
    scaled = tta_roi_predictions(net, [image], [boxes], InferenceConfig(scales=(96,), hflip=True))[0]
    assert torch.allclose(scaled[1], boxes[:, None].expand(3, 3, 4), atol=1e-4)  # back in the input's pixels


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_classes", 0),
        ("backbone", "resnet"),
        ("width", 0),
        ("frozen_stages", 6),
        ("roi_size", 0),
        ("roi_op", "warp"),
        ("neck_dim", 0),
        ("dropout", 1.0),
        ("num_refinements", -1),
    ],
)
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        WSODModelConfig(**{field: value})


def test_bad_inference_values_name_the_field():
    with pytest.raises(ValueError, match="score_source"):
        InferenceConfig(score_source="mean")
    with pytest.raises(ValueError, match="nms_iou"):
        InferenceConfig(nms_iou=0.0)
    with pytest.raises(ValueError, match="refine"):
        detect(
            WSODNet(_tiny_config(num_refinements=0)),
            [torch.randn(3, 32, 32)],
            [torch.tensor([[0.0, 0, 16, 16]])],
        )
