"""Train the offline feature network of the GAN metrics on Fashion-MNIST and write its weights.

Writes ``imaginate/metrics/weights/fashion_mnist_features.safetensors`` (float32, ~1.7 MB) and the
JSON sidecar ``fashion_mnist_features.json`` next to it (seed, epochs, test accuracy, torch version,
sha256 of the weights). Runs on CPU in a few minutes:

    python scripts/train_feature_net.py            # 1 thread, seed 20240607, 5 epochs
    python scripts/train_feature_net.py --threads 2

The same seed, thread count and torch build give the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from imaginate.data import load_fashion_mnist
from imaginate.metrics.feature_net import (
    FASHION_FEATURES_SIDECAR,
    FASHION_FEATURES_WEIGHTS,
    FashionFeatureNet,
    sha256_of_file,
)

SEED = 20240607  # the seed of the committed weights
EPOCHS = 5
BATCH_SIZE = 128
PEAK_LR = 3e-3
WEIGHT_DECAY = 5e-4
SLICE = 2000  # tests re-measure the accuracy on the first SLICE test images


@torch.no_grad()
def accuracy(net: FashionFeatureNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of correctly classified images ([N, 1, 28, 28], [N]) in eval mode."""
    net.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        correct += int((net(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
    return correct / max(len(images), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=FASHION_FEATURES_WEIGHTS, help="safetensors file to write")
    args = parser.parse_args()
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, test = load_fashion_mnist()
    net = FashionFeatureNet()
    optimizer = torch.optim.AdamW(net.parameters(), lr=PEAK_LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = len(train.images) // BATCH_SIZE  # the last partial batch is dropped
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=PEAK_LR, total_steps=args.epochs * steps_per_epoch, pct_start=0.2
    )
    order_generator = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for epoch in range(args.epochs):
        # one epoch: shuffled batches, random horizontal flips (clothes are left-right symmetric)
        net.train()
        order = torch.randperm(len(train.images), generator=order_generator)
        total_loss = 0.0
        for step in range(steps_per_epoch):
            index = order[step * BATCH_SIZE : (step + 1) * BATCH_SIZE]
            images, labels = train.images[index], train.labels[index]  # [B, 1, 28, 28], [B]
            flip = torch.rand(len(index), generator=order_generator) < 0.5  # [B]
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
        test_acc = accuracy(net, test.images, test.labels)
        print(
            f"epoch {epoch + 1}/{args.epochs}: train loss {total_loss / steps_per_epoch:.4f}, "
            f"test accuracy {test_acc:.4f}, {time.time() - start:.0f}s",
            flush=True,
        )
    train_seconds = time.time() - start

    # write the weights atomically, then the sidecar that describes them
    net.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    tmp = args.out.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"seed": str(args.seed), "script": "scripts/train_feature_net.py"})
    os.chmod(tmp, 0o644)  # safetensors writes 0600; package data must be readable by everyone
    os.replace(tmp, args.out)
    sidecar = {
        "description": "Fashion-MNIST CNN classifier; its 128-d penultimate layer is the offline GAN-metric "
        "feature space ('Fashion-MNIST features')",
        "script": "scripts/train_feature_net.py",
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": BATCH_SIZE,
        "optimizer": f"AdamW(lr={PEAK_LR}, weight_decay={WEIGHT_DECAY}), OneCycleLR(pct_start=0.2)",
        "augmentation": "random horizontal flip",
        "train_examples": len(train.images),
        "test_examples": len(test.images),
        "test_accuracy": round(accuracy(net, test.images, test.labels), 6),
        f"test_accuracy_first_{SLICE}": round(accuracy(net, test.images[:SLICE], test.labels[:SLICE]), 6),
        "feature_dim": net.feature_dim,
        "parameters": sum(p.numel() for p in net.parameters()),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "num_threads": args.threads,
        "train_seconds": round(train_seconds, 1),
        "weights_file": args.out.name,
        "weights_bytes": args.out.stat().st_size,
        "sha256": sha256_of_file(args.out),
    }
    sidecar_path = FASHION_FEATURES_SIDECAR if args.out == FASHION_FEATURES_WEIGHTS else args.out.with_suffix(".json")
    sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(sidecar, indent=2))


if __name__ == "__main__":
    main()
