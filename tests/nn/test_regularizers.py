"""Gradient penalties against closed forms on tiny discriminators whose input gradient is known."""

from __future__ import annotations

import pytest
import torch

from imaginate.nn.regularizers import (
    gradient_penalty,
    input_gradients,
    is_due,
    lazy_penalty,
    r1_penalty,
    r2_penalty,
    squared_gradient_norm_penalty,
)


def linear_critic(weight: torch.Tensor):
    """D(x) = <w, x_b> per sample: its input gradient is w for every sample."""
    return lambda x: (x.flatten(1) * weight.flatten()).sum(1)  # [B]


def quadratic_critic(matrix: torch.Tensor):
    """D(x) = 0.5 ||A x_b||^2: its input gradient is A^T A x_b."""
    return lambda x: 0.5 * (x.flatten(1) @ matrix.T).square().sum(1)  # [B]


def test_r1_and_r2_of_a_linear_critic_equal_gamma_half_norm_squared() -> None:
    torch.manual_seed(0)
    weight = torch.randn(2, 3, 3, dtype=torch.float64)
    real = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    expected = 0.5 * 7.0 * weight.square().sum()
    torch.testing.assert_close(r1_penalty(linear_critic(weight), real, gamma=7.0), expected)
    torch.testing.assert_close(r2_penalty(linear_critic(weight), real + 1, gamma=7.0), expected)


def test_r1_of_a_quadratic_critic_and_its_gradient_to_the_weights() -> None:
    torch.manual_seed(0)
    matrix = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    real = torch.randn(3, 6, dtype=torch.float64)
    penalty = r1_penalty(quadratic_critic(matrix), real, gamma=2.0)
    closed_form = (real @ matrix.T @ matrix).square().sum(1).mean()  # gamma/2 = 1
    torch.testing.assert_close(penalty, closed_form)
    # create_graph=True: the penalty back-propagates into D's weights like the closed form does
    (got,) = torch.autograd.grad(penalty, matrix)
    (want,) = torch.autograd.grad(closed_form, matrix)
    torch.testing.assert_close(got, want)


def test_r1_sums_multi_scale_outputs_and_passes_the_condition() -> None:
    torch.manual_seed(0)
    weight = torch.randn(1, 2, 2, dtype=torch.float64)
    seen = []

    def critic(x: torch.Tensor, condition: torch.Tensor):
        seen.append(condition)
        score = linear_critic(weight)(x)
        return [score, [2 * score[:, None, None].expand(-1, 1, 1)]]  # the total gradient is 3 w

    labels = torch.tensor([3, 1])
    penalty = r1_penalty(critic, torch.randn(2, 1, 2, 2, dtype=torch.float64), gamma=1.0, condition=labels)
    torch.testing.assert_close(penalty, 0.5 * 9 * weight.square().sum())
    assert seen and seen[0] is labels


def test_r1_does_not_touch_the_data() -> None:
    real = torch.randn(2, 3, requires_grad=True)
    weight = torch.ones(3, requires_grad=True)
    r1_penalty(linear_critic(weight), real).backward()
    assert real.grad is None
    torch.testing.assert_close(weight.grad, 10.0 * weight.detach())  # d/dw (gamma/2 ||w||^2)


def test_gradient_penalty_matches_closed_form_and_explicit_generator() -> None:
    torch.manual_seed(0)
    matrix = torch.randn(5, 5, dtype=torch.float64)
    real = torch.randn(4, 5, dtype=torch.float64)
    fake = torch.randn(4, 5, dtype=torch.float64)
    penalty = gradient_penalty(quadratic_critic(matrix), real, fake, weight=10.0,
                               generator=torch.Generator().manual_seed(3))
    alpha = torch.rand(4, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x_hat = alpha * real + (1 - alpha) * fake
    grad_norm = (x_hat @ matrix.T @ matrix).norm(dim=1)  # ||A^T A x_hat||
    torch.testing.assert_close(penalty, 10.0 * (grad_norm - 1).square().mean())
    # the same generator seed gives the same penalty; another gives a different one
    again = gradient_penalty(quadratic_critic(matrix), real, fake, generator=torch.Generator().manual_seed(3))
    other = gradient_penalty(quadratic_critic(matrix), real, fake, generator=torch.Generator().manual_seed(4))
    assert again.item() == penalty.item() and other.item() != penalty.item()


def test_gradient_penalty_of_a_linear_critic_and_condition_pass_through() -> None:
    weight = torch.full((2, 2), 0.25, dtype=torch.float64)  # ||w|| = 0.5

    def critic(x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return linear_critic(weight)(x) + condition.sum(1)

    real, fake = torch.randn(3, 2, 2, dtype=torch.float64), torch.randn(3, 2, 2, dtype=torch.float64)
    penalty = gradient_penalty(critic, real, fake, weight=2.0, condition=torch.ones(3, 4, dtype=torch.float64))
    assert penalty.item() == pytest.approx(2.0 * 0.25)
    with pytest.raises(ValueError, match="differ"):
        gradient_penalty(critic, real, fake[:2])


def test_penalty_from_existing_outputs_equals_the_module_version() -> None:
    torch.manual_seed(0)
    matrix = torch.randn(3, 3, dtype=torch.float64)
    real = torch.randn(4, 3, dtype=torch.float64).requires_grad_(True)
    outputs = quadratic_critic(matrix)(real)
    torch.testing.assert_close(
        squared_gradient_norm_penalty(real, outputs, gamma=5.0), r1_penalty(quadratic_critic(matrix), real, gamma=5.0)
    )
    torch.testing.assert_close(input_gradients(quadratic_critic(matrix)(real), real), real @ matrix.T @ matrix)


def test_lazy_penalty_runs_every_k_steps_scaled_by_k() -> None:
    calls = []

    def penalty() -> torch.Tensor:
        calls.append(1)
        return torch.tensor(1.5)

    results = [lazy_penalty(step, 4, penalty) for step in range(9)]
    assert [r is not None for r in results] == [True, False, False, False, True, False, False, False, True]
    assert len(calls) == 3 and results[4].item() == 6.0
    assert lazy_penalty(5, 1, penalty).item() == 1.5
    assert is_due(8, 4) and not is_due(9, 4)
    with pytest.raises(ValueError, match="interval"):
        is_due(0, 0)
