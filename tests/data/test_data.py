"""Data sets: digits, Fashion-MNIST IDX files, image folders, character corpora."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from imaginate.data import (
    DEFAULT_FASHION_MNIST,
    FASHION_MNIST_CLASS_NAMES,
    ArrayDataset,
    CharCorpus,
    DataError,
    load_char_corpus,
    load_digits,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
)
from imaginate.data.image_folder import ImageFolderDataset

HAVE_DEBIAN_FASHION_MNIST = os.path.isfile(os.path.join(DEFAULT_FASHION_MNIST, "train-images-idx3-ubyte.gz"))

# ---------------------------------------------------------------- ArrayDataset


def test_array_dataset_getitem_and_take_agree() -> None:
    images = torch.rand(6, 1, 4, 4)
    labels = torch.arange(6) % 3
    data = ArrayDataset(images, labels, ["a", "b", "c"])
    index = torch.tensor([4, 0, 4])
    batch_images, batch_labels = data.take(index)
    assert len(data) == 6 and data.image_shape == (1, 4, 4) and data.num_classes == 3
    for row, i in enumerate(index.tolist()):
        image, label = data[i]
        assert torch.equal(batch_images[row], image) and batch_labels[row] == label
    with pytest.raises(ValueError, match="labels"):
        ArrayDataset(images, labels[:5], ["a", "b", "c"])


# ---------------------------------------------------------------- digits


def test_digits_split_sizes_range_and_stratification() -> None:
    train, test = load_digits(test_fraction=0.2, seed=0)
    assert len(train) + len(test) == 1797
    assert len(test) == 360
    assert train.images.shape == (1437, 1, 8, 8) and train.images.dtype == torch.float32
    assert train.labels.dtype == torch.int64 and train.class_names == [str(d) for d in range(10)]
    for data in (train, test):
        assert data.images.min() >= 0.0 and data.images.max() == 1.0  # raw 0..16 divided by 16
    total = torch.bincount(train.labels, minlength=10) + torch.bincount(test.labels, minlength=10)
    held_out = torch.bincount(test.labels, minlength=10)
    assert torch.all((held_out.double() - 0.2 * total.double()).abs() <= 1.0)


def test_digits_split_is_deterministic_by_seed() -> None:
    a_train, a_test = load_digits(seed=3)
    b_train, b_test = load_digits(seed=3)
    c_train, _ = load_digits(seed=4)
    assert torch.equal(a_train.images, b_train.images) and torch.equal(a_test.labels, b_test.labels)
    assert not torch.equal(a_train.images, c_train.images)


# ---------------------------------------------------------------- Fashion-MNIST


def write_idx(path: str, array: np.ndarray, truncate: int = 0) -> None:
    """An unsigned-byte IDX file written by hand (gzipped if the name ends in .gz)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    payload = payload[: len(payload) - truncate]
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(payload)


def write_fashion_files(root: str, n_train: int = 7, n_test: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, (n_train,)),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),  # plain, not gzipped
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, (n_test,)),
    }
    os.makedirs(root, exist_ok=True)
    for name, array in arrays.items():
        write_idx(os.path.join(root, name), array)
    return arrays


def test_idx_files_round_trip(tmp_path) -> None:
    arrays = write_fashion_files(str(tmp_path))
    train, test = load_fashion_mnist(root=str(tmp_path))
    assert train.images.shape == (7, 1, 28, 28) and test.images.shape == (3, 1, 28, 28)
    assert torch.equal(
        (train.images * 255).round().to(torch.int64)[:, 0],
        torch.from_numpy(arrays["train-images-idx3-ubyte.gz"]),
    )
    assert torch.equal(
        (test.images * 255).round().to(torch.int64)[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"])
    )
    assert torch.equal(train.labels, torch.from_numpy(arrays["train-labels-idx1-ubyte.gz"]))
    assert torch.equal(test.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]))
    limited, _ = load_fashion_mnist(root=str(tmp_path), limit_train=4)
    assert torch.equal(limited.images, train.images[:4])


def test_fashion_root_comes_from_environment(tmp_path, monkeypatch) -> None:
    write_fashion_files(str(tmp_path / "env"), n_train=2, n_test=1)
    monkeypatch.setenv("IMAGINATE_FASHION_MNIST", str(tmp_path / "env"))
    train, test = load_fashion_mnist()
    assert len(train) == 2 and len(test) == 1


def test_truncated_idx_file_names_the_file(tmp_path) -> None:
    arrays = write_fashion_files(str(tmp_path))
    bad = os.path.join(str(tmp_path), "t10k-images-idx3-ubyte")
    write_idx(bad, arrays["t10k-images-idx3-ubyte"], truncate=100)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte") as info:
        load_fashion_mnist(root=str(tmp_path))
    assert "\n" not in str(info.value)


def test_truncated_gzip_and_bad_magic_name_the_file(tmp_path) -> None:
    path = str(tmp_path / "cut-idx3-ubyte.gz")
    write_idx(path, np.zeros((4, 28, 28)))
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut-idx3-ubyte.gz"):
        read_idx(path, ndim=3)
    labels = str(tmp_path / "labels-idx1-ubyte")
    write_idx(labels, np.zeros(5))
    with pytest.raises(DataError, match="magic number"):
        read_idx(labels, ndim=3)  # a 1-d file where 3 dimensions are expected


