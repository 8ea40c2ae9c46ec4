"""The detector on data a user brings: backbone weights from a local file, AMP on the CPU, proposal
caches that tell folders apart, VOC2012 ids against wetectron's pickles, COCO folders, points and
scribbles through VOC XML."""

import logging
import math

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


# ---------------------------------------------------------------- AMP

SMALL = ["data.num_train=8", "data.num_test=4", "eval.corloc_images=4", "model.width=8", "model.neck_dim=32",
         "data.proposal_method=sliding_window", "data.max_proposals=40", "train.batch_size=2", "data.image_size=64",
         "data.train_scales=[64]"]


def _system(tmp_path, *overrides):
    from imaginate.config import build_config
    from imaginate.engine import RunContext
    from imaginate.engine.distributed import DistEnv
    from imaginate.registry import get_system

    spec = get_system("wsod")
    cfg = build_config(spec.config_cls, preset="tiny", system="wsod",
                       overrides=SMALL + [f"data.proposal_cache={tmp_path / 'cache'}", *overrides])
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), cfg.train.amp, 1, 0, cfg.train.batch_size)
    return spec.system_cls(cfg, ctx)


@pytest.mark.parametrize("roi_op", ["pool", "align"])
def test_amp_trains_on_the_cpu(tmp_path, roi_op):
    system = _system(tmp_path, "train.amp=true", "cdb=true", "chunk_size=16", f"model.roi_op={roi_op}",
                     "refine_warmup_start=0")
    assert system.ctx.amp
    before = [p.detach().clone() for p in system.net.parameters()]
    logs = system.train_step(system.train_batch(0))
    assert math.isfinite(logs["detector_loss"]) and math.isfinite(logs["cdb_loss"])
    assert all(p.dtype == torch.float32 for p in system.net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, system.net.parameters()))
    with system.ctx.autocast():  # pooled features come back in autocast's dtype, computed in fp32
        net = system.net
        features = net.features(system.train_batch(0)["images"])
        rois = torch.tensor([[0.0, 0, 0, 32, 32]])
        assert features.dtype == torch.bfloat16 and net.roi_features(features, rois).dtype == torch.bfloat16


# ---------------------------------------------------------------- proposal cache


def _voc_folder(root, seed, count=4, size=64, image_set="trainval"):
    from imaginate.data.scenes import SceneDataset, export_voc

    return export_voc(SceneDataset(count, size, seed=seed), str(root), image_set=image_set)


def test_a_second_voc_folder_with_the_same_ids_gets_its_own_proposals(tmp_path, monkeypatch):
    from imaginate.data.scenes import SCENE_CLASSES
    from imaginate.systems.wsod import proposals as proposals_module
    from imaginate.systems.wsod.data import WSODDataConfig, load_split

    def content_boxes(image, method, params):  # proposals that depend on the pixels
        m = float(image.mean()) / 255.0
        return torch.tensor([[0.0, 0.0, 10.0 + 40.0 * m, 10.0 + 40.0 * m], [5.0, 5.0, 60.0, 60.0]])

    monkeypatch.setattr(proposals_module, "compute_proposals", content_boxes)
    ids_a, ids_b = _voc_folder(tmp_path / "a", seed=1), _voc_folder(tmp_path / "b", seed=2)
    assert ids_a == ids_b  # 000000 ... 000003 in both
    splits = {}
    for name in ("a", "b", "a"):
        cfg = WSODDataConfig(name="voc", root=str(tmp_path / name), classes=list(SCENE_CLASSES),
                             proposal_method="sliding_window", proposal_cache=str(tmp_path / "cache"))
        splits.setdefault(name, []).append(load_split(cfg, train=True))
    a, b, a_again = splits["a"][0], splits["b"][0], splits["a"][1]
    for i in range(4):
        expected = content_boxes((b.image(i) * 255).round().byte().permute(1, 2, 0).numpy(), "", None)
        assert torch.equal(b.proposals[i], expected), i  # B's own, not A's cached ones
        assert not torch.equal(a.proposals[i], b.proposals[i])
        assert torch.equal(a.proposals[i], a_again.proposals[i])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 8  # A read back from the cache, not recomputed


# ---------------------------------------------------------------- VOC2012 ids


