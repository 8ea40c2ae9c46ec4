"""The web app's tab functions called directly on tiny runs: each does its system's job with the run's weights,
and each kind of bad input becomes one line (an InputError or a page error), never a trace."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from serve_tiny_runs import save_image

from imaginate.serve.inputs import InputError, Limits, set_upload_limit
from imaginate.serve.runs import RunCatalog, RunNotFound


# ---- the runs folder -------------------------------------------------------------------------------
def _fake_run(folder, system, finished=True, when=None):
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "step_00000001.pt").write_bytes(b"x")
    (folder / "run.json").write_text(json.dumps({"system": system, "preset": "tiny"}))
    if finished:
        (folder / "final.safetensors").write_bytes(b"x")
        if when is not None:
            os.utime(folder / "final.safetensors", (when, when))


def test_catalog_lists_finished_runs_newest_first_and_resolves_only_listed_ids(tmp_path):
    now = time.time()
    _fake_run(tmp_path / "old", "gan", when=now - 100)
    _fake_run(tmp_path / "demo" / "gan" / "new", "gan", when=now)
    _fake_run(tmp_path / "unfinished", "gan", finished=False)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    catalog = RunCatalog(tmp_path, include_zoo=False)
    assert [r.run_id for r in catalog.runs("gan")] == ["demo/gan/new", "old"]
    assert catalog.resolve("gan", None).run_id == "demo/gan/new"
    assert catalog.resolve("gan", "old").path == (tmp_path / "old").resolve()
    for crafted in ("../../etc", "/etc/passwd", "unfinished", "old/../old", "broken"):
        with pytest.raises(RunNotFound):
            catalog.resolve("gan", crafted)
    with pytest.raises(RunNotFound, match="classify"):
        catalog.resolve("classify", None)
    with pytest.raises(RunNotFound):
        catalog.resolve("classify", "old")  # a gan run asked for as a classify one


def test_catalog_offers_zoo_weights_after_the_folders_runs(tmp_path):
    from imaginate import zoo
    from imaginate.serve.common import SYSTEMS
    from imaginate.serve.tabs_other import run_details

    now = time.time()
    _fake_run(tmp_path / "mine", "face_vid2vid", when=now)
    catalog = RunCatalog(tmp_path)
    ids = [r.run_id for r in catalog.runs("face_vid2vid")]
    assert ids[0] == "mine" and "zoo:face_vid2vid_tiny" in ids  # the user's own run stays the default
    run = catalog.resolve("face_vid2vid", "zoo:face_vid2vid_tiny")
    assert run.zoo == "face_vid2vid_tiny" and "project-trained" in run.label
    spec, cfg, system, step = SYSTEMS.load(run, "cpu")
    assert spec.name == "face_vid2vid" and step == zoo.get_entry("face_vid2vid_tiny").steps
    ctx = type("Ctx", (), {"catalog": catalog})()
    figure, gallery, config, summary = run_details(ctx, "zoo:face_vid2vid_tiny")
    assert any(ax.get_title() == "eval/copy_l1" for ax in figure.axes) and "kind: fv2v" in config
    assert gallery == [] and "face_vid2vid" in summary


# ---- classify --------------------------------------------------------------------------------------
def test_classify_reads_uploaded_digits_and_drawings_ink_on_paper(ctx, uploads):
    from imaginate.serve.common import load_system
    from imaginate.serve.tabs_images import classify_image

    _, _, system = load_system(ctx, "classify", None)
    images, labels = system.test_set.images[:12], system.test_set.labels[:12]  # [12, 1, 8, 8]
    model_says = system.predict(images).argmax(1)
    agree, agree_inverted = 0, 0
    for i in range(len(images)):
        big = np.kron(images[i, 0].numpy(), np.ones((12, 12)))  # 96x96, light on dark like the data set
        top, seen = classify_image(ctx, None, str(save_image(uploads / f"digit{i}.png", big)))
        assert seen.shape[:2] == (8 * 24, 8 * 24)  # the network's 8x8 input, shown enlarged
        assert abs(sum(top.values()) - 1) < 0.5 and len(top) == 5
        agree += max(top, key=top.get) == system.class_names[int(model_says[i])]
        drawn = {"composite": ((1 - big) * 255).astype(np.uint8)}  # dark ink on white, as drawn in the page
        top_inv, _ = classify_image(ctx, None, None, drawn)
        agree_inverted += max(top_inv, key=top_inv.get) == system.class_names[int(model_says[i])]
    # an upload goes through resize + crop; most answers match the network on the data set's own pixels
    assert agree >= 8, agree
    assert agree_inverted >= 8, agree_inverted
    assert len(set(model_says.tolist())) >= 3  # agreement is not that of a constant answer
    assert float((model_says == labels).float().mean()) > 0.2  # the run learned something (chance: 0.1)


def test_classify_asks_for_an_image(ctx):
    from imaginate.serve.tabs_images import classify_image

    with pytest.raises(InputError, match="upload a picture or draw"):
        classify_image(ctx, None, None, {"composite": np.zeros((50, 50, 4), np.uint8)})


# ---- gan -------------------------------------------------------------------------------------------
def test_gan_samples_follow_the_seed_and_the_class(ctx):
    from imaginate.serve.tabs_images import gan_samples

    a = gan_samples(ctx, None, "3", 7, 4)
    assert np.array_equal(a, gan_samples(ctx, None, "3", 7, 4))
    assert not np.array_equal(a, gan_samples(ctx, None, "3", 8, 4))
    assert not np.array_equal(a, gan_samples(ctx, None, "5", 7, 4))
    everything = gan_samples(ctx, None, "all", 7, 2)
    assert everything.shape[0] / everything.shape[1] > 10 * a.shape[0] / a.shape[1]  # 10 x 2 tiles against 1 x 4
    from imaginate.serve.tabs_images import gan_class_names

    assert gan_class_names(ctx, None) == [str(d) for d in range(10)]  # the run trained on digits
    with pytest.raises(InputError, match="class"):
        gan_samples(ctx, None, "no such class", 0, 2)
    with pytest.raises(InputError, match="samples"):
        gan_samples(ctx, None, "3", 0, 1000)


# ---- lns_madam -------------------------------------------------------------------------------------
def test_lns_madam_energy_table_matches_the_energy_model(ctx):
    from imaginate.numerics.energy import energy_report
    from imaginate.serve.tabs_other import energy_table, lns_madam_run_summary

    caption, rows = energy_table("resnet18", 1, 8, 24)
    report = energy_report("resnet18")
    by_name = {r[0]: r for r in rows}
    assert set(by_name) >= {"fp32", "lns"}
    assert by_name["lns"][5] == pytest.approx(report.total_mj("lns"), rel=1e-4)
    assert by_name["lns"][5] < by_name["fp32"][5]
    assert "resnet18" in caption
    assert "test_acc" in lns_madam_run_summary(ctx, None)
    with pytest.raises(InputError, match="gamma"):
        energy_table("resnet18", 1, 3, 24)
    with pytest.raises(InputError, match="model"):
        energy_table("vgg", 1, 8, 24)


# ---- runs ------------------------------------------------------------------------------------------
def test_runs_tab_plots_metrics_and_shows_samples_and_config(ctx):
    from imaginate.serve.tabs_other import run_details

    figure, gallery, config, summary = run_details(ctx, "classify-tiny")
    titles = {ax.get_title() for ax in figure.axes if ax.get_visible()}
    assert "train/classifier_loss" in titles and "eval/test_acc" in titles
    assert gallery and gallery[0][1].startswith("predictions") and gallery[0][0].ndim == 3
    assert "optim:" in config and "classify" in summary
    with pytest.raises(RunNotFound):
        run_details(ctx, "../classify-tiny")


# ---- wsod ------------------------------------------------------------------------------------------
def test_wsod_boxes_lie_in_the_uploaded_images_pixels(ctx, uploads):
    from imaginate.data.scenes import SCENE_CLASSES, SceneDataset
    from imaginate.serve.tabs_images import wsod_detect

    scene = SceneDataset(1, 96, seed=5).render(0)["image"]  # [3, 96, 96]
    big = np.kron(scene.permute(1, 2, 0).numpy(), np.ones((2, 2, 1)))  # 192x192: boxes come back in these pixels
    picture, rows = wsod_detect(ctx, None, str(save_image(uploads / "scene.png", big)), 0.0)
    assert picture.ndim == 3 and picture.shape[0] >= 192
    assert rows
    for name, score, box in rows:
        assert name in SCENE_CLASSES and 0 <= score <= 1
        assert 0 <= box[0] < box[2] <= 192.5 and 0 <= box[1] < box[3] <= 192.5
    assert max(b[2] for _, _, b in rows) > 96  # not in the 96-pixel network frame


# ---- coco_funit ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_coco_funit_translation_and_interpolation_strip(ctx, uploads, more_runs):
    from imaginate.data.species import SpeciesContent, render_species
    from imaginate.serve.tabs_images import coco_funit_translate

    def png(name, species, angle=0.0):
        image, _ = render_species(species, SpeciesContent(angle=angle), 32)
        return str(save_image(uploads / name, image.permute(1, 2, 0).numpy()))

    content, styles = png("content.png", 0), [png("s1.png", 3), png("s2.png", 3, 0.5)]
    one_row = coco_funit_translate(ctx, None, content, styles)
    two_rows = coco_funit_translate(ctx, None, content, styles, [png("t1.png", 5)], 4)
    assert one_row.shape[:2] == (32 + 4, 4 * 34 + 2)  # content | 2 styles | output, 32 px tiles, 2 px padding
    assert two_rows.shape[0] == 2 * 34 + 2  # + the second style and a 4-step interpolation strip
    assert not np.array_equal(two_rows[2:34, -34:-2], two_rows[2:34, -68:-36])  # the strip changes
    with pytest.raises(InputError, match="style images"):
        coco_funit_translate(ctx, None, content, [])


# ---- styled_text -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_styled_text_writes_seeded_continuations(ctx, uploads, more_runs):
    from imaginate.serve.tabs_other import styled_text_write

    first = styled_text_write(ctx, None, "The cat", "Yow! Are we having FUN yet?", None, 2, 0.7, 3)
    assert first.count("The cat") == 2 and "**2.**" in first
    assert first == styled_text_write(ctx, None, "The cat", "Yow! Are we having FUN yet?", None, 2, 0.7, 3)
    (uploads / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        styled_text_write(ctx, None, "The cat", "", str(uploads / "latin1.txt"))
    with pytest.raises(InputError, match="context"):
        styled_text_write(ctx, None, "  ", "style")


# ---- face_vid2vid ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_face_codec_rate_beside_h264_and_talk_arguments(ctx, uploads, more_runs):
    from imaginate.data.heads import head_clip
    from imaginate.engine.video import write_mp4
    from imaginate.serve.tabs_video import codec_vs_h264, face_job_args

    clip = head_clip(1_000_123, 7, num_frames=6, size=64)
    driving = str(write_mp4(clip.frames, uploads / "drive.mp4", fps=30))
    source = str(save_image(uploads / "face.png", clip.frames[0].permute(1, 2, 0).numpy()))
    rows = codec_vs_h264(ctx, None, driving, 6)
    assert rows[0][0].startswith("face-vid2vid") and rows[1][0].startswith("H.264")
    assert all(r[1] > 0 and r[2] > 0 for r in rows)
    args, out, names = face_job_args(ctx, None, source, driving, True, 30, 0, -5, 4)
    assert args[:3] == ["talk", "--checkpoint", str(ctx.catalog.newest("face_vid2vid").path)]
    assert args[args.index("--yaw") + 1] == "30" and args[args.index("--roll") + 1] == "-5"
    assert out.suffix == ".mp4" and names[source] == "the source photo"
    assert "--yaw" not in face_job_args(ctx, None, source, driving, False, 30, 0, 0, 4)[0]
    with pytest.raises(InputError, match="not a readable video"):
        face_job_args(ctx, None, source, str(_write(uploads / "fake.mp4", b"\x00\x01 not a video" * 50)),
                      False, 0, 0, 0, 4)
    with pytest.raises(InputError, match="yaw"):
        face_job_args(ctx, None, source, driving, True, 500, 0, 0, 4)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# ---- bad input -------------------------------------------------------------------------------------
def test_bad_uploads_are_one_line_messages(ctx, uploads, runs_dir):
    from imaginate.serve.tabs_images import classify_image

    (uploads / "text.png").write_text("not an image at all")
    (uploads / "program.exe").write_bytes(b"MZ" * 100)
    (uploads / "empty.png").write_bytes(b"")
    good = save_image(uploads / "good.png", np.random.default_rng(0).random((64, 64)))
    cases = {
        str(uploads / "text.png"): "not a readable image",
        str(uploads / "program.exe"): "wrong file type",
        str(uploads / "empty.png"): "is empty",
        str(uploads / "missing.png"): "not there any more",
        str(runs_dir / "classify-tiny" / "config.yaml"): "not an uploaded file",  # a path typed by a client
        "/etc/passwd": "not an uploaded file",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=message):
            classify_image(ctx, None, path)
    set_upload_limit(0.001)  # 1 kB
    try:
        with pytest.raises(InputError, match="limit is"):
            classify_image(ctx, None, str(good))
    finally:
        set_upload_limit(20)
    assert Limits.upload_bytes == 20 * 1024 * 1024


def test_world_checks_refuse_large_or_foreign_grids(ctx, uploads):
    from imaginate.serve.tabs_video import checked_world

    np.save(uploads / "huge.npy", np.zeros((256, 64, 256), np.uint8))
    np.save(uploads / "flat.npy", np.zeros((16, 16), np.int64))
    np.save(uploads / "float.npy", np.zeros((8, 8, 8), np.float32))
    (uploads / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    for name, message in (("huge.npy", "too large"), ("flat.npy", "3-D integer"), ("float.npy", "3-D integer"),
                          ("junk.npy", "not a readable")):
        with pytest.raises(InputError, match=message):
            checked_world(str(uploads / name))
    np.save(uploads / "ok.npy", np.zeros((8, 8, 8), np.int16))
    assert checked_world(str(uploads / "ok.npy")).name == "ok.npy"


def test_page_errors_show_one_line_and_hide_internal_traces():
    import gradio as gr

    from imaginate.data import DataError
    from imaginate.serve.inputs import page_errors

    @page_errors
    def user_mistake():
        raise DataError("image x.png: not readable\nsecond line")

    @page_errors
    def bug():
        raise ZeroDivisionError("secret internals")

    @page_errors
    def steps():
        yield 1
        raise InputError("frames: too many")

    with pytest.raises(gr.Error) as info:
        user_mistake()
    assert info.value.message == "image x.png: not readable"
    with pytest.raises(gr.Error) as info:
        bug()
    assert "ZeroDivisionError" in info.value.message and "secret" not in info.value.message
    gen = steps()
    assert next(gen) == 1
    with pytest.raises(gr.Error, match="too many"):
        next(gen)
