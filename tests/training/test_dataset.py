"""Tests for the streaming tf.data input: shapes, labels, order, seeding, file checks, weights."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from covid_cxnet_pipeline.training.dataset import (
    check_image_files,
    class_weights,
    encode_labels,
    make_dataset,
    output_class_names,
    split_rows,
)
from tests.training.conftest import LEVEL, damage_inside, make_index, write_png

CLASSES = ["normal", "cap", "covid"]
AUGMENT = {"enabled": True, "rotation_degrees": 10, "zoom": 0.1, "shift": 0.05, "brightness": 0.1}


def _collect(dataset):
    images, labels = [], []
    for batch_images, batch_labels in dataset:
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(labels)


def _make(index, split="train", task="multiclass", **kwargs):
    options = {"batch_size": 4, "shuffle": False, "seed": 1, "augment_cfg": None}
    options.update(kwargs)
    return make_dataset(index, split, task, CLASSES, 32, **options)


def test_multiclass_shapes_one_hot_labels_and_index_order(tiny_index):
    images, labels = _collect(_make(tiny_index, "validation"))
    rows = split_rows(tiny_index, "validation")
    assert images.shape == (4, 32, 32, 3)
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 255.0
    assert images.max() > 200.0  # raw pixels, not rescaled: the model scales its input
    expected = np.eye(3, dtype=np.float32)[[CLASSES.index(label) for label in rows["label"]]]
    np.testing.assert_array_equal(labels, expected)
    # Unshuffled order is the index order: each image's mean sits near its class level.
    expected_means = np.array([LEVEL[label] for label in rows["label"]])
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), expected_means, atol=5.0)


def test_binary_labels_are_float_column_with_covid_positive(tiny_index):
    dataset = make_dataset(
        tiny_index,
        "train",
        "binary",
        ["not_covid", "covid"],
        32,
        batch_size=8,
        shuffle=False,
        seed=1,
    )
    images, labels = _collect(dataset)
    assert labels.shape == (8, 1)
    assert labels.dtype == np.float32
    expected = (split_rows(tiny_index, "train")["label"] == "covid").to_numpy(np.float32)
    np.testing.assert_array_equal(labels[:, 0], expected)
    assert images.shape == (8, 32, 32, 3)


def test_shuffle_is_seeded_and_reshuffles_each_epoch(tiny_index):
    def epoch_orders(seed):
        dataset = _make(tiny_index, shuffle=True, seed=seed, batch_size=8)
        return [_collect(dataset)[0].mean(axis=(1, 2, 3)) for _ in range(2)]

    first_run = epoch_orders(3)
    second_run = epoch_orders(3)
    other_seed = epoch_orders(4)
    for epoch in range(2):
        np.testing.assert_array_equal(first_run[epoch], second_run[epoch])
    assert not np.array_equal(first_run[0], first_run[1])
    assert not np.array_equal(first_run[0], other_seed[0])
    # A shuffle, not a resample: the same images in another order.
    np.testing.assert_allclose(np.sort(first_run[0]), np.sort(first_run[1]))


def test_augmentation_is_seeded_and_fresh_each_epoch(tiny_index):
    def two_epochs(seed):
        dataset = _make(tiny_index, "validation", augment_cfg=AUGMENT, seed=seed)
        return [_collect(dataset)[0] for _ in range(2)]

    run_a, run_b, run_c = two_epochs(5), two_epochs(5), two_epochs(6)
    plain, _ = _collect(_make(tiny_index, "validation"))
    np.testing.assert_array_equal(run_a[0], run_b[0])
    np.testing.assert_array_equal(run_a[1], run_b[1])
    assert not np.allclose(run_a[0], run_a[1])
    assert not np.allclose(run_a[0], run_c[0])
    assert not np.allclose(run_a[0], plain)


def test_cache_gives_the_same_batches(tiny_index):
    cached, _ = _collect(_make(tiny_index, "validation", cache=True, augment_cfg=AUGMENT))
    streamed, _ = _collect(_make(tiny_index, "validation", augment_cfg=AUGMENT))
    np.testing.assert_array_equal(cached, streamed)


def test_images_are_read_at_iteration_time_not_held_in_memory(tmp_path):
    index = make_index(tmp_path / "imgs", {"validation": ["normal", "covid"]})
    dataset = _make(index, "validation", batch_size=2)
    before, _ = _collect(dataset)
    # Rewriting a file after the dataset is built changes what it yields: it streams paths.
    write_png(tmp_path / "imgs" / "validation-0-normal.png", LEVEL["covid"], seed=0)
    after, _ = _collect(dataset)
    assert after[0].mean() > before[0].mean() + 100
    np.testing.assert_array_equal(after[1], before[1])


def test_other_sizes_are_resized(tmp_path):
    index = make_index(tmp_path / "big", {"test": ["normal", "cap"]}, size=40)
    images, _ = _collect(_make(index, "test"))
    assert images.shape == (2, 32, 32, 3)


def test_missing_png_is_named(tmp_path):
    index = make_index(tmp_path / "m", {"train": ["normal", "cap"]})
    gone = index.loc[1, "path"]
    (tmp_path / "m" / "train-1-cap.png").unlink()
    with pytest.raises(FileNotFoundError, match="train-1-cap.png"):
        _make(index)
    assert gone.endswith("train-1-cap.png")


def test_truncated_and_non_png_files_are_named(tmp_path):
    index = make_index(tmp_path / "c", {"train": ["normal", "cap", "covid"]})
    truncated = tmp_path / "c" / "train-0-normal.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    shutil.copy(tmp_path / "c" / "train-1-cap.png", tmp_path / "c" / "train-2-covid.png")
    (tmp_path / "c" / "train-1-cap.png").write_bytes(b"GIF89a not a png at all")
    with pytest.raises(ValueError, match="train-0-normal.png") as error:
        check_image_files(index["path"])
    assert "train-1-cap.png" in str(error.value)
    assert "train-2-covid.png" not in str(error.value)


def test_unknown_labels_and_bad_arguments_are_rejected(tiny_index):
    with pytest.raises(ValueError, match="other"):
        encode_labels(["normal", "other"], "multiclass", CLASSES)
    with pytest.raises(ValueError, match="task"):
        encode_labels(["normal"], "ternary", CLASSES)
    with pytest.raises(ValueError, match="external"):
        split_rows(tiny_index, "external")
    with pytest.raises(ValueError, match="lacks column"):
        split_rows(tiny_index.drop(columns="path"), "train")


def test_encode_labels_known_answers():
    labels = ["covid", "normal", "cap", "covid"]
    np.testing.assert_array_equal(encode_labels(labels, "multiclass", CLASSES), [2, 0, 1, 2])
    np.testing.assert_array_equal(
        encode_labels(labels, "binary", ["not_covid", "covid"]), [1, 0, 0, 1]
    )
    np.testing.assert_array_equal(encode_labels(labels, "binary", CLASSES), [1, 0, 0, 1])
    assert output_class_names("binary", CLASSES) == ["not_covid", "covid"]
    assert output_class_names("multiclass", CLASSES) == CLASSES


def test_binary_with_a_named_negative_class_rejects_other_labels():
    labels = ["covid", "normal", "cap", "covid", "cap"]
    # [normal, covid] names the negative output "normal": CAP must not be encoded as it.
    with pytest.raises(ValueError, match=r"\{'cap': 2\}.*'normal' would misname") as error:
        encode_labels(labels, "binary", ["normal", "covid"])
    assert "not_covid" in str(error.value)
    assert output_class_names("binary", ["normal", "covid"]) == ["normal", "covid"]
    # The listed labels still encode, and a not_<positive> negative or a lone positive class
    # group every other schema label as negative.
    np.testing.assert_array_equal(
        encode_labels(["covid", "normal"], "binary", ["normal", "covid"]), [1, 0]
    )
    np.testing.assert_array_equal(encode_labels(labels, "binary", ["covid"]), [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(
        encode_labels(labels, "binary", ["not_covid", "covid"]), [1, 0, 0, 1, 0]
    )


def test_class_weights_known_answers(tiny_index):
    # train: 4 normal, 2 cap, 2 covid -> n / (k * count).
    weights = class_weights(tiny_index, "train", "multiclass", CLASSES)
    assert weights == pytest.approx({0: 8 / 12, 1: 8 / 6, 2: 8 / 6})
    binary = class_weights(tiny_index, "train", "binary", ["not_covid", "covid"])
    assert binary == pytest.approx({0: 8 / 12, 1: 8 / 4})


def test_class_weights_reject_absent_class():
    index = pd.DataFrame(
        {"path": ["a.png", "b.png"], "label": ["normal", "covid"], "split": ["train", "train"]}
    )
    with pytest.raises(ValueError, match="cap"):
        class_weights(index, "train", "multiclass", CLASSES)


def test_deep_check_names_a_png_damaged_inside(tmp_path):
    index = make_index(tmp_path / "d", {"train": ["normal", "cap"]})
    damage_inside(tmp_path / "d" / "train-1-cap.png")
    check_image_files(index["path"])  # the cheap check cannot see inside
    with pytest.raises(ValueError, match="train-1-cap.png"):
        check_image_files(index["path"], deep=True)
