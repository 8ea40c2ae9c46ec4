"""The video tabs' jobs end to end (slow: each starts ``imaginate render / synthesize / talk`` in a child
process, as the page does): a video of the asked length comes back, and the verb's one-line error reaches
the page with the upload's field name instead of a server path."""

from __future__ import annotations

import numpy as np
import pytest
from serve_tiny_runs import save_image

from imaginate.serve.inputs import InputError

pytestmark = pytest.mark.slow


def _finish(ctx, args, out, names):
    from imaginate.serve.tabs_video import _video_job

    steps = list(_video_job(ctx, args, out, "test-session", names, None))
    assert steps[-1][0] == "Done." and steps[-1][1] == str(out)
    return steps


def test_gancraft_render_job_writes_the_video(more_runs, ctx, uploads):
    from imaginate.engine.video import read_mp4
    from imaginate.serve.tabs_video import gancraft_job_args

    style = save_image(uploads / "style.png", np.random.default_rng(1).random((48, 48, 3)))
    args, out, names = gancraft_job_args(ctx, None, None, "orbit", 4, 16, str(style), 3)
    _finish(ctx, args, out, names)
    assert tuple(read_mp4(out).shape) == (4, 3, 16, 16)


def test_vid2vid_side_by_side_job(more_runs, ctx):
    from imaginate.engine.video import read_mp4
    from imaginate.serve.tabs_video import vid2vid_job_args

    with pytest.raises(InputError, match="frames"):
        vid2vid_job_args(ctx, None, None, None, "revisit", 3, 0)
    args, out, names = vid2vid_job_args(ctx, None, None, None, "revisit", 6, 0)
    _finish(ctx, args, out, names)
    frames = read_mp4(out)
    assert frames.shape[0] == 6 and frames.shape[-1] == 2 * frames.shape[-2] * 2  # labels | run, 32x64 each


def test_face_talk_job_and_its_error_names_the_field(more_runs, ctx, uploads):
    from imaginate.data.heads import head_clip
    from imaginate.engine.video import read_mp4, write_mp4
    from imaginate.serve.tabs_video import face_job_args

    clip = head_clip(1_000_123, 7, num_frames=3, size=64)
    driving = str(write_mp4(clip.frames, uploads / "drive.mp4", fps=30))
    source = str(save_image(uploads / "face.png", clip.frames[0].permute(1, 2, 0).numpy()))
    args, out, names = face_job_args(ctx, None, source, driving, True, 20, 0, 0, 3)
    _finish(ctx, args, out, names)
    assert read_mp4(out).shape[0] == 3
    wide = str(save_image(uploads / "wide.png", np.zeros((40, 200, 3))))  # 5:1, the verb refuses it
    args, out, names = face_job_args(ctx, None, wide, driving, False, 0, 0, 0, 3)
    with pytest.raises(InputError) as info:
        _finish(ctx, args, out, names)
    message = str(info.value)
    assert "the source photo" in message and "too far from square" in message and "/tmp" not in message
