"""Seen / unseen class split files (text and JSON) and the few-shot image folder."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from imaginate.data import DataError, few_shot_folder, load_class_split

CLASSES = ["cat", "dog", "fox", "lynx", "wolf"]  # folder names; each class's images have its own grey level

TEXT_SPLIT = """# three seen, one unseen, "wolf" in neither
[seen]
dog
  cat

fox
[Unseen]
lynx
"""


@pytest.fixture
def folder(tmp_path: str) -> str:
    root = os.path.join(tmp_path, "faces")
    for label, name in enumerate(CLASSES):
        os.makedirs(os.path.join(root, name))
        for k in range(label % 2 + 2):  # 2 or 3 images per class
            pixels = np.full((6, 6, 3), 40 * label + k, dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, name, f"{k}.png"))
    return root


def _write(tmp_path: str, name: str, text: str) -> str:
    path = os.path.join(tmp_path, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def test_text_and_json_formats_give_the_same_split(tmp_path: str) -> None:
    text = _write(tmp_path, "split.txt", TEXT_SPLIT)
    as_json = _write(tmp_path, "split.json", json.dumps({"seen": ["dog", "cat", "fox"], "unseen": ["lynx"]}))
    expected = (["dog", "cat", "fox"], ["lynx"])  # file order, names stripped
    assert load_class_split(text) == expected
    assert load_class_split(as_json) == expected
    assert load_class_split(text, CLASSES) == expected


def test_few_shot_folder_relabels_each_part(tmp_path: str, folder: str) -> None:
    split = _write(tmp_path, "split.txt", TEXT_SPLIT)
    seen, unseen = few_shot_folder(folder, split, image_size=4)
    assert seen.class_names == ["dog", "cat", "fox"] and unseen.class_names == ["lynx"]
    assert seen.num_classes == 3 and seen.image_shape == (3, 4, 4)
    assert len(seen) == 3 + 2 + 2 and len(unseen) == 3  # wolf is in neither part
    assert torch.bincount(seen.labels).tolist() == [3, 2, 2] and unseen.labels.tolist() == [0, 0, 0]
    for data in (seen, unseen):
        for i in range(len(data)):
            image, label = data[i]
            assert label.dtype == torch.int64 and label == data.labels[i]
            grey = round(float(image[0, 0, 0]) * 255)  # 40 * folder index + k
            assert CLASSES[grey // 40] == data.class_names[int(label)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[seen]\ncat\n[unseen]\ncow\n", r"unseen class 'cow' is not a class folder"),
        ("[seen]\ncat\ndog\n[unseen]\ndog\n", r"'dog' is both seen and unseen"),
        ("[seen]\ncat\ncat\n[unseen]\ndog\n", r"seen class 'cat' more than once"),
        ("[seen]\ncat\n[unseen]\n", r"no unseen classes"),
        ("cat\n[seen]\ndog\n[unseen]\nfox\n", r"line 1: class 'cat' comes before"),
        ("[seen]\ncat\n[test]\ndog\n", r"line 3: unknown header \[test\]"),
        ('{"seen": ["cat"], "unseen": ["cow"]}', r"unseen class 'cow' is not a class folder"),
        ('{"seen": ["cat"], "unseen": ["cat"]}', r"'cat' is both seen and unseen"),
        ('{"seen": ["cat"]}', r'keys "seen" and "unseen"'),
        ('{"seen": "cat", "unseen": ["dog"]}', r'"seen" must be a list of class names'),
        ('{"seen": ["cat"], "unseen": ["dog"]', r"not valid JSON"),
    ],
)
def test_bad_split_files_name_the_file_and_the_problem(tmp_path: str, text: str, message: str) -> None:
    path = _write(tmp_path, "bad_split", text)
    with pytest.raises(DataError, match=message) as caught:
        load_class_split(path, CLASSES)
    assert path in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_class_is_an_error_only_against_a_folder(tmp_path: str, folder: str) -> None:
    path = _write(tmp_path, "split.json", json.dumps({"seen": ["cat", "emu"], "unseen": ["dog"]}))
    assert load_class_split(path) == (["cat", "emu"], ["dog"])
    with pytest.raises(DataError, match=r"seen class 'emu' is not a class folder") as caught:
        few_shot_folder(folder, path, image_size=4)
    assert path in str(caught.value)


def test_missing_split_file(tmp_path: str, folder: str) -> None:
    missing = os.path.join(tmp_path, "nowhere.txt")
    with pytest.raises(DataError, match="cannot read class split .*nowhere.txt"):
        few_shot_folder(folder, missing, image_size=4)
