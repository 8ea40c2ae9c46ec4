"""Tabs without pictures in, or about runs: styled_text (context + style example -> paragraphs), lns_madam
(model -> energy table, and the run's accuracy), and the runs tab (metrics curves, samples, config)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from imaginate.serve.common import AppContext, add_run_picker
from imaginate.serve.inputs import InputError, choice_in, float_in, int_in, page_errors, read_upload_text

MAX_CONTEXT_CHARS = 2000
MAX_STYLE_CHARS = 20_000


# ---- styled_text -----------------------------------------------------------------------------------
def styled_text_write(ctx: AppContext, run_id: str | None, context: Any, style_text: Any, style_file: Any = None,
                      num: Any = 3, temperature: Any = 0.7, seed: Any = 0) -> str:
    """``imaginate write`` from the page: continuations of ``context`` in the style of the example text
    (typed, or an uploaded UTF-8 file); returns Markdown, one paragraph per continuation."""
    from imaginate.systems.styled_text.write import write

    run = ctx.catalog.resolve("styled_text", run_id)
    if not isinstance(context, str) or not context.strip():
        raise InputError("context: type a sentence to continue")
    if len(context) > MAX_CONTEXT_CHARS:
        raise InputError(f"context: at most {MAX_CONTEXT_CHARS} characters, got {len(context)}")
    if style_file is not None:
        example = read_upload_text(style_file, "style example file", MAX_STYLE_CHARS)
    elif isinstance(style_text, str) and style_text.strip():
        example = style_text[:MAX_STYLE_CHARS]
    else:
        raise InputError("style example: type or upload a text in the wanted style")
    num = int_in(num, "continuations", 1, 8)
    temperature = float_in(temperature, "temperature", 0.0, 2.0)
    seed = int_in(seed, "seed", 0, 2**31 - 1)
    example_path = ctx.output_dir() / "style_example.txt"
    example_path.write_text(example, encoding="utf-8")
    texts = write(str(run.path), context, str(example_path), num, temperature, seed, device=ctx.device)
    return "\n\n".join(f"**{i + 1}.** {context}{text}" for i, text in enumerate(texts))


def add_styled_text_tab(ctx: AppContext, train_args: list[str] | None = None) -> None:
    import gradio as gr

    gr.Markdown("Continue a sentence in the style of an example text (its paragraphs' style codes are averaged). "
                "The same seed gives the same continuations.")
    picker = add_run_picker(ctx, "styled_text", train_args)
    context = gr.Textbox(label="context", value="The compiler said no.", elem_id="styled_text-context")
    with gr.Row():
        style = gr.Textbox(label="style example", lines=5, elem_id="styled_text-style",
                           value="Yow!  Are we having FUN yet?\n\nI want a WESSON OIL lease!!")
        style_file = gr.File(label="...or a UTF-8 text file", elem_id="styled_text-file")
    with gr.Row():
        num = gr.Slider(1, 8, value=3, step=1, label="continuations")
        temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="temperature")
        seed = gr.Number(value=0, precision=0, label="seed")
    button = gr.Button("Write", variant="primary", elem_id="styled_text-run")
    output = gr.Markdown(elem_id="styled_text-output")

    @page_errors
    def write_paragraphs(run_id, ctx_text, style_text, file, n, temp, seed_value):
        return styled_text_write(ctx, run_id, ctx_text, style_text, file, n, temp, seed_value)

    button.click(write_paragraphs, [picker, context, style, style_file, num, temperature, seed], output,
                 api_name="styled_text")


# ---- lns_madam -------------------------------------------------------------------------------------
ENERGY_HEADERS = ["format", "forward mJ", "act-grad mJ", "weight-grad mJ", "update mJ", "total mJ", "FP32 / format"]


def energy_table(model: Any, batch: Any = 1, lns_gamma: Any = 8, lns_acc_bits: Any = 24) -> tuple[str, list[list]]:
    """The energy model's table for one training iteration (``imaginate energy``): (caption, rows)."""
    from imaginate.numerics.energy import MODELS, PHASES, energy_report

    model = choice_in(model, "model", MODELS)
    batch = int_in(batch, "batch", 1, 256)
    gamma = int_in(lns_gamma, "LNS gamma", 1, 16)
    acc = int_in(lns_acc_bits, "LNS accumulator bits", 8, 32)
    if gamma & (gamma - 1):
        raise InputError(f"LNS gamma: must be a power of two, got {gamma}")
    report = energy_report(model, batch, lns_acc_bits=acc, lns_gamma=gamma)
    rows = []
    for setting in report.settings:
        energy = report.energy_mj(setting.name)
        rows.append([setting.name, *(round(energy[p], 6) for p in PHASES), round(sum(energy.values()), 6),
                     f"{report.ratio_to_fp32(setting.name):.1f}x"])
    macs = report.macs()
    caption = (f"**{model}**, {report.input_desc} per iteration, {report.params / 1e6:.2f} M parameters; "
               f"forward {macs['forward'] / 1e9:.3f} GMACs. Compute-only datapath model, 45 nm figures "
               f"(Horowitz, ISSCC 2014); see docs/energy.md.")
    return caption, rows


def lns_madam_run_summary(ctx: AppContext, run_id: str | None) -> str:
    """The run's last evaluation (test accuracy) and its quantisation settings, as Markdown."""

    run = ctx.catalog.resolve("lns_madam", run_id)
    evals = [r for r in run.metrics_rows() if r.get("split") == "eval"]
    if not evals:
        return f"`{run.run_id}`: no evaluation logged."
    last = evals[-1]
    shown = ", ".join(f"{k} = {v:.4g}" for k, v in last.items() if isinstance(v, float) and k not in ("step",))
    return f"`{run.run_id}` at step {last.get('step')}: {shown}"


