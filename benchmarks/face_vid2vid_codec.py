"""Rate-distortion of the face-vid2vid keypoint codec against libx264, at 64x64 and 256x256.

    python benchmarks/face_vid2vid_codec.py --checkpoint runs/face_vid2vid-tiny [--checkpoint-256 RUN]

Clips: held-out procedural identities (``IDENTITY_SPLIT.test``), ``--frames`` frames at 30 fps each.
Keypoint codec: ``encode_video`` / ``decode_video`` over a quantiser sweep; the stream's whole file
(header, the source frame (WebP by default), per-frame chunks with their checksums) is counted; distortion is the
model's reconstruction from the DECODED stream against the original frame. libx264: PyAV, no
container, ``tune=zerolatency``, no B-frames, one I-frame, over a CRF sweep; the coded packets'
bytes are counted. Quality: per-frame PSNR and SSIM, averaged over frames and clips.

At 256x256 without a 256-px run, the keypoint codec runs the 64-px model on the downscaled clip and
its output is upscaled (bicubic) to 256: a low-resolution receiver, labelled as such. Speed: encode /
decode frames per second on one CPU thread (64 px: the trained run; 256 px: the same network widths
at 256 px with untrained weights, where speed does not depend on training).

Writes docs/results/face_vid2vid_codec.md, .json and _rd.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imaginate.data.heads import IDENTITY_SPLIT, head_clip  # noqa: E402
from imaginate.engine.video import h264_crf_sweep  # noqa: E402
from imaginate.metrics.image_quality import psnr, ssim  # noqa: E402
from imaginate.systems.face_vid2vid.codec import (  # noqa: E402
    CodecSettings,
    decode_image,
    decode_parameters,
    decode_video,
    encode_image,
    encode_parameters,
    encode_video,
)

FPS = 30.0
QSTEPS = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
CRFS = [10, 16, 22, 28, 34, 40, 46, 51]
PRESETS = ["veryfast", "medium"]
CLIP_SEED_BASE = 900
STRIP_QSTEP = 0.5  # the keypoint-codec point shown in the picture strips
STRIPS: dict[tuple, torch.Tensor] = {}  # decoded frames of the first clip, for the strips


def strip_frames(count: int) -> list[int]:
    return [round(i * (count - 1) / 4) for i in range(5)]


def size_of(frames: torch.Tensor) -> int:
    return int(frames.shape[-1])


MIN_OVERLAP = {"psnr": 0.5, "ssim": 0.01}  # the quality range two curves must share for a BD-rate
CHUNK = 8  # the alternative packetisation: 8 frames per checksummed chunk (267 ms of latency at 30 fps)


def quality(decoded: torch.Tensor, original: torch.Tensor) -> tuple[float, float]:
    """Mean per-frame PSNR (dB) and SSIM of ``[T, 3, H, W]`` frames."""
    return float(psnr(decoded, original).mean()), float(ssim(decoded, original).mean())


def upscale(frames: torch.Tensor, size: int) -> torch.Tensor:
    if frames.shape[-1] == size:
        return frames
    return F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def downscale(frames: torch.Tensor, size: int) -> torch.Tensor:
    if frames.shape[-1] == size:
        return frames
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def kbps(num_bytes: float, frames: int) -> float:
    return num_bytes * 8 / (frames / FPS) / 1000


def keypoint_curve(model, clips: list[torch.Tensor], size: int, image_codec: str, image_quality: int) -> dict:
    """Rows per qstep, plus the model's ceiling (no coding) and the frozen-source baseline."""
    model_size = model.config.image_size
    rows = []
    for qstep in QSTEPS:
        total, total_grouped, source_bytes, scores = 0, 0, 0, []
        for frames in clips:
            small = downscale(frames, model_size)
            data, table = encode_video(model, small, CodecSettings(qstep=qstep, image_codec=image_codec,
                                                                   image_quality=image_quality, fps=FPS))
            decoded, stream = decode_video(model, data)
            total += len(data)
            grouped, _ = encode_parameters(stream.values, stream.header.num_keypoints,
                                           CodecSettings(qstep=qstep, image_codec=image_codec, fps=FPS,
                                                         frames_per_chunk=CHUNK), model_size, model_size,
                                           sources=stream.sources)
            assert np.array_equal(decode_parameters(grouped).symbols, stream.symbols)
            total_grouped += len(grouped)
            source_bytes += sum(r.num_bytes for r in table if r.kind == "source")
            scores.append(quality(upscale(decoded, size), frames))
            if frames is clips[0] and qstep == STRIP_QSTEP:
                STRIPS[(size, "keypoint")] = upscale(decoded, size)[strip_frames(len(frames))]
        count = sum(len(c) for c in clips)
        rows.append({"qstep": qstep, "kbps": kbps(total, count), "kbps_chunked": kbps(total_grouped, count),
                     "source_kbps": kbps(source_bytes, count),
                     "param_kbps": kbps(total - source_bytes, count),
                     "bits_per_frame_params": (total - source_bytes) * 8 / count,
                     "psnr": float(np.mean([s[0] for s in scores])), "ssim": float(np.mean([s[1] for s in scores]))})
    ceiling, frozen, frozen_bytes = [], [], 0
    with torch.no_grad():
        for frames in clips:
            small = downscale(frames, model_size)
            source = small[:1]
            source_motion = model.estimate_motion(source)
            outputs = []
            for start in range(0, len(small), 16):
                batch = small[start:start + 16]
                repeat = type(source_motion)(*(f.expand(len(batch), *f.shape[1:]) for f in source_motion))
                outputs.append(model.animate(source.expand(len(batch), -1, -1, -1), repeat,
                                             model.estimate_motion(batch)).clamp(0, 1))
            ceiling.append(quality(upscale(torch.cat(outputs), size), frames))
            image = encode_image(frames[0], image_codec, image_quality)
            frozen_bytes += len(image)
            held = decode_image(image, image_codec)[None].expand_as(frames)
            frozen.append(quality(held, frames))
    count = sum(len(c) for c in clips)
    return {"rows": rows, "ceiling": {"psnr": float(np.mean([c[0] for c in ceiling])),
                                      "ssim": float(np.mean([c[1] for c in ceiling]))},
            "frozen": {"kbps": kbps(frozen_bytes, count), "psnr": float(np.mean([f[0] for f in frozen])),
                       "ssim": float(np.mean([f[1] for f in frozen]))}}


