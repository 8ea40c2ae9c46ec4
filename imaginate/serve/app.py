"""``imaginate serve``: one local web app (Gradio) with a tab per system, using the newest finished runs.

    imaginate serve [--runs runs/] [--host 127.0.0.1] [--port 7860] [--max-upload-mb 20]

Each tab calls the same functions as the system's CLI verb (``translate``, ``render``, ``synthesize``,
``talk``, ``write``, ``energy``) on the run picked at its top (newest first). A system without a finished
run says so and offers to train its tiny demo (``imaginate demo --only SYSTEM``) with a progress bar and a
Cancel button. The app reads only uploads and the runs folder; results go to a fresh temporary folder per
request, so two browsers never see each other's files. Needs the ``serve`` extra (``pip install
'imaginate[serve]'``, installed by ``make install``).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from imaginate.serve.common import AppContext
from imaginate.serve.inputs import DEFAULT_UPLOAD_LIMIT_MB, set_upload_limit
from imaginate.serve.runs import RunCatalog

INSTALL_HINT = "imaginate serve needs Gradio: pip install 'imaginate[serve]' (make install does it)"


def _tabs() -> list[tuple[str, str, Callable]]:
    """(tab title, system, add_tab(ctx, train_args)) in the order shown."""
    from imaginate.serve import tabs_images, tabs_other, tabs_video

    return [
        ("classify", "classify", tabs_images.add_classify_tab),
        ("gan", "gan", tabs_images.add_gan_tab),
        ("coco_funit", "coco_funit", tabs_images.add_coco_funit_tab),
        ("gancraft", "gancraft", tabs_video.add_gancraft_tab),
        ("wsod", "wsod", tabs_images.add_wsod_tab),
        ("vid2vid", "vid2vid", tabs_video.add_vid2vid_tab),
        ("face_vid2vid", "face_vid2vid", tabs_video.add_face_vid2vid_tab),
        ("styled_text", "styled_text", tabs_other.add_styled_text_tab),
        ("lns_madam", "lns_madam", tabs_other.add_lns_madam_tab),
    ]


def build_app(runs_dir: str | Path = "runs", work_dir: str | Path | None = None, device: str = "auto",
              max_upload_mb: float = DEFAULT_UPLOAD_LIMIT_MB, train_args: dict[str, list[str]] | None = None):
    """The Gradio Blocks app (not launched).

    Args:
        runs_dir: the folder searched for finished runs (``imaginate demo`` / ``train`` write there).
        work_dir: where requests write their outputs (default: a fresh temporary folder).
        device: the device runs are loaded on.
        max_upload_mb: the largest upload accepted, in MB.
        train_args: per system, the ``imaginate`` arguments its *Train* button runs instead of its demo
            (tests train a few steps).

    Returns:
        ``(blocks, ctx)``.
    """
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app: nothing is sent anywhere
    try:
        import gradio as gr
    except ImportError:
        from imaginate.cli import UserError

        raise UserError(INSTALL_HINT) from None
    from imaginate.registry import list_systems

    set_upload_limit(max_upload_mb)
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="imaginate-serve-"))
    ctx = AppContext(RunCatalog(Path(runs_dir)), work, device)
    registered = {spec.name for spec in list_systems()}
    train_args = train_args or {}
    with gr.Blocks(title="imaginate", analytics_enabled=False) as blocks:
        gr.Markdown(f"# imaginate\nTen research systems on your own runs. Runs folder: `{ctx.catalog.runs_dir}` "
                    f"({len(ctx.catalog.all_runs())} finished runs). Uploads up to {max_upload_mb:g} MB.")
        with gr.Tabs():
            for title, system, add_tab in _tabs():
                if system not in registered:
                    continue
                with gr.Tab(title, id=system, elem_id=f"tab-{system}"):
                    add_tab(ctx, train_args.get(system))
            with gr.Tab("runs", id="runs", elem_id="tab-runs"):
                from imaginate.serve.tabs_other import add_runs_tab

                add_runs_tab(ctx)
    blocks.queue(default_concurrency_limit=1)
    return blocks, ctx


def launch(blocks, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = DEFAULT_UPLOAD_LIMIT_MB,
           block: bool = True):
    """Start the server (``block=False``: return at once, for tests)."""
    return blocks.launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb:g}mb",
                         show_error=True, prevent_thread_lock=not block, quiet=not block, ssr_mode=False,
                         inbrowser=False, share=False)


def _cmd_serve(args: argparse.Namespace) -> int:
    from imaginate.cli import UserError

    if not 0 < args.port < 65536:
        raise UserError(f"--port: must be in 1..65535, got {args.port}")
    if not args.max_upload_mb > 0:
        raise UserError(f"--max-upload-mb: must be positive, got {args.max_upload_mb}")
    runs = Path(args.runs)
    if runs.exists() and not runs.is_dir():
        raise UserError(f"--runs {runs}: not a folder")
    blocks, ctx = build_app(runs, device=args.device, max_upload_mb=args.max_upload_mb)
    found = {r.system for r in ctx.catalog.all_runs()}
    print(f"imaginate serve: {len(ctx.catalog.all_runs())} finished runs under {ctx.catalog.runs_dir} "
          f"({', '.join(sorted(found)) or 'none: each tab offers to train its tiny demo'})")
    print(f"imaginate serve: http://{args.host}:{args.port}/")
    launch(blocks, args.host, args.port, args.max_upload_mb, block=True)
    return 0


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``serve`` (the local web app) on an argparse sub-parser set."""
    p = subparsers.add_parser("serve", help="a local web app to try every system in a browser",
                              description="Serve a Gradio app with one tab per system, using the newest "
                                          "finished run of each under --runs (local only by default).")
    p.add_argument("--runs", default="runs", metavar="DIR", help="folder of runs (default: runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_UPLOAD_LIMIT_MB,
                   help=f"largest upload accepted (default: {DEFAULT_UPLOAD_LIMIT_MB:g} MB)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_cmd_serve)
    return p
