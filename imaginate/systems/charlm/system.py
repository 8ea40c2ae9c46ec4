"""Character-level language modelling: the sequence task that optimizers and number formats are measured on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from imaginate.config import TrainConfig
from imaginate.data import CharCorpus, load_char_corpus
from imaginate.engine import RunContext, System, unwrap
from imaginate.nn.transformer import CharTransformerLM
from imaginate.optim import OptimConfig, build_optimizer


@dataclass
class CharLMDataConfig:
    """Args:
        path: a UTF-8 text file; None uses the bundled text (scikit-learn's data-set descriptions).
        context: characters per training window.
        val_fraction: the last part of the text held out for evaluation.
        eval_windows: validation windows scored by ``evaluate`` (non-overlapping, from the start).
    """

    path: str | None = None
    context: int = 64
    val_fraction: float = 0.1
    eval_windows: int = 256

    def __post_init__(self) -> None:
        if self.context < 2:
            raise ValueError(f"data.context: must be >= 2, got {self.context}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"data.val_fraction: must be in (0, 1), got {self.val_fraction}")
        if self.eval_windows < 1:
            raise ValueError(f"data.eval_windows: must be >= 1, got {self.eval_windows}")


@dataclass
class CharLMModelConfig:
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.d_model < 1 or self.n_layers < 1 or self.n_heads < 1:
            raise ValueError("model.d_model / model.n_layers / model.n_heads: must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model={self.d_model}: must be divisible by model.n_heads={self.n_heads}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout: must be in [0, 1), got {self.dropout}")


@dataclass
class CharLMConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=500, batch_size=32, eval_every=250))
    data: CharLMDataConfig = field(default_factory=CharLMDataConfig)
    model: CharLMModelConfig = field(default_factory=CharLMModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adam"))


class CharLMSystem(System):
    """A causal transformer over characters; evaluates validation bits per character."""

    def __init__(self, cfg: CharLMConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        self.corpus: CharCorpus = load_char_corpus(cfg.data.path, cfg.data.val_fraction)
        m = cfg.model
        model = CharTransformerLM(self.corpus.vocab_size, cfg.data.context, m.d_model, m.n_layers, m.n_heads,
                                  m.dropout)
        model = self.transform_model(model)
        optimizer = build_optimizer(cfg.optim, model)
        self.net = ctx.prepare(model)
        self.modules = {"lm": self.net}
        self.optimizers = {"lm": optimizer}

    def transform_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Hook for systems built on this one (e.g. quantised training); the default returns ``model``."""
        return model

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows, a pure function of (seed, step); this rank's share of them."""
        gen = torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + step)
        high = len(self.corpus.train) - self.cfg.data.context - 1
        starts = torch.randint(0, high + 1, (self.ctx.global_batch,), generator=gen)
        per = self.ctx.global_batch // self.ctx.env.world_size
        starts = starts[self.ctx.env.rank * per:(self.ctx.env.rank + 1) * per]
        x, y = CharCorpus.windows(self.corpus.train, starts, self.cfg.data.context)
        return x.to(self.ctx.device), y.to(self.ctx.device)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        def loss_fn(mb):
            x, y = mb  # [B, T] ids, [B, T] next ids
            logits = self.net(x)  # [B, T, V]
            return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())

        return self.ctx.update("lm", self.optimizers["lm"], batch, loss_fn)

    def evaluate(self) -> dict[str, float]:
        t = self.cfg.data.context
        val = self.corpus.val
        n = min(self.cfg.data.eval_windows, (len(val) - 1) // t)
        starts = torch.arange(n) * t
        x, y = CharCorpus.windows(val, starts, t)
        net = unwrap(self.net)
        loss_sum = 0.0
        for xs, ys in zip(x.split(64), y.split(64)):
            with self.ctx.autocast():
                logits = net(xs.to(self.ctx.device)).float()
            loss_sum += float(F.cross_entropy(logits.flatten(0, 1), ys.to(self.ctx.device).flatten(), reduction="sum"))
        nats = loss_sum / (n * t)
        return {"val_loss": nats, "val_bpc": nats / math.log(2)}

    def generate(self, prompt: str, length: int = 200, temperature: float = 0.8) -> str:
        """Sample ``length`` characters after ``prompt`` (characters outside the vocabulary are dropped)."""
        net = unwrap(self.net)
        ids = self.corpus.encode("".join(c for c in prompt if c in self.corpus.vocab) or self.corpus.vocab[0])
        ids = ids.to(self.ctx.device)
        for _ in range(length):
            logits = net(ids[-self.cfg.data.context:][None])[0, -1].float()
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1)
            ids = torch.cat([ids, nxt])
        return self.corpus.decode(ids.cpu())
