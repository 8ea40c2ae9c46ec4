import pytest
import torch

from imaginate.nn import backward_warp
from imaginate.nn.flow_warp import backward_warp_reference


@pytest.mark.parametrize("size", [(16, 32), (7, 10)])
def test_zero_flow_returns_the_input(size):
    image = torch.rand(2, 3, *size)
    out = backward_warp(image, torch.zeros(2, 2, *size))
    if size == (16, 32):  # power-of-two sizes: the normalised grid is exact
        assert torch.equal(out, image)
    torch.testing.assert_close(out, image, rtol=0, atol=1e-6)


def test_integer_shift_equals_roll_on_the_interior():
    image = torch.rand(1, 3, 12, 20)
    flow = torch.zeros(1, 2, 12, 20)
    flow[:, 0], flow[:, 1] = 3.0, -2.0  # output(i, j) = image(i - 2, j + 3)
    out = backward_warp(image, flow)
    rolled = torch.roll(image, shifts=(2, -3), dims=(2, 3))
    torch.testing.assert_close(out[..., 2:, :-3], rolled[..., 2:, :-3], rtol=0, atol=1e-6)
    assert out[..., :2, :].abs().max() < 1e-6  # rows sampled above the image read zeros
    assert out[..., :, -3:].abs().max() < 1e-6


def test_half_pixel_shift_interpolates_between_neighbours():
    image = torch.rand(1, 1, 5, 6)
    flow = torch.zeros(1, 2, 5, 6)
    flow[:, 0] = 0.5
    out = backward_warp(image, flow)
    torch.testing.assert_close(out[..., :-1], 0.5 * (image[..., :-1] + image[..., 1:]))


def test_matches_the_gather_reference_in_float64():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    flow = 4 * torch.randn(2, 2, 9, 11, dtype=torch.float64)
    torch.testing.assert_close(backward_warp(image, flow), backward_warp_reference(image, flow))


def test_gradcheck_float64():
    torch.manual_seed(1)
    image = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    # keep samples away from integer coordinates where bilinear interpolation has a kink
    flow = (torch.rand(1, 2, 5, 6, dtype=torch.float64) * 0.8 + 0.1 + torch.randint(-2, 2, (1, 2, 5, 6)))
    flow.requires_grad_(True)
    assert torch.autograd.gradcheck(backward_warp, (image, flow), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(backward_warp_reference, (image, flow), eps=1e-6, atol=1e-5)


def test_shape_errors():
    with pytest.raises(ValueError):
        backward_warp(torch.rand(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError):
        backward_warp(torch.rand(1, 3, 4, 4), torch.zeros(1, 2, 4, 5))
