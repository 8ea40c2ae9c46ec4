"""What every tab shares: the app's context, the run picker, loading a run's system (cached), and the
"no run yet: train the tiny demo" block with its progress bar and Cancel button."""


import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imaginate.serve.inputs import InputError, page_errors
from imaginate.serve.jobs import cancel_session, job_output_dir, run_job
from imaginate.serve.runs import RunCatalog, RunInfo

MODEL_CACHE_SIZE = 4


@dataclass
class AppContext:
    """Args:
        catalog: the runs folder's finished runs.
        work_dir: where requests write their output files (one fresh sub-folder per request).
        device: the device runs are loaded on (auto | cpu | cuda | cuda:N).
        job_threads: threads of a child job (training, rendering).
    """

    catalog: RunCatalog
    work_dir: Path
    device: str = "auto"
    job_threads: int = 1

    def output_dir(self) -> Path:
        return job_output_dir(self.work_dir)


class SystemCache:
    """Loaded runs (``engine.load_run``), least recently used dropped first; one load at a time per run."""

    def __init__(self, size: int = MODEL_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, float], Any] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, run: RunInfo, device: str = "auto") -> tuple[Any, Any, Any, int]:
        """``(spec, cfg, system, step)`` of ``run`` in eval mode."""
        from imaginate.engine import load_run

        key = (str(run.path), run.finished_at)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            loaded = load_run(run.path, device=device)
            loaded[2].train(False)
            self._items[key] = loaded
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return loaded


SYSTEMS = SystemCache()


def session_of(request: Any) -> str:
    """The browser session's id (Gradio's ``session_hash``); direct calls share one id."""
    return str(getattr(request, "session_hash", None) or "direct")


def run_choices(ctx: AppContext, system: str) -> tuple[list[tuple[str, str]], str | None]:
    choices = ctx.catalog.choices(system)
    return choices, (choices[0][1] if choices else None)


def run_status(ctx: AppContext, system: str) -> str:
    newest = ctx.catalog.newest(system)
    if newest is None:
        return (f"**No finished `{system}` run** under the runs folder. Press *Train the tiny demo* "
                f"(`imaginate demo --only {system} --train`) and wait for it, or train one with `imaginate train {system}`.")
    extra = f", preset {newest.preset}" if newest.preset else ""
    return f"Using the newest finished `{system}` run: `{newest.run_id}`{extra}. Pick another above."


def demo_progress(folder: Path) -> Callable[[], tuple[float | None, str]]:
    """Progress of a demo writing runs under ``folder``: the newest ``metrics.jsonl``'s last step against
    ``train.steps`` of the same run's ``config.yaml``."""

    def read() -> tuple[float | None, str]:
        logs = sorted(folder.rglob("metrics.jsonl"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
        if not logs:
            return None, "starting"
        log = logs[-1]
        try:
            lines = log.read_text().splitlines()
            step = int(json.loads(lines[-1])["step"]) if lines else 0
            import yaml

            total = int(yaml.safe_load((log.parent / "config.yaml").read_text())["train"]["steps"])
        except (OSError, ValueError, KeyError, TypeError, IndexError, json.JSONDecodeError):
            return None, f"training {log.parent.name}"
        name = log.parent.relative_to(folder).as_posix()
        return min(step / max(total, 1), 1.0), f"{name}: step {step} / {total}"

    return read


def train_demo_job(ctx: AppContext, system: str, session: str,
                   args: list[str] | None = None) -> Iterator[tuple[float | None, str]]:
    """Train ``system``'s tiny demo into ``RUNS/demo`` (or run ``args`` instead, for tests), then re-scan."""
    from imaginate.registry import get_system

    spec = get_system(system)
    if spec.demo is None and args is None:
        raise InputError(f"{system} has no demo to train; use `imaginate train {system}`")
    out = ctx.catalog.runs_dir / "demo"
    argv = args or ["demo", "--only", system, "--train", "--out", str(out)]
    yield from run_job(argv, session, demo_progress(out / system if args is None else ctx.catalog.runs_dir),
                       {str(ctx.catalog.runs_dir): "runs"}, threads=ctx.job_threads)
    ctx.catalog.refresh()


def add_run_picker(ctx: AppContext, system: str, train_args: list[str] | None = None):
    """The run dropdown, a status line and the Train / Cancel buttons; returns the dropdown.

    ``train_args`` replaces the demo command (tests train a few steps instead).
    """
    import gradio as gr

    choices, value = run_choices(ctx, system)
    with gr.Row():
        picker = gr.Dropdown(choices=choices, value=value, label=f"{system} run", scale=4,
                             elem_id=f"{system}-picker", allow_custom_value=False)
        train = gr.Button("Train the tiny demo", scale=1, size="sm", elem_id=f"{system}-train")
        cancel = gr.Button("Cancel training", scale=1, size="sm", variant="stop", elem_id=f"{system}-cancel")
    status = gr.Markdown(run_status(ctx, system), elem_id=f"{system}-status")

    @page_errors
    def train_missing_demo(request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        session = session_of(request)
        for fraction, text in train_demo_job(ctx, system, session, train_args):
            progress(fraction, desc=text)
            yield gr.update(), f"Training `{system}`: {text}"
        new_choices, new_value = run_choices(ctx, system)
        yield gr.update(choices=new_choices, value=new_value), run_status(ctx, system)

    def cancel_training(request: gr.Request) -> str:
        stopped = cancel_session(session_of(request))
        return "Cancelled." if stopped else run_status(ctx, system)

    event = train.click(train_missing_demo, None, [picker, status], api_name=f"{system}_train_demo")
    cancel.click(cancel_training, None, status, cancels=[event], api_name=f"{system}_cancel")
    return picker


def load_system(ctx: AppContext, system: str, run_id: str | None) -> tuple[RunInfo, Any, Any]:
    """``(run, cfg, system object)`` for a run id of the picker (None: the newest)."""
    run = ctx.catalog.resolve(system, run_id)
    spec, cfg, loaded, _ = SYSTEMS.load(run, ctx.device)
    if spec.name != system:
        raise InputError(f"run '{run.run_id}' is a {spec.name} run, not a {system} one")
    return run, cfg, loaded
