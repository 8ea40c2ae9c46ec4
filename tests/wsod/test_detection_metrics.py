"""VOC AP (11-point and area), CorLoc and COCO AP on hand-computed cases."""

import math
import sys

import pytest
import torch

from imaginate.metrics.detection import box_iou, coco_ap, corloc, top_box_per_class, voc_ap, voc_eval


def _det(boxes, scores, labels):
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores),
        torch.tensor(labels),
    )


def _gt(boxes, labels, difficult=None):
    difficult = difficult if difficult is not None else [False] * len(labels)
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(difficult, dtype=torch.bool),
    )


A, B, C = [0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]
NOWHERE = [60, 60, 70, 70]


def _both(detections, annotations, num_classes=1):
    """(11-point mAP, area mAP) with continuous coordinates."""
    kw = dict(num_classes=num_classes, pixel_inclusive=False)
    return (
        voc_eval(detections, annotations, use_07_metric=True, **kw),
        voc_eval(detections, annotations, use_07_metric=False, **kw),
    )


def test_box_iou_pixel_conventions():
    a, b = torch.tensor([[0.0, 0, 9, 9]]), torch.tensor([[5.0, 0, 14, 9]])
    assert box_iou(a, b).item() == pytest.approx(36 / 126)  # 9x9 boxes, 4x9 overlap
    assert box_iou(a, b, pixel_inclusive=True).item() == pytest.approx(50 / 150)  # 10x10, 5x10


def test_perfect_detector_has_ap_one():
    annotations = [_gt([A, B], [0, 1]), _gt([C], [1])]
    detections = [_det([A, B], [0.9, 0.8], [0, 1]), _det([C], [0.7], [1])]
    for result in _both(detections, annotations, num_classes=2):
        assert result["ap"] == [1.0, 1.0] and result["map"] == 1.0


def test_false_positive_above_a_true_positive():
    # 3 GT; ranked TP, FP, TP (third GT missed): recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3.
    annotations = [_gt([A, B, C], [0, 0, 0])]
    detections = [_det([A, NOWHERE, B], [0.9, 0.8, 0.7], [0, 0, 0])]
    eleven, area = _both(detections, annotations)
    # 11-point: t = 0 .. 0.3 -> 1 (4 points), t = 0.4 .. 0.6 -> 2/3 (3 points), t >= 0.7 -> 0
    assert eleven["ap"][0] == pytest.approx((4 * 1 + 3 * 2 / 3) / 11)
    # area: 1/3 * 1 + 1/3 * 2/3 (the envelope lifts the FP's 1/2 to 1) + 1/3 * 0
    assert area["ap"][0] == pytest.approx(1 / 3 + 2 / 9)
    assert eleven["recall"][0] == pytest.approx(2 / 3)


def test_eleven_point_thresholds_are_exact_tenths():
    # recall reaches exactly 0.3: the t = 0.3 point counts (np.arange's 0.30000000000000004 would not)
    recall, precision = torch.tensor([0.1, 0.2, 3 / 10]), torch.ones(3)
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(4 / 11)
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(0.3)
    assert voc_ap(torch.zeros(0), torch.zeros(0), use_07_metric=True) == 0.0


def test_difficult_ground_truth_is_ignored():
    # the detection on the difficult box is neither TP nor FP: the ranking is FP, TP with 1 positive
    annotations = [_gt([A, B], [0, 0], difficult=[False, True])]
    detections = [_det([B, NOWHERE, A], [0.9, 0.85, 0.8], [0, 0, 0])]
    eleven, area = _both(detections, annotations)
    assert eleven["num_positives"] == [1]
    assert eleven["ap"][0] == pytest.approx(0.5) and area["ap"][0] == pytest.approx(0.5)
    # an image whose only box is difficult has no positives at all
    only_difficult = voc_eval([_det([A], [1.0], [0])], [_gt([A], [0], [True])], 1, pixel_inclusive=False)
    assert math.isnan(only_difficult["ap"][0]) and math.isnan(only_difficult["map"])


