"""Low-precision training (arXiv 2106.13914): the classify or charlm task with quantised Linear/Conv2d
layers (QuantConfig: forward weights/activations, backward gradients) and a low-bit weight store
(LNS-Madam native, or SGD/Adam/AdamW re-quantised after every step)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from imaginate.config import TrainConfig, check_choice
from imaginate.data import DataError
from imaginate.engine import RunContext
from imaginate.numerics.quant import QuantConfig, quantize_model
from imaginate.optim import OptimConfig
from imaginate.systems.charlm.system import CharLMConfig, CharLMDataConfig, CharLMModelConfig, CharLMSystem
from imaginate.systems.classify.system import (
    ClassifyConfig,
    ClassifyDataConfig,
    ClassifyModelConfig,
    ClassifySystem,
)

TASKS = ("classify", "charlm")


@dataclass
class LNSMadamConfig:
    """Args:
        task: classify (``data``, ``model``) or charlm (``lm_data``, ``lm_model``).
        optim: the optimizer and weight store (default: LNS-Madam native, 8-bit store, gamma 8).
        quant: forward / backward number formats (default: 8-bit LNS forward, 5-bit LNS gradients).
        init_from: a ``final.safetensors`` of an FP32 run of the same task and model, or ``zoo:NAME``, to fine-tune from.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=600, batch_size=64, eval_every=300))
    task: str = "classify"
    data: ClassifyDataConfig = field(default_factory=ClassifyDataConfig)
    model: ClassifyModelConfig = field(default_factory=ClassifyModelConfig)
    lm_data: CharLMDataConfig = field(default_factory=CharLMDataConfig)
    lm_model: CharLMModelConfig = field(default_factory=CharLMModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="lns_madam", lns_mode="native", lns_bits=8, lns_gamma=8))
    quant: QuantConfig = field(default_factory=QuantConfig)
    init_from: str | None = None

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)


def load_pretrained(model: nn.Module, path: str) -> None:
    """Load ``<network>.<param>`` weights exported by a run (one network), or a ``zoo:NAME`` entry's, into
    ``model``."""
    import torch
    from safetensors.torch import load_file

    from imaginate.zoo import is_zoo_ref, zoo_weights_file

    if is_zoo_ref(path):
        path = str(zoo_weights_file(path))  # checked against the registry's sha256 first
    if not Path(path).is_file():
        raise DataError(f"init_from: {path} does not exist (a run's final.safetensors)")
    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise DataError(f"init_from: {path} is not a readable safetensors file ({type(exc).__name__})") from None
    prefixes = {k.split(".", 1)[0] for k in tensors}
    if len(prefixes) != 1:
        raise DataError(f"init_from: {path} holds several networks ({', '.join(sorted(prefixes))}); expected one")
    state = {k.split(".", 1)[1]: v for k, v in tensors.items()}
    if any(v.is_floating_point() and not bool(torch.isfinite(v).all()) for v in state.values()):
        raise DataError(f"init_from: {path} holds NaN or infinite weights")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"init_from: {path} does not fit this model ({str(exc).splitlines()[0]})") from None


class _Quantised:
    """Mixin: pre-trained weights (optional), then quantised layers, before the optimizer is built."""

    lns_cfg: LNSMadamConfig

    def transform_model(self, model: nn.Module) -> nn.Module:
        if self.lns_cfg.init_from:
            load_pretrained(model, self.lns_cfg.init_from)
        # stochastic gradient rounding draws from the global RNG, which checkpoints save and restore
        return quantize_model(model, self.lns_cfg.quant)


class LNSClassifySystem(_Quantised, ClassifySystem):
    def __init__(self, cfg: LNSMadamConfig, ctx: RunContext):
        self.lns_cfg = cfg
        super().__init__(ClassifyConfig(train=cfg.train, data=cfg.data, model=cfg.model, optim=cfg.optim), ctx)


class LNSCharLMSystem(_Quantised, CharLMSystem):
    def __init__(self, cfg: LNSMadamConfig, ctx: RunContext):
        self.lns_cfg = cfg
        super().__init__(CharLMConfig(train=cfg.train, data=cfg.lm_data, model=cfg.lm_model, optim=cfg.optim), ctx)


def build_lns_system(cfg: LNSMadamConfig, ctx: RunContext) -> ClassifySystem | CharLMSystem:
    """The engine's constructor for ``lns_madam``: the task's system with quantised layers."""
    return (LNSClassifySystem if cfg.task == "classify" else LNSCharLMSystem)(cfg, ctx)


def quantised_layer_count(model: nn.Module) -> int:
    from imaginate.numerics.quant import QuantConv2d, QuantLinear

    return sum(isinstance(m, (QuantLinear, QuantConv2d)) for m in model.modules())


__all__ = ["LNSMadamConfig", "build_lns_system", "load_pretrained", "quantised_layer_count"]
