"""The app as served: Gradio's client against a live server (every call goes through the same HTTP API as the
page), two browsers' sessions kept apart, the upload limit, the Train button's progress and Cancel."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serve_tiny_runs import COMMON, save_image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(runs_dir, tmp_path_factory):
    """A live app on a free local port (1 MB upload limit) and its context."""
    from imaginate.serve.app import build_app, launch

    fresh = runs_dir / "classify-fresh"
    train = {"classify": ["train", "classify", "--preset", "tiny", "--out", str(fresh), "--no-progress",
                          *COMMON, "train.steps=40", "train.eval_every=0", "train.ckpt_every=40"]}
    blocks, ctx = build_app(runs_dir, tmp_path_factory.mktemp("work"), device="cpu", max_upload_mb=1,
                            train_args=train)
    port = free_port()
    launch(blocks, "127.0.0.1", port, 1, block=False)
    yield f"http://127.0.0.1:{port}/", ctx
    blocks.close()


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def test_client_classifies_an_upload_and_gets_one_line_errors(server, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    url, _ = server
    client = _client(url)
    digit = np.zeros((64, 64))
    digit[8:56, 28:36] = 1.0  # a light "1" on black
    label, seen = client.predict(None, handle_file(str(save_image(tmp_path / "one.png", digit))),
                                 api_name="/classify")
    assert len(label["confidences"]) == 5 and label["label"] == label["confidences"][0]["label"]
    from PIL import Image

    assert Image.open(seen).size == (192, 192)  # the 8x8 input the network saw, enlarged
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(AppError, match="not a readable image") as info:
        client.predict(None, handle_file(str(tmp_path / "bad.png")), api_name="/classify")
    assert "Traceback" not in str(info.value)
    with pytest.raises(AppError, match="not in the list of choices|not a finished"):
        client.predict("../../etc", handle_file(str(tmp_path / "one.png")), api_name="/classify")


def test_server_refuses_an_upload_over_the_limit(server, tmp_path):
    from gradio_client import handle_file

    url, _ = server
    noise = (np.random.default_rng(0).random((900, 900, 3)) * 255).astype(np.uint8)  # ~2.4 MB as PNG
    big = save_image(tmp_path / "big.png", noise)
    assert big.stat().st_size > 1024 * 1024
    with pytest.raises(Exception, match="(?i)too large|exceeds|maximum|limit"):
        _client(url).predict(None, handle_file(str(big)), api_name="/classify")


def test_app_is_local_and_sends_no_analytics(server):
    import json
    import urllib.request

    url, _ = server
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "config", timeout=30) as response:
        config = json.loads(response.read())
    assert config["analytics_enabled"] is False


def test_two_sessions_get_their_own_results(server):
    from PIL import Image

    from imaginate.serve.tabs_images import gan_samples

    url, ctx = server
    clients = [_client(url), _client(url)]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(c.predict, None, "all", seed, 3, api_name="/gan") for c, seed in zip(clients, (1, 2))]
        paths = [f.result() for f in futures]
    assert paths[0] != paths[1]
    for path, seed in zip(paths, (1, 2)):
        shown = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(shown, gan_samples(ctx, None, "all", seed, 3))


@pytest.mark.slow
def test_train_button_shows_progress_then_offers_the_new_run(server):
    url, ctx = server
    job = _client(url).submit(api_name="/classify_train_demo")
    outputs = list(job)  # every yield: (picker update, status)
    statuses = [o[1] for o in outputs if isinstance(o, (list, tuple))]
    assert any("step" in s for s in statuses), statuses
    assert "classify-fresh" in {r.run_id for r in ctx.catalog.runs("classify")}
    assert ctx.catalog.newest("classify").run_id == "classify-fresh"


@pytest.mark.slow
def test_cancel_stops_a_long_job(runs_dir):
    import time

    from imaginate.serve.jobs import JobCancelled, cancel_session, run_job, running_jobs

    args = ["train", "classify", "--preset", "tiny", "--out", str(runs_dir / "never"), "train.steps=100000",
            "--no-progress", *COMMON]
    job = run_job(args, "session-a", None)
    next(job)
    assert running_jobs("session-a") == 1
    assert cancel_session("session-b") == 0  # another browser's Cancel does not stop it
    time.sleep(1)
    assert cancel_session("session-a") == 1
    deadline = time.monotonic() + 30
    with pytest.raises(JobCancelled):
        for _ in job:
            if time.monotonic() > deadline:
                job.close()  # stops the process (the generator's finally) before failing
                pytest.fail("the job still runs 30 s after Cancel")
    assert running_jobs("session-a") == 0
