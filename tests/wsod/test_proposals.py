"""Proposals: sliding windows, Selective Search (when OpenCV contrib is installed), the cache, recall."""

import logging
import math
import os
import sys

import numpy as np
import pytest
import torch

from imaginate.systems.wsod import proposals as proposals_module
from imaginate.systems.wsod.proposals import (
    ProposalCache,
    ProposalParams,
    compute_proposals,
    opencv_contrib_available,
    proposal_recall,
    resolve_proposal_method,
    selective_search,
    sliding_window_proposals,
)


def _scene(height=48, width=64):
    """A grey image with two flat rectangles; returns the image and their [2, 4] boxes."""
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    image[8:24, 6:30] = (230, 40, 40)
    image[28:44, 36:60] = (40, 200, 60)
    return image, torch.tensor([[6.0, 8, 30, 24], [36, 28, 60, 44]])


@pytest.mark.parametrize("height, width", [(48, 64), (37, 23)])
def test_sliding_windows_cover_the_image_at_every_scale(height, width):
    scales, ratios = (0.2, 0.5), (0.5, 1.0, 2.0)
    boxes = sliding_window_proposals(height, width, scales, ratios, stride_fraction=0.5)
    assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert torch.unique(boxes, dim=0).shape[0] == boxes.shape[0]
    assert any(torch.equal(box, torch.tensor([0.0, 0, width, height])) for box in boxes)
    for scale in scales:  # the windows of each size alone cover every pixel centre
        side = scale * min(height, width)
        of_scale = boxes[((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - side**2).abs() < 1e-3]
        ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        inside = (
            (xs[..., None] >= of_scale[:, 0]) & (xs[..., None] <= of_scale[:, 2])
            & (ys[..., None] >= of_scale[:, 1]) & (ys[..., None] <= of_scale[:, 3])
        )  # fmt: skip
        assert inside.any(dim=-1).all()


def test_sliding_windows_reject_bad_settings():
    with pytest.raises(ValueError, match="scales"):
        sliding_window_proposals(10, 10, scales=(1.5,))
    with pytest.raises(ValueError, match="stride_fraction"):
        sliding_window_proposals(10, 10, stride_fraction=0.0)
    with pytest.raises(ValueError, match="max_proposals"):
        ProposalParams(max_proposals=0)


def test_proposal_recall_on_hand_made_boxes():
    truth = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    proposals = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 40], [40, 40, 45, 45]])  # IoU 1, 0.5, 0.25
    assert proposal_recall(proposals, truth) == pytest.approx(2 / 3)
    assert proposal_recall(proposals, truth, iou=0.6) == pytest.approx(1 / 3)
    per_image = proposal_recall([proposals, torch.zeros(0, 4)], [truth, torch.tensor([[0.0, 0, 5, 5]])])
    assert per_image == pytest.approx(2 / 4)
    assert math.isnan(proposal_recall(proposals, torch.zeros(0, 4)))


def test_sliding_window_fallback_recalls_the_scene_objects():
    image, truth = _scene()
    boxes = compute_proposals(image, method="sliding_window")
    assert boxes.shape[0] <= ProposalParams().max_proposals
    assert proposal_recall(boxes, truth) == 1.0
    capped = compute_proposals(image, method="sliding_window", params=ProposalParams(max_proposals=100))
    assert capped.shape[0] == 100 and torch.equal(capped[0], boxes[0]) and torch.equal(capped[-1], boxes[-1])


def test_auto_picks_sliding_windows_without_opencv_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(proposals_module, "opencv_contrib_available", lambda: False)
    monkeypatch.setattr(proposals_module, "_announced", set())
    with caplog.at_level(logging.INFO, logger=proposals_module.__name__):
        assert resolve_proposal_method("auto") == "sliding_window"
        resolve_proposal_method("auto")
    assert [r.getMessage() for r in caplog.records].count(
        "proposals: sliding_window (no OpenCV contrib: pip install opencv-contrib-python-headless)"
    ) == 1
    with pytest.raises(ValueError, match="proposal method"):
        resolve_proposal_method("edge_boxes")


def test_selective_search_without_opencv_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match="pip install opencv-contrib-python-headless"):
        selective_search(np.zeros((8, 8, 3), dtype=np.uint8))


@pytest.mark.skipif(not opencv_contrib_available(), reason="opencv-contrib-python-headless not installed")
def test_selective_search_finds_flat_rectangles():
    image, truth = _scene()
    boxes = selective_search(image, mode="fast", max_proposals=300)
    assert 0 < boxes.shape[0] <= 300 and boxes.dtype == torch.float32
    assert (boxes[:, 2:] <= torch.tensor([64.0, 48.0])).all() and (boxes[:, :2] >= 0).all()
    assert proposal_recall(boxes, truth, iou=0.7) == 1.0


@pytest.mark.skipif(not opencv_contrib_available(), reason="opencv-contrib-python-headless not installed")
def test_selective_search_boxes_do_not_depend_on_what_ran_before():
    # OpenCV ranks regions with std::rand(): unseeded, the astronaut's boxes change order (and set)
    # after another image's search; the seeded ranking gives the same boxes every time
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[::4, ::4])
    first = selective_search(image)
    selective_search(np.ascontiguousarray(data.coffee()[::4, ::4]))
    assert torch.equal(selective_search(image), first)


def test_cache_computes_once_and_reuses(tmp_path, monkeypatch):
    calls = []

    def counting(image, method, params):
        calls.append(method)
        return torch.tensor([[0.0, 0, 4, 4], [1, 1, 3, 3]])

    monkeypatch.setattr(proposals_module, "compute_proposals", counting)
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    cache = ProposalCache(str(tmp_path), method="sliding_window")
    first = cache.get("000005", image)
    second = cache.get("000005", image)
    assert torch.equal(first, second) and calls == ["sliding_window"]
    assert (cache.hits, cache.misses) == (1, 1)
    # a new cache on the same folder (the next run) reads the file; another id or setting recomputes
    assert torch.equal(ProposalCache(str(tmp_path), method="sliding_window").get("000005", image), first)
    assert len(calls) == 1
    cache.get(7, image)
    ProposalCache(str(tmp_path), "sliding_window", ProposalParams(stride_fraction=0.25)).get("000005", image)
    cache.get("000005", np.zeros((9, 8, 3), dtype=np.uint8))  # the same id at another size
    assert len(calls) == 4
    stored = [name for name in os.listdir(tmp_path) if name.endswith(".npy")]
    assert len(stored) == 4 and not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    with open(cache.path("000005", 8, 8, cache.fingerprint(image)), "wb") as f:  # a damaged file is recomputed and rewritten
        f.write(b"garbage")
    assert torch.equal(cache.get("000005", image), first) and len(calls) == 5
    assert torch.equal(cache.get("000005", image), first) and len(calls) == 5


def test_cache_with_real_sliding_windows(tmp_path):
    image, truth = _scene()
    cache = ProposalCache(str(tmp_path), method="sliding_window", params=ProposalParams(max_proposals=400))
    boxes = cache.get("scene", image)
    assert torch.equal(cache.get("scene", image), boxes) and cache.hits == 1
    assert torch.equal(boxes, compute_proposals(image, "sliding_window", ProposalParams(max_proposals=400)))
