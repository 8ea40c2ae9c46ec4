"""Tokenisers trained locally on the training paragraphs (nothing downloaded): byte-level BPE through the
``tokenizers`` library, or raw UTF-8 bytes. Both reserve the same four special ids at the start.

A tokeniser serialises to a JSON string; :class:`TokenizerState` keeps that string as a uint8 buffer so the
tokeniser travels inside the run's checkpoints and ``final.safetensors`` like any weight.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import torch
from torch import nn

SPECIALS = ("<pad>", "<bos>", "<sep>", "<eos>")
PAD, BOS, SEP, EOS = range(4)


class ByteTokenizer:
    """Raw UTF-8 bytes: id = byte + 4 (ids 0..3 are the specials)."""

    kind = "bytes"

    @property
    def vocab_size(self) -> int:
        return 256 + len(SPECIALS)

    def encode(self, text: str) -> list[int]:
        return [b + len(SPECIALS) for b in text.encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        data = bytes(i - len(SPECIALS) for i in ids if i >= len(SPECIALS))
        return data.decode("utf-8", errors="replace")

    def to_json(self) -> str:
        return json.dumps({"kind": "bytes"})


class BPETokenizer:
    """Byte-level BPE (GPT-2 style byte alphabet, so every string round-trips), trained on ``texts``."""

    kind = "bpe"

    def __init__(self, tokenizer) -> None:  # a tokenizers.Tokenizer
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i >= len(SPECIALS)], skip_special_tokens=True)

    def to_json(self) -> str:
        return json.dumps({"kind": "bpe", "tokenizer": self.tokenizer.to_str()})


Tokenizer = ByteTokenizer | BPETokenizer


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """``kind``: ``bpe`` (trained on ``texts``) or ``bytes``."""
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size)
    raise ValueError(f"tokenizer kind '{kind}' is not one of bpe, bytes")


def tokenizer_from_json(text: str) -> Tokenizer:
    spec = json.loads(text)
    if spec["kind"] == "bytes":
        return ByteTokenizer()
    from tokenizers import Tokenizer as HFTokenizer

    return BPETokenizer(HFTokenizer.from_str(spec["tokenizer"]))


class TokenizerState(nn.Module):
    """Holds a tokeniser's JSON as a uint8 buffer ``json_bytes`` [N]; loading a state dict of another
    length replaces the buffer and rebuilds ``self.tokenizer`` (so a loaded run uses ITS tokeniser)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.register_buffer("json_bytes", self._bytes(tokenizer))

    @staticmethod
    def _bytes(tokenizer: Tokenizer) -> torch.Tensor:
        return torch.tensor(list(tokenizer.to_json().encode("utf-8")), dtype=torch.uint8)  # [N]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        key = prefix + "json_bytes"
        if key in state_dict:
            saved = state_dict[key].to(torch.uint8).cpu()
            self.json_bytes = saved.clone().to(self.json_bytes.device)
            self.tokenizer = tokenizer_from_json(bytes(saved.tolist()).decode("utf-8"))
        elif strict:
            missing_keys.append(key)
