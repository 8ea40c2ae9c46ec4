"""Peak memory and time of plain vs sequential ROI back-propagation -> docs/results/wsod_memory.{md,png}.

wetectron's sequential batch back-propagation (``imaginate.systems.wsod.sequential``) claims exact
gradients with the neck's activation memory bounded by the chunk size. One training iteration (one
image, a VGG16-like stride-8 backbone stand-in, ROIAlign 7x7, fc6/fc7 with ReLU and dropout, a WSDDN
head) is measured for each number of proposals and each path, every measurement in a fresh
subprocess so that one cannot inherit another's allocator state. Memory, three ways:

* saved-for-backward: peak bytes of activations held by autograd (``SavedTensorMeter``,
  parameters excluded): the quantity sequential back-propagation bounds;
* process peak RSS delta (CPU): Linux peak RSS (VmHWM, reset through /proc/self/clear_refs after
  the setup; ``ru_maxrss`` when that is not possible) minus the RSS before the iteration: everything
  the iteration allocated at its peak, gradients and transient buffers included;
* on CUDA, ``torch.cuda.max_memory_allocated`` minus the memory allocated before the iteration.

    python benchmarks/wsod_memory.py            # ~4 min on 2 CPU cores
    python benchmarks/wsod_memory.py --quick    # 2 sizes, tiny model (smoke test)
    python benchmarks/wsod_memory.py --device cuda --width 1 --neck-dim 4096 --image-size 480
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
MIB = 2**20
NUM_CLASSES = 20
# VGG16 with pool4 removed and conv5 dilated (stride 8); numbers are channels at width 1, "M" a 2x2 pool
VGG16_STRIDE8 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "d512", "d512", "d512"]


def build(width: float, neck_dim: int):
    import torch.nn.functional as F
    from torch import nn
    from torchvision.ops import roi_align

    layers, channels = [], 3
    for spec in VGG16_STRIDE8:
        if spec == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        dilation = 2 if str(spec).startswith("d") else 1
        out = max(8, round(int(str(spec).lstrip("d")) * width))
        layers += [nn.Conv2d(channels, out, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
        channels = out
    backbone = nn.Sequential(*layers)
    fc6, fc7 = nn.Linear(channels * 49, neck_dim), nn.Linear(neck_dim, neck_dim)
    cls, det = nn.Linear(neck_dim, NUM_CLASSES + 1), nn.Linear(neck_dim, NUM_CLASSES + 1)
    model = nn.ModuleDict({"backbone": backbone, "fc6": fc6, "fc7": fc7, "cls": cls, "det": det}).train()

    def neck(feature_map, rois):  # [1, C, H/8, W/8], [r, 5] -> [r, D]
        pooled = roi_align(feature_map, rois, 7, spatial_scale=1 / 8, sampling_ratio=2, aligned=True)
        hidden = F.dropout(F.relu(fc6(pooled.flatten(1))), 0.5, True)
        return F.dropout(F.relu(fc7(hidden)), 0.5, True)

    def head_loss(neck_out, tags):  # WSDDN over the image's ROIs
        scores = F.softmax(cls(neck_out), dim=1) * F.softmax(det(neck_out), dim=0)
        return F.binary_cross_entropy(scores.sum(0).clamp(1e-8, 1 - 1e-8), tags)

    return model, neck, head_loss


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: VmHWM := VmRSS
        return _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024
    except OSError:
        return False


def worker(job: dict) -> dict:
    """One measurement (fresh process): iteration 1 measured for memory, the next ones timed."""
    import torch

    from imaginate.systems.wsod.sequential import (
        SavedTensorMeter,
        plain_roi_backward,
        sequential_roi_backward,
    )

    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job["device"])
    model, neck, head_loss = build(job["width"], job["neck_dim"])
    model.to(device)
    size, num = job["image_size"], job["proposals"]
    images = torch.rand(1, 3, size, size, device=device)
    xy = torch.rand(num, 2, device=device) * size * 0.8
    wh = torch.rand(num, 2, device=device) * (size - xy).clamp(min=8) + 4
    rois = torch.cat([torch.zeros(num, 1, device=device), xy, (xy + wh).clamp(max=size)], dim=1)
    tags = (torch.rand(NUM_CLASSES + 1, device=device) < 0.2).float()
    sequential = job["path"] == "sequential"
    backward = sequential_roi_backward if sequential else plain_roi_backward
    chunk_size = job["chunk"] if sequential else None

    def iteration() -> None:
        model.zero_grad(set_to_none=False)
        backward(model["backbone"](images), rois, neck, lambda out: head_loss(out, tags), chunk_size)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for param in model.parameters():  # gradient buffers exist before the measured iteration
        param.grad = torch.zeros_like(param)
    result = {**job, "param_mib": sum(p.numel() * p.element_size() for p in model.parameters()) / MIB}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        rss_before = _status_kib("VmRSS")
        hwm_reset = _reset_peak_rss()
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        iteration()
    result["saved_mib"] = meter.peak_bytes / MIB
    if device.type == "cuda":
        result["peak_mib"] = (torch.cuda.max_memory_allocated(device) - before) / MIB
        result["peak_method"] = "cuda max_memory_allocated"
    else:
        if hwm_reset:
            result["peak_mib"] = (_status_kib("VmHWM") - rss_before) / 1024
            result["peak_method"] = "VmHWM after clear_refs"
        else:  # a lower bound when setup peaked above the iteration's peak
            result["peak_mib"] = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before, 0) / 1024
            result["peak_method"] = "ru_maxrss delta (lower bound)"
    times = []
    for _ in range(job["timed_iters"]):
        start = time.perf_counter()
        iteration()
        times.append(time.perf_counter() - start)
    result["seconds"] = min(times)
    return result


def run_job(job: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed for {job}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_results(results: list[dict], settings: dict, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["path"], r["proposals"]): r for r in results}
    sizes = sorted({r["proposals"] for r in results})
    cuda = settings["device"] == "cuda"
    peak_label = "peak allocated delta (MiB)" if cuda else "peak RSS delta (MiB)"
    lines = [
        "# Sequential batch back-propagation: peak memory vs proposals", "",
        "Written by `benchmarks/wsod_memory.py`. One training iteration of one image: "
        f"{settings['backbone']}, ROIAlign 7x7, fc6/fc7 {settings['neck_dim']}-d with ReLU and dropout 0.5, "
        f"a WSDDN head ({NUM_CLASSES} classes). Plain: one forward, one backward. Sequential: "
        f"neck in chunks of {settings['chunk']} ROIs (wetectron; `imaginate.systems.wsod.sequential`), "
        "gradients equal to the plain path's (tests/wsod/test_cdb_sequential.py).", "",
        f"- device: {settings['machine']}",
        f"- image {settings['image_size']}x{settings['image_size']} px, backbone width x{settings['width']}, "
        f"parameters {results[0]['param_mib']:.0f} MiB (float32)",
        "- *saved for backward*: peak of activation storages held by autograd (parameters excluded; "
        "`SavedTensorMeter`, a `saved_tensors_hooks` counter)",
        f"- *{peak_label}*: " + ("`torch.cuda.max_memory_allocated` minus allocated before the iteration"
                                 if cuda else f"{results[0]['peak_method']}, minus the RSS before the iteration "
                                 "(parameters and gradient buffers already allocated); each measurement in a "
                                 "fresh process"),
        f"- time: best of {settings['timed_iters']} iterations after the measured one; CPU load average "
        f"{settings['load_before']:.1f} before the run, {settings['load_after']:.1f} after it"
        + (" (other processes shared the cores: the times are indicative, the memory is not affected)"
           if not cuda and max(settings['load_before'], settings['load_after']) > settings['threads'] + 0.5
           else ""), "",
        "| proposals | saved, plain | saved, sequential | " + peak_label.replace(" (MiB)", "") + ", plain | "
        + peak_label.replace(" (MiB)", "") + ", sequential | s/iter plain | s/iter sequential |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        p, s = by[("plain", n)], by[("sequential", n)]
        lines.append(f"| {n} | {p['saved_mib']:.0f} MiB | {s['saved_mib']:.0f} MiB | {p['peak_mib']:.0f} MiB | "
                     f"{s['peak_mib']:.0f} MiB | {p['seconds']:.2f} | {s['seconds']:.2f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, title in zip(axes, ["saved_mib", "peak_mib", "seconds"],
                              ["saved for backward (MiB)", peak_label, "seconds / iteration"]):
        for path, marker in [("plain", "o"), ("sequential", "s")]:
            ax.plot(sizes, [by[(path, n)][key] for n in sizes], marker=marker, label=path)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_xlabel("proposals")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"plain vs sequential ROI back-propagation ({settings['machine']}, chunk {settings['chunk']})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proposals", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--width", type=float, default=0.5, help="backbone channel multiplier (1 = VGG16)")
    parser.add_argument("--neck-dim", type=int, default=1024, help="fc6/fc7 width (wetectron: 4096)")
    parser.add_argument("--chunk", type=int, default=250, help="ROIs per chunk of the sequential path")
    parser.add_argument("--timed-iters", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="2 sizes, tiny model; writes *_quick.md/png")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.quick:
        args.proposals, args.image_size, args.width, args.neck_dim, args.chunk = [100, 400], 128, 0.125, 256, 100
        args.timed_iters = 1
    import torch

    machine = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
               else f"CPU ({platform.machine()}), {args.threads} threads") + f", torch {torch.__version__}"
    settings = {"device": torch.device(args.device).type, "machine": machine, "image_size": args.image_size,
                "width": args.width, "neck_dim": args.neck_dim, "chunk": args.chunk,
                "timed_iters": args.timed_iters, "threads": args.threads, "load_before": os.getloadavg()[0],
                "backbone": f"VGG16-like stride-8 backbone (pool4 removed, conv5 dilated; width x{args.width})"}
    results = []
    start = time.time()
    for n in args.proposals:
        for path in ("plain", "sequential"):
            job = {"path": path, "proposals": n, "device": args.device, "threads": args.threads,
                   "image_size": args.image_size, "width": args.width, "neck_dim": args.neck_dim,
                   "chunk": args.chunk, "timed_iters": args.timed_iters}
            results.append(run_job(job))
            r = results[-1]
            print(f"{n:5d} {path:10s} saved {r['saved_mib']:8.1f} MiB  peak {r['peak_mib']:8.1f} MiB  "
                  f"{r['seconds']:.2f} s/iter  ({time.time() - start:.0f} s)", flush=True)
    settings["load_after"] = os.getloadavg()[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "wsod_memory_quick" if args.quick else "wsod_memory"
    write_results(results, settings, stem)
    print(f"wrote {RESULTS / stem}.md and .png")


if __name__ == "__main__":
    main()
