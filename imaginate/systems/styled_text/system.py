"""Training the styled-text generator: data, tokeniser, networks, the G and D updates, judges, evaluation."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from imaginate.config import ConfigError, TrainConfig, check_choice
from imaginate.data.styled_corpus import DEFAULT_STYLES, StyledCorpus, load_styled_corpus
from imaginate.engine import RunContext, System, unwrap
from imaginate.engine.system import frozen
from imaginate.nn.gan_losses import GAN_LOSSES, d_loss, g_loss
from imaginate.systems.styled_text.evaluation import evaluate_system
from imaginate.systems.styled_text.generation import after_eos, gumbel_rollout, prompt_batch
from imaginate.systems.styled_text.judges import FluencyJudge, StyleJudge
from imaginate.systems.styled_text.losses import gumbel_temperature, lm_loss, style_consistency_loss
from imaginate.systems.styled_text.model import INJECTIONS, PairDiscriminator, StyledDecoder, StyleEncoder
from imaginate.systems.styled_text.tokenizer import BOS, EOS, PAD, SEP, TokenizerState, train_tokenizer


@dataclass
class StyledDataConfig:
    """Args:
        source: bundled | fortunes | a folder with one text file or folder per style.
        styles: categories of bundled/fortunes.
        heldout_fraction: share of each style held out.
        max_per_style: cap per style (0: all).
        split_seed: the train/held-out shuffle (fixed across training seeds).
        tokenizer: bpe | bytes.  vocab_size: BPE vocabulary (ignored for bytes).
        max_context: context tokens kept.  max_len: decoder sequence T.  ref_len: reference tokens R.
    """

    source: str = "bundled"
    styles: list[str] = field(default_factory=lambda: list(DEFAULT_STYLES))
    heldout_fraction: float = 0.15
    max_per_style: int = 600
    split_seed: int = 0
    tokenizer: str = "bpe"
    vocab_size: int = 1024
    max_context: int = 24
    max_len: int = 96
    ref_len: int = 64

    def __post_init__(self) -> None:
        check_choice("data.tokenizer", self.tokenizer, ("bpe", "bytes"))
        if not 0 < self.heldout_fraction < 1:
            raise ConfigError(f"data.heldout_fraction: must be in (0, 1), got {self.heldout_fraction}")
        if self.vocab_size < 300:
            raise ConfigError(f"data.vocab_size: must be >= 300 (256 bytes + specials), got {self.vocab_size}")
        if not 4 <= self.max_context < self.max_len - 4:
            raise ConfigError(f"data.max_context: must be in [4, max_len - 4), got {self.max_context}")
        if self.ref_len < 4:
            raise ConfigError(f"data.ref_len: must be >= 4, got {self.ref_len}")


@dataclass
class StyledModelConfig:
    """Args: widths/depths of the style encoder, decoder and discriminator; ``injection`` of the code
    (prefix | add | adaln | unconditional = an LM without the code); ``n_prefix`` prefix vectors."""

    d_model: int = 128
    n_heads: int = 4
    decoder_layers: int = 2
    encoder_layers: int = 2
    discriminator_layers: int = 1
    style_dim: int = 64
    injection: str = "adaln"
    n_prefix: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_choice("model.injection", self.injection, INJECTIONS)
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.d_model={self.d_model}: must be divisible by model.n_heads={self.n_heads}")
        for name in ("decoder_layers", "encoder_layers", "discriminator_layers", "style_dim", "n_prefix"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout: must be in [0, 1), got {self.dropout}")


@dataclass
class StyledLossConfig:
    """Args:
        lm / adversarial / style: weights of reconstruction, the GAN term and style consistency.
        gan_loss: a kind of imaginate.nn.gan_losses.  hard: straight-through one-hot (False: soft rows).
        tau_start, tau_end, tau_anneal_steps: Gumbel temperature schedule.
        rollout_len: generated tokens per adversarial sample.  rollout_batch: transfer pairs per step.
        adversarial_start: steps of LM-only warm-up before the adversarial and style terms.
        lr, d_lr: Adam learning rates of generator (encoder + decoder) and discriminator.
        code_class: weight of a linear style classifier on the reference's code, trained with the encoder
            from the start (beyond the paper's description: without it the code can die, every reference
            giving the same code; 0 = off, no classifier is built).
        style_class: weight of that classifier's cross-entropy on the encoder's code of GENERATED text
            (transfer rollouts) toward the reference's style B, after the warm-up (needs code_class > 0).
    """

    lm: float = 1.0
    adversarial: float = 0.1
    style: float = 0.5
    gan_loss: str = "non_saturating"
    hard: bool = True
    tau_start: float = 1.0
    tau_end: float = 0.3
    tau_anneal_steps: int = 1000
    rollout_len: int = 16
    rollout_batch: int = 8
    adversarial_start: int = 100
    lr: float = 1e-3
    d_lr: float = 3e-4
    code_class: float = 0.0
    style_class: float = 0.0

    def __post_init__(self) -> None:
        check_choice("loss.gan_loss", self.gan_loss, GAN_LOSSES)
        if self.style_class > 0 and self.code_class <= 0:
            raise ConfigError(f"loss.style_class: needs loss.code_class > 0 (the classifier it uses), got "
                              f"style_class={self.style_class}, code_class={self.code_class}")
        for name in ("lm", "adversarial", "style", "code_class", "style_class"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 < self.tau_end <= self.tau_start:
            raise ConfigError(f"loss.tau_end: must be in (0, tau_start], got {self.tau_end}")
        if self.rollout_len < 1 or self.rollout_batch < 1:
            raise ConfigError("loss.rollout_len / loss.rollout_batch: must be >= 1")


@dataclass
class StyledJudgeConfig:
    """Args: the fluency LM's training (steps, batch, lr, width, byte context); ``cache``: a safetensors file
    with fitted judges (loaded when present, written after fitting) so several runs share one set."""

    lm_steps: int = 300
    lm_batch: int = 32
    lm_lr: float = 3e-3
    lm_d_model: int = 96
    lm_layers: int = 2
    lm_context: int = 160
    cache: str | None = None

    def __post_init__(self) -> None:
        if self.lm_steps < 1 or self.lm_batch < 1 or self.lm_context < 16:
            raise ConfigError("judge.lm_steps / judge.lm_batch must be >= 1 and judge.lm_context >= 16")


@dataclass
class StyledTextConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=600, batch_size=16, eval_every=0))
    data: StyledDataConfig = field(default_factory=StyledDataConfig)
    model: StyledModelConfig = field(default_factory=StyledModelConfig)
    loss: StyledLossConfig = field(default_factory=StyledLossConfig)
    judge: StyledJudgeConfig = field(default_factory=StyledJudgeConfig)
    eval_pairs: int = 100  # (context A, reference B != A) pairs generated by evaluate
    eval_len: int = 40  # tokens generated per continuation in evaluate
    eval_temperature: float = 0.7


def pad_rows(rows: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [N, width] and valid [N, width] bool."""
    ids = torch.full((len(rows), width), PAD, dtype=torch.int64)
    for i, r in enumerate(rows):
        r = r[:width]
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    return ids, ids != PAD


