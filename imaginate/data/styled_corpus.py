"""Paragraphs labelled with a style, split into train and held-out, each cut into a context and a continuation.

Three sources, one result (:class:`StyledCorpus`):

- ``fortunes``: Debian's ``fortunes`` package (``/usr/share/games/fortunes``, installed by ``make``); a few
  large, clearly different categories (never the offensive ``off/`` folder).
- ``bundled``: a small subset of the same categories vendored in ``imaginate/data/text_styles/`` (BSD
  licence of the fortune-mod package, see ``text_styles/NOTICE``), so tests and the demo need no package.
- a folder a user gives: one text file per style (``poems.txt``) or one folder per style (``poems/*.txt``).
  Paragraphs are separated by lines holding only ``%`` (the fortune format) or, without such lines, by
  blank lines.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from imaginate.data.errors import DataError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
BUNDLED_DIR = Path(__file__).resolve().parent / "text_styles"
# Large, clearly different fortune categories: dictionary entries, Linux quips, verse, Star Trek
# quotations with stardates, and Zippy the Pinhead's capitalised non-sequiturs.
DEFAULT_STYLES = ("definitions", "linux", "songs-poems", "startrek", "zippy")
MIN_CHARS, MAX_CHARS = 40, 600
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]*\s")


@dataclass(frozen=True)
class Paragraph:
    """One paragraph of one style: ``context`` + ``continuation`` == the paragraph's text."""

    style: int
    context: str
    continuation: str

    @property
    def text(self) -> str:
        return self.context + self.continuation


@dataclass
class StyledCorpus:
    """Args:
        styles: style names; ``Paragraph.style`` indexes this list.
        train: the training paragraphs (the only ones judges and models learn from).
        heldout: held-out paragraphs for evaluation.
        source: where the text came from (for reports).
    """

    styles: list[str]
    train: list[Paragraph]
    heldout: list[Paragraph]
    source: str

    def by_style(self, split: str) -> list[list[int]]:
        """Indices into ``train`` or ``heldout``, grouped by style."""
        items = self.train if split == "train" else self.heldout
        groups: list[list[int]] = [[] for _ in self.styles]
        for i, p in enumerate(items):
            groups[p.style].append(i)
        return groups