def add_lns_madam_tab(ctx: AppContext, train_args: list[str] | None = None) -> None:
    import gradio as gr

    from imaginate.numerics.energy import MODELS

    gr.Markdown("The energy model of LNS-Madam (arXiv 2106.13914): energy of one training iteration in each number "
                "format, and the accuracy the run reached in low precision.")
    picker = add_run_picker(ctx, "lns_madam", train_args)
    summary = gr.Markdown(elem_id="lns_madam-summary")
    with gr.Row():
        model = gr.Dropdown(choices=list(MODELS), value="resnet18", label="model", elem_id="lns_madam-model")
        batch = gr.Number(value=1, precision=0, label="batch")
        gamma = gr.Dropdown(choices=[1, 2, 4, 8, 16], value=8, label="LNS gamma")
        acc = gr.Slider(8, 32, value=24, step=1, label="LNS accumulator bits")
    button = gr.Button("Energy table", variant="primary", elem_id="lns_madam-run")
    caption = gr.Markdown(elem_id="lns_madam-caption")
    table = gr.Dataframe(headers=ENERGY_HEADERS, interactive=False, elem_id="lns_madam-table")

    @page_errors
    def energy(run_id, name, b, g, a):
        text, rows = energy_table(name, b, g, a)
        try:
            accuracy = lns_madam_run_summary(ctx, run_id)
        except Exception as exc:  # no run: the table still stands on its own
            accuracy = str(exc)
        return accuracy, text, rows

    button.click(energy, [picker, model, batch, gamma, acc], [summary, caption, table], api_name="lns_madam")


# ---- runs ------------------------------------------------------------------------------------------
def metrics_figure(rows: list[dict], title: str):
    """Train losses and evaluation metrics against step, one panel each (at most 8 panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        split, step = row.get("split", "train"), row.get("step")
        if not isinstance(step, int):
            continue
        for key, value in row.items():
            if key in ("step", "split", "time", "steps_per_s") or key.startswith("lr_"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                series.setdefault(f"{split}/{key}", []).append((step, float(value)))
    names = sorted(series, key=lambda k: (not k.startswith("eval/"), not k.endswith("loss"), k))[:8]
    cols = min(4, max(1, len(names)))
    rows_n = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.4 * cols, 2.5 * rows_n), dpi=90, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        steps, values = zip(*series[name])
        ax.set_visible(True)
        ax.plot(steps, values, marker="o" if len(steps) < 4 else None, lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    if not names:
        axes.flat[0].set_visible(True)
        axes.flat[0].text(0.5, 0.5, "no metrics logged", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def run_details(ctx: AppContext, run_id: str | None) -> tuple[Any, list[tuple[np.ndarray, str]], str, str]:
    """A run's metrics figure, its newest sample pictures, its config and its last evaluation."""
    from PIL import Image


    if not run_id:
        raise InputError("run: pick a run")
    run = ctx.catalog.resolve(None, run_id)
    try:
        rows = run.metrics_rows()
    except (OSError, ValueError, json.JSONDecodeError):
        raise InputError(f"{run.run_id}: metrics.jsonl is not readable") from None
    figure = metrics_figure(rows, f"{run.system}: {run.run_id}")
    samples: dict[str, tuple[int, object]] = {}  # newest picture per kind
    folder = run.path / "samples"
    if folder.is_dir():
        for png in sorted(folder.glob("*.png")):
            kind, _, step = png.stem.rpartition("_")
            if step.isdigit() and (kind not in samples or int(step) >= samples[kind][0]):
                samples[kind] = (int(step), png)
    gallery = []
    for kind, (step, png) in sorted(samples.items())[:12]:
        with Image.open(png) as image:
            gallery.append((np.asarray(image.convert("RGB")), f"{kind}, step {step}"))
    config = run.config_text()
    evals = [r for r in rows if r.get("split") == "eval"]
    last = ", ".join(f"{k} = {v:.4g}" for k, v in (evals[-1] if evals else {}).items()
                     if isinstance(v, float))
    summary = f"**{run.system}** `{run.run_id}`: {len(rows)} log rows" + (f"; last evaluation: {last}" if last else "")
    return figure, gallery, config, summary


def add_runs_tab(ctx: AppContext) -> None:
    import gradio as gr

    def all_choices() -> list[tuple[str, str]]:
        return [(f"{r.system}: {r.label}", r.run_id) for r in ctx.catalog.all_runs()]

    choices = all_choices()
    with gr.Row():
        picker = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="run", scale=4,
                             elem_id="runs-run")
        show_button = gr.Button("Show", scale=1, variant="primary", elem_id="runs-show")
        rescan = gr.Button("Re-scan the runs folder", scale=1, elem_id="runs-rescan")
    summary = gr.Markdown(elem_id="runs-summary")
    plot = gr.Plot(label="metrics.jsonl", elem_id="runs-plot")
    gallery = gr.Gallery(label="newest samples", columns=3, elem_id="runs-samples")
    config = gr.Code(label="config.yaml", language="yaml", elem_id="runs-config")

    @page_errors
    def show(run_id):
        figure, pictures, text, line = run_details(ctx, run_id)
        return figure, pictures, text, line

    def refresh():
        ctx.catalog.refresh()
        new = all_choices()
        return gr.update(choices=new, value=new[0][1] if new else None)

    picker.change(show, picker, [plot, gallery, config, summary], api_name="runs")
    show_button.click(show, picker, [plot, gallery, config, summary], api_name=False)
    rescan.click(refresh, None, picker, api_name="runs_rescan")
