"""The keypoint codec: exact parameter round trip, sizes, corruption detection, key frames, CLI errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("constriction")

from imaginate.cli import main  # noqa: E402
from imaginate.data.heads import head_clip, head_motion  # noqa: E402
from imaginate.systems.face_vid2vid.bitstream import HEADER_SIZE, Header, StreamError  # noqa: E402
from imaginate.systems.face_vid2vid.codec import (  # noqa: E402
    CodecSettings,
    decode_image,
    decode_parameters,
    decode_video,
    encode_image,
    encode_parameters,
    encode_video,
)
from imaginate.systems.face_vid2vid.motion import Motion, motion_from_vector  # noqa: E402

K = 4


def _values(frames: int = 40, seed: int = 3) -> np.ndarray:
    """``[T, 6 + 3K]`` smooth head motion with a noisy expression part (a stand-in for a model's output)."""
    motion = head_motion(seed, frames)
    rng = np.random.default_rng(seed)
    expression = np.repeat(motion["expression"][:, :4].numpy(), 3, axis=1) * 0.05 + rng.normal(0, 0.003, (frames, 3 * K))
    return np.concatenate([motion["yaw"][:, None], motion["pitch"][:, None], motion["roll"][:, None],
                           motion["translation"].numpy() * 0.3, expression], axis=1)


@pytest.mark.parametrize("frames_per_chunk,key_period", [(1, 0), (5, 0), (3, 16)])
def test_roundtrip_restores_quantised_values_and_sizes_add_up(frames_per_chunk, key_period) -> None:
    values = _values()
    settings = CodecSettings(qstep=0.4, frames_per_chunk=frames_per_chunk, key_period=key_period)
    data, table = encode_parameters(values, K, settings, 64, 64)
    stream = decode_parameters(data)
    steps = stream.header.steps()
    expected = np.round(values / steps).astype(np.int64)
    assert np.array_equal(stream.symbols, expected)  # exactly the quantised values, no drift
    assert np.array_equal(stream.values, expected * steps)
    assert np.abs(stream.values - values).max() <= steps.max() / 2 + 1e-9
    assert sum(r.num_bytes for r in table) == len(data)  # the size table accounts for every byte
    assert [(r.kind, r.offset, r.num_bytes) for r in stream.table] == [(r.kind, r.offset, r.num_bytes) for r in table]
    assert sum(r.num_frames for r in table) == len(values) == stream.header.frame_count
    assert sorted(stream.sources) == list(range(0, len(values), key_period or len(values)))
    intra = [r.first_frame for r in table if r.kind == "frames" and r.intra]
    assert intra == sorted(stream.sources)  # key frames and only they are intra-coded


def test_coarser_steps_give_fewer_bits_and_adaptive_coding_beats_raw() -> None:
    values = _values(120)
    sizes = [len(encode_parameters(values, K, CodecSettings(qstep=q, frames_per_chunk=8), 64, 64)[0])
             for q in (0.1, 0.4, 1.6)]
    assert sizes[0] > sizes[1] > sizes[2]
    raw_bits = values.size * 16  # 16 bits per value would be a naive fixed-length code
    assert sizes[1] * 8 < raw_bits / 4


def test_a_still_head_costs_four_bytes_a_frame() -> None:
    values = np.tile(_values(1), (20, 1))
    values[12:] += 3.0  # one jump, then still again
    data, table = encode_parameters(values, K, CodecSettings(qstep=0.5), 64, 64)
    sizes = [r.num_bytes for r in table if r.kind == "frames"]
    assert sizes[1:12] == [4] * 11 and sizes[12] > 4 and sizes[13:] == [4] * 7  # varint, tag, CRC-16
    assert np.array_equal(decode_parameters(data).symbols, np.round(values / CodecSettings(qstep=0.5).header(
        64, 64, K, 20).steps()).astype(np.int64))


def test_truncated_streams_raise_naming_a_byte_offset() -> None:
    data, _ = encode_parameters(_values(12), K, CodecSettings(qstep=0.5), 64, 64)
    for cut in [0, 10, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1, len(data) // 2, len(data) - 1]:
        with pytest.raises(StreamError, match="byte offset"):
            decode_parameters(data[:cut])


def test_every_single_bit_flip_is_detected() -> None:
    data, _ = encode_parameters(_values(6), K, CodecSettings(qstep=0.5, frames_per_chunk=2), 64, 64)
    for position in range(len(data)):
        for bit in (0, 5):
            broken = bytearray(data)
            broken[position] ^= 1 << bit
            with pytest.raises(StreamError, match="byte offset"):
                decode_parameters(bytes(broken))


def test_header_round_trip_and_validation() -> None:
    header = Header(width=64, height=48, fps=25.0, num_keypoints=20, step_angle=0.3, step_translation=0.003,
                    step_expression=0.004, key_period=30, frames_per_chunk=4, frame_count=99, image_codec="webp")
    again = Header.unpack(header.pack())
    assert again.width == 64 and again.height == 48 and again.num_keypoints == 20 and again.frame_count == 99
    assert again.image_codec == "webp" and np.array_equal(again.steps(), header.steps())
    assert len(header.pack()) == HEADER_SIZE
    with pytest.raises(ValueError, match="frames_per_chunk"):
        CodecSettings(frames_per_chunk=0)


@pytest.mark.parametrize("codec", ["jpeg", "webp", "h264"])
def test_source_image_codecs_round_trip(codec) -> None:
    if codec == "h264":
        pytest.importorskip("av")
    image = head_clip(2, 0, num_frames=1, size=64).frames[0]
    data = encode_image(image, codec, 90)
    decoded = decode_image(data, codec)
    assert decoded.shape == image.shape
    psnr = -10 * torch.log10(((decoded - image) ** 2).mean())
    assert psnr > 28, (codec, float(psnr))
    with pytest.raises(StreamError, match="byte offset 123"):
        decode_image(data[: len(data) // 3] if codec != "h264" else b"\x00\x00\x01garbage", codec, 123)


class _ToyModel(nn.Module):
    """Motion = per-image channel means (yaw..); animate = the source brightened by the motion difference."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def estimate_motion(self, images: torch.Tensor) -> Motion:
        means = images.mean((2, 3)) * 40  # [B, 3]
        vector = torch.cat([means, means * 0.01, means.repeat(1, K) * 0.01], 1)  # [B, 6 + 3K]
        return motion_from_vector(vector, K)

    def animate(self, source: torch.Tensor, source_motion: Motion, driving_motion: Motion) -> torch.Tensor:
        shift = (driving_motion.yaw - source_motion.yaw) / 40
        return (source + shift[:, None, None, None]) * self.scale


def test_video_encode_decode_with_a_model_and_quality_key_frames() -> None:
    frames = torch.linspace(0.1, 0.9, 12)[:, None, None, None].expand(12, 3, 16, 16).clone()  # brightening
    model = _ToyModel()
    data, table = encode_video(model, frames, CodecSettings(qstep=0.1, image_quality=95))
    decoded, stream = decode_video(model, data)
    assert decoded.shape == frames.shape and len(stream.sources) == 1
    assert (decoded - frames).abs().max() < 0.03  # the toy model reconstructs from the decoded motion
    data_q, table_q = encode_video(model, frames, CodecSettings(qstep=8.0, quality_trigger_db=30.0))
    keys = [r.first_frame for r in table_q if r.kind == "source"]
    assert len(keys) > 1 and keys[0] == 0  # coarse motion -> low quality -> fresh source images
    assert decode_video(model, data_q)[0].shape == frames.shape


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys) -> None:
    assert main(["codec", "info", str(tmp_path / "missing.fv2v")]) == 2
    assert "missing.fv2v" in capsys.readouterr().err
    data, _ = encode_parameters(_values(5), K, CodecSettings(), 64, 64)
    good, bad = tmp_path / "good.fv2v", tmp_path / "bad.fv2v"
    good.write_bytes(data)
    bad.write_bytes(data[:-3])
    assert main(["codec", "info", str(good)]) == 0
    assert "5 frames" in capsys.readouterr().out
    assert main(["codec", "decode", "--checkpoint", str(tmp_path), str(bad), "--out", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert "byte offset" in err and len(err.splitlines()) == 1
    assert main(["codec", "encode", "--checkpoint", str(tmp_path), "--video", str(tmp_path / "none.mp4"),
                 "--out", str(tmp_path / "s.fv2v")]) == 2
    assert "none.mp4" in capsys.readouterr().err
    assert main(["codec", "encode", "--checkpoint", str(tmp_path), "--video", str(good), "--out",
                 str(tmp_path / "s.fv2v"), "--qstep", "-1"]) == 2
    assert "qstep" in capsys.readouterr().err


def test_h264_reference_payload_falls_with_crf() -> None:
    pytest.importorskip("av")
    from imaginate.engine.video import h264_crf_sweep

    frames = head_clip(1, 1, num_frames=8, size=32).frames
    results = h264_crf_sweep(frames, [18, 40])
    (_, big, decoded_big), (_, small, decoded_small) = results
    assert big > small > 0 and decoded_big.shape == frames.shape == decoded_small.shape
    assert ((decoded_big - frames) ** 2).mean() < ((decoded_small - frames) ** 2).mean()


def test_cli_encode_decode_end_to_end_with_a_run(tmp_path, capsys) -> None:
    pytest.importorskip("av")
    from imaginate.config import build_config
    from imaginate.engine import run_training
    from imaginate.engine.video import read_mp4, write_mp4
    from imaginate.registry import get_system

    small = ["train.steps=2", "data.train_clips=2", "data.clip_frames=2", "data.eval_clips=1", "data.eval_frames=2",
             "train.log_every=0", "train.ckpt_every=0", "train.sample_every=0", "train.device=cpu",
             "train.num_threads=1"]
    spec = get_system("face_vid2vid")
    run_training(spec, build_config(spec.config_cls, preset="tiny", system="face_vid2vid", overrides=small),
                 tmp_path / "run", progress=False)
    write_mp4(head_clip(1_000_002, 3, num_frames=6, size=96).frames, tmp_path / "in.mp4", fps=25)
    stream, out = tmp_path / "s.fv2v", tmp_path / "out.mp4"
    assert main(["codec", "encode", "--checkpoint", str(tmp_path / "run"), "--video", str(tmp_path / "in.mp4"),
                 "--out", str(stream), "--key-period", "4"]) == 0
    assert "kbps at 25 fps" in capsys.readouterr().out
    assert main(["codec", "decode", "--checkpoint", str(tmp_path / "run"), str(stream), "--out", str(out)]) == 0
    decoded = read_mp4(out)
    assert decoded.shape == (6, 3, 64, 64)  # resized to the run's model size
    assert len(decode_parameters(stream.read_bytes()).sources) == 2  # frames 0 and 4
