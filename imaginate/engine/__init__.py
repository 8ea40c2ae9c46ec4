"""System-agnostic training: devices, DDP, AMP, accumulation, cadence, checkpoints, logs, progress."""

from imaginate.engine.checkpoint import CheckpointError, export_safetensors, load_checkpoint
from imaginate.engine.distributed import DistEnv, init_distributed, resolve_device
from imaginate.engine.images import make_grid, save_png
from imaginate.engine.loop import TrainingDiverged, evaluate_run, load_run, run_training
from imaginate.engine.system import NonFiniteLossError, RunContext, System, unwrap

__all__ = [
    "CheckpointError", "DistEnv", "NonFiniteLossError", "RunContext", "System", "TrainingDiverged",
    "evaluate_run", "export_safetensors", "init_distributed", "load_checkpoint", "load_run", "make_grid",
    "resolve_device", "run_training", "save_png", "unwrap",
]
