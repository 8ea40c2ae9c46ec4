"""Tabs that make videos: gancraft (world, camera path, style image -> video), vid2vid (world + path ->
labels | run | other run side by side), face_vid2vid (source photo + driving video -> video, free-view
angles; the keypoint codec's bit rate beside H.264's at the same quality).

Rendering and synthesis run as the CLI verbs themselves (``imaginate render / synthesize / talk``) in a child
process (:mod:`imaginate.serve.jobs`): the page shows the elapsed time and Cancel stops the process. The
tab functions are generators of ``(status, video path or None)``; ``*_job_args`` build and check the
command line from the page's values, so nothing the client sends is passed on unchecked.
"""


from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaginate.serve.common import AppContext, add_run_picker, session_of
from imaginate.serve.inputs import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    WORLD_SUFFIXES,
    InputError,
    checked_upload,
    choice_in,
    float_in,
    int_in,
    page_errors,
    read_upload_image,
    read_upload_video,
)
from imaginate.serve.jobs import run_job

MAX_WORLD_VOXELS = 128 * 128 * 128
MAX_FRAMES = 96
MAX_TALK_FRAMES = 120


def checked_world(value: Any, what: str = "world") -> Path | None:
    """An uploaded ``.npy`` block world, refused when it is not a 3-D integer grid or has too many voxels
    (only the header is read here; ``load_world`` in the job checks the rest)."""
    path = checked_upload(value, what, WORLD_SUFFIXES, required=False)
    if path is None:
        return None
    try:
        grid = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        raise InputError(f"{what}: '{path.name}' is not a readable .npy array") from None
    if grid.ndim != 3 or grid.dtype.kind not in "iu":
        raise InputError(f"{what}: '{path.name}' must be a 3-D integer grid (X, Y, Z), got {grid.ndim}-D {grid.dtype}")
    if int(np.prod(grid.shape)) > MAX_WORLD_VOXELS:
        raise InputError(f"{what}: {tuple(grid.shape)} is too large for the app (at most {MAX_WORLD_VOXELS:,} "
                         "voxels); render it with `imaginate render`")
    return path


def _names(paths: dict[str, Path | None]) -> dict[str, str]:
    """Upload paths -> the page's field names, for the job's error line."""
    return {str(p): name for name, p in paths.items() if p is not None}


def _video_job(ctx: AppContext, args: list[str], out: Path, session: str, replacements: dict[str, str],
               progress: Any) -> Iterator[tuple[str, str | None]]:
    for fraction, text in run_job(args, session, None, {**replacements, str(out): "the video"},
                                  threads=ctx.job_threads):
        if progress is not None:
            progress(fraction, desc=text)
        yield f"Working: {text}", None
    if not out.is_file():
        raise InputError("the job wrote no video")
    yield "Done.", str(out)


# ---- gancraft --------------------------------------------------------------------------------------
def gancraft_job_args(ctx: AppContext, run_id: str | None, world: Any, path: Any, frames: Any, size: Any,
                      style: Any, seed: Any) -> tuple[list[str], Path, dict[str, str]]:
    """``imaginate render`` arguments for the page's values, the video it will write and the names of the uploads."""
    from imaginate.systems.gancraft.render import PATHS

    run = ctx.catalog.resolve("gancraft", run_id)
    world_path = checked_world(world)
    style_path = None
    if style is not None:
        read_upload_image(style, "style image")
        style_path = checked_upload(style, "style image", IMAGE_SUFFIXES)
    path = choice_in(path, "camera path", PATHS)
    frames = int_in(frames, "frames", 2, MAX_FRAMES)
    size = int_in(size, "size", 16, 256)
    out = ctx.output_dir() / "render.mp4"
    args = ["render", "--checkpoint", str(run.path), "--out", str(out), "--path", path, "--frames", str(frames),
            "--size", str(size), "--device", ctx.device]
    if world_path:
        args += ["--world", str(world_path)]
    if style_path:
        args += ["--style", str(style_path)]
    if seed not in (None, ""):
        args += ["--seed", str(int_in(seed, "seed", 0, 2**31 - 1))]
    return args, out, _names({"the world file": world_path, "the style image": style_path})