def split_context(text: str, max_context_chars: int = 160) -> tuple[str, str]:
    """Cut a paragraph after its first sentence (or first line); a paragraph of one sentence is cut after
    about a third of its words, so that every continuation is non-empty. The cut keeps the whitespace
    with the continuation side, so ``context + continuation == text``."""
    candidates = [m.end() - 1 for m in _SENTENCE_END.finditer(text)]
    candidates.append(text.find("\n") if "\n" in text else -1)
    for cut in sorted(c for c in candidates if c > 0):
        if 12 <= cut <= max_context_chars and len(text) - cut >= 12:
            return text[:cut], text[cut:]
    spaces = [m.start() for m in re.finditer(r"\s", text)]
    if not spaces:
        cut = len(text) // 3
    else:
        cut = min(spaces, key=lambda s: abs(s - min(len(text) // 3, max_context_chars)))
    return text[:cut], text[cut:]


def read_style_text(path: Path, what: str = "style file") -> str:
    """The UTF-8 text of ``path``; an empty, binary or undecodable file is a one-line DataError naming it."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{what} {path}: cannot be read ({e.strerror or e})") from None
    if not data.strip():
        raise DataError(f"{what} {path}: is empty")
    if b"\x00" in data:
        raise DataError(f"{what} {path}: is binary (holds NUL bytes), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path}: is not UTF-8 text (undecodable byte at offset {e.start})") from None
    printable = sum(ch.isprintable() or ch in "\n\t\r" for ch in text)
    if printable < 0.9 * len(text):
        raise DataError(f"{what} {path}: is binary (mostly unprintable characters), not text")
    return text


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs separated by ``%`` lines (fortune format), else by blank lines; stripped, non-empty."""
    text = text.replace("\r\n", "\n")
    parts = re.split(r"\n%\n", text) if re.search(r"(^|\n)%\n", text) else re.split(r"\n\s*\n", text)
    parts = [p.strip("%").strip() for p in parts]
    return [p.expandtabs(4) for p in parts if p]


def _style_files(root: Path) -> dict[str, list[Path]]:
    """name -> files: ``root/NAME.txt`` files, or ``root/NAME/`` folders of files."""
    found: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name in ("NOTICE", "README", "README.md"):
            continue
        if entry.is_dir():
            files = sorted(f for f in entry.rglob("*") if f.is_file() and not f.name.startswith("."))
            if files:
                found[entry.name] = files
        elif entry.is_file():
            found[entry.stem] = [entry]
    return found


def _collect(named_files: dict[str, list[Path]], what: str) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    for name, files in named_files.items():
        paragraphs = []
        for f in files:
            paragraphs += [p for p in split_paragraphs(read_style_text(f, what)) if MIN_CHARS <= len(p) <= MAX_CHARS]
        if not paragraphs:
            raise DataError(f"{what} {files[0]}: no paragraph of {MIN_CHARS}..{MAX_CHARS} characters")
        texts[name] = paragraphs
    return texts


def load_styled_corpus(source: str = "bundled", styles: tuple[str, ...] | list[str] = DEFAULT_STYLES,
                       heldout_fraction: float = 0.15, max_per_style: int = 0, split_seed: int = 0,
                       max_context_chars: int = 160) -> StyledCorpus:
    """Load, filter (40..600 characters), shuffle with ``split_seed`` and split each style's paragraphs.

    Args:
        source: ``bundled`` | ``fortunes`` | a folder path (one file or folder per style).
        styles: the categories of ``bundled``/``fortunes``; ignored for a folder (all its styles are used).
        heldout_fraction: share of each style held out, in (0, 1).
        max_per_style: keep at most this many paragraphs per style (0: all); balances large categories.
        split_seed: seeds the shuffle before the split (fixed across training seeds, so judges match).
        max_context_chars: longest context sentence.
    """
    if not 0 < heldout_fraction < 1:
        raise DataError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    if source in ("bundled", "fortunes"):
        root = BUNDLED_DIR if source == "bundled" else FORTUNES_DIR
        if not root.is_dir():
            raise DataError(f"{root}: not found; install Debian's fortunes (`make fortunes`) or use data.source=bundled")
        named = {}
        for s in styles:
            f = root / (f"{s}.txt" if source == "bundled" else s)
            if not f.is_file():
                raise DataError(f"{f}: style '{s}' not found in {root}")
            named[s] = [f]
        texts = _collect(named, "style file")
    else:
        root = Path(source)
        if not root.is_dir():
            raise DataError(f"data.source {source}: not 'bundled', 'fortunes' or an existing folder")
        named = _style_files(root)
        if len(named) < 2:
            raise DataError(f"data.source {source}: needs at least 2 styles (text files or folders), found {len(named)}")
        texts = _collect(named, "style file")
    names = list(texts)
    rng = random.Random(split_seed)
    train, heldout = [], []
    for k, name in enumerate(names):
        paragraphs = list(dict.fromkeys(texts[name]))  # exact duplicates would leak across the split
        rng.shuffle(paragraphs)
        if max_per_style:
            paragraphs = paragraphs[:max_per_style]
        if len(paragraphs) < 4:
            raise DataError(f"style '{name}' in {root}: only {len(paragraphs)} usable paragraphs (need >= 4)")
        n_held = max(2, round(len(paragraphs) * heldout_fraction))
        for i, text in enumerate(paragraphs):
            context, continuation = split_context(text, max_context_chars)
            (heldout if i < n_held else train).append(Paragraph(k, context, continuation))
    return StyledCorpus(names, train, heldout, str(root))
