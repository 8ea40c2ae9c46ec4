"""``imaginate synthesize``: bad input is one line and exit 2; a trained run writes a side-by-side MP4."""

import numpy as np
import pytest

from imaginate.cli import main
from imaginate.config import build_config
from imaginate.engine import run_training
from imaginate.engine.video import read_mp4
from imaginate.registry import get_system

SMALL = ["model.height=32", "model.width=64", "data.world_size=[32,16,32]", "data.train_worlds=1",
         "data.videos_per_world=1", "data.frames=4", "data.seq_len_start=3", "data.seq_len_max=3", "eval_videos=1",
         "eval_frames=4", "train.device=cpu", "train.ckpt_every=0", "train.sample_every=0", "train.batch_size=1",
         "model.mode=vid2vid", "train.steps=1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vid2vid") / "run"
    spec = get_system("vid2vid")
    run_training(spec, build_config(spec.config_cls, preset="tiny", system="vid2vid", overrides=SMALL), folder,
                 progress=False)
    return folder


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("args, needle", [
    (["--path", "spiral"], "--path"),
    (["--frames", "1"], "--frames"),
    (["--out", "video.gif"], "--out"),
    (["--world", "w.npy", "--labels", "folder"], "--world and --labels"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, args, needle):
    argv = ["synthesize", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "v.mp4"), *args]
    assert main(argv) == 2
    assert needle in one_error_line(capsys)


def test_missing_run_and_bad_world_file_exit_2(tmp_path, capsys):
    assert main(["synthesize", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "v.mp4")]) == 2
    assert "nope" in one_error_line(capsys)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 3), dtype=np.float32))
    assert main(["synthesize", "--checkpoint", str(tmp_path), "--world", str(bad), "--out", str(tmp_path / "v.mp4")]) == 2
    assert "bad.npy" in one_error_line(capsys)
    assert main(["synthesize", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "v.mp4")]) == 2
    assert "run" in one_error_line(capsys)  # a folder that is not a run


def test_synthesize_writes_labels_and_runs_side_by_side(run_dir, tmp_path, capsys):
    out = tmp_path / "side.mp4"
    assert main(["synthesize", "--checkpoint", str(run_dir), "--side-by-side", str(run_dir), "--path", "out_and_back",
                 "--frames", "4", "--out", str(out), "--device", "cpu"]) == 0
    frames = read_mp4(out)
    assert frames.shape == (4, 3, 32, 3 * 64)  # labels | run | other run
    assert "wrote" in capsys.readouterr().out


def test_a_users_label_folder_without_geometry_synthesizes_in_vid2vid_mode(run_dir, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    for frame in range(3):
        ids = np.zeros((32, 64), dtype=np.uint8)
        ids[16:, :] = 2 + frame % 2
        Image.fromarray(ids, mode="L").save(folder / f"aachen_000000_{frame:06d}_gtFine_labelIds.png")
    out = tmp_path / "user.mp4"
    assert main(["synthesize", "--checkpoint", str(run_dir), "--labels", str(folder), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert read_mp4(out).shape == (3, 3, 32, 2 * 64)
    assert "vid2vid mode only" in capsys.readouterr().out
    (folder / "aachen_000000_000001_gtFine_labelIds.png").write_bytes(b"not a png")
    assert main(["synthesize", "--checkpoint", str(run_dir), "--labels", str(folder), "--out", str(out)]) == 2
    assert "000001_gtFine_labelIds.png" in one_error_line(capsys)