def test_missing_fashion_root_says_how_to_fix(tmp_path) -> None:
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match="data.root") as info:
        load_fashion_mnist(root=missing)
    assert missing in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not HAVE_DEBIAN_FASHION_MNIST, reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_shapes_and_histogram() -> None:
    train, test = load_fashion_mnist(root=DEFAULT_FASHION_MNIST)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert (
        train.images.dtype == torch.float32
        and 0.0 <= float(train.images.min())
        and float(train.images.max()) <= 1.0
    )
    assert torch.equal(torch.bincount(train.labels, minlength=10), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.labels, minlength=10), torch.full((10,), 1000))
    assert train.class_names == FASHION_MNIST_CLASS_NAMES and len(train.class_names) == 10
    small_train, small_test = load_fashion_mnist(root=DEFAULT_FASHION_MNIST, limit_train=100, limit_test=10)
    assert torch.equal(small_train.images, train.images[:100]) and torch.equal(
        small_test.labels, test.labels[:10]
    )


# ---------------------------------------------------------------- image folders

COLOURS = {"cat": (255, 0, 0), "dog": (0, 0, 255)}


def make_image_folder(root, per_class: int = 5) -> None:
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (10 + i, 12), colour).save(root / name / f"{i}.png")


def test_image_folder_labels_and_shapes(tmp_path) -> None:
    make_image_folder(tmp_path)
    data = ImageFolderDataset(str(tmp_path), image_size=8, channels=3)
    assert data.class_names == ["cat", "dog"] and len(data) == 10
    for i in range(len(data)):
        image, label = data[i]
        assert image.shape == (3, 8, 8) and image.dtype == torch.float32
        red = image[0].mean().item()
        assert (label.item() == 0) == (red > 0.99)  # cats are red, dogs blue
    grey, _ = ImageFolderDataset(str(tmp_path), image_size=6, channels=1)[0]
    assert grey.shape == (1, 6, 6) and 0.0 <= grey.min() and grey.max() <= 1.0


def test_image_folder_split_is_stratified_disjoint_and_deterministic(tmp_path) -> None:
    make_image_folder(tmp_path)
    train, test = load_image_folder(str(tmp_path), image_size=8, channels=3, test_fraction=0.2, seed=1)
    assert train.class_names == ["cat", "dog"] and test.class_names == ["cat", "dog"]
    assert len(train) == 8 and len(test) == 2
    assert sorted(test.labels.tolist()) == [0, 1]
    assert not set(train.indices) & set(test.indices)
    again, _ = load_image_folder(str(tmp_path), image_size=8, seed=1)
    assert again.indices == train.indices


def test_image_folder_with_train_and_test_folders(tmp_path) -> None:
    make_image_folder(tmp_path / "train", per_class=3)
    make_image_folder(tmp_path / "test", per_class=2)
    train, test = load_image_folder(str(tmp_path), image_size=8)
    assert (len(train), len(test)) == (6, 4) and test.class_names == ["cat", "dog"]


def test_image_folder_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderDataset(str(tmp_path / "nowhere"), image_size=8)
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolderDataset(str(tmp_path), image_size=8)
    make_image_folder(tmp_path / "a")
    (tmp_path / "a" / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class"):
        ImageFolderDataset(str(tmp_path / "a"), image_size=8)


def test_corrupt_and_truncated_images_name_the_file(tmp_path) -> None:
    make_image_folder(tmp_path)
    (tmp_path / "cat" / "broken.png").write_bytes(b"this is not a png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "dog" / "cut.png")
    whole = (tmp_path / "dog" / "cut.png").read_bytes()
    (tmp_path / "dog" / "cut.png").write_bytes(whole[: len(whole) // 2])
    data = ImageFolderDataset(str(tmp_path), image_size=8)
    for name in ("broken.png", "cut.png"):
        index = next(i for i, (path, _) in enumerate(data.samples) if path.endswith(name))
        with pytest.raises(DataError, match=name):
            data[index]


# ---------------------------------------------------------------- character corpus


def test_char_corpus_round_trip_and_split(tmp_path) -> None:
    text = "the quick brown fox jumps over the lazy dog. ÆØÅ é\n" * 20
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_char_corpus(str(path), val_fraction=0.1)
    assert corpus.vocab == sorted(set(text))
    assert corpus.decode(corpus.encode(text)) == text
    assert len(corpus.train) + len(corpus.val) == len(text)
    assert corpus.decode(corpus.val) == text[-len(corpus.val) :]
    assert len(corpus.val) == round(0.1 * len(text))
    with pytest.raises(ValueError, match="vocabulary"):
        corpus.encode("Z")


def test_windows_match_slices_and_targets_shift_by_one() -> None:
    data = torch.arange(100) * 7 % 13
    starts = torch.tensor([0, 5, 89, 42])
    inputs, targets = CharCorpus.windows(data, starts, context=10)
    assert inputs.shape == targets.shape == (4, 10)
    for row, s in enumerate(starts.tolist()):
        assert torch.equal(inputs[row], data[s : s + 10]) and torch.equal(targets[row], data[s + 1 : s + 11])
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    with pytest.raises(ValueError, match="window starts"):
        CharCorpus.windows(data, torch.tensor([90]), context=10)


def test_default_corpus_is_offline_nontrivial_and_quiet(capsys) -> None:
    corpus = load_char_corpus()
    assert capsys.readouterr().out == ""
    text = corpus.decode(torch.cat([corpus.train, corpus.val]))
    assert len(text) > 40_000 and corpus.vocab_size > 60
    assert "digits" in text.lower() and "iris" in text.lower()


def test_text_file_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_char_corpus(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty.txt"):
        load_char_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_char_corpus(str(tmp_path / "latin1.txt"))
