"""UFO² annotation cost model and budget solver: never over budget, deterministic, each policy's kinds."""

from __future__ import annotations

import random

import pytest

from imaginate.systems.wsod.budget import POLICIES, AnnotationCosts, image_cost, solve_budget, total_cost
from imaginate.systems.wsod.labels import kinds_by_share

COSTS = AnnotationCosts()


def _counts(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 5) for _ in range(n)]


def test_image_cost_follows_the_model():
    assert image_cost("tags", 3, 6, COSTS) == pytest.approx(6.0)
    assert image_cost("points", 3, 6, COSTS) == pytest.approx(6.0 + 3 * 2.4)
    assert image_cost("scribbles", 2, 6, COSTS) == pytest.approx(6.0 + 2 * 10.9)
    assert image_cost("boxes", 2, 20, AnnotationCosts(box=35.0)) == pytest.approx(20.0 + 70.0)
    assert image_cost("none", 9, 6, COSTS) == 0.0


@pytest.mark.parametrize("policy", POLICIES)
def test_never_exceeds_the_budget_and_is_deterministic(policy):
    for trial in range(20):
        counts = _counts(random.Random(trial).randint(1, 120), trial)
        budget = random.Random(100 + trial).uniform(0.0, 1500.0)
        kinds = solve_budget(counts, 6, budget, policy, COSTS, seed=trial)
        assert total_cost(kinds, counts, 6, COSTS) <= budget + 1e-9
        assert kinds == solve_budget(counts, 6, budget, policy, COSTS, seed=trial)
        allowed = set(policy.replace("unlabeled", "none").split("+")) | {None}
        assert set(kinds) <= allowed


def test_policies_spend_the_budget_as_described():
    counts = _counts(300, 0)
    tags = solve_budget(counts, 6, 900.0, "tags", COSTS)
    assert tags.count("tags") == 150  # 6 s each: exactly what the budget pays for
    boxes = solve_budget(counts, 6, 900.0, "boxes+unlabeled", COSTS)
    assert None not in boxes and boxes.count("boxes") > 0 and boxes.count("none") == 300 - boxes.count("boxes")
    mixed = solve_budget(counts, 6, 900.0, "boxes+tags", COSTS)
    spent_on_boxes = total_cost([k if k == "boxes" else None for k in mixed], counts, 6, COSTS)
    assert 0 < spent_on_boxes <= 450.0 and mixed.count("tags") > 0
    # a bigger budget never labels fewer images; another seed picks other images
    for policy in ("boxes", "points", "scribbles"):
        small = solve_budget(counts, 6, 500.0, policy, COSTS)
        large = solve_budget(counts, 6, 1500.0, policy, COSTS)
        assert sum(k is not None for k in large) >= sum(k is not None for k in small)
    assert solve_budget(counts, 6, 500.0, "boxes", COSTS, seed=1) != solve_budget(counts, 6, 500.0, "boxes", COSTS, seed=2)


def test_kinds_by_share_counts_and_order():
    kinds = kinds_by_share(103, {"boxes": 0.2, "tags": 0.3, "none": 0.5}, seed=4)
    assert [kinds.count(k) for k in ("boxes", "tags", "none")] == [21, 31, 51]  # largest remainder
    assert kinds == kinds_by_share(103, {"boxes": 0.2, "tags": 0.3, "none": 0.5}, seed=4)
    # the same seed and image count put boxes on the same images whatever the weak kind is
    other = kinds_by_share(103, {"boxes": 0.2, "points": 0.8}, seed=4)
    again = kinds_by_share(103, {"boxes": 0.2, "tags": 0.8}, seed=4)
    assert [k == "boxes" for k in other] == [k == "boxes" for k in again]
