"""Long jobs (training a missing demo, rendering, synthesis) as cancellable child processes.

A job runs an ``imaginate`` verb exactly as a user would type it (``python -m imaginate VERB ...``), in its
own process group, so that the app's Cancel button can stop it at once (the tab's generator is also
closed by Gradio's ``cancels``). Jobs are filed under the browser session that started them: one browser's
Cancel never stops another's job. A finished job's last ``imaginate: error: ...`` line (the CLI's one-line
message for a user's mistake) becomes the page's message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from imaginate.serve.inputs import InputError

POLL_S = 0.5


class JobFailed(InputError):
    """The child process ended with an error; the message is its one-line reason."""


class JobCancelled(InputError):
    """The user pressed Cancel."""


_jobs: dict[str, set[subprocess.Popen]] = {}
_lock = threading.Lock()


def _register(session: str, proc: subprocess.Popen) -> None:
    with _lock:
        _jobs.setdefault(session, set()).add(proc)


def _forget(session: str, proc: subprocess.Popen) -> None:
    with _lock:
        _jobs.get(session, set()).discard(proc)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cancel_session(session: str) -> int:
    """Stop every job of one browser session; returns how many were running."""
    with _lock:
        procs = list(_jobs.pop(session, set()))
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        _kill(proc)
    return len(running)


def running_jobs(session: str) -> int:
    with _lock:
        return sum(p.poll() is None for p in _jobs.get(session, set()))


def _error_line(stderr: str, replacements: dict[str, str]) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    chosen = next((ln for ln in reversed(lines) if ln.startswith("imaginate:")), lines[-1] if lines else "")
    for old, new in replacements.items():
        chosen = chosen.replace(old, new)
    return chosen.removeprefix("imaginate: error: ").removeprefix("imaginate: ") or "the job failed"


def run_job(args: list[str], session: str, progress: Callable[[], tuple[float | None, str]] | None = None,
            replacements: dict[str, str] | None = None, threads: int = 1) -> Iterator[tuple[float | None, str]]:
    """Run ``python -m imaginate ARGS`` and yield ``(fraction or None, status text)`` about twice a second.

    Args:
        args: the verb and its options.
        session: the browser session (Gradio's ``session_hash``) the job belongs to.
        progress: called while the job runs; returns ``(fraction done or None, text)``.
        replacements: strings to replace in the error message (upload paths -> the page's field names).
        threads: torch / OpenMP threads of the child.

    Raises:
        JobFailed: a non-zero exit (the message is the job's one-line error).
        JobCancelled: stopped by :func:`cancel_session`.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    stderr_file = _stderr_file()
    proc = subprocess.Popen([sys.executable, "-m", "imaginate", *args], stdout=subprocess.DEVNULL,
                            stderr=stderr_file, env=env, start_new_session=True)
    _register(session, proc)
    start = time.monotonic()
    try:
        while proc.poll() is None:
            fraction, text = progress() if progress else (None, "")
            yield fraction, f"{text} ({time.monotonic() - start:.0f} s)".strip()
            time.sleep(POLL_S)
        stderr_file.seek(0)
        stderr = stderr_file.read().decode("utf-8", "replace")
        if proc.returncode < 0 or proc.returncode == 143:
            raise JobCancelled("cancelled")
        if proc.returncode != 0:
            raise JobFailed(_error_line(stderr, replacements or {}))
        yield 1.0, f"done ({time.monotonic() - start:.0f} s)"
    finally:
        _kill(proc)  # Gradio closed the generator (Cancel, a closed tab) or the job ended
        _forget(session, proc)
        stderr_file.close()


def _stderr_file():
    import tempfile

    return tempfile.TemporaryFile()


def job_output_dir(root: Path) -> Path:
    """A fresh folder for one request's output files (so two browsers never share a file)."""
    import tempfile

    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="job-", dir=root))
