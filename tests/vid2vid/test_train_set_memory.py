"""Procedural training sets rendered up front are refused at once (one line, exit 2) when they cannot fit in
memory: the vid2vid paper preset's set (~290 GiB with its stacked copy) used to render for hours and then be
killed for memory."""

import pytest

from imaginate.cli import main
from imaginate.config import ConfigError, build_config
from imaginate.data.memory import check_fits
from imaginate.registry import get_system
from imaginate.systems.face_vid2vid.system import check_train_clips_fit
from imaginate.systems.vid2vid.data import (
    VIDEO_BYTES_PER_PIXEL,
    check_train_set_fits,
    render_videos,
    stack_videos,
)

GIB = 2**30


def test_check_fits_refuses_only_what_exceeds_the_share():
    check_fits("things", 7 * GIB, "data.n", share=0.8, total=10 * GIB)
    with pytest.raises(ConfigError, match=r"^data\.n: the things would take ~9 GiB .* 10 GiB"):
        check_fits("things", 9 * GIB, "data.n", share=0.8, total=10 * GIB)


def test_bytes_per_pixel_match_a_real_render():
    spec = get_system("vid2vid")
    cfg = build_config(spec.config_cls, preset="tiny", system="vid2vid",
                       overrides=["data.train_worlds=1", "data.videos_per_world=1", "data.frames=3",
                                  "data.seq_len_start=3", "data.seq_len_max=3", "data.world_size=[32,16,32]"])
    stacked = stack_videos(render_videos(cfg.data, "train", 0, 16, 32))
    pixels = stacked["labels"].numel()
    measured = sum(v.numel() * v.element_size() for v in stacked.values()) / pixels
    assert abs(measured - VIDEO_BYTES_PER_PIXEL) < 1  # intrinsics / poses add ~0.2 B per pixel at 16x32


OLD_PAPER_SIZES = ["data.train_worlds=64", "data.videos_per_world=4"]  # the paper preset's set until 2026-12-04


def test_old_paper_set_refused_paper_preset_accepted_on_a_128_gib_machine():
    spec = get_system("vid2vid")
    for overrides, fits in ((OLD_PAPER_SIZES, False), ([], True)):
        cfg = build_config(spec.config_cls, preset="paper", system="vid2vid", overrides=overrides)
        if fits:
            check_train_set_fits(cfg.data, cfg.model.height, cfg.model.width, total=128 * GIB)
        else:
            with pytest.raises(ConfigError, match="data.train_worlds / data.videos_per_world / data.frames"):
                check_train_set_fits(cfg.data, cfg.model.height, cfg.model.width, total=128 * GIB)
    face = get_system("face_vid2vid")
    for clips, fits in ((2000, False), (None, True)):  # 2000 clips: ~94 GiB with the stacked copy
        paper = build_config(face.config_cls, preset="paper", system="face_vid2vid",
                             overrides=[f"data.train_clips={clips}"] if clips else [])
        if fits:
            check_train_clips_fit(paper.data, total=64 * GIB)
        else:
            with pytest.raises(ConfigError, match="data.train_clips"):
                check_train_clips_fit(paper.data, total=64 * GIB)


def test_cli_exits_2_with_one_line_before_rendering(tmp_path, capsys, monkeypatch):
    # the old paper sizes, ~290 GiB as estimated, on a (pretended) 128 GiB machine: refused before a frame
    # is rendered
    monkeypatch.setattr("imaginate.data.memory.physical_memory_bytes", lambda: 128 * GIB)
    assert main(["train", "vid2vid", "--preset", "paper", "--out", str(tmp_path / "run"), "--no-progress",
                 "train.device=cpu", *OLD_PAPER_SIZES]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert len(err) == 1 and "Traceback" not in err[0] and "data.train_worlds" in err[0]
    assert not (tmp_path / "run" / "checkpoints").exists()
