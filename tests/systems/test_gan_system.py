"""The class-conditional GAN system at its tiny preset."""

import torch

from imaginate.config import build_config
from imaginate.engine import DistEnv, RunContext, run_training, unwrap
from imaginate.engine.logging import read_metrics
from imaginate.registry import get_system


def _system(overrides=()):
    spec = get_system("gan")
    cfg = build_config(spec.config_cls, preset="tiny", system="gan", overrides=list(overrides))
    ctx = RunContext(DistEnv(0, 1, 0, torch.device("cpu")), False, 1, 0, cfg.train.batch_size)
    return spec.system_cls(cfg, ctx)


def test_tiny_preset_trains_50_steps_with_falling_discriminator_loss(tmp_path):
    spec = get_system("gan")
    cfg = build_config(spec.config_cls, preset="tiny", system="gan",
                       overrides=["train.steps=50", "train.log_every=1", "train.sample_every=0",
                                  "train.ckpt_every=50", "eval.num_samples=200", "train.num_threads=2"])
    metrics = run_training(spec, cfg, tmp_path / "gan", progress=False)
    rows = [r for r in read_metrics(tmp_path / "gan") if r["split"] == "train"]
    d = [r["discriminator_loss"] for r in rows]
    assert len(d) == 50 and all(torch.isfinite(torch.tensor([r["generator_loss"] for r in rows])))
    assert sum(d[-10:]) / 10 < sum(d[:10]) / 10  # D learns to tell real from fake
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert {"fid", "kid", "precision", "recall", "class_acc"} <= set(metrics)
    ckpt = torch.load(sorted((tmp_path / "gan" / "checkpoints").iterdir())[-1], weights_only=True)
    assert set(ckpt["modules"]) == {"generator", "discriminator", "generator_ema"}


def test_ema_follows_the_generator_and_is_used_for_samples():
    system = _system(["gan.ema_beta=0.5", "gan.ema_warmup=0", "train.batch_size=8", "model.g_width=8",
                      "model.d_width=8"])
    ema_before = [p.clone() for p in system.ema.module.parameters()]
    system.train_step(system.train_batch(0))
    for e0, e1, g in zip(ema_before, system.ema.module.parameters(), unwrap(system.generator).parameters()):
        torch.testing.assert_close(e1, 0.5 * e0 + 0.5 * g.detach())  # exact EMA update
    assert system.eval_generator is system.ema.module
    grid = system.sample()["class_by_seed"]
    assert grid.shape == (3, 10 * 30 + 2, 10 * 30 + 2)  # 10 classes x 10 seeds of 28 px tiles, pad 2


def test_conditioning_changes_the_output():
    """Conditional BN starts as the identity for every class; after a few updates the class matters."""
    system = _system(["model.g_width=8", "model.d_width=8", "gan.ema_beta=0", "train.batch_size=16"])
    gen = system.eval_generator
    z = torch.randn(4, system.cfg.model.z_dim)
    gen.eval()
    assert torch.allclose(gen(z, torch.zeros(4, dtype=torch.long)), gen(z, torch.full((4,), 7, dtype=torch.long)))
    for step in range(3):
        system.train_step(system.train_batch(step))
    gen.eval()
    z = torch.randn(4, system.cfg.model.z_dim)
    a = gen(z, torch.zeros(4, dtype=torch.long))
    b = gen(z, torch.full((4,), 7, dtype=torch.long))
    assert a.shape == (4, 1, 28, 28) and not torch.allclose(a, b)


def test_r1_is_taken_through_the_augmentation_that_d_sees():
    """With DiffAugment, the R1 penalty differentiates D(augment(x)) at the real x: the augmentation runs
    once more in a step with R1 (before the fix R1 saw un-augmented reals: 3 calls, not 4)."""
    system = _system(["gan.diffaugment=color", "gan.r1_gamma=1.0", "gan.r1_interval=1", "train.batch_size=8",
                      "model.g_width=8", "model.d_width=8"])
    calls = []
    augment = system.augment

    def counting(x):
        calls.append(x.shape[0])
        return augment(x)

    system.augment = counting
    logs = system.train_step(system.train_batch(0))
    assert "r1" in logs and len(calls) == 4  # D step: real, fake, R1's real; G step: fake


def test_ema_generator_uses_batch_norm_statistics_of_its_own_weights():
    """The EMA copy's BN running statistics are re-estimated from its own activations, not the trained G's."""
    system = _system(["gan.ema_beta=0.99", "gan.ema_warmup=0", "gan.lr_g=0.01", "train.batch_size=16",
                      "model.g_width=8", "model.d_width=8"])
    for step in range(5):
        system.train_step(system.train_batch(step))
    raw = unwrap(system.generator)
    net = system.eval_generator
    bn_ema = net.to_image[0]
    # the reference: the EMA weights' own activation mean at the last BN, on fresh latents
    captured = []
    handle = bn_ema.register_forward_hook(lambda m, args, out: captured.append(args[0].mean(dim=(0, 2, 3))))
    with torch.no_grad():
        labels = torch.arange(512) % len(system.class_names)
        net(torch.randn(512, system.cfg.model.z_dim, generator=torch.Generator().manual_seed(1)), labels)
    handle.remove()
    own = captured[0]
    assert not net.training and not torch.allclose(raw.to_image[0].running_mean, own, atol=0.05)
    torch.testing.assert_close(bn_ema.running_mean, own, atol=0.05, rtol=0.1)
