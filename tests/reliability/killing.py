"""Training runs in forked child processes that die by SIGKILL at a chosen step and phase.

A child is a real process killed with signal 9 (no handler, no flush, no cleanup), at one of three phases
of step ``k``: ``before_step`` (as the step's batch is drawn), ``mid_step`` (after the step's first
optimizer update: for a GAN, D has stepped and G has not) or ``in_save`` (halfway through writing the next
checkpoint's bytes). Forking after the imports keeps each child to a fraction of a second of start-up.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

PHASES = ("before_step", "mid_step", "in_save")

# smallest settings that still exercise each system's parts (several networks and optimizers)
SYSTEMS = {
    "classify": ["train.steps=40", "train.ckpt_every=4", "train.batch_size=16", "optim.name=madam"],
    "gan": ["train.steps=24", "train.ckpt_every=3", "train.batch_size=8", "data.name=digits", "model.g_width=8",
            "model.d_width=8", "model.d_blocks=2"],
    "wsod": ["train.steps=12", "train.ckpt_every=2", "train.batch_size=2", "data.num_train=8", "data.num_test=2",
             "data.proposal_method=sliding_window", "data.max_proposals=40", "data.train_scales=[64]",
             "data.image_size=64", "model.width=8", "model.neck_dim=32", "eval.corloc_images=2",
             "refine_warmup_start=4", "refine_warmup_length=4", "cdb=true", "optim.warmup_steps=2",
             "optim.cdb_warmup_steps=2"],
}
COMMON = ["--no-progress", "train.eval_every=0", "train.sample_every=0", "train.log_every=1", "train.num_threads=1",
          "train.device=cpu", "train.keep_checkpoints=2"]


def _arm(kill_step: int, phase: str) -> None:
    """In the child: make the process SIGKILL itself at ``kill_step`` (1-based) in ``phase``."""
    import torch

    from imaginate.engine import RunContext
    from imaginate.engine import checkpoint as ckpt_module

    def die() -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    state = {"step": 0}
    if phase == "in_save":
        real_save = torch.save

        def half_save(obj, f, *args, **kwargs):
            if state["step"] >= kill_step:
                import io

                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.fsync(f.fileno())
                die()
            return real_save(obj, f, *args, **kwargs)

        ckpt_module.torch.save = half_save  # the module's torch is torch: patched for this child only

    def wrap_batch(cls):
        original = cls.train_batch

        def train_batch(self, step):
            state["step"] = step + 1
            if phase == "before_step" and step + 1 == kill_step:
                die()
            return original(self, step)

        cls.train_batch = train_batch

    from imaginate.registry import list_systems

    for spec in list_systems():
        if "train_batch" in vars(spec.system_cls):
            wrap_batch(spec.system_cls)
    original_update = RunContext.update

    def update(self, *args, **kwargs):
        out = original_update(self, *args, **kwargs)
        if phase == "mid_step" and state["step"] == kill_step:
            die()
        return out

    RunContext.update = update


def run_child(system: str, out: Path, resume: bool, kill_step: int | None = None, phase: str = "before_step",
              extra: list[str] = ()) -> int:
    """Fork, train (or resume) ``system`` into ``out``; returns the exit code, or -9 when killed."""
    import torch

    torch.set_num_threads(1)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            if kill_step is not None:
                _arm(kill_step, phase)
            from imaginate.cli import main

            argv = ["train", system, "--out", str(out), *COMMON, *SYSTEMS[system], *extra]
            code = main(argv + (["--resume"] if resume else []))
        except BaseException as exc:  # noqa: BLE001 - reported through the exit code
            print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run_ranks(system: str, out: Path, world_size: int, overrides: list[str], port: int) -> list[int]:
    """Fork ``world_size`` children that train ``system`` together under torch.distributed (gloo, the
    environment torchrun would set); returns their exit codes."""
    import torch

    torch.set_num_threads(1)
    sys.stdout.flush()
    sys.stderr.flush()
    pids = []
    for rank in range(world_size):
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                if world_size > 1:
                    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
                from imaginate.cli import main
                from imaginate.engine.distributed import shutdown_distributed

                code = main(["train", system, "--out", str(out), "--no-progress", "train.num_threads=1",
                             "train.device=cpu", *overrides])
                shutdown_distributed()
            except BaseException as exc:  # noqa: BLE001 - reported through the exit code
                print(f"rank {rank} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                code = 4
            finally:
                os._exit(code)
        pids.append(pid)
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    return codes
