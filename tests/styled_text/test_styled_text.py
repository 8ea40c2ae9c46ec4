"""styled_text: tokeniser, data pairing, Gumbel-softmax, judges' data, determinism, bad inputs, training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from imaginate.cli import main
from imaginate.config import build_config
from imaginate.data.styled_corpus import load_styled_corpus, split_context
from imaginate.engine import RunContext, run_training
from imaginate.engine.distributed import DistEnv
from imaginate.registry import get_system
from imaginate.systems.styled_text.judges import FluencyJudge, StyleJudge
from imaginate.systems.styled_text.losses import gumbel_softmax_st
from imaginate.systems.styled_text.model import INJECTIONS, StyledDecoder
from imaginate.systems.styled_text.tokenizer import TokenizerState, train_tokenizer
from imaginate.systems.styled_text.write import write

FAST = ["train.steps=20", "train.batch_size=8", "train.log_every=1", "train.ckpt_every=20", "train.num_threads=1",
        "train.device=cpu", "loss.adversarial_start=10", "loss.rollout_len=4", "loss.rollout_batch=4",
        "judge.lm_steps=5", "judge.lm_batch=4", "judge.lm_context=64", "eval_pairs=10", "eval_len=6",
        "model.d_model=32", "model.style_dim=16", "data.vocab_size=400"]
TEXTS = ["Hello, world!\n\tIndented -- line.  Two  spaces.", "ÜBER naïve café ☕ 日本語 emoji 🎉\r\n%",
         "ZIPPY: Am I in a PARKING lot yet?", "", " leading space", "trailing newline\n\n"]


def test_split_context_keeps_every_character() -> None:
    for text in ["First sentence here. Then the rest of it follows.", "ONE LONG LINE WITHOUT ANY SENTENCE END AT ALL",
                 "Absent, adj.:\n    Exposed to the attacks of friends."]:
        context, continuation = split_context(text)
        assert context + continuation == text and context and continuation


@pytest.mark.parametrize("kind", ["bpe", "bytes"])
def test_tokenizer_round_trips_exactly_and_travels_in_a_state_dict(kind: str) -> None:
    corpus = load_styled_corpus("bundled")
    tok = train_tokenizer(kind, [p.text for p in corpus.train], 500)
    for text in TEXTS + [p.text for p in corpus.heldout[:50]]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.decode(ids).encode("utf-8") == text.encode("utf-8")
    if kind == "bpe":  # BPE actually merges: fewer tokens than bytes
        sample = corpus.heldout[0].text
        assert len(tok.encode(sample)) < len(sample.encode("utf-8"))
    state = TokenizerState(tok).state_dict()
    other = TokenizerState(train_tokenizer(kind, ["something else entirely"], 300))
    other.load_state_dict(state)
    assert other.tokenizer.encode(TEXTS[0]) == tok.encode(TEXTS[0])


def _system(overrides: list[str] | None = None):
    spec = get_system("styled_text")
    cfg = build_config(spec.config_cls, preset="tiny", system="styled_text", overrides=FAST + (overrides or []))
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0, global_batch=8)
    return spec.system_cls(cfg, ctx)


def test_style_code_never_comes_from_the_target_paragraph() -> None:
    system = _system()
    for step in range(40):
        batch = system.train_batch(step)
        targets, refs = batch["target_index"].tolist(), batch["reference_index"].tolist()
        for i, (t, r) in enumerate(zip(targets, refs)):
            assert t != r
            assert system.corpus.train[t].style == system.corpus.train[r].style
            ref_tokens = system.tokens["train"][r][2][: system.cfg.data.ref_len]
            assert batch["reference"][i, : len(ref_tokens)].tolist() == ref_tokens


def test_gumbel_softmax_forward_is_one_hot_and_gradient_flows() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 5, 11, requires_grad=True)
    sample = gumbel_softmax_st(logits, tau=0.5)
    assert torch.equal(sample.detach().sum(-1), torch.ones(6, 5))
    assert torch.equal(sample.detach().max(-1).values, torch.ones(6, 5))
    assert set(sample.detach().unique().tolist()) == {0.0, 1.0}
    (sample * torch.randn(11)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0 and torch.isfinite(logits.grad).all()
    soft = gumbel_softmax_st(logits, tau=0.5, hard=False)
    assert (soft.detach() < 1).all() and torch.allclose(soft.detach().sum(-1), torch.ones(6, 5))


@pytest.mark.parametrize("injection", INJECTIONS)
def test_decoder_is_causal_and_left_padding_changes_nothing(injection: str) -> None:
    torch.manual_seed(0)
    decoder = StyledDecoder(50, 20, 32, 2, 4, 8, injection).eval()
    code = torch.randn(2, 8)
    ids = torch.randint(4, 50, (2, 10))
    logits = decoder(ids, code)
    changed = ids.clone()
    changed[:, 6:] = 7
    torch.testing.assert_close(decoder(changed, code)[:, :6], logits[:, :6])
    padded = torch.cat([torch.zeros(2, 3, dtype=torch.int64), ids], 1)
    valid = torch.cat([torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 10, dtype=torch.bool)], 1)
    torch.testing.assert_close(decoder(padded, code, valid)[:, 3:], logits, atol=1e-5, rtol=1e-4)
    if injection != "unconditional":  # the code matters (adaptive norms start at zero: nudge them)
        for p in decoder.parameters():
            p.data += 0.05 * torch.randn_like(p)
        assert not torch.allclose(decoder(ids, code), decoder(ids, torch.randn(2, 8)))


def test_judges_see_only_the_training_split(monkeypatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(StyleJudge, "fit", lambda self, texts, labels: seen.extend(texts))
    monkeypatch.setattr(FluencyJudge, "fit", lambda self, texts, *args, **kwargs: seen.extend(texts))
    system = _system()
    system.ensure_judges()
    train_texts = {p.text for p in system.corpus.train} | {p.continuation for p in system.corpus.train}
    heldout = {p.text for p in system.corpus.heldout} | {p.continuation for p in system.corpus.heldout}
    assert seen and set(seen) <= train_texts
    assert not (set(seen) & (heldout - train_texts))
    assert {p.text for p in system.corpus.train} <= set(seen)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    run = tmp_path_factory.mktemp("styled") / "run"
    spec = get_system("styled_text")
    cfg = build_config(spec.config_cls, preset="tiny", system="styled_text", overrides=FAST)
    metrics = run_training(spec, cfg, run, progress=False)
    return run, metrics


def test_tiny_preset_trains_20_steps_with_finite_losses(tiny_run) -> None:
    run, metrics = tiny_run
    from imaginate.engine.logging import read_metrics

    rows = [r for r in read_metrics(run) if r["split"] == "train"]
    assert len(rows) == 20
    assert all(math.isfinite(r["generator_loss"]) for r in rows)
    adversarial = [r for r in rows if "discriminator_loss" in r]
    assert len(adversarial) == 10 and all(math.isfinite(r["discriminator_loss"]) for r in adversarial)
    assert rows[-1]["lm_nats"] < rows[0]["lm_nats"]
    assert all(math.isfinite(metrics[k]) for k in ("val_lm_nats", "fluency_bpb", "transfer_accuracy"))


def test_generation_is_deterministic_under_a_seed(tiny_run, tmp_path) -> None:
    run, _ = tiny_run
    example = tmp_path / "example.txt"
    example.write_text("ARE we having FUN yet?\n%\nYow! I am a TOASTER!\n")
    first = write(str(run), "The kernel panicked.", str(example), num=3, temperature=1.0, seed=5, device="cpu")
    again = write(str(run), "The kernel panicked.", str(example), num=3, temperature=1.0, seed=5, device="cpu")
    other = write(str(run), "The kernel panicked.", str(example), num=3, temperature=1.0, seed=6, device="cpu")
    assert len(first) == 3 and first == again
    assert other != first


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"\x00\x01\x02binary\x00", "binary"),
                                            (b"caf\xe9 \xff\xfe latin-1", "not UTF-8")])
def test_bad_style_file_is_one_line_naming_it(tmp_path, capsys, content: bytes, reason: str) -> None:
    bad = tmp_path / "style_example.txt"
    bad.write_bytes(content)
    code = main(["write", "--checkpoint", str(tmp_path), "--context", "Hello.", "--style-example", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(bad) in err and reason in err


def test_bad_style_file_in_a_user_folder_names_it(tmp_path) -> None:
    from imaginate.data import DataError

    (tmp_path / "poems.txt").write_text("A first poem line that is long enough.\n\nAnother stanza long enough too.\n")
    (tmp_path / "broken.txt").write_bytes(b"\xff\xfe\x00\x00")
    with pytest.raises(DataError, match="broken.txt"):
        load_styled_corpus(str(tmp_path))
