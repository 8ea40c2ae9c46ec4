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


@pytest.fixture
def crash_after(monkeypatch):
    """``crash_after(cls, n)`` makes ``cls.train_step`` raise KeyboardInterrupt on its call n + 1 (a killed
    run) and returns the original method, to put back with ``monkeypatch.setattr`` before resuming."""

    def install(cls, n_calls: int):
        original = cls.train_step
        counter = {"n": 0}

        def crashing(self, batch):
            counter["n"] += 1
            if counter["n"] > n_calls:
                raise KeyboardInterrupt("simulated crash")
            return original(self, batch)

        monkeypatch.setattr(cls, "train_step", crashing)
        return original

    return install