def add_gancraft_tab(ctx: AppContext, train_args: list[str] | None = None) -> None:
    import gradio as gr

    from imaginate.systems.gancraft.render import PATHS

    gr.Markdown("Neural rendering of a block world along a camera path. The run's training world has learned "
                "voxel features; an uploaded world (.npy grid of labels) gets the learned networks with random "
                "features. A style image sets the look through the style encoder.")
    picker = add_run_picker(ctx, "gancraft", train_args)
    with gr.Row():
        world = gr.File(label="world (.npy, optional)", elem_id="gancraft-world")
        style = gr.File(label="style image (optional)", elem_id="gancraft-style")
    with gr.Row():
        path = gr.Radio(list(PATHS), value="orbit", label="camera path")
        frames = gr.Slider(2, MAX_FRAMES, value=24, step=1, label="frames")
        size = gr.Slider(16, 256, value=64, step=16, label="size")
        seed = gr.Number(value=None, precision=0, label="seed (empty: z = 0)")
    with gr.Row():
        button = gr.Button("Render", variant="primary", elem_id="gancraft-run")
        cancel = gr.Button("Cancel", variant="stop", elem_id="gancraft-cancel-render")
    status = gr.Markdown(elem_id="gancraft-render-status")
    video = gr.Video(label="video", elem_id="gancraft-video", interactive=False)

    @page_errors
    def render(run_id, world_file, path_name, n, px, style_file, seed_value, request: gr.Request,
               progress=gr.Progress()):  # noqa: B008
        args, out, names = gancraft_job_args(ctx, run_id, world_file, path_name, n, px, style_file, seed_value)
        yield from _video_job(ctx, args, out, session_of(request), names, progress)

    event = button.click(render, [picker, world, path, frames, size, style, seed], [status, video],
                         api_name="gancraft")
    _cancel_button(cancel, event, status)


def _cancel_button(button: Any, event: Any, status: Any) -> None:
    import gradio as gr

    from imaginate.serve.jobs import cancel_session

    def cancel_job(request: gr.Request) -> str:
        return "Cancelled." if cancel_session(session_of(request)) else "Nothing is running."

    button.click(cancel_job, None, status, cancels=[event], api_name=False)


# ---- vid2vid ---------------------------------------------------------------------------------------
def vid2vid_job_args(ctx: AppContext, run_id: str | None, other_run_id: str | None, world: Any, path: Any,
                     frames: Any, seed: Any) -> tuple[list[str], Path, dict[str, str]]:
    """``imaginate synthesize`` arguments: labels | run (| other run) of a world flown along a path."""
    from imaginate.systems.vid2vid.synthesize import PATHS

    run = ctx.catalog.resolve("vid2vid", run_id)
    world_path = checked_world(world)
    out = ctx.output_dir() / "synthesis.mp4"
    args = ["synthesize", "--checkpoint", str(run.path), "--out", str(out),
            "--path", choice_in(path, "camera path", PATHS), "--frames", str(int_in(frames, "frames", 6, MAX_FRAMES)),
            "--seed", str(int_in(seed, "seed", 0, 2**31 - 1)), "--device", ctx.device]
    if other_run_id:
        other = ctx.catalog.resolve("vid2vid", other_run_id)
        if other.path != run.path:
            args += ["--side-by-side", str(other.path)]
    if world_path:
        args += ["--world", str(world_path)]
    return args, out, _names({"the world file": world_path})


