"""scikit-learn's 8x8 handwritten digits: 1797 images, 10 classes, always available offline."""

from __future__ import annotations

import numpy as np
import torch

from imaginate.data.arrays import ArrayDataset

DIGIT_CLASS_NAMES = [str(d) for d in range(10)]


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """The digits data set, split into train and test, stratified by class.

    Args:
        test_fraction: share of each class held out for the test set, in (0, 1).
        seed: the split's random seed; the same seed gives the same split.

    Returns:
        (train, test): images [N, 1, 8, 8] float32 in [0, 1], labels [N] int64, classes "0".."9".
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # [1797, 8, 8] in [0, 1]
    labels = np.asarray(bunch.target, dtype=np.int64)  # [1797]
    train_index, test_index = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
    )
    # keep the original order inside each split; shuffling is the loader's job
    train_index, test_index = np.sort(train_index), np.sort(test_index)

    def subset(index: np.ndarray) -> ArrayDataset:
        return ArrayDataset(
            images=torch.from_numpy(images[index]).unsqueeze(1),  # [n, 1, 8, 8]
            labels=torch.from_numpy(labels[index]),  # [n]
            class_names=list(DIGIT_CLASS_NAMES),
        )

    return subset(train_index), subset(test_index)
