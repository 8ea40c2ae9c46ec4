"""Session fixtures of the reliability suite: tiny run folders (untrained, one checkpoint) built once, and a
record of what each case tried (read by benchmarks/reliability.py through the JUnit XML properties)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from faultlib import write_run_folder

RUN_OVERRIDES = {
    "classify": [],
    "coco_funit": [],
    "gancraft": [],
    "vid2vid": [],
    "styled_text": [],
    "face_vid2vid": [],
    "wsod": ["data.num_train=4", "data.num_test=2", "data.proposal_method=sliding_window"],
}


@pytest.fixture(scope="module", autouse=True)
def _memory_ceiling():
    """Cap this process's address space at its size now + 8 GiB for each module of the suite, lifted after it
    (module scope: a session-wide cap outlived the suite and made later tests' child processes — headless
    Chromium reserves a large address space — crash with SIGTRAP in a full `make test`): a fuzzed value or broken
    file that makes the code allocate without bound then fails its case with MemoryError instead of
    calling the kernel's OOM killer onto a shared machine (it happened once in this suite: a ~20 GB
    process was killed during the random config fuzz)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (size + 8 * 2**30, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """``tiny_runs(system)``: the path of a read-only run folder of ``system`` (made on first use)."""
    made: dict[str, Path] = {}

    def get(system: str) -> Path:
        if system not in made:
            made[system] = write_run_folder(system, tmp_path_factory.mktemp(f"run_{system}"), RUN_OVERRIDES[system])
        return made[system]

    return get


@pytest.fixture
def run_copy(tiny_runs, tmp_path):
    """``run_copy(system)``: a private copy of a tiny run folder that a test may damage."""

    def copy(system: str) -> Path:
        target = tmp_path / f"run_{system}"
        shutil.copytree(tiny_runs(system), target)
        return target

    return copy