class StyledTextSystem(System):
    """Style encoder + conditioned decoder + pair discriminator; the judges ride along as frozen modules."""

    def __init__(self, cfg: StyledTextConfig, ctx: RunContext):
        super().__init__(cfg, ctx)
        d, m = cfg.data, cfg.model
        self.corpus: StyledCorpus = load_styled_corpus(d.source, tuple(d.styles), d.heldout_fraction,
                                                       d.max_per_style, d.split_seed)
        tokenizer = train_tokenizer(d.tokenizer, [p.text for p in self.corpus.train], d.vocab_size)
        self.tokenizer_state = TokenizerState(tokenizer)
        self._encode_corpus()
        v = tokenizer.vocab_size
        encoder = StyleEncoder(v, d.ref_len, m.d_model, m.encoder_layers, m.n_heads, m.style_dim, m.dropout)
        decoder = StyledDecoder(v, d.max_len, m.d_model, m.decoder_layers, m.n_heads, m.style_dim, m.injection,
                                m.n_prefix, m.dropout)
        generator = torch.nn.ModuleDict({"encoder": encoder, "decoder": decoder})
        if cfg.loss.code_class > 0:  # style classifier on codes: [B, S] -> [B, styles]
            generator["style_head"] = torch.nn.Linear(m.style_dim, len(self.corpus.styles))
        disc = PairDiscriminator(v, max(d.ref_len, cfg.loss.rollout_len), m.d_model, m.discriminator_layers,
                                 m.n_heads, m.dropout)
        j = cfg.judge
        self.generator = ctx.prepare(generator)
        self.discriminator = ctx.prepare(disc)
        self.style_judge = ctx.prepare(StyleJudge(len(self.corpus.styles)), ddp=False)
        self.fluency_judge = ctx.prepare(FluencyJudge(j.lm_context, j.lm_d_model, j.lm_layers), ddp=False)
        self.modules = {"generator": self.generator, "discriminator": self.discriminator,
                        "tokenizer": self.tokenizer_state, "style_judge": self.style_judge,
                        "fluency_judge": self.fluency_judge}
        self.optimizers = {"generator": torch.optim.Adam(generator.parameters(), cfg.loss.lr, betas=(0.9, 0.99)),
                           "discriminator": torch.optim.Adam(disc.parameters(), cfg.loss.d_lr, betas=(0.5, 0.99))}
        self.step = 0

    # -- data ---------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.tokenizer_state.tokenizer

    def _encode_corpus(self) -> None:
        tok = self.tokenizer
        self.tokens = {split: [(tok.encode(p.context), tok.encode(p.continuation), tok.encode(p.text))
                               for p in (self.corpus.train if split == "train" else self.corpus.heldout)]
                       for split in ("train", "heldout")}
        self.groups = {s: self.corpus.by_style(s) for s in ("train", "heldout")}

    def sequence(self, split: str, i: int) -> list[int]:
        """``<bos> context <sep> continuation <eos>`` of paragraph i, within max_len + 1 tokens."""
        context, continuation, _ = self.tokens[split][i]
        head = [BOS] + context[: self.cfg.data.max_context] + [SEP]
        return (head + continuation + [EOS])[: self.cfg.data.max_len + 1]

    def other_in_style(self, split: str, i: int, rng: random.Random) -> int:
        """A paragraph of paragraph i's style that is NOT paragraph i (the style code's source)."""
        group = self.groups[split][self.corpus_items(split)[i].style]
        j = rng.choice(group[:-1]) if len(group) > 1 else i
        return group[-1] if j == i else j

    def corpus_items(self, split: str):
        return self.corpus.train if split == "train" else self.corpus.heldout

    def references(self, split: str, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_rows([self.tokens[split][j][2] for j in indices], self.cfg.data.ref_len)

    def train_batch(self, step: int) -> dict[str, torch.Tensor]:
        """Reconstruction items with references from other paragraphs of the same style, and transfer
        items (context of style A, reference and a real continuation of style B != A)."""
        rng = random.Random(self.ctx.seed * 1_000_003 + step)
        n = len(self.corpus.train)
        targets = self.ctx.batch_indices(step, n).tolist()
        refs = [self.other_in_style("train", i, rng) for i in targets]
        seq, _ = pad_rows([self.sequence("train", i) for i in targets], self.cfg.data.max_len + 1)
        ref_ids, ref_valid = self.references("train", refs)
        styles = self.corpus.styles
        contexts, transfer_refs, transfer_styles, reals, real_refs = [], [], [], [], []
        for _ in range(self.cfg.loss.rollout_batch):
            a = rng.randrange(n)
            b_style = rng.choice([s for s in range(len(styles)) if s != self.corpus.train[a].style])
            ref = rng.choice(self.groups["train"][b_style])
            real = self.other_in_style("train", ref, rng)
            contexts.append(a)
            transfer_styles.append(b_style)
            transfer_refs.append(ref)
            reals.append(real)
            real_refs.append(self.other_in_style("train", real, rng))
        prompt, prompt_valid = prompt_batch([self.tokens["train"][a][0] for a in contexts],
                                            self.cfg.data.max_context, torch.device("cpu"))
        real_ids, _ = pad_rows([self.tokens["train"][r][1] + [EOS] for r in reals], self.cfg.loss.rollout_len)
        t_ref, t_ref_valid = self.references("train", transfer_refs)
        r_ref, r_ref_valid = self.references("train", real_refs)
        batch = {"sequence": seq, "reference": ref_ids, "reference_valid": ref_valid,
                 "target_index": torch.tensor(targets), "reference_index": torch.tensor(refs),
                 "prompt": prompt, "prompt_valid": prompt_valid, "transfer_reference": t_ref,
                 "transfer_reference_valid": t_ref_valid, "real": real_ids, "real_reference": r_ref,
                 "real_reference_valid": r_ref_valid,
                 "reference_style": torch.tensor([self.corpus.train[i].style for i in targets]),
                 "transfer_style": torch.tensor(transfer_styles)}
        return {k: v.to(self.ctx.device) for k, v in batch.items()}

    # -- judges -------------------------------------------------------------------------------------
    def judge_training_texts(self) -> tuple[list[str], list[int], list[str]]:
        """What the judges learn from: the TRAINING split only (continuations and whole paragraphs)."""
        train = self.corpus.train
        texts = [p.continuation for p in train] + [p.text for p in train]
        return texts, [p.style for p in train] * 2, [p.text for p in train]

    def ensure_judges(self) -> None:
        """Fit the judges on the training split once (or load them from ``judge.cache``)."""
        style_judge, fluency = unwrap(self.style_judge), unwrap(self.fluency_judge)
        if bool(style_judge.fitted) and bool(fluency.fitted):
            return
        cache = self.cfg.judge.cache
        if cache and Path(cache).is_file():
            from safetensors.torch import load_file

            state = load_file(cache)
            style_judge.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("style.")})
            fluency.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("fluency.")})
            return
        texts, labels, lm_texts = self.judge_training_texts()
        with torch.random.fork_rng(devices=[]):
            style_judge.fit(texts, labels)
            j = self.cfg.judge
            fluency.fit(lm_texts, j.lm_steps, j.lm_batch, j.lm_lr, self.cfg.data.split_seed, self.ctx.device)
        if cache:
            from safetensors.torch import save_file

            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            state = {f"style.{k}": v.contiguous() for k, v in style_judge.state_dict().items()}
            state.update({f"fluency.{k}": v.contiguous() for k, v in fluency.state_dict().items()})
            tmp = Path(f"{cache}.tmp")
            save_file({k: v.cpu() for k, v in state.items()}, str(tmp))
            tmp.replace(cache)

    # -- training -----------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.step == 0:
            self.ensure_judges()
        lc = self.cfg.loss
        gen = unwrap(self.generator)
        adversarial_on = self.step >= lc.adversarial_start and (lc.adversarial > 0 or lc.style > 0) \
            and gen["decoder"].injection != "unconditional"
        tau = gumbel_temperature(max(0, self.step - lc.adversarial_start), lc.tau_start, lc.tau_end,
                                 lc.tau_anneal_steps)
        fakes: dict[str, torch.Tensor] = {}

        def generator_loss(mb):
            encoder, decoder = self.generator["encoder"], self.generator["decoder"]
            code = encoder(mb["reference"], mb["reference_valid"])  # [B, S] from ANOTHER paragraph of the style
            seq = mb["sequence"]
            loss_lm = lm_loss(decoder(seq[:, :-1], code), seq[:, 1:])
            logs = {"lm_nats": float(loss_lm.detach()), "code_std": float(code.detach().float().std(0).mean()), "tau": tau}
            loss = lc.lm * loss_lm
            head = self.generator["style_head"] if lc.code_class > 0 else None
            if head is not None:
                code_logits = head(code)  # [B, styles]
                loss_class = torch.nn.functional.cross_entropy(code_logits.float(), mb["reference_style"])
                loss = loss + lc.code_class * loss_class
                logs.update(code_class_nats=float(loss_class.detach()),
                            code_class_acc=float((code_logits.argmax(-1) == mb["reference_style"]).float().mean()))
            if adversarial_on:
                target_code = encoder(mb["transfer_reference"], mb["transfer_reference_valid"])  # [B', S]
                rows = gumbel_rollout(decoder, mb["prompt"], mb["prompt_valid"], target_code, lc.rollout_len, tau,
                                      lc.hard)  # [B', L, V]
                ids = rows.argmax(-1)
                valid = ~after_eos(ids)
                fakes.update(rows=rows.detach(), valid=valid)
                with frozen(self.discriminator):
                    fake_logits = self.discriminator(rows, valid, mb["transfer_reference"],
                                                     mb["transfer_reference_valid"])
                with frozen(encoder):
                    generated_code = encoder(rows, valid)
                loss_adv = g_loss(lc.gan_loss, fake_logits)
                loss_style = style_consistency_loss(generated_code, target_code.detach())
                loss = loss + lc.adversarial * loss_adv + lc.style * loss_style
                if head is not None and lc.style_class > 0:
                    with frozen(head):
                        fake_class = head(generated_code)  # [B', styles]
                    loss_sc = torch.nn.functional.cross_entropy(fake_class.float(), mb["transfer_style"])
                    loss = loss + lc.style_class * loss_sc
                    logs.update(style_class_nats=float(loss_sc.detach()),
                                fake_judged_b=float((fake_class.argmax(-1) == mb["transfer_style"]).float().mean()))
                distinct = len(set(ids.flatten().tolist())) / ids.numel()
                logs.update(g_adv=float(loss_adv.detach()), style_term=float(loss_style.detach()), fake_distinct_tokens=distinct,
                            fake_eos_rate=float((ids == EOS).any(1).float().mean()))
            return loss, logs

        logs = self.ctx.update("generator", self.optimizers["generator"], batch, generator_loss)
        if adversarial_on and lc.adversarial > 0:
            def discriminator_loss(mb):
                real_valid = mb["real"] != PAD
                real = self.discriminator(mb["real"], real_valid, mb["real_reference"], mb["real_reference_valid"])
                fake = self.discriminator(fakes["rows"], fakes["valid"], mb["transfer_reference"],
                                          mb["transfer_reference_valid"])
                return d_loss(lc.gan_loss, real, fake), {
                    "d_real_accuracy": float((real > 0).float().mean()),
                    "d_fake_accuracy": float((fake < 0).float().mean())}

            logs.update(self.ctx.update("discriminator", self.optimizers["discriminator"], batch, discriminator_loss))
        self.step += 1
        return logs

    def extra_state(self) -> dict:
        return {"step": self.step}

    def load_extra_state(self, state: dict) -> None:
        self.step = int(state.get("step", 0))

    # -- inference ----------------------------------------------------------------------------------
    def style_code(self, texts: list[str]) -> torch.Tensor | None:
        """The mean style code of example texts [S] (None for an unconditional decoder)."""
        gen = unwrap(self.generator)
        if gen["decoder"].injection == "unconditional":
            return None
        ids, valid = pad_rows([self.tokenizer.encode(t) for t in texts], self.cfg.data.ref_len)
        return gen["encoder"](ids.to(self.ctx.device), valid.to(self.ctx.device)).mean(0)

    def evaluate(self) -> dict[str, float]:
        self.ensure_judges()
        return evaluate_system(self)


def bits(nats: float) -> float:
    return nats / math.log(2)
