"""Peak memory and time of plain vs sequential ROI back-propagation -> docs/results/wsod_memory.{md,png}.

wetectron's sequential batch back-propagation claims exact gradients with the neck's activation memory
bounded by the chunk size. Measured here on the path training takes: ``WSODNet.forward(images,
proposals, neck_chunk_size)`` (``checkpointed_neck``: each chunk of ROIs under non-reentrant
``torch.utils.checkpoint``, recomputed in backward) with the WSDDN + 3 MIST refinement losses and one
``loss.backward()``, against the same network with ``neck_chunk_size=0`` (everything stored). One
image, VGG16 (pool4 removed, conv5 dilated), ROI pooling 7x7, fc6/fc7, the iteration after a warm-up
one, every measurement in a fresh subprocess. Memory, two ways:

* live allocated bytes, the peak over the iteration minus the bytes allocated before it: on CUDA
  ``torch.cuda.max_memory_allocated``; on the CPU the C heap's bytes in use (glibc ``mallinfo2``:
  ``uordblks + hblkhd``, where torch's CPU tensors live) sampled after every ATen op of the forward and
  the backward (a ``TorchDispatchMode``); gradients, recomputed chunks and transient buffers included;
* saved-for-backward: peak bytes autograd holds for backward (``SavedTensorMeter``; parameters
  excluded). Checkpointed chunks save nothing through it and recompute in their own scope, so for the
  sequential path this shows what is kept between forward and backward, not the recomputation peak.

    python benchmarks/wsod_memory.py            # ~6 min on a loaded 2-core machine
    python benchmarks/wsod_memory.py --quick    # 2 sizes, small (smoke test)
    python benchmarks/wsod_memory.py --device cuda --neck-dim 4096 --image-size 480
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
MIB = 2**20
NUM_CLASSES = 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_reader():
    """A function returning the C heap's bytes in use (glibc), or None where mallinfo2 is missing."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None

    def in_use() -> int:
        info = libc.mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return in_use


def _heap_peak_mode(read):
    from torch.utils._python_dispatch import TorchDispatchMode

    class HeapPeak(TorchDispatchMode):
        """Samples the heap after every ATen op (forward and backward) and keeps the largest value."""

        def __init__(self) -> None:
            super().__init__()
            self.peak = read()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.peak = max(self.peak, read())
            return out

    return HeapPeak()


