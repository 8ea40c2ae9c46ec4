import pytest
import torch


@pytest.fixture(autouse=True)
def _two_threads():
    """CI machines have 2 cores: keep each test to them and restore the default afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
