"""Config and CLI errors: one line naming the key, exit status 2, no traceback."""

import pytest

from imaginate.cli import main
from imaginate.config import ConfigError, TrainConfig, build_config
from imaginate.systems.classify.system import ClassifyConfig


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["optim.lrr=0.1"], "optim.lrr"),
        (["nosuch.key=1"], "nosuch"),
        (["train.steps=many"], "train.steps"),
        (["train.batch_size=0"], "train.batch_size"),
        (["optim.name=rmsprop"], "optim.name"),
        (["model.name=vit"], "model.name"),
        (["data.name=image_folder"], "data.root"),
        (["data.name=image_folder", "data.root=/no/such/folder"], "/no/such/folder"),
        (["data.name=fashion_mnist", "data.root=/no/such/fmnist"], "/no/such/fmnist"),
        (["steps"], "steps"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_it(overrides, named, tmp_path, capsys):
    code = main(["train", "classify", "--out", str(tmp_path / "run"), "--no-progress", *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert named in err


def test_unknown_preset_and_system(tmp_path, capsys):
    assert main(["train", "classify", "--preset", "huge", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "huge" in err and "tiny" in err  # names the preset and what is allowed
    assert main(["train", "nosystem"]) == 2
    assert "nosystem" in capsys.readouterr().err


def test_preset_then_overrides_merge_onto_dataclass_defaults():
    cfg = build_config(ClassifyConfig, preset="tiny", system="classify",
                       overrides=["optim.lr=0.02", "train.steps=7", "optim.g_bound=null"])
    assert isinstance(cfg, ClassifyConfig) and isinstance(cfg.train, TrainConfig)
    assert cfg.train.steps == 7 and cfg.optim.lr == 0.02 and cfg.optim.g_bound is None
    assert cfg.data.name == "digits"  # from the preset
    assert cfg.train.grad_accum == 1  # from the dataclass default


def test_post_init_validation_is_a_config_error():
    with pytest.raises(ConfigError, match="train.grad_accum"):
        build_config(ClassifyConfig, preset=None, system="classify", overrides=["train.grad_accum=0"])


def test_list_prints_every_system_with_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(s.startswith("classify") and "tiny" in s and "paper" in s for s in lines)
    assert any(s.startswith("charlm") for s in lines)


def test_every_verb_has_help(capsys):
    for verb in ("list", "train", "eval", "demo"):
        with pytest.raises(SystemExit) as exc:
            main([verb, "--help"])
        assert exc.value.code == 0
        assert "usage: imaginate" in capsys.readouterr().out
