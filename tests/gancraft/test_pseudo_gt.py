import pytest
import torch

from imaginate.data.blockworld import PhotoStyle, generate_world, random_valid_poses, render_all
from imaginate.engine.checkpoint import CheckpointError
from imaginate.systems.gancraft.pseudo_gt import (
    PAIR_WORLD_SEED_BASE,
    STYLE_DIM,
    PseudoGTConfig,
    SegPhotoPairs,
    SPADETranslator,
    apply_pseudo_gt,
    evaluate_l1,
    load_translator,
    save_translator,
    style_vector,
    train_pseudo_gt,
)

WORLD_SIZE = (32, 16, 32)
TINY = dict(base_channels=8, spade_hidden=16, disc_channels=16, disc_layers=2, batch_size=4)


@pytest.fixture(scope="module")
def pairs() -> SegPhotoPairs:
    return SegPhotoPairs(num_worlds=2, views_per_world=3, image_size=32, world_size=WORLD_SIZE, seed=3)


def test_pairs_are_deterministic_and_styles_vary(pairs):
    again = SegPhotoPairs(num_worlds=2, views_per_world=3, image_size=32, world_size=WORLD_SIZE, seed=3)
    assert torch.equal(pairs.labels, again.labels) and torch.equal(pairs.photos, again.photos)
    assert torch.equal(pairs.styles, again.styles)
    other = SegPhotoPairs(num_worlds=1, views_per_world=3, image_size=32, world_size=WORLD_SIZE, seed=4)
    assert not torch.equal(other.labels, pairs.labels[:3])
    assert min(pairs.world_seeds) >= PAIR_WORLD_SEED_BASE and len(set(pairs.world_seeds)) == 2
    assert set(pairs.world_seeds).isdisjoint(other.world_seeds)
    assert pairs.photos.shape == (6, 3, 32, 32) and pairs.styles.shape == (6, STYLE_DIM)
    assert 0.0 <= float(pairs.photos.min()) and float(pairs.photos.max()) <= 1.0
    assert len({tuple(s.tolist()) for s in pairs.styles}) == 6  # a new lighting and sky per view
    plain = SegPhotoPairs(num_worlds=1, views_per_world=2, image_size=16, world_size=WORLD_SIZE, vary_style=False)
    assert torch.equal(plain.styles, style_vector(PhotoStyle()).expand(2, -1))


def test_segmentation_one_hot_matches_the_rendered_label_map(pairs):
    world_seed = pairs.world_seeds[1]
    world = generate_world(WORLD_SIZE, seed=world_seed)
    camera = random_valid_poses(world, 2, 32, 32, seed=world_seed)[1]
    view = render_all(world, camera, PhotoStyle.random(1000 * world_seed + 1))
    segmentation, photo = pairs[3 + 1]  # world 1, view 1
    assert segmentation.shape == (pairs.num_labels, 32, 32) and segmentation.dtype == torch.float32
    assert torch.equal(segmentation.sum(dim=0), torch.ones(32, 32))
    assert torch.equal(segmentation.argmax(dim=0), view["labels"])
    assert len(view["labels"].unique()) >= 3  # a valid view, not a single label
    torch.testing.assert_close(photo, view["photo"].permute(2, 0, 1))
    batch = pairs.batch(torch.tensor([4, 0]))
    assert torch.equal(batch.segmentation[0], segmentation) and torch.equal(batch.photo[1], pairs.photos[0])


def test_translator_shapes_and_gradients():
    translator = SPADETranslator(10, base_channels=4, image_size=32, spade_hidden=8)
    segmentation = torch.nn.functional.one_hot(torch.randint(0, 10, (2, 16, 24)), 10).permute(0, 3, 1, 2).float()
    rgb = translator(segmentation, torch.randn(2, STYLE_DIM))
    assert rgb.shape == (2, 3, 16, 24) and float(rgb.detach().abs().max()) <= 1.0
    rgb.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in translator.parameters())
    plain = SPADETranslator(10, base_channels=4, image_size=32, style_dim=0, num_upsamples=2)
    assert plain(segmentation).shape == (2, 3, 16, 24)


def test_l1_to_the_photos_falls_within_40_steps(pairs):
    config = PseudoGTConfig(**TINY)
    before = evaluate_l1(train_pseudo_gt(pairs, config, steps=0, progress=False), pairs)
    history: list[dict[str, float]] = []
    translator = train_pseudo_gt(pairs, config, steps=40, progress=False, history=history)
    after = evaluate_l1(translator, pairs)
    assert len(history) == 40 and all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    first, last = (sum(h["l1"] for h in part) / 8 for part in (history[:8], history[-8:]))
    assert last < 0.8 * first, (first, last)
    assert after < 0.75 * before, (before, after)
    assert not translator.training
    torch.testing.assert_close(translator.default_style, pairs.styles.mean(dim=0))


def test_save_load_round_trip_gives_identical_output(pairs, tmp_path):
    translator = train_pseudo_gt(pairs, PseudoGTConfig(**TINY), steps=2, progress=False)
    path = save_translator(translator, tmp_path / "translator.safetensors")
    loaded = load_translator(path)
    assert loaded.arguments == translator.arguments and not loaded.training
    expected = apply_pseudo_gt(translator, pairs.labels[:3])
    assert torch.equal(apply_pseudo_gt(loaded, pairs.labels[:3]), expected)
    torch.testing.assert_close(apply_pseudo_gt(loaded, pairs.labels[0]), expected[0])  # unbatched ids
    batch = pairs.batch(torch.arange(3))
    with_style = apply_pseudo_gt(loaded, batch.segmentation, batch.style)
    assert torch.equal(with_style, apply_pseudo_gt(translator, batch.segmentation, batch.style))
    assert not with_style.requires_grad
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        load_translator(tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_translator(tmp_path / "missing.safetensors")


def test_wrong_segmentation_gives_clear_errors(pairs):
    translator = SPADETranslator(pairs.num_labels, base_channels=4, image_size=32, spade_hidden=8)
    translator.train()
    one_hot = pairs.batch(torch.arange(2)).segmentation  # [2, L, 32, 32]
    with pytest.raises(ValueError, match=rf"\[B, {pairs.num_labels}, H, W\]"):
        apply_pseudo_gt(translator, one_hot[:, :-1])  # a label missing
    with pytest.raises(ValueError, match="multiples of 8"):
        apply_pseudo_gt(translator, one_hot[:, :, :30])
    with pytest.raises(ValueError, match="integer ids"):
        apply_pseudo_gt(translator, one_hot[None])  # 5-D
    with pytest.raises(ValueError, match="integer ids"):
        apply_pseudo_gt(translator, pairs.labels[:2, None])  # [B, 1, H, W] ids
    with pytest.raises(ValueError, match=rf"0\.\.{pairs.num_labels - 1}"):
        apply_pseudo_gt(translator, torch.full((32, 32), pairs.num_labels))
    with pytest.raises(ValueError, match=rf"style must be \[2, {STYLE_DIM}\]"):
        apply_pseudo_gt(translator, one_hot, torch.zeros(2, 3))
    assert translator.training  # the mode is restored even after an error


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="batch_size"):
        PseudoGTConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr_generator"):
        PseudoGTConfig(lr_generator=0.0)
    with pytest.raises(ValueError, match="both 0"):
        PseudoGTConfig(l1_weight=0.0, gan_weight=0.0)
    with pytest.raises(ValueError, match=r"PseudoGTConfig\.gan_loss: GAN loss 'wgan'"):
        PseudoGTConfig(gan_loss="wgan")
    with pytest.raises(ValueError, match="image_size"):
        SPADETranslator(10, image_size=36)
