"""The style classifier on the code (``loss.code_class``, ``loss.style_class``): it keeps the code alive by
learning the reference's style from it, and it refuses a style term without its classifier."""

import torch

from imaginate.cli import main
from imaginate.config import build_config
from imaginate.data.styled_corpus import DEFAULT_STYLES
from imaginate.engine import RunContext
from imaginate.engine.distributed import DistEnv
from imaginate.registry import get_system
from imaginate.systems.styled_text.judges import FluencyJudge, StyleJudge

FAST = ["train.batch_size=8", "train.device=cpu", "loss.adversarial_start=11", "loss.adversarial=0", "loss.rollout_len=4",
        "loss.rollout_batch=4", "model.d_model=32", "model.style_dim=16", "data.vocab_size=400"]


def _system(overrides: list[str]):
    spec = get_system("styled_text")
    cfg = build_config(spec.config_cls, preset="tiny", system="styled_text", overrides=FAST + overrides)
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), amp=False, grad_accum=1, seed=0, global_batch=8)
    return spec.system_cls(cfg, ctx)


def test_style_term_without_its_classifier_is_one_line_exit_2(tmp_path, capsys):
    assert main(["train", "styled_text", "--preset", "tiny", "--out", str(tmp_path / "r"), "loss.style_class=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss.style_class" in err[0] and "Traceback" not in err[0]


def test_classifier_only_exists_when_asked_and_batches_carry_the_styles():
    assert "style_head" not in _system([]).generator
    system = _system(["loss.code_class=1"])
    assert system.generator["style_head"].out_features == len(DEFAULT_STYLES)
    batch = system.train_batch(3)
    train = system.corpus.train
    assert batch["reference_style"].tolist() == [train[int(i)].style for i in batch["reference_index"]]
    assert batch["reference_style"].tolist() == [train[int(i)].style for i in batch["target_index"]]


def test_code_class_term_teaches_the_encoder_the_reference_style(monkeypatch):
    monkeypatch.setattr(StyleJudge, "fit", lambda self, texts, labels: None)  # judges are not under test
    monkeypatch.setattr(FluencyJudge, "fit", lambda self, *args, **kwargs: None)
    torch.set_num_threads(1)  # tiny matrices: a second thread only waits (conftest restores the count)
    torch.manual_seed(0)
    system = _system(["loss.code_class=1", "loss.style_class=0.5", "loss.lr=0.003"])
    batch = system.train_batch(0)
    logs = [system.train_step(batch) for _ in range(12)]
    assert logs[-1]["code_class_nats"] < 0.5 * logs[0]["code_class_nats"]
    assert "style_class_nats" in logs[-1] and torch.isfinite(torch.tensor(logs[-1]["style_class_nats"]))
