"""The one training loop every system runs through, top to bottom."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from imaginate.config import ConfigError, load_saved_config, saved_config_text
from imaginate.engine.checkpoint import (
    CheckpointError,
    capture_rng,
    checkpoint_path,
    export_safetensors,
    latest_checkpoint,
    newest_readable_checkpoint,
    prune_checkpoints,
    remove_partial_checkpoints,
    restore_rng,
    save_checkpoint,
)
from imaginate.engine.distributed import DistEnv, all_reduce_mean, barrier, init_distributed, resolve_device
from imaginate.engine.logging import RunLogger
from imaginate.engine.system import NonFiniteLossError, RunContext, System, unwrap
from imaginate.registry import SystemSpec, get_system


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


def build_system(spec: SystemSpec, cfg: Any, env: DistEnv, source: Path | None = None) -> System:
    """Seed, then construct the system (identical weights on every rank).

    Raises:
        ConfigError: the config asks for networks larger than this machine's memory (naming ``source``, the
            file the config was read from, when given).
    """
    where = f"{source}: " if source is not None else ""
    torch.manual_seed(cfg.train.seed)
    tc = cfg.train
    ctx = RunContext(env, amp=tc.amp, grad_accum=tc.grad_accum, seed=tc.seed, global_batch=tc.batch_size,
                     sync_batchnorm=tc.sync_batchnorm, check_finite=tc.stop_on_nonfinite)
    try:
        return spec.system_cls(cfg, ctx)
    except (MemoryError, torch.OutOfMemoryError) as exc:
        raise ConfigError(f"{where}{spec.name}: the config asks for more memory than this machine has while building "
                          f"the networks ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
    except RuntimeError as exc:
        if "allocate" not in str(exc) and "Overflow" not in str(exc) and "overflow" not in str(exc):
            raise
        raise ConfigError(f"{where}{spec.name}: the config asks for networks too large to build "
                          f"({str(exc).splitlines()[0][:120]})") from None


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _state(system: System, step: int, env: DistEnv) -> dict[str, Any] | None:
    """The full resumable state (gathered RNG of every rank); None on ranks other than 0."""
    rng = capture_rng()
    if env.distributed:
        gathered: list[Any] = [None] * env.world_size
        dist.all_gather_object(gathered, rng)
        rng_all = gathered
    else:
        rng_all = [rng]
    if not env.is_main:
        return None
    return {
        "step": step,
        "modules": {k: unwrap(m).state_dict() for k, m in system.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in system.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in system.schedulers.items()},
        "scalers": {k: s.state_dict() for k, s in system.ctx.scalers.items()},
        "rng": rng_all,
        "extra": system.extra_state(),
    }


def load_modules(system: System, ckpt: dict[str, Any], path: Path) -> None:
    """Load every module's weights; a checkpoint that does not fit the run is an error naming the module
    (never a silent partial load)."""
    missing = set(system.modules) - set(ckpt.get("modules", {}))
    if missing:
        raise CheckpointError(f"{path}: has no weights for {', '.join(sorted(missing))}")
    for name, module in system.modules.items():
        state = ckpt["modules"][name]
        bad = nonfinite_weight(unwrap(module), state) if isinstance(state, dict) else None
        if bad is not None:
            raise CheckpointError(f"{path}: weights of module '{name}' hold NaN or inf ({bad})")
        try:
            unwrap(module).load_state_dict(state)
        except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as exc:
            first = str(exc).strip().splitlines()
            detail = first[1].strip() if len(first) > 1 else (first[0] if first else type(exc).__name__)
            raise CheckpointError(f"{path}: weights of module '{name}' do not fit this run ({detail})") from None


def nonfinite_weight(module: torch.nn.Module, state: dict[str, Any]) -> str | None:
    """The first key of ``state`` that holds NaN (any floating tensor) or inf (a parameter; buffers such as
    attention masks may hold -inf on purpose), or None."""
    params = {k for k, _ in module.named_parameters()}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if torch.isnan(value).any() or (key in params and torch.isinf(value).any()):
                return key
    return None


def _restore(system: System, ckpt: dict[str, Any], path: Path, env: DistEnv) -> int:
    load_modules(system, ckpt, path)
    part = "optimizer"
    try:  # a checkpoint that loads but was written by another run: one line naming the part
        for name, opt in system.optimizers.items():
            part = f"optimizer '{name}'"
            opt.load_state_dict(ckpt["optimizers"][name])
        for name, sched in system.schedulers.items():
            part = f"scheduler '{name}'"
            sched.load_state_dict(ckpt["schedulers"][name])
        for name, state in ckpt.get("scalers", {}).items():
            part = f"AMP scaler '{name}'"
            system.ctx._scaler(name).load_state_dict(state)
        part = "RNG state"
        rngs = ckpt["rng"]
        restore_rng(rngs[env.rank] if env.rank < len(rngs) else rngs[0])
        part = "extra state"
        system.load_extra_state(ckpt.get("extra", {}))
        return int(ckpt["step"])
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError, AttributeError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(f"{path}: the {part} state does not fit this run ({detail})") from None


def _inspect(system: System, method: str, seed: int) -> Any:
    """Run ``system.evaluate`` or ``system.sample`` in eval mode under ``no_grad`` and in a forked RNG with
    a fixed seed, so that looking at a run never changes its training randomness."""
    devices = [system.ctx.device] if system.ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        system.train(False)
        out = getattr(system, method)()
        system.train(True)
    return out


def _evaluate(system: System, seed: int) -> dict[str, float]:
    return _inspect(system, "evaluate", seed + 12345)


def _sample(system: System, seed: int) -> dict[str, torch.Tensor]:
    return _inspect(system, "sample", seed + 54321)


def _diverged(bar: Any, logger: RunLogger, run_dir: Path, step: int, what: str) -> None:
    """Stop the run: close the logs and raise TrainingDiverged naming the step and the last good checkpoint."""
    bar.close()
    logger.close()
    last = latest_checkpoint(run_dir)
    keep = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    raise TrainingDiverged(f"step {step}: {what}; training stopped, {keep}")


def _due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


def run_training(spec: SystemSpec, cfg: Any, run_dir: Path, resume: bool = False, preset: str | None = None,
                 progress: bool = True) -> dict[str, float]:
    """Train ``spec`` with ``cfg`` into ``run_dir``; returns the final evaluation metrics.

    Raises:
        ConfigError: the folder holds a run and ``resume`` is false, or ``resume`` finds no checkpoint.
        TrainingDiverged: a loss became NaN/inf (the last good checkpoint stays on disk).
    """
    tc = cfg.train
    # 1. Process group, device, threads.
    env = init_distributed(tc.device)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    run_dir = Path(run_dir)
    previous = latest_checkpoint(run_dir)
    if previous is not None and not resume:
        raise ConfigError(f"--out {run_dir}: holds a run already; pass --resume to continue it or pick another --out")
    if resume and previous is None:
        raise ConfigError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    barrier(env)

    # 2. Build (same weights on every rank; user data files are read here), then resume if asked. Nothing
    #    in the run folder is written before this succeeds, so a bad data file or checkpoint changes nothing.
    saved = run_dir / "config.yaml"
    system = build_system(spec, cfg, env, source=saved if resume and saved.is_file() else None)
    torch.manual_seed(tc.seed + 1_000 * env.rank)  # per-rank stream for dropout, noise, augmentation
    start = 0
    if resume:
        found = newest_readable_checkpoint(run_dir)
        assert found is not None  # checked above: the folder has checkpoints
        previous, ckpt, skipped = found
        if env.is_main:
            for reason in skipped:
                print(f"skipping unreadable checkpoint: {reason}", file=sys.stderr)
        start = _restore(system, ckpt, previous, env)

    # 3. The run folder: resolved config and what was run.
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(run_dir / "config.yaml", saved_config_text(cfg))
        info = {"system": spec.name, "preset": preset, "world_size": env.world_size, "device": str(env.device)}
        _write_atomic(run_dir / "run.json", json.dumps(info, indent=2) + "\n")
    logger = RunLogger(run_dir, enabled=env.is_main)
    if resume:
        logger.truncate_after(start)
        if env.is_main:
            for partial in remove_partial_checkpoints(run_dir):
                print(f"removed a partly written checkpoint left by a crash: {partial.name}", file=sys.stderr)
            print(f"resuming {spec.name} from {previous} (step {start})")

    # 4. The loop.
    bar = tqdm(total=tc.steps, initial=start, disable=not (progress and env.is_main), desc=spec.name,
               dynamic_ncols=True)
    window: dict[str, float] = {}
    window_steps, window_start = 0, time.perf_counter()
    metrics: dict[str, float] = {}
    system.train(True)
    for step in range(start, tc.steps):
        batch = system.train_batch(step)
        try:
            logs = system.train_step(batch)
        except NonFiniteLossError as exc:
            _diverged(bar, logger, run_dir, step + 1, str(exc))
        done = step + 1
        if tc.stop_on_nonfinite:  # a loss computed outside ctx.update (or logged beside it) counts too
            bad = {k: v for k, v in logs.items() if k.endswith("loss") and not math.isfinite(float(v))}
            if bad:
                _diverged(bar, logger, run_dir, done, ", ".join(f"{k} is {v}" for k, v in bad.items()))
        for k, v in logs.items():
            window[k] = window.get(k, 0.0) + float(v)
        window_steps += 1
        bar.update(1)

        # 4a. Log the mean of the window, averaged over ranks.
        if _due(done, tc.log_every, tc.steps):
            elapsed = time.perf_counter() - window_start
            means = all_reduce_mean({k: v / window_steps for k, v in window.items()}, env)
            means["steps_per_s"] = window_steps / max(elapsed, 1e-9)
            for name, opt in system.optimizers.items():
                if "lr" in opt.param_groups[0]:  # IntegerMadam's groups have lr_factor instead
                    means[f"lr_{name}"] = opt.param_groups[0]["lr"]
            logger.scalars(done, "train", means)
            shown = {k: f"{v:.4g}" for k, v in means.items() if k.endswith("loss")}
            bar.set_postfix(**shown, it_s=f"{means['steps_per_s']:.1f}")
            window, window_steps, window_start = {}, 0, time.perf_counter()

        # 4b. Checkpoint (before evaluation, so RNG state is captured at the same point every time).
        if _due(done, tc.ckpt_every, tc.steps):
            state = _state(system, done, env)
            if env.is_main and tc.stop_on_nonfinite:  # never let NaN weights replace a good checkpoint
                for name, module in system.modules.items():
                    key = nonfinite_weight(unwrap(module), state["modules"][name])
                    if key is not None:
                        _diverged(bar, logger, run_dir, done, f"weights of module '{name}' hold NaN or inf ({key})")
            if env.is_main:
                save_checkpoint(state, checkpoint_path(run_dir, done))
                prune_checkpoints(run_dir, tc.keep_checkpoints)
            barrier(env)

        # 4c. Evaluate and sample on rank 0.
        if _due(done, tc.eval_every, tc.steps):
            if env.is_main:
                metrics = _evaluate(system, tc.seed)
                logger.scalars(done, "eval", metrics)
                bar.write(f"[{spec.name}] step {done}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            barrier(env)
        if _due(done, tc.sample_every, tc.steps):
            if env.is_main:
                logger.images(done, _sample(system, tc.seed))
            barrier(env)
    bar.close()

    # 5. Export the final weights.
    if env.is_main:
        meta = {"system": spec.name, "step": str(tc.steps)}
        export_safetensors({k: unwrap(m) for k, m in system.modules.items()}, run_dir / "final.safetensors", meta)
        if not metrics and start == tc.steps:  # resumed a finished run: still report its metrics
            metrics = _evaluate(system, tc.seed)
    logger.close()
    barrier(env)
    return metrics


def load_run(run_dir: Path, device: str = "auto") -> tuple[SystemSpec, Any, System, int]:
    """Rebuild a finished or interrupted run's system from its saved config and newest checkpoint.

    ``zoo:NAME`` instead of a folder loads the project-trained weights of that zoo entry (``imaginate.zoo``).
    """
    if str(run_dir).startswith("zoo:"):
        from imaginate.zoo import load_zoo

        return load_zoo(str(run_dir), device)
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no run.json)")
    try:
        info = json.loads(info_path.read_text())
        system_name = info["system"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{info_path}: not a readable run description ({type(exc).__name__})") from None
    if not isinstance(system_name, str):
        raise ConfigError(f"{info_path}: 'system' must be a system name, got {str(system_name)[:40]}")
    try:
        spec = get_system(system_name)
    except ConfigError as exc:
        raise ConfigError(f"{info_path}: {str(exc)[:200]}") from None
    cfg = load_saved_config(spec.config_cls, run_dir / "config.yaml")
    cfg.train.device = device
    found = newest_readable_checkpoint(run_dir)
    if found is None:
        raise ConfigError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    ckpt_path, ckpt, skipped = found
    for reason in skipped:
        print(f"skipping unreadable checkpoint: {reason}", file=sys.stderr)
    env = DistEnv(0, 1, 0, resolve_device(device))
    system = build_system(spec, cfg, env, source=run_dir / "config.yaml")
    load_modules(system, ckpt, ckpt_path)
    return spec, cfg, system, int(ckpt["step"])


def evaluate_run(run_dir: Path, device: str = "auto") -> dict[str, float]:
    spec, cfg, system, _ = load_run(run_dir, device)
    return _evaluate(system, cfg.train.seed)
