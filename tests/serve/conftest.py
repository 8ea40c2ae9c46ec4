"""Fixtures of the web app's tests: tiny finished runs (trained once per session), an upload folder the app
accepts, and a context for calling the tab functions directly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the serve extra is not installed: pip install 'imaginate[serve]'")

from serve_tiny_runs import train_tiny  # noqa: E402  (tests/serve is on sys.path, as for tests/optim)

FAST_SYSTEMS = ("classify", "gan", "lns_madam", "wsod")  # a few seconds each
MORE_SYSTEMS = ("coco_funit", "styled_text", "face_vid2vid", "gancraft", "vid2vid")  # for the slow tests
_browser_report: list[str] = []


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """A runs folder with a tiny finished run of each system the fast tests use."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("serve_runs")
    try:
        for system in FAST_SYSTEMS:
            train_tiny(system, root)
    finally:
        torch.set_num_threads(before)
    return root


@pytest.fixture(scope="session")
def more_runs(runs_dir) -> Path:
    """``runs_dir`` with the other systems' tiny runs added (slow tests)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for system in MORE_SYSTEMS:
            if not (runs_dir / f"{system}-tiny" / "final.safetensors").is_file():
                train_tiny(system, runs_dir)
    finally:
        torch.set_num_threads(before)
    return runs_dir


@pytest.fixture(scope="session")
def uploads(tmp_path_factory) -> Path:
    """A folder the app accepts uploads from (standing in for Gradio's upload cache)."""
    from imaginate.serve.inputs import Limits

    folder = tmp_path_factory.mktemp("uploads")
    Limits.upload_roots = (folder.resolve(),)
    return folder


@pytest.fixture
def ctx(runs_dir, uploads, tmp_path):
    from imaginate.serve.common import AppContext
    from imaginate.serve.inputs import DEFAULT_UPLOAD_LIMIT_MB, set_upload_limit
    from imaginate.serve.runs import RunCatalog

    set_upload_limit(DEFAULT_UPLOAD_LIMIT_MB)
    return AppContext(RunCatalog(runs_dir), tmp_path / "work", device="cpu")


def chromium_paths() -> tuple[str | None, str | None]:
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def report_browser_skip(reason: str) -> None:
    _browser_report.append(reason)


def pytest_terminal_summary(terminalreporter):
    for reason in _browser_report:
        terminalreporter.write_line(f"imaginate serve: BROWSER TESTS NOT RUN: {reason}", yellow=True, bold=True)


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:gradio.*")
    config.addinivalue_line("filterwarnings", "ignore:.*(no_silent_downcasting|copy keyword).*")
