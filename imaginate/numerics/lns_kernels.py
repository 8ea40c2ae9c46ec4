"""Fused CPU kernels (C++) of the LNS quantiser and of LNS-Madam's native step, built on first use.

Compiled with ``torch.utils.cpp_extension.load_inline`` (needs g++ and ninja) the first time one is
needed, about 40 s, and cached in torch's extension directory (``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``), keyed by a hash of the source, flags and torch version.

- :func:`lns_quantize_kernel`: :func:`~imaginate.numerics.lns.lns_quantize` with a per-tensor scale
  in one pass (plus a max-abs pass when no scale is given), blocks of 1024 elements over
  ``at::parallel_for``. Round-to-nearest gives the same bits as ``lns_quantize``: its ``log2`` comes
  from a vectorised series accurate to ~1e-7 wherever the exponent is far from a rounding boundary,
  and, for the rare lanes within a safety margin of one (or with subnormal / non-finite ratios), from
  the function torch itself calls (MKL's ``vmsLog2`` in torch's ``VML_HA`` mode where torch uses MKL,
  else ATen's vectorised ``log2``); ``exp2`` is ATen's ``Vectorized::exp2`` (SLEEF, looked up in a
  per-call table of the same values) compiled for the CPU capability torch dispatches to, and glibc's
  scalar ``exp2`` on the elements where torch's kernel takes its scalar tail (the last
  ``len % 16`` of each thread's chunk). A self-check at load time compares ~50k values of four
  formats with ``lns_quantize`` and falls back to PyTorch if a single bit differs.
  Stochastic rounding draws no random tensor: the uniform number of element ``i`` is a counter-based
  hash of ``(seed, i)`` (two rounds of a 32-bit multiply-xorshift hash, 24 bits, for float32;
  splitmix64, 53 bits, for float64), with ``seed`` drawn once per call from torch's generator (the
  one given, or the default): reproducible from ``torch.manual_seed`` / the generator's state,
  unbiased in the log domain like the PyTorch path (up within ``2 ** -24`` of probability ``frac``),
  but a different random stream: equal in distribution, not in bits.
- :func:`lns_madam_native_step`: the native LNS-Madam update of one tensor (moment, normalised
  gradient, rounding, the integer move of the packed sign + code, table decode into the parameter)
  in one loop, with the same float operations in the same order as the multi-tensor path (compiled
  with ``-ffp-contract=off``; the one fused multiply-add of torch's own ``addcmul_`` is written as
  ``fmadd``), so the same bits. The bf16 and lns8 moments round stochastically with 16-bit numbers
  cut from the 64-bit words the multi-tensor step would draw (:func:`random_words`), so they match
  bit for bit too (tests compare codes, moments and parameters).

Fallback: with ``IMAGINATE_NO_KERNELS=1`` in the environment, for CUDA tensors, other dtypes,
per-channel scales, or when the build fails (no compiler, no ninja: one warning line), the callers
use their PyTorch paths. Nothing here hard-codes a device: these are CPU kernels only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from imaginate.numerics.lns import LNSFormat, _check_rounding, lns_quantize
from imaginate.numerics.lns_kernels_src import _CPP

_STATE: dict[str, Any] = {"module": None, "tried": False, "enabled": True}
ENV_OFF = "IMAGINATE_NO_KERNELS"


def kernels_enabled() -> bool:
    """False when ``IMAGINATE_NO_KERNELS`` is set (to anything but "" or "0") or inside ``use_kernels(False)``."""
    return _STATE["enabled"] and os.environ.get(ENV_OFF, "") in ("", "0")


@contextmanager
def use_kernels(enabled: bool) -> Iterator[None]:
    """Inside the block the kernels are used (True, where they apply) or not (False): for A/B timings."""
    before = _STATE["enabled"]
    _STATE["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _STATE["enabled"] = before


def _build_flags() -> tuple[list[str], str]:
    capability = torch.backends.cpu.get_cpu_capability()
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
    if capability == "AVX512":
        flags += ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-DCPU_CAPABILITY_AVX512"]
    elif capability == "AVX2":
        flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2"]
    if torch.backends.mkl.is_available():
        flags.append("-DIMAGINATE_MKL_VML")
    return flags, capability


def _load() -> Any:
    """Compiles (or loads the cached build of) the extension and self-checks it; None on failure."""
    flags, capability = _build_flags()
    digest = hashlib.sha256((_CPP + " ".join(flags) + torch.__version__).encode()).hexdigest()[:12]
    if shutil.which("ninja") is None and os.path.exists(os.path.join(os.path.dirname(sys.executable), "ninja")):
        os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "No CUDA runtime is found" on CPU-only machines: not our concern
    try:
        from torch.utils.cpp_extension import load_inline

        module = load_inline(f"imaginate_lns_kernels_{digest}", cpp_sources=_CPP,
                             functions=["lns_quantize", "lns_madam_step"], extra_cflags=flags, verbose=False)
    finally:
        logger.setLevel(level)
    problem = _self_check(module)
    if problem:
        raise RuntimeError(f"self-check failed ({problem}; CPU capability {capability})")
    return module


def _self_check(module: Any) -> str:
    """'' when nearest rounding equals ``lns_quantize`` bit for bit on test values, else what differs."""
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(50_003, generator=gen, dtype=dtype) * torch.rand(50_003, generator=gen, dtype=dtype) ** 6
        x[::11] = 0.0
        for bits, gamma in ((5, 1), (8, 8), (12, 128), (16, 1024)):
            fmt = LNSFormat(bits, gamma)
            got = module.lns_quantize(x, -1.0, gamma, fmt.max_code, False, 0)
            if not torch.equal(got, lns_quantize(x, fmt)):
                return f"lns{bits}g{gamma} {dtype}"
    return ""


def _module() -> Any:
    if not _STATE["tried"]:
        _STATE["tried"] = True
        try:
            _STATE["module"] = _load()
        except Exception as error:  # no compiler, no ninja, a failed self-check: the PyTorch path
            line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            warnings.warn(f"imaginate: LNS C++ kernels unavailable ({type(error).__name__}: {line[:200]}); "
                          f"using the PyTorch path (set {ENV_OFF}=1 to skip the build)", RuntimeWarning, stacklevel=3)
    return _STATE["module"]


def available() -> bool:
    """Whether the kernels are enabled and built (builds them on the first call)."""
    return kernels_enabled() and _module() is not None


def lns_quantize_kernel(
    x: Tensor,
    fmt: LNSFormat,
    scale: Tensor | None = None,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> Tensor | None:
    """:func:`~imaginate.numerics.lns.lns_quantize` in one fused pass, or None where the kernel does not apply.

    Args:
        x: floating tensor, any shape (the kernel takes float32/float64 CPU tensors).
        fmt: the LNS format (per-channel formats: None).
        scale: a 0-dim scale; None: the max-abs of ``x`` (computed inside the kernel).
        rounding: "nearest" (bit-identical to ``lns_quantize``) or "stochastic" (counter-based random numbers
            seeded by one draw from ``generator``).
        generator: CPU generator for stochastic rounding; None: torch's default generator.

    Returns:
        The quantised tensor (``x``'s shape and dtype, no gradient), or None: use the PyTorch path.
    """
    _check_rounding(rounding)
    if (x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or fmt.per_channel
            or x.numel() == 0 or (scale is not None and (scale.dim() > 0 or scale.device.type != "cpu"))
            or not kernels_enabled()):
        return None
    if rounding == "nearest" and not x.is_contiguous():  # torch rounds a strided tensor's exp2 with another
        return None  # vector / scalar split (ISA-dependent), which nearest rounding could not match bit for bit
    module = _module()
    if module is None:
        return None
    seed = 0
    if rounding == "stochastic":
        if generator is not None and generator.device.type != x.device.type:
            raise ValueError(f"generator: on {generator.device} but the tensor is on {x.device}")
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator))  # one draw per call
    value = -1.0 if scale is None else float(scale.to(x.dtype))
    out = module.lns_quantize(x.detach().contiguous(), value, fmt.gamma, fmt.max_code, rounding == "stochastic", seed)
    return out.view(x.shape)


_MOMENT_KINDS = {"fp32": 0, "bf16": 1, "lns8": 2}
CHUNK = 1 << 16  # the multi-tensor step's slab size: its random draws are per piece of at most this


def random_words(numel: int, generator: torch.Generator | None) -> Tensor:
    """The 64-bit words the multi-tensor step draws for the stochastic moment store of one tensor.

    The slab step calls :func:`~imaginate.numerics.random_bits.random_u16` once per piece of at most
    ``CHUNK`` elements, which draws ``ceil(piece / 3)`` words; this draws the same words from the same
    generator (the kernel cuts them into 16-bit numbers the same way), so both give the same bits.
    """
    sizes = [(min(CHUNK, numel - start) + 2) // 3 for start in range(0, numel, CHUNK)]
    words = torch.empty(sum(sizes), dtype=torch.int64)
    offset = 0
    for size in sizes:
        words[offset:offset + size].random_(generator=generator)  # uniform on [0, 2 ** 63), as random_u16
        offset += size
    return words


def native_step_applies(p: Tensor, grad: Tensor, packed: Tensor, moment: Tensor, fmt: LNSFormat,
                        kind: str = "fp32") -> bool:
    """Whether :func:`lns_madam_native_step` takes this tensor (CPU, contiguous, float32 or, for the fp32
    moment, float64; kernels enabled and built)."""
    moment_dtype = {"fp32": p.dtype, "bf16": torch.bfloat16, "lns8": torch.uint8}[kind]
    floats = (torch.float32, torch.float64) if kind == "fp32" else (torch.float32,)
    if (not kernels_enabled() or any(t.device.type != "cpu" or not t.is_contiguous() for t in (p, grad, packed, moment))
            or p.dtype not in floats or grad.dtype != p.dtype or moment.dtype != moment_dtype
            or packed.dtype != (torch.int16 if fmt.bits > 8 else torch.uint8)):
        return False
    return _module() is not None


def lns_madam_native_step(
    p: Tensor, grad: Tensor, packed: Tensor, moment: Tensor, table: Tensor, bias_correction: float,
    beta: float, g_bound: float | None, steps_per_unit: float, fmt: LNSFormat, underflow: str,
    kind: str = "fp32", random_bits: Tensor | None = None, moment_table: Tensor | None = None,
    moment_scale: float = 0.0,
) -> bool:
    """One native LNS-Madam step of one tensor, fused; False (nothing done) where it does not apply.

    Updates the moment, ``packed`` and ``p`` in place exactly as
    :meth:`~imaginate.optim.lns_madam.LNSMadam._native_foreach_step` does.

    Args:
        p: the parameter (contiguous, CPU): receives ``table[new pattern]``.
        grad: its gradient (same shape).
        packed: the packed store (uint8 for B <= 8, int16 for B > 8).
        moment: the stored second moment: ``p``'s dtype ("fp32"), bfloat16 ("bf16") or uint8 codes ("lns8").
        table: decode table of every bit pattern (256 or 65536 entries, ``p``'s dtype).
        bias_correction: ``1 - beta ** step``.
        beta: second-moment decay.
        g_bound: clamp of ``|g_hat|``; None: none.
        steps_per_unit: ``lr * gamma``, grid steps per unit of ``g_hat``.
        fmt: the store's format.
        underflow: "zero" or "saturate".
        kind: the moment's format, "fp32", "bf16" or "lns8".
        random_bits: bf16 / lns8: the int64 words of the stochastic store, :func:`random_words`.
        moment_table: lns8: [256] float32 values of the codes at the scale they were stored with.
        moment_scale: lns8: the scale to store against.
    """
    if not native_step_applies(p, grad, packed, moment, fmt, kind) or table.dtype != p.dtype:
        return False
    module = _module()
    empty = torch.empty(0)
    scale_move = steps_per_unit != 1
    round_move = abs(steps_per_unit - round(steps_per_unit)) != 0
    module.lns_madam_step(p.detach(), grad, packed, moment, table, _MOMENT_KINDS[kind],
                          empty if random_bits is None else random_bits,
                          empty if moment_table is None else moment_table, float(moment_scale), beta, 1 - beta,
                          bias_correction, float("inf") if g_bound is None else float(g_bound),
                          float(steps_per_unit), scale_move, round_move, fmt.max_code, fmt.bits, underflow == "zero")
    return True
