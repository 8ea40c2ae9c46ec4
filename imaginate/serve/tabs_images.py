"""Tabs on single images: classify (upload or draw -> prediction), gan (class, seed -> samples),
coco_funit (content + style images -> translation, style interpolation), wsod (image -> boxes with scores).

Each ``*_predict``-style function is what the button calls and what the API tests call; it takes the page's
values (run id, uploads, numbers), checks them (``imaginate.serve.inputs``) and calls the system's own
inference code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from imaginate.serve.common import AppContext, add_run_picker, load_system
from imaginate.serve.inputs import (
    InputError,
    checked_upload,
    choice_in,
    image_array_to_tensor,
    int_in,
    page_errors,
    read_upload_image,
)

PREVIEW = 192  # pixels of the longer side of small pictures shown in the page


def to_display(image: Tensor, size: int = PREVIEW) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] -> ``[H', W', 3]`` uint8, nearest-neighbour scaled so its longer side is ~``size``."""
    from imaginate.engine.images import to_uint8

    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    factor = max(1, size // max(image.shape[-2:]))
    if factor > 1:
        image = F.interpolate(image[None], scale_factor=factor, mode="nearest")[0]
    return to_uint8(image.clamp(0, 1))


# ---- classify --------------------------------------------------------------------------------------
def _sketch_array(sketch: Any) -> np.ndarray | None:
    """The composite of a Sketchpad value (dict or EditorValue), or None when nothing was drawn."""
    if sketch is None:
        return None
    composite = sketch.get("composite") if isinstance(sketch, dict) else getattr(sketch, "composite", None)
    if composite is None:
        return None
    array = np.asarray(composite)
    if array.ndim < 2 or array.size == 0:
        return None
    if array.ndim == 3 and array.shape[-1] == 4:  # untouched canvas: fully transparent
        if array[..., 3].max() == 0:
            return None
    elif array.min() == array.max():
        return None
    return array


def object_fraction(images: Tensor, threshold: float = 0.2) -> float:
    """The mean share of the frame's side taken by the object (the bright pixels' box) in ``[N, 1, H, W]``."""
    sides = []
    for image in images[:256]:
        ink = (image[0] > threshold).nonzero()
        if len(ink):
            extent = (ink.max(0).values - ink.min(0).values + 1).max()
            sides.append(float(extent) / max(image.shape[-2:]))
    return sum(sides) / len(sides) if sides else 1.0


def fit_to_input(image: Tensor, shape: tuple[int, int, int], fraction: float = 1.0) -> Tensor:
    """An image ``[C', H', W']`` in [0, 1] made like the training images ``shape`` = (C, H, W).

    Grey-scale training sets here (digits, Fashion-MNIST) are light objects on black: a picture with a light
    background (ink on paper, a drawing) is inverted, then cropped around its object and padded so that the
    object takes ``fraction`` of the side, as objects do in the training images (``object_fraction``).
    """
    channels, height, width = shape
    if channels == 1:
        grey = image.mean(0, keepdim=True) if image.shape[0] == 3 else image
        if float(grey.mean()) > 0.5:
            grey = 1 - grey
        ink = (grey[0] > 0.2).nonzero()
        if len(ink):
            (top, left), (bottom, right) = ink.min(0).values.tolist(), ink.max(0).values.tolist()
            grey = grey[:, top:bottom + 1, left:right + 1]
            side = max(int(round(max(grey.shape[1:]) / max(fraction, 0.05))), *grey.shape[1:])
            pad_h, pad_w = side - grey.shape[1], side - grey.shape[2]
            grey = F.pad(grey, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        image = grey
    elif image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


_fractions: dict[int, float] = {}


@torch.no_grad()
def classify_image(ctx: AppContext, run_id: str | None, upload: Any, sketch: Any = None
                   ) -> tuple[dict[str, float], np.ndarray]:
    """Top classes of an uploaded (or drawn) image and the picture the network saw.

    Returns:
        ``({class name: probability} of the 5 best, [h, w, 3] uint8 of the network's input)``.
    """
    _, _, system = load_system(ctx, "classify", run_id)
    shape = tuple(system.train_set[0][0].shape)  # (C, H, W)
    if id(system) not in _fractions:
        from imaginate.systems.classify.system import gather

        sample, _ = gather(system.train_set, torch.arange(min(256, len(system.train_set))))
        _fractions[id(system)] = object_fraction(sample) if shape[0] == 1 else 1.0
    drawn = _sketch_array(sketch)
    if upload is not None:
        picture = read_upload_image(upload, "image")
    elif drawn is not None:
        picture = image_array_to_tensor(drawn)
    else:
        raise InputError("image: upload a picture or draw one")
    x = fit_to_input(picture, shape, _fractions[id(system)])  # [C, H, W]
    probs = system.predict(x[None]).softmax(-1)[0]  # [classes]
    top = probs.topk(min(5, len(probs)))
    names = system.class_names
    return {names[i]: float(p) for p, i in zip(top.values.tolist(), top.indices.tolist())}, to_display(x)


def add_classify_tab(ctx: AppContext, train_args: list[str] | None = None) -> None:
    import gradio as gr

    gr.Markdown("Upload a picture or draw one; the run's classifier answers with its five best classes. "
                "Grey-scale models (digits, Fashion-MNIST) see light-on-dark: a drawing on white is inverted.")
    picker = add_run_picker(ctx, "classify", train_args)
    with gr.Row():
        upload = gr.File(label="image (PNG / JPEG)", elem_id="classify-upload", height=240)
        sketch = gr.Sketchpad(label="...or draw", type="numpy", elem_id="classify-sketch", height=240,
                              canvas_size=(256, 256))
    with gr.Row():
        button = gr.Button("Classify the upload", variant="primary", elem_id="classify-run")
        draw_button = gr.Button("Classify the drawing", variant="primary", elem_id="classify-run-drawing")
    with gr.Row():
        label = gr.Label(num_top_classes=5, label="prediction", elem_id="classify-label")
        seen = gr.Image(label="what the network saw", elem_id="classify-seen", interactive=False, format="png")

    @page_errors
    def classify(run_id, file):
        return classify_image(ctx, run_id, file)

    @page_errors
    def classify_drawing(run_id, drawing):
        return classify_image(ctx, run_id, None, drawing)

    # two events: the upload's answer does not wait for the drawing canvas (WebGL) to export its picture
    button.click(classify, [picker, upload], [label, seen], api_name="classify")
    draw_button.click(classify_drawing, [picker, sketch], [label, seen], api_name="classify_drawing")


# ---- gan -------------------------------------------------------------------------------------------
@torch.no_grad()
def gan_samples(ctx: AppContext, run_id: str | None, class_name: str | None, seed: Any, count: Any) -> np.ndarray:
    """``count`` samples of one class (or one of every class when ``class_name`` is "all") from ``seed``."""
    from imaginate.engine.images import make_grid

    _, _, system = load_system(ctx, "gan", run_id)
    names = list(system.class_names)
    seed = int_in(seed, "seed", 0, 2**31 - 1)
    count = int_in(count, "samples", 1, 64)
    if class_name in (None, "", "all"):
        labels = torch.arange(len(names)).repeat_interleave(count)
        nrow = count
    else:
        labels = torch.full((count,), names.index(choice_in(class_name, "class", names)))
        nrow = min(count, 8)
    images = system.generate(labels, seed=seed).clamp(0, 1)  # [N, C, H, W]
    return to_display(make_grid(images, nrow=nrow), size=768)


def gan_class_names(ctx: AppContext, run_id: str | None) -> list[str]:
    """A gan run's class names from its saved config (no model is loaded); [] when unknown."""
    import yaml

    from imaginate.data import DIGIT_CLASS_NAMES, FASHION_MNIST_CLASS_NAMES

    try:
        run = ctx.catalog.resolve("gan", run_id)
        data = yaml.safe_load(run.config_text())["data"]["name"]
    except Exception:  # no run yet, or an unreadable config: the class box offers "all"
        return []
    return list({"digits": DIGIT_CLASS_NAMES, "fashion_mnist": FASHION_MNIST_CLASS_NAMES}.get(data, []))


def add_gan_tab(ctx: AppContext, train_args: list[str] | None = None) -> None:
    import gradio as gr

    gr.Markdown("Samples of the run's EMA generator: pick a class (or all of them, one row each) and a seed; "
                "the same seed gives the same images.")
    picker = add_run_picker(ctx, "gan", train_args)
    with gr.Row():
        class_box = gr.Dropdown(choices=["all", *gan_class_names(ctx, None)], value="all", label="class",
                                allow_custom_value=True, elem_id="gan-class")
        seed = gr.Number(value=0, precision=0, label="seed", elem_id="gan-seed")
        count = gr.Slider(1, 16, value=8, step=1, label="samples per class", elem_id="gan-count")
    button = gr.Button("Generate", variant="primary", elem_id="gan-run")
    grid = gr.Image(label="samples", elem_id="gan-samples", interactive=False, format="png")

    @page_errors
    def generate(run_id, class_name, seed_value, n):
        return gan_samples(ctx, run_id, class_name, seed_value, n)

    def classes(run_id):
        return gr.update(choices=["all", *gan_class_names(ctx, run_id)], value="all")

    button.click(generate, [picker, class_box, seed, count], grid, api_name="gan")
    picker.change(classes, picker, class_box, api_name=False)


# ---- coco_funit ------------------------------------------------------------------------------------
def coco_funit_translate(ctx: AppContext, run_id: str | None, content: Any, styles: Any,
                         second_styles: Any = None, steps: Any = 5) -> np.ndarray:
    """``imaginate translate`` on uploads: content | styles | translation (and an interpolation strip)."""
    from PIL import Image

    from imaginate.systems.coco_funit.translate import translate_files

    run = ctx.catalog.resolve("coco_funit", run_id)
    content_path = checked_upload(content, "content image", (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
    read_upload_image(content, "content image")  # decodable, not too large
    style_list = list(styles or [])
    if not style_list:
        raise InputError("style images: upload one or more images of one class")
    if len(style_list) > 16:
        raise InputError(f"style images: at most 16, got {len(style_list)}")
    style_paths = []
    for n, item in enumerate(style_list):
        read_upload_image(item, f"style image {n + 1}")
        style_paths.append(str(checked_upload(item, f"style image {n + 1}", (".png", ".jpg", ".jpeg", ".webp",
                                                                              ".bmp"))))
    second_paths = None
    if second_styles:
        second_paths = []
        for n, item in enumerate(list(second_styles)[:16]):
            read_upload_image(item, f"second style image {n + 1}")
            second_paths.append(str(checked_upload(item, f"second style image {n + 1}",
                                                   (".png", ".jpg", ".jpeg", ".webp", ".bmp"))))
    steps = int_in(steps, "interpolation steps", 2, 12)
    out = ctx.output_dir() / "translation.png"
    translate_files(str(run.path), str(content_path), style_paths, str(out), second_paths, steps, ctx.device)
    with Image.open(out) as written:
        return np.asarray(written.convert("RGB"))  # [rows * (S + 2) + 2, columns * (S + 2) + 2, 3]


def add_coco_funit_tab(ctx: AppContext, train_args: list[str] | None = None) -> None:
    import gradio as gr

    gr.Markdown("Few-shot translation: the content image's pose in the appearance of the class shown by the "
                "style images (their style codes are averaged). Add images of a second class to see the style "
                "code interpolated between the two.")
    picker = add_run_picker(ctx, "coco_funit", train_args)
    with gr.Row():
        content = gr.File(label="content image", elem_id="coco_funit-content")
        styles = gr.File(label="style images (one class)", file_count="multiple", elem_id="coco_funit-styles")
        second = gr.File(label="second class (optional)", file_count="multiple", elem_id="coco_funit-second")
    steps = gr.Slider(2, 12, value=5, step=1, label="interpolation steps")
    button = gr.Button("Translate", variant="primary", elem_id="coco_funit-run")
    result = gr.Image(label="content | styles | translation", elem_id="coco_funit-result", interactive=False, format="png")

    @page_errors
    def translate(run_id, content_file, style_files, second_files, n):
        return coco_funit_translate(ctx, run_id, content_file, style_files, second_files, n)

    button.click(translate, [picker, content, styles, second, steps], result, api_name="coco_funit")


# ---- wsod ------------------------------------------------------------------------------------------
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def _wsod_classes(cfg: Any, system: Any) -> tuple[str, ...]:
    from imaginate.data.scenes import SCENE_CLASSES

    if cfg.data.name == "scenes":
        return SCENE_CLASSES
    if cfg.data.name == "voc":
        return tuple(cfg.data.classes)
    return tuple(system.test_split.classes)


@torch.no_grad()
def wsod_detect(ctx: AppContext, run_id: str | None, upload: Any, threshold: Any = 0.3
                ) -> tuple[np.ndarray, list[list[Any]]]:
    """Boxes with scores on an uploaded image: ``(picture with boxes [H, W, 3] uint8, rows [class, score, box])``."""
    from PIL import Image, ImageDraw

    from imaginate.data.detection import preprocess_proposals
    from imaginate.engine.images import to_uint8
    from imaginate.systems.wsod.inference import detect
    from imaginate.systems.wsod.proposals import ProposalParams, compute_proposals
    from imaginate.systems.wsod.system import normalize

    _, cfg, system = load_system(ctx, "wsod", run_id)
    threshold = float(threshold) if threshold is not None else 0.3
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"score threshold: must lie in 0..1, got {threshold}")
    image = read_upload_image(upload, "image")  # [3, H, W]
    side = cfg.data.image_size if cfg.data.name == "scenes" else 600
    scale = side / max(image.shape[-2:])
    if abs(scale - 1) > 1e-3:
        size = (max(8, round(image.shape[1] * scale)), max(8, round(image.shape[2] * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    pixels = to_uint8(image.clamp(0, 1))  # [H, W, 3]
    boxes = compute_proposals(pixels, cfg.data.proposal_method, ProposalParams(max_proposals=cfg.data.max_proposals))
    boxes = preprocess_proposals(boxes, pixels.shape[1], pixels.shape[0], 2.0, False)
    if boxes.shape[0] == 0:
        raise InputError("image: too small to propose any box")
    dev = system.ctx.device
    found = detect(system.net.module if hasattr(system.net, "module") else system.net, [normalize(image).to(dev)],
                   [boxes.to(dev)], system.inference_config())[0]
    names = _wsod_classes(cfg, system)
    keep = found["scores"] > threshold
    if not bool(keep.any()) and len(found["scores"]):
        keep[found["scores"].argmax()] = True  # always show the best one
    canvas_scale = max(1, 384 // max(pixels.shape[:2]))
    canvas = Image.fromarray(pixels).resize((pixels.shape[1] * canvas_scale, pixels.shape[0] * canvas_scale))
    draw = ImageDraw.Draw(canvas)
    rows = []
    for box, score, label in zip(found["boxes"][keep].tolist(), found["scores"][keep].tolist(),
                                 found["labels"][keep].tolist()):
        color = PALETTE[label % len(PALETTE)]
        draw.rectangle([v * canvas_scale for v in box], outline=color, width=2)
        draw.text((box[0] * canvas_scale + 2, box[1] * canvas_scale + 1), f"{names[label]} {score:.2f}", fill=color)
        rows.append([names[label], round(score, 3), [round(v / scale, 1) for v in box]])
    return np.asarray(canvas), rows


def add_wsod_tab(ctx: AppContext, train_args: list[str] | None = None) -> None:
    import gradio as gr

    gr.Markdown("Weakly supervised detection: proposals are computed for the uploaded image, the run's detector "
                "scores them (refinement branches averaged, per-class NMS). Boxes are in the uploaded image's pixels.")
    picker = add_run_picker(ctx, "wsod", train_args)
    with gr.Row():
        upload = gr.File(label="image (PNG / JPEG)", elem_id="wsod-upload")
        threshold = gr.Slider(0, 1, value=0.3, step=0.05, label="score threshold")
    button = gr.Button("Detect", variant="primary", elem_id="wsod-run")
    with gr.Row():
        picture = gr.Image(label="detections", elem_id="wsod-picture", interactive=False, format="png")
        table = gr.Dataframe(headers=["class", "score", "box (x1, y1, x2, y2)"], label="boxes",
                             elem_id="wsod-table", interactive=False)

    @page_errors
    def detect_boxes(run_id, file, thresh):
        image, rows = wsod_detect(ctx, run_id, file, thresh)
        return image, [[c, s, str(b)] for c, s, b in rows]

    button.click(detect_boxes, [picker, upload, threshold], [picture, table], api_name="wsod")
