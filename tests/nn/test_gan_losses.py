"""GAN losses against their formulas on hand-made logits, multi-scale averaging, feature matching."""

from __future__ import annotations

import math

import pytest
import torch

from imaginate.nn.gan_losses import (
    GAN_LOSSES,
    check_gan_loss,
    d_loss,
    d_loss_terms,
    feature_matching_loss,
    g_loss,
)

REAL = torch.tensor([2.0, -1.0, 0.5, 0.0], dtype=torch.float64)
FAKE = torch.tensor([-3.0, 0.25, 1.5, -0.5], dtype=torch.float64)


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# Per-element formulas written from the definitions with plain floats (probabilities, not softplus):
# (discriminator term on a real logit, on a fake logit, generator term on a fake logit).
FORMULAS = {
    "saturating": (lambda r: -math.log(sigmoid(r)), lambda f: -math.log(1 - sigmoid(f)),
                   lambda f: math.log(1 - sigmoid(f))),
    "non_saturating": (lambda r: -math.log(sigmoid(r)), lambda f: -math.log(1 - sigmoid(f)),
                       lambda f: -math.log(sigmoid(f))),
    "least_squares": (lambda r: (r - 1) ** 2, lambda f: f**2, lambda f: (f - 1) ** 2),
    "wasserstein": (lambda r: -r, lambda f: f, lambda f: -f),
    "hinge": (lambda r: max(0.0, 1 - r), lambda f: max(0.0, 1 + f), lambda f: -f),
}


def formula_terms(kind: str, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float, float]:
    """(D real part, D fake part, G loss) of one tensor each: means over all elements."""
    d_real, d_fake, gen = FORMULAS[kind]
    return (mean(map(d_real, real.flatten().tolist())), mean(map(d_fake, fake.flatten().tolist())),
            mean(map(gen, fake.flatten().tolist())))


@pytest.mark.parametrize("kind", GAN_LOSSES)
def test_losses_equal_their_formulas(kind: str) -> None:
    want_real, want_fake, want_g = formula_terms(kind, REAL, FAKE)
    assert d_loss(kind, REAL, FAKE).item() == pytest.approx(want_real + want_fake, rel=1e-12)
    assert g_loss(kind, FAKE).item() == pytest.approx(want_g, rel=1e-12)
    real_part, fake_part = d_loss_terms(kind, REAL, FAKE)
    assert real_part.item() == pytest.approx(want_real, rel=1e-12)
    assert fake_part.item() == pytest.approx(want_fake, rel=1e-12)


def test_saturating_and_non_saturating_differ_only_for_the_generator() -> None:
    assert d_loss("saturating", REAL, FAKE).item() == d_loss("non_saturating", REAL, FAKE).item()
    # the saturating G loss log(1 - D) has a vanishing gradient where D rejects the fake (logit -3)
    fake = FAKE.clone().requires_grad_(True)
    g_loss("saturating", fake).backward()
    saturating_grad = fake.grad[0].abs().item()
    fake.grad = None
    g_loss("non_saturating", fake).backward()
    assert saturating_grad < 0.1 * fake.grad[0].abs().item()


@pytest.mark.parametrize("kind", GAN_LOSSES)
def test_multi_scale_list_is_mean_over_scales_of_element_means(kind: str) -> None:
    torch.manual_seed(0)
    # PatchGAN maps of different sizes per scale; fakes also get a global score as a third "scale"
    real = [torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.randn(2, 1, 2, 2, dtype=torch.float64)]
    fake = [torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.randn(2, 1, 2, 2, dtype=torch.float64),
            torch.randn(2, dtype=torch.float64)]
    want_real = mean(formula_terms(kind, r, r)[0] for r in real)
    want_fake = mean(formula_terms(kind, f, f)[1] for f in fake)
    want_g = mean(formula_terms(kind, f, f)[2] for f in fake)
    got_real, got_fake = d_loss_terms(kind, real, fake)
    assert got_real.item() == pytest.approx(want_real, rel=1e-10)
    assert got_fake.item() == pytest.approx(want_fake, rel=1e-10)
    assert d_loss(kind, real, fake).item() == pytest.approx(want_real + want_fake, rel=1e-10)
    assert g_loss(kind, fake).item() == pytest.approx(want_g, rel=1e-10)


def test_nested_lists_average_recursively() -> None:
    a, b, c = torch.tensor([1.0]), torch.tensor([2.0, 4.0]), torch.tensor([-6.0])
    # wasserstein G loss is -mean: ((-1 + -3) / 2 + 6) / 2 = 2
    assert g_loss("wasserstein", [[a, b], c]).item() == pytest.approx(2.0)


def test_gradients_flow_to_logits() -> None:
    fake = FAKE.clone().requires_grad_(True)
    g_loss("non_saturating", [fake, fake * 2]).backward()
    assert fake.grad is not None and torch.all(fake.grad < 0)  # raising fake logits lowers the G loss


def test_unknown_kind_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="'vanilla' is not one of saturating, non_saturating"):
        d_loss("vanilla", REAL, FAKE)
    with pytest.raises(ValueError, match="'wgan'"):
        g_loss("wgan", FAKE)
    assert check_gan_loss("hinge") == "hinge"
    with pytest.raises(ValueError, match="empty"):
        g_loss("hinge", [])


def test_feature_matching_equals_weighted_l1_mean_over_scales() -> None:
    torch.manual_seed(0)
    real = [[torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)], [torch.randn(2, 3, 2, 2), torch.randn(2, 5, 1, 1)]]
    fake = [[t.clone().requires_grad_(True) + torch.randn_like(t) for t in scale] for scale in real]
    l1 = [[(f - r).abs().mean().item() for f, r in zip(fs, rs)] for fs, rs in zip(fake, real)]
    assert feature_matching_loss(real, fake).item() == pytest.approx(mean(mean(s) for s in l1), rel=1e-6)
    weighted = feature_matching_loss(real, fake, layer_weights=[1.0, 3.0]).item()
    assert weighted == pytest.approx(mean(s[0] + 3 * s[1] for s in l1), rel=1e-6)
    # one scale as a plain list, and a single tensor
    assert feature_matching_loss(real[0], fake[0]).item() == pytest.approx(mean(l1[0]), rel=1e-6)
    assert feature_matching_loss(real[0][0], fake[0][0]).item() == pytest.approx(l1[0][0], rel=1e-6)


def test_feature_matching_detaches_the_real_features() -> None:
    real = torch.randn(2, 3, requires_grad=True)
    fake = torch.randn(2, 3, requires_grad=True)
    feature_matching_loss([[real]], [[fake]]).backward()
    assert real.grad is None and fake.grad is not None


def test_feature_matching_rejects_mismatched_structures() -> None:
    t = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="scales"):
        feature_matching_loss([[t], [t]], [[t]])
    with pytest.raises(ValueError, match="layers"):
        feature_matching_loss([[t, t]], [[t]])
    with pytest.raises(ValueError, match="weights"):
        feature_matching_loss([[t, t]], [[t, t]], layer_weights=[1.0])
