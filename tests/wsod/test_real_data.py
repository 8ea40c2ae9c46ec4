"""The detector on data a user brings: backbone weights from a local file, AMP on the CPU, proposal
caches that tell folders apart, VOC2012 ids against wetectron's pickles, COCO folders, points and
scribbles through VOC XML."""

import logging

import pytest
import torch
import torchvision

from imaginate.cli import main
from imaginate.config import ConfigError
from imaginate.systems.wsod.model import WSODModelConfig, WSODNet, read_state_dict


def _vgg16_features_state(path):
    """torchvision's VGG16 convolutions (``features.*``), randomly initialised, saved to ``path``."""
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    torch.save(state, path)
    return state


def _vgg_config(**kw):
    return WSODModelConfig(num_classes=3, backbone="vgg16", neck_dim=8, **kw)


# ---------------------------------------------------------------- backbone weights


def test_backbone_weights_load_and_only_then_freeze(tmp_path, caplog):
    state = _vgg16_features_state(tmp_path / "vgg16.pth")
    net = WSODNet(_vgg_config(frozen_stages=2, backbone_weights=str(tmp_path / "vgg16.pth")))
    assert net.loaded_weights == ["conv"]  # the neck is 8 wide: fc6 / fc7 do not fit and stay random
    convs = net.backbone.conv_layers()
    keys = sorted({k.rsplit(".", 1)[0] for k in state}, key=lambda k: int(k.split(".")[1]))
    for conv, key in zip(convs, keys):
        assert torch.equal(conv.weight, state[f"{key}.weight"]) and torch.equal(conv.bias, state[f"{key}.bias"])
    flags = [p.requires_grad for stage in net.backbone.stages for p in stage.parameters()]
    assert flags[:8] == [False] * 8 and all(flags[8:])  # conv1_1 .. conv2_2 frozen
    assert not any(p is convs[0].weight for p in net.detector_parameters())
    # without weights: nothing frozen, and a warning says so
    with caplog.at_level(logging.WARNING, logger="imaginate.systems.wsod.model"):
        scratch = WSODNet(_vgg_config(frozen_stages=2))
    assert all(p.requires_grad for p in scratch.parameters())
    assert "frozen_stages=2 ignored" in caplog.text


def test_fc6_fc7_load_when_their_shapes_fit(tmp_path):
    state = _vgg16_features_state(tmp_path / "vgg16.pth")
    state["classifier.0.weight"], state["classifier.0.bias"] = torch.randn(8, 512 * 7 * 7), torch.randn(8)
    state["classifier.3.weight"], state["classifier.3.bias"] = torch.randn(8, 8), torch.randn(8)
    torch.save(state, tmp_path / "with_fc.pth")
    net = WSODNet(_vgg_config(backbone_weights=str(tmp_path / "with_fc.pth")))
    assert net.loaded_weights == ["conv", "fc6", "fc7"]
    assert torch.equal(net.roi_neck.fc6.weight, state["classifier.0.weight"])
    assert torch.equal(net.roi_neck.fc7.bias, state["classifier.3.bias"])


def test_bad_weights_files_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no file .*absent.pth"):
        read_state_dict(str(tmp_path / "absent.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read .*junk.pth"):
        read_state_dict(str(tmp_path / "junk.pth"))
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(ConfigError, match="resnet18.pth is a ResNet state dict"):
        WSODNet(_vgg_config(backbone_weights=str(tmp_path / "resnet18.pth")))
    state = _vgg16_features_state(tmp_path / "vgg16.pth")
    state["features.28.weight"] = torch.zeros(512, 256, 3, 3)  # conv5_3 with the wrong input width
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(ConfigError, match=r"wrong.pth: features.28.weight is \[512, 256, 3, 3\]"):
        WSODNet(_vgg_config(backbone_weights=str(tmp_path / "wrong.pth")))
    with pytest.raises(ValueError, match="model.backbone_weights"):
        WSODModelConfig(backbone="small", backbone_weights="x.pth")


@pytest.mark.parametrize("name", ["absent.pth", "resnet18.pth"])
def test_cli_exits_2_naming_the_weights_file(tmp_path, capsys, name):
    if name == "resnet18.pth":
        torch.save(torchvision.models.resnet18().state_dict(), tmp_path / name)
    code = main(["train", "wsod", "--preset", "tiny", "--no-progress", "--out", str(tmp_path / "run"),
                 "model.backbone=vgg16", f"model.backbone_weights={tmp_path / name}", "train.steps=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and name in err[0], err
