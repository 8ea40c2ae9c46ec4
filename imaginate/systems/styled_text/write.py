"""``imaginate write``: continue a context sentence in the style of an example text, with a trained run.

    imaginate write --checkpoint runs/styled_text-tiny --context "The compiler said no." \\
        --style-example poem.txt --num 3 --temperature 0.7 --seed 0

The example file's paragraphs (separated by ``%`` lines or blank lines) are each encoded and their style
codes averaged. The same seed gives the same continuations.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from imaginate.data.styled_corpus import read_style_text, split_paragraphs


def write(run_dir: str, context: str, style_example: str, num: int = 3, temperature: float = 0.7, seed: int = 0,
          length: int | None = None, device: str = "auto") -> list[str]:
    """``num`` continuations of ``context`` in the style of the text in ``style_example``."""
    from imaginate.cli import UserError
    from imaginate.engine import load_run

    if num < 1:
        raise UserError(f"--num must be >= 1, got {num}")
    if temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {temperature}")
    if not context.strip():
        raise UserError("--context is empty")
    example = Path(style_example)
    if not example.is_file():
        raise UserError(f"--style-example {style_example}: no such file")
    paragraphs = split_paragraphs(read_style_text(example, "--style-example"))  # one-line DataError if bad
    if not str(run_dir).startswith("zoo:") and not Path(run_dir).is_dir():
        raise UserError(f"--checkpoint {run_dir}: no such run folder")
    spec, _, system, _ = load_run(Path(run_dir), device=device)
    if spec.name != "styled_text":
        raise UserError(f"--checkpoint {run_dir}: a {spec.name} run, not a styled_text one")
    return write_with(system, context, paragraphs, num, temperature, seed, length)


def write_with(system, context: str, paragraphs: list[str], num: int = 3, temperature: float = 0.7, seed: int = 0,
               length: int | None = None) -> list[str]:
    """``write`` with a loaded styled_text system and the example's paragraphs (their codes averaged)."""
    from imaginate.systems.styled_text.evaluation import write_continuations

    system.train(False)
    with torch.no_grad():
        code = system.style_code(paragraphs)  # [S] or None (unconditional run)
        codes = None if code is None else code.unsqueeze(0).expand(num, -1)
        return write_continuations(system, [context] * num, codes, length or system.cfg.eval_len, temperature, seed)


def _cmd_write(args: argparse.Namespace) -> int:
    texts = write(args.checkpoint, args.context, args.style_example, args.num, args.temperature, args.seed,
                  args.length, args.device)
    for i, text in enumerate(texts):
        print(f"--- {i + 1}\n{args.context}{text}")
    return 0


def add_write_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``write`` (styled continuation of a context) on an argparse sub-parser set."""
    p = subparsers.add_parser(
        "write", help="continue a sentence in the style of an example text with a styled_text run",
        description="Continue --context in the style of --style-example with a styled_text run's newest "
                    "checkpoint; prints --num continuations (deterministic under --seed).")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a styled_text run folder or zoo:NAME")
    p.add_argument("--context", required=True, help="the sentence to continue")
    p.add_argument("--style-example", required=True, metavar="FILE", help="a UTF-8 text file in the target style")
    p.add_argument("--num", type=int, default=3, help="continuations (default: 3)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature, 0 = greedy (default: 0.7)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--length", type=int, default=None, help="tokens to write (default: the run's eval_len)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_cmd_write)
    return p