def add_vid2vid_tab(ctx: AppContext, train_args: list[str] | None = None) -> None:
    import gradio as gr

    from imaginate.systems.vid2vid.synthesize import PATHS

    gr.Markdown("Video-to-video synthesis: a camera flies over a block world (a procedural test world of the seed, "
                "or an uploaded .npy grid); the label video is synthesised frame by frame. Pick a second run "
                "(e.g. wc-vid2vid against vid2vid) to see them side by side: labels | run | second run.")
    picker = add_run_picker(ctx, "vid2vid", train_args)
    choices = ctx.catalog.choices("vid2vid")
    other = gr.Dropdown(choices=[("(none)", "")] + choices, value="", label="second run (side by side)",
                        elem_id="vid2vid-other")
    with gr.Row():
        world = gr.File(label="world (.npy, optional)", elem_id="vid2vid-world")
        path = gr.Radio(list(PATHS), value="revisit", label="camera path")
        frames = gr.Slider(6, MAX_FRAMES, value=16, step=1, label="frames")  # the camera paths need 6
        seed = gr.Number(value=0, precision=0, label="seed")
    with gr.Row():
        button = gr.Button("Synthesize", variant="primary", elem_id="vid2vid-run")
        cancel = gr.Button("Cancel", variant="stop", elem_id="vid2vid-cancel-job")
    status = gr.Markdown(elem_id="vid2vid-job-status")
    video = gr.Video(label="labels | run | second run", elem_id="vid2vid-video", interactive=False)

    @page_errors
    def synthesize(run_id, other_id, world_file, path_name, n, seed_value, request: gr.Request,
                   progress=gr.Progress()):  # noqa: B008
        args, out, names = vid2vid_job_args(ctx, run_id, other_id, world_file, path_name, n, seed_value)
        yield from _video_job(ctx, args, out, session_of(request), names, progress)

    event = button.click(synthesize, [picker, other, world, path, frames, seed], [status, video], api_name="vid2vid")
    _cancel_button(cancel, event, status)


# ---- face_vid2vid ----------------------------------------------------------------------------------
def face_job_args(ctx: AppContext, run_id: str | None, source: Any, driving: Any, free_view: Any, yaw: Any,
                  pitch: Any, roll: Any, max_frames: Any) -> tuple[list[str], Path, dict[str, str]]:
    """``imaginate talk`` arguments; with ``free_view`` the head's angles are set to the sliders' values."""
    run = ctx.catalog.resolve("face_vid2vid", run_id)
    read_upload_image(source, "source photo")
    source_path = checked_upload(source, "source photo", IMAGE_SUFFIXES)
    read_upload_video(driving, "driving video", 1)  # decodable
    driving_path = checked_upload(driving, "driving video", VIDEO_SUFFIXES)
    out = ctx.output_dir() / "talk.mp4"
    args = ["talk", "--checkpoint", str(run.path), "--source", str(source_path), "--driving", str(driving_path),
            "--out", str(out), "--max-frames", str(int_in(max_frames, "frames", 1, MAX_TALK_FRAMES)),
            "--device", ctx.device]
    if free_view:
        for name, value in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
            args += [f"--{name}", f"{float_in(value, name, -90.0, 90.0):g}"]
    return args, out, _names({"the source photo": source_path, "the driving video": driving_path})