def test_duplicate_detections_are_false_positives():
    # 2 GT; A, A again, B -> TP, FP, TP: recall .5 .5 1, precision 1 .5 2/3
    annotations = [_gt([A, B], [0, 0])]
    detections = [_det([A, [0, 0, 10, 11], B], [0.9, 0.8, 0.7], [0, 0, 0])]
    eleven, area = _both(detections, annotations)
    assert eleven["ap"][0] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert area["ap"][0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_class_without_ground_truth_is_left_out_of_the_mean():
    annotations = [_gt([A], [0]), _gt([B], [1])]
    detections = [_det([A, C], [0.9, 0.9], [0, 2]), _det([], [], [])]  # class 1 never detected
    result = voc_eval(detections, annotations, num_classes=3, pixel_inclusive=False)
    assert result["ap"][0] == 1.0 and result["ap"][1] == 0.0 and math.isnan(result["ap"][2])
    assert result["map"] == pytest.approx(0.5)


def test_detections_of_other_images_and_classes_do_not_match():
    annotations = [_gt([A], [0]), _gt([B], [0])]
    detections = [_det([B, A], [0.9, 0.8], [0, 1]), _det([B], [0.7], [0])]  # A labelled class 1
    result = voc_eval(detections, annotations, num_classes=2, pixel_inclusive=False)
    # class 0 ranking: FP (B in image 0), TP (B in image 1): precision 0, 1/2 at recall 0, 1/2
    assert result["ap"][0] == pytest.approx(6 * 0.5 / 11)
    with pytest.raises(ValueError, match="labels must lie"):
        voc_eval([_det([A], [1.0], [5])], [_gt([A], [0])], num_classes=2)


def test_corloc_on_hand_made_top_boxes():
    annotations = [
        _gt([A], [0]),
        _gt([A, B], [0, 1]),
        _gt([A], [1]),
        _gt([C], [1]),
    ]
    top = [
        {0: torch.tensor(A, dtype=torch.float32)},  # class 0 right
        {0: torch.tensor(NOWHERE, dtype=torch.float32), 1: torch.tensor([20.0, 20, 30, 31])},  # wrong, right
        {0: torch.tensor(A, dtype=torch.float32)},  # class 1 has no box: wrong; class 0 not in image
        {1: torch.tensor([40.0, 0, 50, 20])},  # IoU exactly 0.5 does not exceed 0.5: wrong
    ]
    result = corloc(top, annotations, num_classes=3, pixel_inclusive=False)
    assert result["num_images"] == [2, 3, 0]
    assert result["corloc"][:2] == [pytest.approx(1 / 2), pytest.approx(1 / 3)]
    assert math.isnan(result["corloc"][2])
    assert result["mean"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_top_box_per_class_takes_the_highest_score():
    detections = [_det([A, B, C], [0.2, 0.9, 0.5], [0, 0, 1])]
    (top,) = top_box_per_class(detections, num_classes=2)
    assert torch.equal(top[0], torch.tensor(B, dtype=torch.float32))
    assert torch.equal(top[1], torch.tensor(C, dtype=torch.float32))


def test_coco_ap_without_pycocotools_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ImportError, match="pip install pycocotools"):
        coco_ap([_det([A], [1.0], [0])], [_gt([A], [0])], num_classes=1)


def test_coco_ap_of_a_perfect_detector_is_one():
    pytest.importorskip("pycocotools")
    annotations = [_gt([A, B], [0, 1]), _gt([[5, 5, 45, 45]], [1])]
    detections = [_det([A, B], [0.9, 0.8], [0, 1]), _det([[5, 5, 45, 45]], [0.7], [1])]
    stats = coco_ap(detections, annotations, num_classes=2)
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    half = coco_ap([_det([A], [1.0], [0]), _det([], [], [])], [_gt([A], [0]), _gt([B], [0])], 1)
    assert half["AR100"] == pytest.approx(0.5)


@pytest.mark.parametrize("pixel_inclusive", [False, True])
def test_a_detection_at_iou_exactly_half_is_a_true_positive(pixel_inclusive):
    """The devkit's rule is IoU >= 0.5 (a '>' would turn this detection into a false positive)."""
    end = 9 if pixel_inclusive else 10  # +1 areas: [0, 0, 9, 9] has area 100
    gt = _gt([[0, 0, end, end]], [0])
    det = _det([[0, 0, end, end // 2 if pixel_inclusive else 5]], [0.9], [0])
    iou = box_iou(det[0], gt[0], pixel_inclusive=pixel_inclusive)
    assert float(iou) == 0.5  # the case is exact, not approximately half
    result = voc_eval([det], [gt], num_classes=1, pixel_inclusive=pixel_inclusive)
    assert result["ap"] == [1.0]