def test_voc2012_ids_match_wetectron_integer_keys(tmp_path):
    import os
    import pickle

    import numpy as np

    from imaginate.data.detection import VOCDetection, load_proposals
    from imaginate.data.errors import DataError
    from imaginate.data.scenes import SCENE_CLASSES

    ids = ["2008_000002", "2008_000003", "2012_004331"]
    boxes = [np.array([[1.0, 2.0, 30.0, 40.0]]) * (k + 1) for k in range(3)]
    with open(tmp_path / "ss.pkl", "wb") as f:  # wetectron's layout: integer ids without the underscore
        pickle.dump({"boxes": boxes, "indexes": [2008000002, 2008000003, 2012004331]}, f)
    loaded = load_proposals(str(tmp_path / "ss.pkl"), image_ids=ids)
    assert list(loaded) == ids and torch.equal(loaded["2012_004331"], torch.from_numpy(boxes[2]).float())
    with open(tmp_path / "by_name.pkl", "wb") as f:  # the same file keyed by the ids as written
        pickle.dump(dict(zip(ids, boxes)), f)
    assert list(load_proposals(str(tmp_path / "by_name.pkl"), image_ids=ids)) == ids
    with pytest.raises(DataError, match="2008000004"):
        with open(tmp_path / "other.pkl", "wb") as f:
            pickle.dump({"boxes": boxes, "indexes": [2008000002, 2008000004, 2012004331]}, f)
        load_proposals(str(tmp_path / "other.pkl"), image_ids=ids)
    # through a VOC folder whose files carry VOC2012 names
    written = _voc_folder(tmp_path / "voc", seed=0, count=3)
    for old, new in zip(written, ids):
        os.rename(tmp_path / "voc" / "JPEGImages" / f"{old}.jpg", tmp_path / "voc" / "JPEGImages" / f"{new}.jpg")
        os.rename(tmp_path / "voc" / "Annotations" / f"{old}.xml", tmp_path / "voc" / "Annotations" / f"{new}.xml")
    (tmp_path / "voc" / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{i}\n" for i in ids))
    voc = VOCDetection(str(tmp_path / "voc"), "trainval", SCENE_CLASSES, proposal_file=str(tmp_path / "ss.pkl"))
    assert torch.equal(voc.image_proposals(1), torch.tensor([[2.0, 4.0, 60.0, 63.0]]))  # clipped to 64 - 1


# ---------------------------------------------------------------- COCO folders, points and scribbles in VOC XML


def test_a_coco_folder_trains_and_is_scored_with_coco_ap(tmp_path):
    import json

    from imaginate.data.scenes import SceneDataset, export_coco

    scenes = SceneDataset(4, 64, seed=5)
    ids = export_coco(scenes, str(tmp_path / "images"), str(tmp_path / "images" / "instances.json"))
    data = json.loads((tmp_path / "images" / "instances.json").read_text())
    assert ids == [0, 1, 2, 3] and len(data["annotations"]) == sum(len(scenes[i]["labels"]) for i in range(4))
    system = _system(tmp_path, "data.name=coco", f"data.root={tmp_path / 'images'}", "data.train_json=instances.json",
                     f"data.test_json={tmp_path / 'images' / 'instances.json'}", "model.num_classes=6", "eval.max_test_images=4")
    split = system.train_split
    assert split.classes == tuple(c["name"] for c in data["categories"]) and not split.pixel_inclusive
    torch.testing.assert_close(split.tags, torch.stack([scenes[i]["tags"] for i in range(4)]))
    torch.testing.assert_close(split.boxes[2], scenes[2]["boxes"])
    logs = system.train_step(system.train_batch(0))
    assert math.isfinite(logs["detector_loss"])
    system.train(False)
    with torch.no_grad():
        metrics = system.evaluate()
    assert {"map50", "corloc", "coco_ap", "coco_ap50"} <= set(metrics)
    assert 0.0 <= metrics["coco_ap"] <= metrics["coco_ap50"] <= 1.0


def test_coco_config_names_the_missing_key():
    from imaginate.systems.wsod.data import WSODDataConfig

    with pytest.raises(ValueError, match="data.train_json"):
        WSODDataConfig(name="coco", root="images")


def test_export_voc_writes_points_and_scribbles_that_the_reader_returns(tmp_path):
    from imaginate.data.detection import VOCDetection, read_voc_annotation
    from imaginate.data.scenes import SCENE_CLASSES, SceneDataset, export_voc

    scenes = SceneDataset(3, 64, seed=7)
    ids = export_voc(scenes, str(tmp_path / "voc"))
    voc = VOCDetection(str(tmp_path / "voc"), "trainval", SCENE_CLASSES)
    assert len(ids) == 3
    for i in range(3):
        record = voc.record(i)
        item = scenes[i]
        torch.testing.assert_close(record.points, item["points"], atol=6e-4, rtol=0)
        assert len(record.scribbles) == len(item["scribbles"])
        for got, want in zip(record.scribbles, item["scribbles"]):
            torch.testing.assert_close(got, want, atol=6e-4, rtol=0)
    # a plain VOC file has neither
    plain = tmp_path / "plain.xml"
    plain.write_text("<annotation><size><width>10</width><height>10</height></size><object><name>red_disk</name>"
                     "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    record = read_voc_annotation(str(plain), SCENE_CLASSES)
    assert record.points is None and record.scribbles is None
    bad = tmp_path / "bad.xml"
    bad.write_text(plain.read_text().replace("</bndbox>", "</bndbox><scribble>1,2 x</scribble>"))
    from imaginate.data.errors import DataError

    with pytest.raises(DataError, match="bad.xml: <scribble> in <object> #0"):
        read_voc_annotation(str(bad), SCENE_CLASSES)


def test_a_voc_split_carries_the_clicks_and_scribbles(tmp_path):
    from imaginate.data.scenes import SCENE_CLASSES

    _voc_folder(tmp_path / "voc", seed=4)
    classes = "[" + ",".join(SCENE_CLASSES) + "]"
    system = _system(tmp_path, "data.name=voc", f"data.root={tmp_path / 'voc'}", f"data.classes={classes}")
    split = system.train_split
    assert split.points is not None and len(split.points) == 4 and split.points[0].shape[1] == 2
    assert split.scribbles is not None and all(len(s) == len(b) for s, b in zip(split.scribbles, split.boxes))


# ---------------------------------------------------------------- the paper preset from the command line


def _proposal_pickle(path, ids, size):
    """wetectron's layout: parallel lists of boxes and integer ids (a grid of windows per image)."""
    import pickle

    from imaginate.systems.wsod.proposals import sliding_window_proposals

    boxes = sliding_window_proposals(size, size, scales=(0.4, 0.8), aspect_ratios=(1.0,)).numpy()
    with open(path, "wb") as f:
        pickle.dump({"boxes": [boxes] * len(ids), "indexes": [int(i) for i in ids]}, f)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_the_paper_preset_starts_on_a_folder_with_local_weights_and_proposals(tmp_path, capsys, kind):
    """``imaginate train wsod --preset paper`` as written, on a tiny exported folder: a randomly initialised
    torchvision VGG16 saved to a file (all of it: conv1-5, fc6, fc7 load), proposal pickles, AMP on."""
    import json

    from imaginate.data.scenes import SCENE_CLASSES, SceneDataset, export_coco, export_voc

    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16().state_dict(), tmp_path / "vgg16.pth")
    train, test = SceneDataset(4, 64, seed=11), SceneDataset(4, 64, seed=12)
    if kind == "voc":
        root = tmp_path / "VOC"
        train_ids = export_voc(train, str(root), "trainval")
        test_ids = export_voc(train, str(root), "test")  # export_voc numbers from 0: the same images, two sets
        classes = "[" + ",".join(SCENE_CLASSES) + "]"
        data = ["data.name=voc", f"data.root={root}", f"data.classes={classes}"]
    else:
        root = tmp_path / "images"
        train_ids = export_coco(train, str(root / "train"), str(tmp_path / "train.json"))
        test_ids = export_coco(test, str(root / "test"), str(tmp_path / "test.json"))
        data = ["data.name=coco", f"data.root={root / 'train'}", f"data.train_json={tmp_path / 'train.json'}",
                f"data.test_json={tmp_path / 'test.json'}", f"data.test_images={root / 'test'}"]
    _proposal_pickle(tmp_path / "train.pkl", train_ids, 64)
    _proposal_pickle(tmp_path / "test.pkl", test_ids, 64)
    out = tmp_path / "run"
    code = main(["train", "wsod", "--preset", "paper", "--no-progress", "--out", str(out), *data,
                 f"model.backbone_weights={tmp_path / 'vgg16.pth'}", f"data.train_proposals={tmp_path / 'train.pkl'}",
                 f"data.test_proposals={tmp_path / 'test.pkl'}", "model.num_classes=6", "train.steps=2",
                 "train.batch_size=2", "train.log_every=1", "data.train_scales=[64]", "eval.scales=[64]",
                 "eval.corloc_images=4", "train.num_threads=1", f"data.proposal_cache={tmp_path / 'cache'}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    metrics = json.loads(captured.out.strip().splitlines()[-1])
    assert {"map50", "corloc"} <= set(metrics) and (kind == "voc" or "coco_ap" in metrics)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["detector_loss"] for r in rows if "detector_loss" in r]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
