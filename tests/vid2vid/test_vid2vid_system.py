"""vid2vid as a system: the tiny preset trains with finite losses in both modes, the window length grows,
the failure-mode scalars are logged, and synthesis keeps no graph and no history beyond its window."""

import math
import weakref

import pytest
import torch

from imaginate.config import ConfigError, build_config
from imaginate.engine import run_training
from imaginate.engine.logging import read_metrics
from imaginate.registry import get_system
from imaginate.systems.vid2vid.data import Vid2VidDataConfig
from imaginate.systems.vid2vid.inference import synthesize_frames
from imaginate.systems.vid2vid.model import Vid2VidGenerator, Vid2VidModelConfig

# the tiny preset shrunk so that a test trains in seconds on one thread
SMALL = ["model.height=32", "model.width=64", "model.base_filters=4", "model.max_filters=16",
         "model.spade_hidden=8", "model.flow_filters=4", "disc.channels=8", "disc.temporal_channels=8",
         "data.world_size=[32,16,32]", "data.train_worlds=1", "data.videos_per_world=2", "data.frames=6", "data.seq_len_start=3", "data.seq_len_max=6",
         "data.seq_len_double_every=10", "eval_videos=1", "eval_frames=6", "train.device=cpu", "train.log_every=1",
         "train.ckpt_every=0", "train.sample_every=0", "train.batch_size=2"]


def train(run_dir, steps, mode):
    spec = get_system("vid2vid")
    cfg = build_config(spec.config_cls, preset="tiny", system="vid2vid",
                       overrides=SMALL + [f"train.steps={steps}", f"model.mode={mode}"])
    return run_training(spec, cfg, run_dir, progress=False)


@pytest.mark.slow  # ~100 CPU-s on the shared machine
def test_tiny_wc_vid2vid_trains_20_steps_with_finite_losses(tmp_path):
    final = train(tmp_path / "wc", 20, "wc_vid2vid")
    logs = [r for r in read_metrics(tmp_path / "wc") if r["split"] == "train"]
    assert len(logs) == 20
    for key in ("generator_loss", "discriminator_loss", "flow_loss", "warp_loss", "guidance_loss"):
        assert all(math.isfinite(r[key]) for r in logs), key
    assert [r["seq_len"] for r in logs][:10] == [3.0] * 10 and logs[-1]["seq_len"] == 6.0  # grows: 3, then 6
    assert all(0 <= r["d_real_acc"] <= 1 and 0 <= r["guidance_coverage"] <= 1 for r in logs)
    assert max(r["guidance_coverage"] for r in logs) > 0.2  # the point store really guides the frames
    assert math.isfinite(final["revisit_l1"]) and math.isfinite(final["warping_error"])


def test_tiny_vid2vid_mode_trains_without_guidance(tmp_path):
    train(tmp_path / "v", 3, "vid2vid")
    logs = [r for r in read_metrics(tmp_path / "v") if r["split"] == "train"]
    assert all(r["guidance_coverage"] == 0 and math.isfinite(r["generator_loss"]) for r in logs)


def test_window_length_doubles_up_to_its_cap():
    cfg = Vid2VidDataConfig(seq_len_start=4, seq_len_max=16, seq_len_double_every=100, frames=16)
    assert [cfg.seq_len(s) for s in (0, 99, 100, 250, 10_000)] == [4, 4, 8, 16, 16]
    with pytest.raises(ConfigError, match="data.frames"):
        Vid2VidDataConfig(seq_len_max=32, frames=16)
    with pytest.raises(ConfigError, match="data.paths"):
        Vid2VidDataConfig(paths=["circle"])


def test_synthesis_memory_is_flat_in_the_length():
    torch.manual_seed(0)
    cfg = Vid2VidModelConfig(mode="vid2vid", num_labels=4, height=16, width=32, base_filters=4, max_filters=8,
                             num_layers=2, num_downsamples=1, embed_filters=4, embed_max_filters=4, spade_hidden=4,
                             num_multi_spade=1, num_prev=2, flow_filters=4, flow_downsamples=1, flow_blocks=0,
                             spectral=False, first_frame_filters=4, first_frame_upsamples=1, first_frame_hidden=4)
    net = Vid2VidGenerator(cfg)
    made = []  # weak references to every frame the generator produced
    net.register_forward_hook(lambda module, args, out: made.append(weakref.ref(out["image"])))
    labels = torch.randint(0, 4, (20, 16, 32))
    frames = synthesize_frames(net, labels)
    for i, frame in enumerate(frames):
        assert frame.grad_fn is None and not frame.requires_grad  # no graph is kept
        if i == 19:  # paused after the last frame: only the last num_prev outputs are still alive
            alive = sum(ref() is not None for ref in made)
    assert len(made) == 19 and alive <= cfg.num_prev
