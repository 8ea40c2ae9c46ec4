"""``imaginate talk``: a one-line error (exit 2) for each kind of bad input; a good call writes the video and
the free-view options change it."""

import pytest
import torch

from imaginate.cli import main
from imaginate.config import build_config
from imaginate.engine import run_training, save_png
from imaginate.engine.video import read_mp4, write_mp4
from imaginate.registry import get_system

SMALL = ["train.steps=2", "data.train_clips=2", "data.clip_frames=2", "data.eval_clips=1", "data.eval_frames=2",
         "train.log_every=0", "train.ckpt_every=0", "train.sample_every=0", "train.device=cpu", "train.num_threads=1",
         "model.norm=group"]  # 2 steps leave batch-norm running statistics at their init: a saturated output


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from imaginate.data.heads import head_clip

    root = tmp_path_factory.mktemp("talk")
    spec = get_system("face_vid2vid")
    cfg = build_config(spec.config_cls, preset="tiny", system="face_vid2vid", overrides=SMALL)
    run_training(spec, cfg, root / "run", progress=False)
    clip = head_clip(1_000_123, 7, num_frames=3, size=64)
    save_png(clip.frames[0], root / "face.png")
    write_mp4(clip.frames, root / "drive.mp4", fps=30)
    (root / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 50)
    return root


def run(files, *extra):
    args = ["talk", "--checkpoint", str(files / "run"), "--source", str(files / "face.png"), "--driving",
            str(files / "drive.mp4"), "--out", str(files / "out.mp4")]
    for i in range(0, len(extra), 2):  # replace or add options
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += [extra[i], extra[i + 1]]
    return main(args)


@pytest.mark.parametrize("option,value,named", [
    ("--checkpoint", "no/such/run", "--checkpoint"),
    ("--source", "no/such.png", "--source"),
    ("--driving", "no/such.mp4", "--driving"),
    ("--driving", "BROKEN", "--driving"),
    ("--out", "out.avi", "--out"),
    ("--yaw", "150", "--yaw"),
])
def test_bad_input_is_one_line_exit_2(files, capsys, option, value, named):
    if value == "BROKEN":
        value = str(files / "broken.mp4")
    code = run(files, option, value)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and named in err, err


def test_talk_writes_the_video_and_free_view_changes_it(files, capsys):
    assert run(files) == 0
    plain = read_mp4(files / "out.mp4")
    assert plain.shape == (3, 3, 64, 64)
    assert run(files, "--out", str(files / "turned.mp4"), "--yaw", "30") == 0
    turned = read_mp4(files / "turned.mp4")
    assert (plain - turned).abs().mean() > 1e-3
    assert "wrote" in capsys.readouterr().out
    torch.testing.assert_close(read_mp4(files / "out.mp4"), plain)