def h264_curve(clips: list[torch.Tensor], preset: str) -> list[dict]:
    rows = []
    for crf in CRFS:
        total, scores = 0, []
        for frames in clips:
            [(_, payload, decoded)] = h264_crf_sweep(frames, [crf], preset=preset, fps=FPS)
            total += payload
            scores.append(quality(decoded, frames))
            if frames is clips[0]:
                STRIPS[(size_of(frames), preset, crf)] = decoded[strip_frames(len(frames))]
        count = sum(len(c) for c in clips)
        rows.append({"crf": crf, "kbps": kbps(total, count), "psnr": float(np.mean([s[0] for s in scores])),
                     "ssim": float(np.mean([s[1] for s in scores]))})
    return rows


def _monotone(rows: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log10 rate) of the Pareto front, by rising quality: a point is dropped when another point
    has at least its quality at no more bits (x264 at CRF 51 can cost more than at CRF 46 at 64 px)."""
    kept: list[tuple[float, float]] = []
    for q, lr in sorted(((r[metric], math.log10(r["kbps"])) for r in rows), reverse=True):
        if not kept or lr < kept[-1][1]:
            kept.append((q, lr))
    kept.reverse()
    return np.array([p[0] for p in kept]), np.array([p[1] for p in kept])


def rate_at(rows: list[dict], metric: str, target: float) -> float | None:
    """The rate (kbps) a curve needs for ``target`` quality (log-rate linear in quality), None outside its range."""
    q, lr = _monotone(rows, metric)
    if len(q) == 0 or target < q[0] or target > q[-1]:
        return None
    return float(10 ** np.interp(target, q, lr))


def bd_rate(test: list[dict], anchor: list[dict], metric: str) -> float | None:
    """Bjontegaard delta rate (%) of ``test`` vs ``anchor``: cubic fits of log-rate against quality,
    integrated over the overlapping quality range; None when they share less than MIN_OVERLAP."""
    qt, rt = _monotone(test, metric)
    qa, ra = _monotone(anchor, metric)
    low, high = max(qt.min(), qa.min()), min(qt.max(), qa.max())
    if len(qt) < 2 or len(qa) < 2 or high - low < MIN_OVERLAP[metric]:
        return None  # a fit over a sliver of quality extrapolates wildly: no number rather than a wrong one

    def mean_log_rate(q: np.ndarray, r: np.ndarray) -> float:
        degree = min(3, len(q) - 1)
        poly = np.polyint(np.polyfit(q, r, degree))
        return (np.polyval(poly, high) - np.polyval(poly, low)) / (high - low)

    return float((10 ** (mean_log_rate(qt, rt) - mean_log_rate(qa, ra)) - 1) * 100)


def speed(model, size: int, frames: int = 8, repeats: int = 2) -> dict:
    """Encode / decode frames per second of one ``frames``-frame clip (one thread, best of ``repeats``)."""
    clip = head_clip(IDENTITY_SPLIT.test[0], CLIP_SEED_BASE, frames, size).frames
    settings = CodecSettings(qstep=0.5, fps=FPS)
    encode_times, decode_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        data, _ = encode_video(model, clip, settings)
        encode_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        decode_video(model, data)
        decode_times.append(time.perf_counter() - start)
    return {"encode_fps": frames / min(encode_times), "decode_fps": frames / min(decode_times), "frames": frames}


def save_strips(results: dict, clips: dict[int, torch.Tensor], out: Path) -> None:
    """Per resolution: original | keypoint codec (qstep STRIP_QSTEP) | x264 veryfast at the nearest rate (rows)."""
    from torchvision.utils import save_image

    for size, res in results["resolutions"].items():
        point = next(r for r in res["keypoint"]["rows"] if r["qstep"] == STRIP_QSTEP)
        crf = min(res["h264"]["veryfast"], key=lambda r: abs(math.log(r["kbps"] / point["kbps"])))["crf"]
        res["strip"] = {"keypoint_kbps": point["kbps"], "x264_crf": crf,
                        "x264_kbps": next(r["kbps"] for r in res["h264"]["veryfast"] if r["crf"] == crf)}
        rows = [clips[size][strip_frames(len(clips[size]))], STRIPS[(size, "keypoint")], STRIPS[(size, "veryfast", crf)]]
        grid = torch.cat(rows)
        if size < 128:  # small frames shown twice as large (nearest neighbour: the pixels as coded)
            grid = F.interpolate(grid, scale_factor=2, mode="nearest")
        save_image(grid, out / f"face_vid2vid_codec_strip_{size}.png", nrow=5, padding=2, pad_value=1.0)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results["resolutions"])
    fig, axes = plt.subplots(2, len(sizes), figsize=(5.5 * len(sizes), 8), squeeze=False)
    for column, size in enumerate(sizes):
        res = results["resolutions"][size]
        for row, metric in enumerate(("psnr", "ssim")):
            ax = axes[row][column]
            kp = res["keypoint"]["rows"]
            ax.plot([r["kbps"] for r in kp], [r[metric] for r in kp], "o-", label=f"keypoint codec ({res['kp_label']})")
            for preset, rows in res["h264"].items():
                ax.plot([r["kbps"] for r in rows], [r[metric] for r in rows], "s--", label=f"libx264 {preset}")
            frozen = res["keypoint"]["frozen"]
            ax.plot([frozen["kbps"]], [frozen[metric]], "k*", markersize=10, label="first frame only")
            ax.axhline(res["keypoint"]["ceiling"][metric], color="grey", lw=0.8, ls=":", label="model, no coding")
            ax.set_xscale("log")
            ax.set_xlabel("kbps at 30 fps (source frame included)")
            ax.set_ylabel(metric.upper())
            ax.set_title(f"{size}x{size}, {results['frames']} frames x {results['num_clips']} clips")
            ax.grid(alpha=0.3)
            if row == 0 and column == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(value: float | None, spec: str = ".2f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def _rate(fps: float) -> str:
    """Frames per second, with seconds per frame when under one."""
    return f"{fps:.1f}" if fps >= 1 else f"{fps:.3f} ({1 / fps:.1f} s/frame)"


def write_markdown(results: dict, path: Path) -> None:
    lines = ["# face-vid2vid keypoint codec vs H.264", "",
             "Written by `benchmarks/face_vid2vid_codec.py`; do not edit by hand.", "",
             f"Clips: {results['num_clips']} held-out procedural identities (test seeds "
             f"{results['identities']}), {results['frames']} frames each at 30 fps "
             f"({results['frames'] / FPS:.1f} s). Model run: `{results['checkpoint']}` at step {results['step']} "
             f"({results['model_size']} px, K={results['num_keypoints']}). Rates are kbps at 30 fps and count "
             "everything a receiver needs: for the keypoint codec the whole `.fv2v` file (40-byte header, the "
             "source frame (coded as stated below), per-frame chunks with length, tag and CRC-16), for libx264 the coded packets "
             "(no container; SPS/PPS and the one I-frame included; `tune=zerolatency`, no B-frames). "
             "Quality: per-frame PSNR / SSIM against the original frames, averaged. The source frame's bits "
             "are amortised over this clip length only: a longer call would lower the keypoint codec's rate. "
             "The keypoint codec's main numbers send every frame in its own chunk (one frame of latency: "
             f"4 bytes for a frame without motion, i.e. a floor near 1 kbps); the {CHUNK}-frame-chunk column codes the same "
             "decoded values with 8 frames per chunk (same quality, less framing, 267 ms more latency). "
             "Motion kbps and bits/frame exclude the source frame; the comparison uses the per-frame-chunk rates.", ""]
    for size, res in results["resolutions"].items():
        kp = res["keypoint"]
        lines += [f"## {size}x{size}", "", f"Keypoint codec: {res['kp_label']}; source frame {results['image_codec']}.", "",
                  f"| qstep (deg) | kbps | kbps, {CHUNK}-frame chunks | source kbps | motion kbps | motion bits/frame | PSNR | SSIM |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in kp["rows"]:
            lines.append(f"| {r['qstep']:g} | {r['kbps']:.2f} | {r['kbps_chunked']:.2f} | {r['source_kbps']:.2f} | {r['param_kbps']:.2f} | "
                         f"{r['bits_per_frame_params']:.0f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
        lines += ["", f"Model with uncoded motion and source (the codec's ceiling): PSNR {kp['ceiling']['psnr']:.2f}, "
                  f"SSIM {kp['ceiling']['ssim']:.4f}. Sending only the first frame (same image codec) and holding it: "
                  f"{kp['frozen']['kbps']:.2f} kbps, PSNR {kp['frozen']['psnr']:.2f}, SSIM {kp['frozen']['ssim']:.4f}.", ""]
        for preset, rows in res["h264"].items():
            lines += [f"libx264 `{preset}`:", "", "| CRF | kbps | PSNR | SSIM |", "|---:|---:|---:|---:|"]
            lines += [f"| {r['crf']} | {r['kbps']:.2f} | {r['psnr']:.2f} | {r['ssim']:.4f} |" for r in rows]
            lines.append("")
        lines += ["Comparison (keypoint codec vs libx264): BD-rate over the overlapping quality range (negative: "
                  "the keypoint codec needs fewer bits; computed only when the curves share at least "
                  f"{MIN_OVERLAP['psnr']} dB PSNR / {MIN_OVERLAP['ssim']} SSIM), and at the keypoint codec's best point the ratio of its "
                  "rate to the rate x264 needs for the same quality (the paper: about 1/10).", "",
                  "| x264 preset | metric | BD-rate | keypoint best quality | its kbps | x264 kbps at that quality | ratio |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for preset, comp in res["comparison"].items():
            for metric, c in comp.items():
                lines.append(f"| {preset} | {metric.upper()} | {_fmt(c['bd_rate'], '+.1f', 'overlap too small')}"
                             f"{'%' if c['bd_rate'] is not None else ''} | {c['best_quality']:.4g} | "
                             f"{c['best_kbps']:.2f} | {_fmt(c['x264_kbps'], '.2f', c['x264_note'])} | "
                             f"{_fmt(c['ratio'], '.3f', '-')} |")
        lines.append("")
    lines += ["## Speed (CPU, one thread, machine shared with other jobs)", "",
              "| resolution | model | encode frames/s | decode frames/s |", "|---|---|---:|---:|"]
    for row in results["speed"]:
        lines.append(f"| {row['size']}x{row['size']} | {row['model']} | {_rate(row['encode_fps'])} | "
                     f"{_rate(row['decode_fps'])} |")
    lines += ["", "Encode = motion estimation of every frame + quantisation + entropy coding (+ the source image); "
              "decode = parsing + one synthesis per frame. The entropy coder alone runs at thousands of frames/s "
              "(tests/face_vid2vid/test_codec.py exercises it); the networks dominate.", "",
              "![rate-distortion](face_vid2vid_codec_rd.png)", ""]
    for size, res in results["resolutions"].items():
        strip = res["strip"]
        lines += [f"{size}x{size}{' (shown at 2x)' if size < 128 else ''}: rows original, keypoint codec at qstep "
                  f"{STRIP_QSTEP:g} ({strip['keypoint_kbps']:.2f} kbps), libx264 veryfast CRF {strip['x264_crf']} "
                  f"({strip['x264_kbps']:.2f} kbps, the nearest rate); frames 0, 1/4, 1/2, 3/4 and the last of the "
                  "first clip.", "", f"![strip {size}](face_vid2vid_codec_strip_{size}.png)", ""]
    lines += ["## Verdict", ""]
    lines += results["verdict"]
    path.write_text("\n".join(lines) + "\n")


def verdict(results: dict) -> list[str]:
    out = []
    for size, res in results["resolutions"].items():
        for preset, comp in res["comparison"].items():
            c = comp["psnr"]
            if c["ratio"] is not None:
                out.append(f"- {size}x{size}, x264 `{preset}`, PSNR: at the keypoint codec's best point "
                           f"({c['best_quality']:.2f} dB, {c['best_kbps']:.2f} kbps) x264 needs {c['x264_kbps']:.2f} "
                           f"kbps: ratio {c['ratio']:.3f} ({'within' if c['ratio'] <= 0.1 else 'short of'} the paper's 1/10).")
            else:
                out.append(f"- {size}x{size}, x264 `{preset}`, PSNR: no equal-quality point "
                           f"({c['x264_note']}; keypoint codec best {c['best_quality']:.2f} dB at {c['best_kbps']:.2f} kbps).")
    for size, res in results["resolutions"].items():
        kp, frozen = res["keypoint"], res["keypoint"]["frozen"]
        best = max(r["psnr"] for r in kp["rows"])
        if frozen["psnr"] >= best:
            out.append(f"- {size}x{size}: holding the first frame ({frozen['kbps']:.2f} kbps) scores {frozen['psnr']:.2f} dB, "
                       f"above the keypoint codec's best {best:.2f} dB (model ceiling {kp['ceiling']['psnr']:.2f} dB): "
                       "this model's reconstructions are not yet better than a still picture.")
    ratios = [c["psnr"]["ratio"] for res in results["resolutions"].values() for c in res["comparison"].values()]
    held = any(r is not None and r <= 0.1 for r in ratios)
    out.append(f"- The paper's claim (H.264 quality at 1/10 of its bit rate) {'held' if held else 'did not reproduce'} "
               f"here with the run `{results['checkpoint']}` at step {results['step']}. The keypoint codec's quality is "
               "capped by the model (the dotted ceiling); the paper's model was trained at 256 px on real faces, this is "
               "a CPU-sized model trained briefly on procedural heads, so the rate side (a few kbps including the "
               "source frame) is the part of the comparison that transfers.")
    return out


def compare(kp_rows: list[dict], h264_rows: list[dict]) -> dict:
    comp = {}
    for metric in ("psnr", "ssim"):
        best = max(kp_rows, key=lambda r: r[metric])
        x264 = rate_at(h264_rows, metric, best[metric])
        front_quality, front_rate = _monotone(h264_rows, metric)
        note = (f"below x264's lowest ({front_quality[0]:.4g} at {10 ** front_rate[0]:.2f} kbps)"
                if best[metric] < front_quality[0] else "above x264's range")
        comp[metric] = {"bd_rate": bd_rate(kp_rows, h264_rows, metric), "best_quality": best[metric],
                        "best_kbps": best["kbps"], "x264_kbps": x264, "ratio": None if x264 is None else best["kbps"] / x264,
                        "x264_note": "" if x264 is not None else note}
    return comp


def load_trained(run_dir: str) -> tuple[torch.nn.Module, int]:
    """(the run's face-vid2vid model in eval mode on the CPU, the step of its newest checkpoint)."""
    from imaginate.engine import load_run

    spec, _, system, step = load_run(Path(run_dir), device="cpu")
    if spec.name != "face_vid2vid" or not hasattr(system.model, "estimate_motion"):
        raise SystemExit(f"{run_dir}: not a face_vid2vid (fv2v) run")
    return system.model.eval().requires_grad_(False), step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="runs/face_vid2vid-tiny", help="a trained 64-px face_vid2vid run")
    parser.add_argument("--checkpoint-256", default=None, help="a trained 256-px run (else the 64-px model upscaled)")
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--image-codec", default="webp", help="source frame codec: webp | jpeg | h264")
    parser.add_argument("--image-quality", type=int, default=75, help="quality of the source frame (1..100)")
    parser.add_argument("--from-json", action="store_true",
                        help="rewrite the report and plot from OUT/face_vid2vid_codec.json (no measuring)")
    parser.add_argument("--skip-paper-speed", action="store_true", help="skip timing the paper-size model (~1 min)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.from_json:
        out = Path(args.out)
        results = json.loads((out / "face_vid2vid_codec.json").read_text())
        results["resolutions"] = {int(size): res for size, res in results["resolutions"].items()}
        for res in results["resolutions"].values():
            res["comparison"] = {preset: compare(res["keypoint"]["rows"], rows) for preset, rows in res["h264"].items()}
        results["verdict"] = verdict(results)
        plot(results, out / "face_vid2vid_codec_rd.png")
        (out / "face_vid2vid_codec.json").write_text(json.dumps(results, indent=1))
        write_markdown(results, out / "face_vid2vid_codec.md")
        return
    from imaginate.systems.face_vid2vid.model import FaceModelConfig, build_model

    model, step = load_trained(args.checkpoint)
    model_256, step_256 = load_trained(args.checkpoint_256) if args.checkpoint_256 else (None, None)
    identities = [IDENTITY_SPLIT.test[i] for i in range(args.clips)]
    results = {"checkpoint": args.checkpoint, "step": step, "checkpoint_256": args.checkpoint_256,
               "step_256": step_256, "image_codec": f"{args.image_codec} quality {args.image_quality}", "model_size": model.config.image_size,
               "num_keypoints": model.config.num_keypoints, "frames": args.frames, "num_clips": args.clips,
               "identities": identities, "resolutions": {}, "speed": []}
    first_clips = {}
    for size in (64, 256):
        start = time.time()
        clips = [head_clip(seed, CLIP_SEED_BASE + i, args.frames, size).frames for i, seed in enumerate(identities)]
        use = model_256 if size == 256 and model_256 is not None else model
        label = (f"{use.config.image_size}-px model" if use.config.image_size == size else
                 f"{use.config.image_size}-px model on the downscaled clip, output upscaled bicubic to {size}")
        res = {"kp_label": label, "keypoint": keypoint_curve(use, clips, size, args.image_codec, args.image_quality),
               "h264": {preset: h264_curve(clips, preset) for preset in PRESETS}}
        res["comparison"] = {preset: compare(res["keypoint"]["rows"], rows) for preset, rows in res["h264"].items()}
        results["resolutions"][size] = res
        first_clips[size] = clips[0]
        print(f"{size}px done in {time.time() - start:.0f}s", flush=True)
    results["speed"].append({"size": 64, "model": f"trained run ({model.config.image_size} px)", **speed(model, 64)})
    wide = build_model(FaceModelConfig(**{**model.config.__dict__, "image_size": 256})).eval()
    results["speed"].append({"size": 256, "model": "same widths at 256 px (untrained)", **speed(wide, 256, 4)})
    if not args.skip_paper_speed:
        from omegaconf import OmegaConf

        paper_cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "face_vid2vid" / "paper.yaml").model)
        paper = build_model(FaceModelConfig(**paper_cfg)).eval()
        millions = sum(p.numel() for p in paper.parameters()) / 1e6
        results["speed"].append({"size": 256, "model": f"`paper` preset sizes, {millions:.0f} M parameters (untrained)",
                                 **speed(paper, 256, 1, repeats=1)})
        del paper
    results["verdict"] = verdict(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "face_vid2vid_codec_rd.png")
    save_strips(results, first_clips, out)
    (out / "face_vid2vid_codec.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, out / "face_vid2vid_codec.md")
    print("\n".join(results["verdict"]))


if __name__ == "__main__":
    main()
