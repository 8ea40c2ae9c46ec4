"""Concrete DropBlock and sequential batch back-propagation (imaginate.systems.wsod.cdb / .sequential)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align, roi_pool

from imaginate.systems.wsod import sequential as sequential_module
from imaginate.systems.wsod.cdb import ConcreteDropBlock, cdb_adversarial_step, dilate_mask, sample_mask
from imaginate.systems.wsod.sequential import (
    SavedTensorMeter,
    checkpointed_neck,
    plain_roi_backward,
    sequential_roi_backward,
)

# ---------------------------------------------------------------- Concrete DropBlock


def test_sample_mask_is_binary_with_a_straight_through_gradient():
    logits = torch.linspace(-4, 2, 500, requires_grad=True)
    mask = sample_mask(logits, tau=0.01, generator=torch.Generator().manual_seed(0))
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    assert 0 < mask.sum() < 500
    (mask * torch.arange(500.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0 and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("p", [0.01, 0.1, 0.3])
def test_sample_mask_drops_each_cell_with_its_probability(p):
    logits = torch.full((200_000,), math.log(p) - math.log1p(-p))
    rate = sample_mask(logits, generator=torch.Generator().manual_seed(1)).mean().item()
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / 200_000) + 1e-4


def test_dilation_turns_one_cell_into_a_block():
    mask = torch.zeros(2, 1, 7, 7)
    mask[0, 0, 3, 3] = 1.0  # interior cell -> 3x3 block
    mask[1, 0, 0, 6] = 1.0  # corner cell -> the 2x2 part of its block inside the ROI
    out = dilate_mask(mask, 3)
    expected = torch.zeros(2, 1, 7, 7)
    expected[0, 0, 2:5, 2:5] = 1.0
    expected[1, 0, 0:2, 5:7] = 1.0
    assert torch.equal(out, expected)
    assert torch.equal(dilate_mask(mask, 1), mask)
    with pytest.raises(ValueError, match="odd"):
        dilate_mask(mask, 2)


def _cdb(channels=4, bias=None, **kwargs):
    torch.manual_seed(0)
    cdb = ConcreteDropBlock(channels, roi_size=7, hidden_channels=8, **kwargs)
    if bias is not None:  # a constant drop probability sigmoid(bias) * cell_drop_max everywhere
        last = cdb.drop_logit_net[-1]
        nn.init.zeros_(last.weight)
        nn.init.constant_(last.bias, bias)
    return cdb


def test_cdb_mask_is_binary_rescaled_per_roi_and_trains_the_conv_net():
    cdb = _cdb(max_drop=0.6)
    features = (torch.rand(64, 4, 7, 7) + 0.5).requires_grad_()
    torch.manual_seed(2)
    out = cdb(features)
    ratio = (out / features).detach()  # [R, F, S, S]: 0 where dropped, the ROI's scale elsewhere
    kept = (ratio[:, 0] != 0).sum(dim=(1, 2)).double()  # [R]
    scale = 49.0 / kept.clamp(min=1)
    expected = (ratio[:, :1] != 0).double() * scale[:, None, None, None]
    torch.testing.assert_close(ratio.double(), expected.expand_as(ratio), rtol=1e-5, atol=0)
    assert kept.min() < 49  # something was dropped
    assert cdb.last_drop_fraction == pytest.approx(1 - kept.sum().item() / (64 * 49))

    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    # the conv net sees detached features: their gradient is the masked, rescaled upstream gradient only
    torch.testing.assert_close(features.grad, upstream * ratio)
    for name, param in cdb.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_cdb_is_identity_in_eval_mode_and_without_drop():
    features = torch.randn(5, 4, 7, 7)
    cdb = _cdb().eval()
    assert torch.equal(cdb(features), features)
    assert torch.equal(_cdb(max_drop=0.0).train()(features), features)
    with pytest.raises(ValueError, match="ROI features"):
        cdb(torch.randn(5, 4, 6, 6))


def test_cdb_drop_rate_follows_the_predicted_probability():
    bias = 0.7  # p = sigmoid(0.7) * 0.3 / 9 per cell
    cdb = _cdb(bias=bias, max_drop=0.3)
    p = torch.sigmoid(torch.tensor(bias)).item() * 0.3 / 9
    features = torch.rand(4000, 4, 7, 7)
    logits = cdb.drop_logits(features)
    torch.testing.assert_close(torch.sigmoid(logits), torch.full_like(logits, p))
    before = sample_mask(logits, cdb.tau, generator=torch.Generator().manual_seed(3)).mean().item()
    assert abs(before - p) < 4 * math.sqrt(p * (1 - p) / logits.numel())
    # after dilation a cell is dropped when any of the n cells of its 3x3 window inside the ROI is
    n = F.avg_pool2d(torch.ones(1, 1, 7, 7), 3, stride=1, padding=1, count_include_pad=True) * 9  # 9, 6 or 4
    expected = (1 - (1 - p) ** n).mean().item()
    torch.manual_seed(4)
    cdb(features)
    assert abs(cdb.last_drop_fraction - expected) < 0.01
    assert cdb.last_drop_fraction <= 0.3


def test_cdb_fully_dropped_rois_come_out_as_zeros():
    cdb = _cdb(bias=20.0, max_drop=0.999, dilation_kernel=1)  # p ~ 0.999 per cell
    features = torch.rand(200, 4, 7, 7) + 1
    torch.manual_seed(5)
    out = cdb(features)
    assert torch.isfinite(out).all()
    all_dropped = (out == 0).flatten(1).all(dim=1)
    assert all_dropped.sum() > 100 and not all_dropped.all()


def _toy_detector():
    torch.manual_seed(0)
    cdb = ConcreteDropBlock(3, roi_size=7, hidden_channels=8, max_drop=0.3)
    classifier = nn.Linear(3 * 49, 2)
    features = torch.rand(256, 3, 7, 7) * 0.1
    labels = torch.randint(0, 2, (256,))
    features[torch.arange(256), labels, 3, 3] += 3.0  # the class is told by one discriminative cell
    optimizer = torch.optim.SGD(classifier.parameters(), lr=0.5)
    for _ in range(50):  # the detector learns to rely on that cell (CDB off)
        optimizer.zero_grad()
        F.cross_entropy(classifier(features.flatten(1)), labels).backward()
        optimizer.step()
    classifier.zero_grad(set_to_none=True)

    def loss_fn(seed):
        torch.manual_seed(seed)
        return F.cross_entropy(classifier(cdb(features).flatten(1)), labels)

    return cdb, classifier, loss_fn


def test_adversarial_step_ascends_the_loss_and_leaves_the_detector_alone():
    cdb, classifier, loss_fn = _toy_detector()
    optimizer = torch.optim.SGD(cdb.parameters(), lr=100.0)
    sentinel = [torch.full_like(p, 7.0) for p in classifier.parameters()]
    for param, grad in zip(classifier.parameters(), sentinel):
        param.grad = grad.clone()
    detector_before = copy.deepcopy(classifier.state_dict())

    # one step moves the CDB parameters along +lr * weight * d loss / d params (same noise: seed 0)
    before = [p.detach().clone() for p in cdb.parameters()]
    grads = torch.autograd.grad(loss_fn(0), list(cdb.parameters()))
    cdb_adversarial_step(cdb, optimizer, lambda: loss_fn(0), weight=0.01)
    for old, new, grad in zip(before, cdb.parameters(), grads):
        torch.testing.assert_close(new.detach() - old, 100.0 * 0.01 * grad, rtol=1e-4, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in grads)

    # more steps raise the detector loss (averaged over fixed noise seeds)
    seeds = range(100, 116)
    with torch.no_grad():
        start = sum(loss_fn(s).item() for s in seeds)
    for step in range(30):
        cdb_adversarial_step(cdb, optimizer, lambda step=step: loss_fn(step), weight=0.01)
    with torch.no_grad():
        end = sum(loss_fn(s).item() for s in seeds)
    assert end > start * 1.3  # measured: x1.9 (0.097 -> 0.181)

    for key, value in classifier.state_dict().items():
        assert torch.equal(value, detector_before[key]), key
    for param, grad in zip(classifier.parameters(), sentinel):
        assert torch.equal(param.grad, grad)
    assert all(p.grad is None for p in cdb.parameters())


def test_adversarial_step_refuses_an_optimizer_over_detector_parameters():
    cdb, classifier, loss_fn = _toy_detector()
    optimizer = torch.optim.SGD(list(cdb.parameters()) + list(classifier.parameters()), lr=0.1)
    with pytest.raises(ValueError, match="its own optimizer"):
        cdb_adversarial_step(cdb, optimizer, lambda: loss_fn(0))


# ---------------------------------------------------------------- sequential batch back-propagation

NUM_CLASSES = 3


class _ToyWSOD(nn.Module):
    """A stride-2 conv backbone, ROI pooling, (CDB), two fc layers with dropout, a WSDDN head."""

    def __init__(self, pool: str, use_cdb: bool):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.ReLU())
        self.pool = pool
        self.cdb = ConcreteDropBlock(6, roi_size=4, hidden_channels=4, max_drop=0.5) if use_cdb else None
        self.fc6, self.fc7 = nn.Linear(6 * 16, 24), nn.Linear(24, 24)
        self.cls, self.det = nn.Linear(24, NUM_CLASSES), nn.Linear(24, NUM_CLASSES)

    def neck(self, feature_map, rois):  # [B, 6, H/2, W/2], [r, 5] -> [r, 24]
        if self.pool == "align":
            pooled = roi_align(feature_map, rois, 4, spatial_scale=0.5, sampling_ratio=2, aligned=True)
        else:
            pooled = roi_pool(feature_map, rois, 4, spatial_scale=0.5)
        if self.cdb is not None:
            pooled = self.cdb(pooled)
        hidden = F.dropout(F.relu(self.fc6(pooled.flatten(1))), 0.3, self.training)
        return F.dropout(F.relu(self.fc7(hidden)), 0.3, self.training)

    def head_loss(self, neck_out, rois, tags):  # WSDDN: softmax over each image's ROIs couples them
        losses = []
        for image, image_tags in enumerate(tags):
            rows = rois[:, 0] == image
            scores = (F.softmax(self.cls(neck_out[rows]), dim=1) * F.softmax(self.det(neck_out[rows]), dim=0))
            image_score = scores.sum(dim=0).clamp(1e-8, 1 - 1e-8)
            losses.append(F.binary_cross_entropy(image_score, image_tags))
        return torch.stack(losses).mean()


def _problem(pool="align", use_cdb=False, num_rois=13):
    torch.manual_seed(0)
    model = _ToyWSOD(pool, use_cdb).double().train()
    images = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    xy = torch.rand(num_rois, 2, dtype=torch.float64) * 14
    wh = torch.rand(num_rois, 2, dtype=torch.float64) * 9 + 2
    batch_index = (torch.arange(num_rois) % 2).double()[:, None]
    rois = torch.cat([batch_index, xy, xy + wh], dim=1)  # [R, 5]
    tags = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    return model, images, rois, tags


def _gradients(backward_fn, model, images, rois, tags, chunk_size, seed=11):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    feature_map = model.backbone(images)
    loss = backward_fn(feature_map, rois, model.neck, lambda out: model.head_loss(out, rois, tags), chunk_size)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss, grads, torch.get_rng_state()


@pytest.mark.parametrize("pool, use_cdb", [("align", False), ("pool", False), ("align", True)])
@pytest.mark.parametrize("chunk_size", [1, 5, 13, 20])
def test_sequential_gradients_equal_the_plain_path(pool, use_cdb, chunk_size):
    model, images, rois, tags = _problem(pool, use_cdb)
    plain = _gradients(plain_roi_backward, model, images, rois, tags, chunk_size)
    sequential = _gradients(sequential_roi_backward, model, images, rois, tags, chunk_size)
    torch.testing.assert_close(sequential[0], plain[0], rtol=0, atol=1e-12)
    expected_names = {name for name, p in model.named_parameters()}
    assert set(plain[1]) == set(sequential[1]) == expected_names  # backbone, neck, CDB, heads
    for name in expected_names:
        torch.testing.assert_close(sequential[1][name], plain[1][name], rtol=0, atol=1e-6, msg=name)
        assert plain[1][name].abs().sum() > 0, name
    assert torch.equal(sequential[2], plain[2])  # the generator ends where the plain path leaves it


def _checkpointed_backward(feature_map, rois, neck, head_loss, chunk_size):
    loss = head_loss(checkpointed_neck(feature_map, rois, neck, chunk_size))
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("use_cdb", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 5, 20])
def test_checkpointed_neck_gradients_equal_the_plain_path(use_cdb, chunk_size):
    model, images, rois, tags = _problem("align", use_cdb)
    plain = _gradients(plain_roi_backward, model, images, rois, tags, chunk_size)
    chunked = _gradients(_checkpointed_backward, model, images, rois, tags, chunk_size)
    torch.testing.assert_close(chunked[0], plain[0], rtol=0, atol=1e-12)
    assert set(chunked[1]) == set(plain[1]) == {name for name, _ in model.named_parameters()}
    for name, grad in plain[1].items():
        torch.testing.assert_close(chunked[1][name], grad, rtol=0, atol=1e-6, msg=name)


def test_sequential_without_dropout_equals_one_unchunked_forward():
    model, images, rois, tags = _problem()
    model.eval()  # no dropout: the plain path may run the neck in one call
    plain = _gradients(plain_roi_backward, model, images, rois, tags, None)
    sequential = _gradients(sequential_roi_backward, model, images, rois, tags, 4)
    for name, grad in plain[1].items():
        torch.testing.assert_close(sequential[1][name], grad, rtol=0, atol=1e-10, msg=name)


def test_without_rng_replay_the_dropout_masks_and_gradients_differ(monkeypatch):
    model, images, rois, tags = _problem()
    plain = _gradients(plain_roi_backward, model, images, rois, tags, 5)
    monkeypatch.setattr(sequential_module, "_set_rng_state", lambda state, device: None)
    broken = _gradients(sequential_roi_backward, model, images, rois, tags, 5)
    assert not torch.allclose(broken[1]["fc6.weight"], plain[1]["fc6.weight"], atol=1e-6)


def test_sequential_holds_fewer_activations():
    model, images, rois, tags = _problem(num_rois=400)
    model.fc6, model.fc7 = nn.Linear(96, 512).double(), nn.Linear(512, 24).double()
    peaks = {}
    for name, fn, chunk_size in [("plain", plain_roi_backward, None), ("sequential", sequential_roi_backward, 20)]:
        with SavedTensorMeter(exclude=model.parameters()) as meter:
            _gradients(fn, model, images, rois, tags, chunk_size)
        assert meter.live_bytes == 0  # every graph was freed by its backward
        peaks[name] = meter.peak_bytes
    # the fc6 output alone: 400 ROIs x 512 x 8 bytes, saved by plain for ReLU/dropout/fc7
    assert peaks["plain"] > 400 * 512 * 8
    assert peaks["sequential"] < 0.5 * peaks["plain"]


def test_saved_tensor_meter_counts_a_shared_storage_once():
    x = torch.randn(1000, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp()  # saves its output y
        z = (y * y).sum()  # saves y twice: the same storage
        assert meter.live_bytes == 4000  # y alone: exp saves its output, not x
        z.backward()
    assert meter.peak_bytes == 4000 and meter.live_bytes == 0


def test_rejects_bad_chunk_sizes_and_non_scalar_losses():
    model, images, rois, tags = _problem()
    feature_map = model.backbone(images)
    with pytest.raises(ValueError, match="chunk_size"):
        sequential_roi_backward(feature_map, rois, model.neck, lambda out: out.sum(), 0)
    with pytest.raises(ValueError, match="scalar"):
        sequential_roi_backward(feature_map, rois, model.neck, lambda out: out.sum(dim=0), 4)
