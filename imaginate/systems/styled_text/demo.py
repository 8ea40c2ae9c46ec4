"""The styled_text part of ``imaginate demo``: a short run on the bundled fortunes subset (judges fitted on
its training split), the transfer / leakage / fluency numbers with the judge's own accuracy beside them,
and a few continuations written by the ``imaginate write`` code path."""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

DEMO_STEPS = 120  # 90 LM-only steps + 30 adversarial ones; judges: 100 LM steps (about 60 s on 2 idle cores)
OVERRIDES = [f"train.steps={DEMO_STEPS}", "train.ckpt_every=0", "train.log_every=20", "train.num_threads=2",
             "loss.adversarial_start=90", "loss.tau_anneal_steps=30", "judge.lm_steps=100", "judge.lm_context=128",
             "eval_pairs=40", "eval_len=32"]


def demo(out_dir: Path) -> ReportPart:
    from imaginate.engine import run_training
    from imaginate.registry import get_system
    from imaginate.systems.styled_text.write import write

    spec = get_system("styled_text")
    start = time.time()
    folder = out_dir / "styled_text"
    run_dir = folder / "tiny"
    overrides = OVERRIDES + [f"judge.cache={folder / 'judges.safetensors'}"]
    cfg = build_config(spec.config_cls, preset="tiny", system="styled_text", overrides=overrides)
    metrics = run_training(spec, cfg, run_dir, resume=(run_dir / "checkpoints").is_dir(), progress=False)
    from imaginate.data.styled_corpus import BUNDLED_DIR, load_styled_corpus

    corpus = load_styled_corpus("bundled", tuple(cfg.data.styles), cfg.data.heldout_fraction,
                                cfg.data.max_per_style, cfg.data.split_seed)
    rows = [["style judge accuracy on held-out real continuations", f"{metrics['judge_accuracy']:.3f}"],
            ["transfer accuracy (judged as the reference's style B)", f"{metrics['transfer_accuracy']:.3f}"],
            ["context leakage (judged as the context's style A)", f"{metrics['context_leakage']:.3f}"],
            ["chance level (1 / styles)", f"{1 / len(corpus.styles):.3f}"],
            ["fluency: bits per byte of continuations under the judge LM", f"{metrics['fluency_bpb']:.3f}"],
            ["bits per byte of real held-out continuations", f"{metrics['real_bpb']:.3f}"],
            ["relevance: TF-IDF cosine with own context / shuffled context",
             f"{metrics['relevance_own']:.3f} / {metrics['relevance_shuffled']:.3f}"]]
    samples = []
    context = "I never said I was a computer expert."
    for style in ("zippy", "songs-poems", "definitions"):
        held = [p.text for p in corpus.heldout if corpus.styles[p.style] == style][:3]
        example = folder / f"example_{style}.txt"
        example.write_text("\n%\n".join(held) + "\n")
        for text in write(str(run_dir), context, str(example), num=1, temperature=0.7, seed=0, device="cpu"):
            samples.append([style, context + " " + " ".join(text.split())])
    text = (f"A style encoder, an adaln-conditioned transformer decoder and a pair discriminator (Gumbel-softmax "
            f"straight-through samples) trained for {DEMO_STEPS} steps on the fortunes subset bundled in "
            f"{BUNDLED_DIR.name}/ ({', '.join(corpus.styles)}). A run this short mostly learns the surface of "
            "each style (capitals, line breaks, attributions); the measured runs are in docs/results/styled_text.md.")
    return ReportPart("styled_text", "Style-example-guided text generation (arXiv 2003.00674)", text,
                      [Table(f"styled_text after {DEMO_STEPS} steps (held-out contexts A, references B != A)",
                             ["metric", "value"], rows),
                       Table("imaginate write: the same context in three reference styles",
                             ["reference style", "context + continuation"], samples)],
                      [], time.time() - start)