@torch.no_grad()
def codec_vs_h264(ctx: AppContext, run_id: str | None, driving: Any, max_frames: Any = 30) -> list[list[Any]]:
    """The keypoint codec's kbps and PSNR on the driving video beside H.264's at the same (or better) PSNR.

    Rows: ``[coder, kbps at 30 fps, PSNR dB]``; H.264 is swept over CRFs and the smallest stream whose PSNR
    reaches the codec's is reported (or the best it reaches, said so).
    """
    from imaginate.engine.video import h264_crf_sweep
    from imaginate.systems.face_vid2vid.codec import CodecSettings, decode_video, encode_video
    from imaginate.systems.face_vid2vid.inference import load_model, resize_frames

    run = ctx.catalog.resolve("face_vid2vid", run_id)
    count = int_in(max_frames, "frames", 2, MAX_TALK_FRAMES)
    model = load_model(run.path, ctx.device)
    if not hasattr(model, "animate"):
        raise InputError(f"run '{run.run_id}' has no 3D head motion to code (ablation run)")
    frames = resize_frames(read_upload_video(driving, "driving video", count), model.config.image_size)
    fps = 30.0
    data, _ = encode_video(model, frames, CodecSettings(fps=fps))
    decoded, _ = decode_video(model, data)

    def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
        mse = float(((a.clamp(0, 1) - b) ** 2).mean())
        return 99.0 if mse <= 1e-10 else 10 * float(np.log10(1 / mse))

    seconds = len(frames) / fps
    codec_psnr = psnr(decoded.cpu(), frames)
    rows = [["face-vid2vid keypoint codec", round(len(data) * 8 / seconds / 1000, 2), round(codec_psnr, 2)]]
    sweep = h264_crf_sweep(frames, [51, 46, 41, 36, 31, 26, 21], fps=fps)
    measured = [(crf, size, psnr(video, frames)) for crf, size, video in sweep]
    reaching = [m for m in measured if m[2] >= codec_psnr]
    crf, size, value = min(reaching, key=lambda m: m[1]) if reaching else max(measured, key=lambda m: m[2])
    label = f"H.264 (libx264, CRF {crf}{'' if reaching else ', best reached'})"
    rows.append([label, round(size * 8 / seconds / 1000, 2), round(value, 2)])
    return rows


def add_face_vid2vid_tab(ctx: AppContext, train_args: list[str] | None = None) -> None:
    import gradio as gr

    gr.Markdown("One-shot talking head: the person of the source photo moves like the head in the driving video. "
                "*Free view* sets the head's yaw / pitch / roll for every frame. *Codec vs H.264* codes the "
                "driving video as keypoints and compares its bit rate with H.264's at the same PSNR.")
    picker = add_run_picker(ctx, "face_vid2vid", train_args)
    with gr.Row():
        source = gr.File(label="source photo", elem_id="face_vid2vid-source")
        driving = gr.File(label="driving video (MP4)", elem_id="face_vid2vid-driving")
    with gr.Row():
        free_view = gr.Checkbox(value=False, label="free view")
        yaw = gr.Slider(-90, 90, value=0, step=1, label="yaw")
        pitch = gr.Slider(-90, 90, value=0, step=1, label="pitch")
        roll = gr.Slider(-90, 90, value=0, step=1, label="roll")
        frames = gr.Slider(1, MAX_TALK_FRAMES, value=30, step=1, label="frames")
    with gr.Row():
        button = gr.Button("Animate", variant="primary", elem_id="face_vid2vid-run")
        compare = gr.Button("Codec vs H.264", elem_id="face_vid2vid-codec")
        cancel = gr.Button("Cancel", variant="stop", elem_id="face_vid2vid-cancel-job")
    status = gr.Markdown(elem_id="face_vid2vid-job-status")
    with gr.Row():
        video = gr.Video(label="output", elem_id="face_vid2vid-video", interactive=False)
        table = gr.Dataframe(headers=["coder", "kbps (30 fps)", "PSNR dB"], interactive=False,
                             elem_id="face_vid2vid-rates")

    @page_errors
    def animate(run_id, source_file, driving_file, free, y, p, r, n, request: gr.Request,
                progress=gr.Progress()):  # noqa: B008
        args, out, names = face_job_args(ctx, run_id, source_file, driving_file, free, y, p, r, n)
        yield from _video_job(ctx, args, out, session_of(request), names, progress)

    @page_errors
    def codec(run_id, driving_file, n):
        return codec_vs_h264(ctx, run_id, driving_file, n)

    event = button.click(animate, [picker, source, driving, free_view, yaw, pitch, roll, frames], [status, video],
                         api_name="face_vid2vid")
    compare.click(codec, [picker, driving, frames], table, api_name="face_vid2vid_codec")
    _cancel_button(cancel, event, status)