def worker(job: dict) -> dict:
    """One measurement (fresh process): a warm-up iteration, one measured for memory, the next ones timed."""
    import torch

    from imaginate.systems.wsod.losses import mist_pseudo_labels, refinement_losses, wsddn_loss
    from imaginate.systems.wsod.model import WSODModelConfig, WSODNet
    from imaginate.systems.wsod.sequential import SavedTensorMeter

    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job["device"])
    config = WSODModelConfig(num_classes=NUM_CLASSES, backbone="vgg16", neck_dim=job["neck_dim"], roi_op="pool")
    net = WSODNet(config).to(device).train()
    size, num = job["image_size"], job["proposals"]
    images = torch.rand(1, 3, size, size, device=device)
    xy = torch.rand(num, 2, device=device) * size * 0.8
    wh = torch.rand(num, 2, device=device) * (size - xy).clamp(min=8) + 4
    proposals = [torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)]  # [R, 4]
    tags = torch.zeros(1, NUM_CLASSES, device=device)
    tags[0, :3] = 1.0
    chunk = job["chunk"] if job["path"] == "sequential" else 0

    def iteration() -> None:
        outputs = net(images, proposals, neck_chunk_size=chunk)
        loss = wsddn_loss(outputs["image_scores"], tags)
        loss = loss + sum(refinement_losses(outputs, proposals, tags, mist_pseudo_labels).values())
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for param in net.parameters():  # gradient buffers exist before the measured iteration
        param.grad = torch.zeros_like(param)
    iteration()  # warm-up: allocator, thread pools and kernels settle
    result = {**job, "param_mib": sum(p.numel() * p.element_size() for p in net.parameters()) / MIB}
    with SavedTensorMeter(exclude=net.parameters()) as meter:
        iteration()
    result["saved_mib"] = meter.peak_bytes / MIB
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        iteration()
        result["peak_mib"] = (torch.cuda.max_memory_allocated(device) - before) / MIB
        result["peak_method"] = "cuda max_memory_allocated"
    else:
        read = _heap_reader()
        if read is None:
            raise RuntimeError("live CPU bytes need glibc's mallinfo2 (Linux); run with --device cuda elsewhere")
        mode = _heap_peak_mode(read)
        before = read()
        with mode:
            iteration()
        result["peak_mib"] = (mode.peak - before) / MIB
        result["peak_method"] = "heap bytes in use (mallinfo2) after every op"
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
    peak_label = "peak live bytes (MiB)"
    lines = [
        "# Sequential batch back-propagation: peak memory vs proposals", "",
        "Written by `benchmarks/wsod_memory.py`. One training iteration of one image through the path "
        f"training takes (`WSODNet.forward(..., neck_chunk_size)`): {settings['backbone']}, ROI pooling 7x7, "
        f"fc6/fc7 {settings['neck_dim']}-d with ReLU and dropout 0.5, WSDDN + 3 MIST refinement branches "
        f"({NUM_CLASSES} classes), one `loss.backward()`. Plain: `neck_chunk_size=0`, every activation stored. "
        f"Sequential: `checkpointed_neck` in chunks of {settings['chunk']} ROIs, recomputed in backward; its "
        "gradients equal the plain path's to 1e-6 relative in float64 "
        "(tests/wsod/test_wsod_system.py::test_sequential_backprop_gives_the_plain_gradients).", "",
        f"- device: {settings['machine']}",
        f"- image {settings['image_size']}x{settings['image_size']} px, parameters "
        f"{results[0]['param_mib']:.0f} MiB (float32)",
        f"- *{peak_label}*: peak live allocated bytes during the iteration minus those before it (parameters "
        "and gradient buffers already allocated), "
        + ("`torch.cuda.max_memory_allocated`" if cuda else "the C heap's bytes in use (glibc `mallinfo2`) "
           "sampled after every ATen op of forward and backward")
        + "; each measurement in a fresh process, after a warm-up iteration",
        "- *saved for backward*: peak of activation storages autograd holds for backward (parameters excluded; "
        "`SavedTensorMeter`); checkpointed chunks recompute in their own scope, so for the sequential path it "
        "counts what is kept between forward and backward, not the recomputation",
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
    parser.add_argument("--proposals", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--neck-dim", type=int, default=1024, help="fc6/fc7 width (wetectron: 4096)")
    parser.add_argument("--chunk", type=int, default=250, help="ROIs per chunk of the sequential path")
    parser.add_argument("--timed-iters", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="2 sizes, tiny model; writes *_quick.md/png")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.quick:
        args.proposals, args.image_size, args.neck_dim, args.chunk = [100, 400], 96, 256, 100
        args.timed_iters = 1
    import torch

    machine = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
               else f"CPU ({platform.machine()}), {args.threads} threads") + f", torch {torch.__version__}"
    settings = {"device": torch.device(args.device).type, "machine": machine, "image_size": args.image_size,
                "neck_dim": args.neck_dim, "chunk": args.chunk,
                "timed_iters": args.timed_iters, "threads": args.threads, "load_before": os.getloadavg()[0],
                "backbone": "VGG16 (pool4 removed, conv5 dilated, stride 8)"}
    results = []
    start = time.time()
    for n in args.proposals:
        for path in ("plain", "sequential"):
            job = {"path": path, "proposals": n, "device": args.device, "threads": args.threads,
                   "image_size": args.image_size, "neck_dim": args.neck_dim,
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
