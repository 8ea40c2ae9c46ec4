"""A character-level text corpus for language-model tasks; the default text ships with scikit-learn."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from imaginate.data.errors import DataError


@dataclass(eq=False)
class CharCorpus:
    """Text as token ids over a character vocabulary, split into train and validation.

    Args:
        vocab: the characters; token id i is ``vocab[i]``.
        train: [N] int64 token ids, the first part of the text.
        val: [M] int64 token ids, the last part of the text.
    """

    vocab: list[str]
    train: Tensor  # [N] int64
    val: Tensor  # [M] int64
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {ch: i for i, ch in enumerate(self.vocab)}
        if len(self._index) != len(self.vocab):
            raise ValueError("vocab has repeated characters")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> Tensor:
        """[len(text)] int64 token ids; a character outside the vocabulary raises ValueError."""
        try:
            return torch.tensor([self._index[ch] for ch in text], dtype=torch.int64)
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the corpus vocabulary") from e

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The text of [T] token ids."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return "".join(self.vocab[i] for i in values)

    @staticmethod
    def windows(data: Tensor, starts: Tensor, context: int) -> tuple[Tensor, Tensor]:
        """Training windows cut from a token sequence, without a Python loop over the batch.

        Args:
            data: [N] token ids.
            starts: [B] int64 window offsets, each in [0, N - context - 1].
            context: window length T.

        Returns:
            inputs [B, T] = data[s : s + T] and targets [B, T] = data[s + 1 : s + T + 1].
        """
        if context <= 0:
            raise ValueError(f"context must be positive, got {context}")
        if starts.numel() and (int(starts.min()) < 0 or int(starts.max()) + context >= data.shape[0]):
            raise ValueError(
                f"window starts must lie in [0, {data.shape[0] - context - 1}] for {data.shape[0]} tokens "
                f"and context {context}"
            )
        offsets = torch.arange(context + 1, device=data.device)  # [T + 1]
        chunks = data[starts.to(data.device).unsqueeze(1) + offsets]  # [B, T + 1]
        return chunks[:, :-1], chunks[:, 1:]


def sklearn_descr_dir() -> str:
    """The folder of dataset descriptions (.rst) inside the installed scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("scikit-learn is not installed: `pip install scikit-learn`, or pass a text file path")
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "descr")


@functools.lru_cache(maxsize=1)
def default_corpus_text() -> str:
    """scikit-learn's dataset description .rst files, concatenated in sorted file-name order."""
    folder = sklearn_descr_dir()
    names = sorted(n for n in os.listdir(folder) if n.endswith(".rst")) if os.path.isdir(folder) else []
    if not names:
        raise DataError(f"no dataset descriptions (*.rst) in {folder}: pass a text file path instead")
    parts = []
    for name in names:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            parts.append(f.read())
    return "\n".join(parts)


def _read_text_file(path: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"text file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"text file {path} is not UTF-8 (byte {e.start}): convert it to UTF-8") from e
    except OSError as e:
        raise DataError(f"cannot read text file {path}: {e}") from e
    if not text:
        raise DataError(f"text file {path} is empty")
    return text


def load_char_corpus(path: str | None = None, val_fraction: float = 0.1) -> CharCorpus:
    """A character corpus over the whole text, with the last ``val_fraction`` held out.

    Args:
        path: a UTF-8 text file; None uses scikit-learn's dataset descriptions (offline, ~43k chars).
        val_fraction: share of the text, taken from its end, used for validation, in (0, 1).

    Returns:
        CharCorpus with vocab = the sorted distinct characters of the whole text.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    text = default_corpus_text() if path is None else _read_text_file(path)
    if len(text) < 2:
        raise DataError(f"text {'(default corpus)' if path is None else path} has fewer than 2 characters")
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = torch.tensor([index[ch] for ch in text], dtype=torch.int64)  # [len(text)]
    n_val = min(max(1, round(len(text) * val_fraction)), len(text) - 1)
    return CharCorpus(vocab=vocab, train=ids[:-n_val], val=ids[-n_val:])
