import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    """CI machines have 2 cores: keep each test to them (IMAGINATE_TEST_THREADS overrides) and restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("IMAGINATE_TEST_THREADS", "2")))
    yield
    torch.set_num_threads(before)
