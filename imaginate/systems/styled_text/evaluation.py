"""Measuring style transfer with the run's judges, on held-out paragraphs only.

Context from a held-out paragraph of style A, reference = another held-out paragraph of style B != A:
- transfer accuracy: share of continuations the style judge assigns to B; leakage: share assigned to A;
  the confusion matrix over (B, judged style);
- fluency: bits per byte of the continuation given its context under the judge LM, beside the same number
  for the real held-out continuations;
- relevance: TF-IDF cosine of a continuation with its own context vs with another context of the same style.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from imaginate.engine import unwrap
from imaginate.systems.styled_text.generation import prompt_batch, sample_continuations


@dataclass
class TransferItem:
    context_style: int
    reference_style: int
    context: str
    reference: str
    continuation: str


def transfer_pairs(system, n_pairs: int, seed: int) -> list[tuple[int, int]]:
    """(context paragraph, reference paragraph) indices into the held-out split, styles cycled so every
    ordered pair (A, B != A) appears about equally often."""
    rng = random.Random(seed)
    groups = system.groups["heldout"]
    k = len(groups)
    pairs = []
    ordered = [(a, b) for a in range(k) for b in range(k) if a != b]
    for i in range(n_pairs):
        a, b = ordered[i % len(ordered)]
        pairs.append((rng.choice(groups[a]), rng.choice(groups[b])))
    return pairs


@torch.no_grad()
def write_continuations(system, contexts: list[str], reference_codes: torch.Tensor | None, length: int,
                        temperature: float, seed: int, batch_size: int = 64) -> list[str]:
    """Continuations of ``contexts`` with per-item codes [N, S] (None: unconditional)."""
    decoder = unwrap(system.generator)["decoder"]
    device = system.ctx.device
    generator = torch.Generator().manual_seed(seed)
    tok = system.tokenizer
    out = []
    for s in range(0, len(contexts), batch_size):
        chunk = contexts[s:s + batch_size]
        prompt, valid = prompt_batch([tok.encode(c) for c in chunk], system.cfg.data.max_context, device)
        code = None if reference_codes is None else reference_codes[s:s + batch_size]
        ids = sample_continuations(decoder, prompt, valid, code, length, temperature, generator)
        out += [tok.decode(row) for row in ids.tolist()]
    return out


def context_text(system, paragraph) -> str:
    """The context as the model sees it (cut to max_context tokens)."""
    tok = system.tokenizer
    return tok.decode(tok.encode(paragraph.context)[: system.cfg.data.max_context])


def transfer_items(system, n_pairs: int, seed: int, temperature: float, length: int) -> list[TransferItem]:
    held = system.corpus.heldout
    pairs = transfer_pairs(system, n_pairs, seed)
    contexts = [context_text(system, held[a]) for a, _ in pairs]
    refs = [held[b].text for _, b in pairs]
    codes = None
    if unwrap(system.generator)["decoder"].injection != "unconditional":
        codes = torch.stack([system.style_code([r]) for r in refs])  # [N, S]
    texts = write_continuations(system, contexts, codes, length, temperature, seed)
    return [TransferItem(held[a].style, held[b].style, c, r, t)
            for (a, b), c, r, t in zip(pairs, contexts, refs, texts)]


def relevance(system, items: list[TransferItem], seed: int) -> tuple[float, float]:
    """Mean cosine (judge's TF-IDF space) of each continuation with its own context and with a shuffled
    context of the same style."""
    judge = unwrap(system.style_judge)
    rng = random.Random(seed + 1)
    by_style: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        by_style.setdefault(it.context_style, []).append(i)
    shuffled = []
    for i, it in enumerate(items):
        choices = [j for j in by_style[it.context_style] if items[j].context != it.context] or [i]
        shuffled.append(items[rng.choice(choices)].context)
    cont = judge.features([it.continuation for it in items])
    own = judge.features([it.context for it in items])
    other = judge.features(shuffled)
    return float(np.mean(cont.multiply(own).sum(1))), float(np.mean(cont.multiply(other).sum(1)))


def repetition_rate(texts: list[str]) -> float:
    """Share of repeated word 3-grams within each text (degenerate loops), averaged."""
    rates = []
    for t in texts:
        words = t.split()
        grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    return float(np.mean(rates)) if rates else 0.0


def evaluate_system(system) -> dict[str, float]:
    """Held-out LM loss, judge accuracy, transfer/leakage/confusion, fluency, relevance, failure modes."""
    from imaginate.systems.styled_text.losses import lm_loss
    from imaginate.systems.styled_text.system import pad_rows

    cfg = system.cfg
    held = system.corpus.heldout
    judge = unwrap(system.style_judge)
    fluency = unwrap(system.fluency_judge)
    metrics: dict[str, float] = {}

    # 1. Held-out reconstruction with a reference of the same style (another paragraph).
    rng = random.Random(0)
    n = min(len(held), 256)
    targets = list(range(n))
    refs = [system.other_in_style("heldout", i, rng) for i in targets]
    seq, _ = pad_rows([system.sequence("heldout", i) for i in targets], cfg.data.max_len + 1)
    ref_ids, ref_valid = system.references("heldout", refs)
    gen = unwrap(system.generator)
    dev = system.ctx.device
    code = gen["encoder"](ref_ids.to(dev), ref_valid.to(dev))
    seq = seq.to(dev)
    metrics["val_lm_nats"] = float(lm_loss(gen["decoder"](seq[:, :-1], code), seq[:, 1:]))

    # 2. The judge on real held-out continuations (the number transfer accuracy is read against).
    labels = np.array([p.style for p in held])
    metrics["judge_accuracy"] = float((judge.predict([p.continuation for p in held]) == labels).mean())

    # 3. Transfer: context A, reference B != A.
    items = transfer_items(system, cfg.eval_pairs, cfg.train.seed, cfg.eval_temperature, cfg.eval_len)
    pred = judge.predict([it.continuation for it in items])
    ref_style = np.array([it.reference_style for it in items])
    ctx_style = np.array([it.context_style for it in items])
    metrics["transfer_accuracy"] = float((pred == ref_style).mean())
    metrics["context_leakage"] = float((pred == ctx_style).mean())
    k = len(system.corpus.styles)
    for b in range(k):
        row = pred[ref_style == b]
        for c in range(k):
            metrics[f"confusion_{b}_{c}"] = float((row == c).mean()) if len(row) else 0.0

    # 4. Fluency beside real held-out text.
    contexts = [it.context for it in items]
    metrics["fluency_bpb"] = fluency.bits_per_byte(contexts, [it.continuation for it in items])
    real = held[: cfg.eval_pairs]
    metrics["real_bpb"] = fluency.bits_per_byte([context_text(system, p) for p in real],
                                                [p.continuation for p in real])

    # 5. Relevance to the own context vs a shuffled one.
    metrics["relevance_own"], metrics["relevance_shuffled"] = relevance(system, items, cfg.train.seed)

    # 6. Failure modes: empty outputs, loops, a style code that ignores the reference.
    metrics["empty_rate"] = float(np.mean([len(it.continuation.strip()) == 0 for it in items]))
    metrics["repetition_rate"] = repetition_rate([it.continuation for it in items])
    if gen["decoder"].injection != "unconditional":
        codes = torch.stack([system.style_code([p.text]) for p in held[:200]]).float()  # [N, S]
        styles = torch.tensor([p.style for p in held[:200]])
        unit = torch.nn.functional.normalize(codes, dim=1)
        sim = unit @ unit.T
        same = styles[:, None] == styles[None]
        off = ~torch.eye(len(styles), dtype=torch.bool)
        metrics["code_same_style_cos"] = float(sim[same & off].mean())
        metrics["code_other_style_cos"] = float(sim[~same].mean())
        # a code that ignores its reference: same-style and other-style codes equally alike
        metrics["dead_style_code"] = float(metrics["code_same_style_cos"] - metrics["code_other_style_cos"] < 0.02)
    metrics = {k: (v if math.isfinite(v) else float("nan")) for k, v in metrics.items()}
    return metrics
