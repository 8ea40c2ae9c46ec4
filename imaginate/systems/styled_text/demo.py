"""The styled_text part of ``imaginate demo``.

Default (zoo): the project's trained ``zoo:styled_text_tiny`` (no training): its style metrics on a fixed
batch of held-out (context A, reference B != A) pairs with the judge's own accuracy beside them, the same
contexts continued in the style of each style's example text (the ``imaginate write`` code path) with the
judge's verdict, the zoo entry's provenance and training curves.
``train=True`` (``imaginate demo --train``): a short run from scratch on the bundled fortunes subset."""

from __future__ import annotations

import time
from pathlib import Path

from imaginate.config import build_config
from imaginate.report import ReportPart, Table

ZOO_NAME = "styled_text_tiny"
FIXED_PAIRS = 60  # held-out (A, B != A) pairs of the fixed metric batch (3 per ordered style pair)
CONTEXTS = ("I never said I was a computer expert.", "The captain looked at the stars and sighed.")

DEMO_STEPS = 120  # 90 LM-only steps + 30 adversarial ones; judges: 100 LM steps (about 60 s on 2 idle cores)
OVERRIDES = [f"train.steps={DEMO_STEPS}", "train.ckpt_every=0", "train.log_every=20", "train.num_threads=2",
             "loss.adversarial_start=90", "loss.tau_anneal_steps=30", "judge.lm_steps=100", "judge.lm_context=128",
             "eval_pairs=40", "eval_len=32"]


def _demo_train(out_dir: Path) -> ReportPart:
    """``imaginate demo --train``: a short run from scratch (the pre-zoo demo)."""
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


def demo(out_dir: Path, train: bool = False) -> ReportPart:
    """The styled_text demo part: on zoo weights by default, from scratch with ``train=True``."""
    return _demo_train(out_dir) if train else _demo_zoo(out_dir)


def _demo_zoo(out_dir: Path) -> ReportPart:
    import dataclasses

    import torch

    from imaginate.engine import load_run, unwrap
    from imaginate.systems.styled_text.evaluation import evaluate_system
    from imaginate.systems.styled_text.write import write_with
    from imaginate.zoo.report import curves_png, provenance_table

    torch.set_num_threads(2)
    start = time.time()
    folder = out_dir / "styled_text"
    folder.mkdir(parents=True, exist_ok=True)
    _, cfg, system, _ = load_run(f"zoo:{ZOO_NAME}", device="cpu")
    system.train(False)
    corpus, judge = system.corpus, unwrap(system.style_judge)
    fixed = dataclasses.replace(cfg, eval_pairs=FIXED_PAIRS)  # seed, length, temperature as recorded
    system.cfg = fixed
    with torch.no_grad():
        metrics = evaluate_system(system)
    system.cfg = cfg
    k = len(corpus.styles)
    rows = [["style judge accuracy on held-out real continuations", f"{metrics['judge_accuracy']:.3f}"],
            ["transfer accuracy (judged as the reference's style B)", f"{metrics['transfer_accuracy']:.3f}"],
            ["context leakage (judged as the context's style A)", f"{metrics['context_leakage']:.3f}"],
            ["chance level (1 / styles)", f"{1 / k:.3f}"],
            ["fluency: bits per byte of continuations under the judge LM", f"{metrics['fluency_bpb']:.3f}"],
            ["bits per byte of real held-out continuations", f"{metrics['real_bpb']:.3f}"],
            ["relevance: TF-IDF cosine with own context / shuffled context",
             f"{metrics['relevance_own']:.3f} / {metrics['relevance_shuffled']:.3f}"]]
    if "code_same_style_cos" in metrics:
        rows.append(["style code cosine, same style / other style (equal = a dead code)",
                     f"{metrics['code_same_style_cos']:.3f} / {metrics['code_other_style_cos']:.3f}"])
    samples, hits = [], 0
    for style in corpus.styles:
        b = corpus.styles.index(style)
        example = [p.text for p in corpus.heldout if p.style == b][:3]  # held-out paragraphs: never trained on
        (folder / f"example_{style}.txt").write_text("\n%\n".join(example) + "\n")
        for context in CONTEXTS:
            text = write_with(system, context, example, num=1, temperature=0.7, seed=0)[0]
            judged = corpus.styles[int(judge.predict([text])[0])]
            hits += judged == style
            samples.append([style, judged, context + " " + " ".join(text.split())])
    text = (f"zoo:{ZOO_NAME} (no training here): a style encoder, an adaln-conditioned transformer decoder and a "
            "pair discriminator trained on the fortunes subset bundled with the project "
            f"({', '.join(corpus.styles)}), with a style classifier on the code that keeps it alive (see "
            "docs/results/styled_text.md for the ablations without it, where the code died). Metrics on a fixed "
            f"batch of {FIXED_PAIRS} held-out pairs: context from style A, reference from style B != A; the style "
            "judge (character n-gram TF-IDF + logistic regression fitted on the training split) reads each "
            f"continuation. Below, {len(CONTEXTS)} fixed contexts continued in each style's example (3 held-out "
            f"paragraphs) by the `imaginate write` code path: the judge picks the example's style in {hits} of "
            f"{len(samples)}. The text is a small model's: the surface of a style (line breaks, names, "
            "attributions, capitals) more than its sense, and "
            + ("it does not yet follow its context (relevance to the own context is no higher than to a "
               "shuffled one)." if metrics["relevance_own"] <= metrics["relevance_shuffled"] + 0.002 else
               "it relates to its own context more than to a shuffled one."))
    images = [(f"zoo:{ZOO_NAME} training curves", curves_png(
        ZOO_NAME, ["lm_nats", "code_class_acc", "transfer_accuracy", "context_leakage"], folder / "curves.png",
        f"zoo:{ZOO_NAME}"))]
    return ReportPart("styled_text", "Style-example-guided text generation (arXiv 2003.00674)", text,
                      [Table(f"zoo:{ZOO_NAME} on {FIXED_PAIRS} held-out pairs (context A, reference B != A)",
                             ["metric", "value"], rows),
                       Table("imaginate write: fixed contexts in each reference style (judged = the style judge's "
                             "verdict)", ["reference style", "judged", "context + continuation"], samples),
                       provenance_table([ZOO_NAME])],
                      images, time.time() - start)
