"""Writing continuations: differentiable Gumbel rollouts for training, sampled text for evaluation and
``imaginate write``. Both run the decoder on a left-padded ``<pad>.. <bos> context <sep>`` prompt."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from imaginate.systems.styled_text.losses import gumbel_softmax_st
from imaginate.systems.styled_text.model import StyledDecoder
from imaginate.systems.styled_text.tokenizer import BOS, EOS, PAD, SEP


def prompt_batch(contexts: list[list[int]], max_context: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Left-padded prompts ``<bos> context[-max_context:] <sep>``: ids [B, C + 2] and valid [B, C + 2]."""
    rows = [[BOS] + c[:max_context] + [SEP] for c in contexts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
    return ids.to(device), (ids != PAD).to(device)


def after_eos(tokens: Tensor) -> Tensor:
    """[B, L] ids -> [B, L] bool, True strictly after the first <eos> (those tokens are padding)."""
    seen = (tokens == EOS).long().cumsum(1)
    return (seen - (tokens == EOS).long()) > 0


def gumbel_rollout(decoder: StyledDecoder, prompt: Tensor, prompt_valid: Tensor, code: Tensor | None, length: int,
                   tau: float, hard: bool = True) -> Tensor:
    """Free-running continuation of ``length`` tokens whose every step is a Gumbel-softmax sample fed back as
    a row over the vocabulary, so gradients reach the decoder (and the code) through the whole rollout.

    prompt [B, C] ids, prompt_valid [B, C] bool, code [B, S] -> generated rows [B, length, V].
    """
    vocab = decoder.head.out_features
    rows = F.one_hot(prompt, vocab).float()  # [B, C, V]
    ones = prompt_valid.new_ones(prompt.shape[0], 1)
    valid = prompt_valid
    out = []
    for _ in range(length):
        logits = decoder(rows, code, valid, last_only=True)[:, -1]  # [B, V]
        sample = gumbel_softmax_st(logits, tau, hard)  # [B, V]
        out.append(sample)
        rows = torch.cat([rows, sample.unsqueeze(1)], 1)
        valid = torch.cat([valid, ones], 1)
    return torch.stack(out, 1)  # [B, L, V]


@torch.no_grad()
def sample_continuations(decoder: StyledDecoder, prompt: Tensor, prompt_valid: Tensor, code: Tensor | None,
                         length: int, temperature: float, generator: torch.Generator) -> Tensor:
    """Sampled continuation ids [B, length] (tokens after the first <eos> are set to <pad>);
    ``temperature`` 0 is greedy. Deterministic given ``generator``."""
    ids, valid = prompt, prompt_valid
    ones = prompt_valid.new_ones(prompt.shape[0], 1)
    out = []
    for _ in range(length):
        logits = decoder(ids[:, -decoder.max_len:], code, valid[:, -decoder.max_len:], last_only=True)[:, -1].float()
        logits[:, PAD] = float("-inf")
        logits[:, BOS] = float("-inf")
        logits[:, SEP] = float("-inf")
        if temperature <= 0:
            nxt = logits.argmax(-1)
        else:
            probs = F.softmax(logits / temperature, -1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(ids.device)
        out.append(nxt)
        ids = torch.cat([ids, nxt[:, None]], 1)
        valid = torch.cat([valid, ones], 1)
    tokens = torch.stack(out, 1)  # [B, L]
    return tokens.masked_fill(after_eos(tokens) | (tokens == EOS), PAD)
