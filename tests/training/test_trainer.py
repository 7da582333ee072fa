"""Tests for training with model selection on validation, and split prediction."""

from __future__ import annotations

import numpy as np
import pytest

from covid_cxnet_pipeline.training.dataset import class_weights, make_dataset, split_rows
from covid_cxnet_pipeline.training.seeding import set_global_seed
from covid_cxnet_pipeline.training.trainer import (
    best_epoch_from_history,
    predict_split,
    train_model,
)
from tests.training.conftest import damage_inside, make_index, tiny_model

CLASSES = ["normal", "cap", "covid"]
BINARY = ["not_covid", "covid"]


def _ds(index, split, task, classes, *, shuffle=False, batch_size=4):
    return make_dataset(
        index, split, task, classes, 32, batch_size=batch_size, shuffle=shuffle, seed=0
    )


def test_best_epoch_known_answers():
    assert best_epoch_from_history({"val_auc": [0.5, 0.8, 0.8, 0.7]}, "val_auc") == 2
    assert best_epoch_from_history({"val_loss": [1.0, 0.5, 0.7]}, "val_loss") == 2
    assert best_epoch_from_history({"val_accuracy": [np.nan, 0.6, 0.5]}, "val_accuracy") == 2
    with pytest.raises(ValueError, match="val_auc"):
        best_epoch_from_history({"val_auc": [np.nan]}, "val_auc")


def test_returns_the_best_validation_epoch_not_the_last(tmp_path):
    # Validation labels are the opposite of training ones (bright = covid in train, dark =
    # covid in validation): the better the model fits train, the worse validation gets, so
    # the first epoch is the best and early stopping ends the run two epochs later.
    index = make_index(
        tmp_path / "flip",
        {"train": ["normal", "covid"] * 6, "validation": ["normal", "covid"] * 2},
    )
    flipped = index["split"] == "validation"
    index.loc[flipped, "label"] = index.loc[flipped, "label"].map(
        {"normal": "covid", "covid": "normal"}
    )
    set_global_seed(0)
    train_ds = _ds(index, "train", "binary", BINARY, shuffle=True)
    val_ds = _ds(index, "validation", "binary", BINARY)
    model, history, best_epoch = train_model(
        tiny_model(1),
        train_ds,
        val_ds,
        epochs=8,
        learning_rate=0.05,
        early_stopping_patience=2,
        monitor="val_loss",
        checkpoint_dir=tmp_path / "ckpt",
    )
    val_loss = history["val_loss"]
    assert best_epoch == int(np.argmin(val_loss)) + 1
    assert best_epoch < len(val_loss) < 8, val_loss
    assert len(val_loss) == best_epoch + 2
    assert (tmp_path / "ckpt" / "best.weights.h5").is_file()
    # The returned weights are the best epoch's: re-evaluating reproduces its val_loss.
    evaluated = model.evaluate(val_ds, verbose=0, return_dict=True)["loss"]
    assert evaluated == pytest.approx(val_loss[best_epoch - 1], rel=1e-5)
    assert evaluated != pytest.approx(val_loss[-1], rel=1e-3)
    assert set(history) >= {"loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"}


def test_multiclass_fit_with_class_weights_and_prediction(tiny_index):
    set_global_seed(1)
    weights = class_weights(tiny_index, "train", "multiclass", CLASSES)
    model, history, best_epoch = train_model(
        tiny_model(3),
        _ds(tiny_index, "train", "multiclass", CLASSES, shuffle=True),
        _ds(tiny_index, "validation", "multiclass", CLASSES),
        epochs=2,
        learning_rate=0.01,
        class_weight=weights,
        label_smoothing=0.1,
        monitor="val_auc",
    )
    assert len(history["val_auc"]) == 2
    assert 1 <= best_epoch <= 2
    y_true, y_prob = predict_split(model, _ds(tiny_index, "test", "multiclass", CLASSES))
    expected = [CLASSES.index(label) for label in split_rows(tiny_index, "test")["label"]]
    np.testing.assert_array_equal(y_true, expected)
    assert y_prob.shape == (4, 3)
    np.testing.assert_allclose(y_prob.sum(axis=1), 1.0, atol=1e-5)


def test_predict_split_binary_shapes(tiny_index):
    model = tiny_model(1)
    y_true, y_prob = predict_split(model, _ds(tiny_index, "test", "binary", BINARY, batch_size=3))
    expected = (split_rows(tiny_index, "test")["label"] == "covid").to_numpy(np.int64)
    np.testing.assert_array_equal(y_true, expected)
    assert y_prob.shape == (4,)
    assert np.all((y_prob >= 0) & (y_prob <= 1))


def test_monitor_must_be_a_validation_metric(tiny_index):
    train_ds = _ds(tiny_index, "train", "binary", BINARY)
    val_ds = _ds(tiny_index, "validation", "binary", BINARY)
    with pytest.raises(ValueError, match="validation metric"):
        train_model(tiny_model(1), train_ds, val_ds, epochs=1, learning_rate=0.01, monitor="auc")
    with pytest.raises(ValueError, match="val_f1"):
        train_model(tiny_model(1), train_ds, val_ds, epochs=1, learning_rate=0.01, monitor="val_f1")


def test_dataset_model_mismatch_is_explained(tiny_index):
    binary_ds = _ds(tiny_index, "validation", "binary", BINARY)
    with pytest.raises(ValueError, match="1 column"):
        predict_split(tiny_model(3), binary_ds)
    with pytest.raises(ValueError, match="expects"):
        predict_split(tiny_model(1, size=48), binary_ds)


def test_png_damaged_inside_gives_a_hint_not_a_bare_tf_error(tmp_path):
    index = make_index(tmp_path / "bad", {"train": ["normal", "covid"], "validation": ["covid"]})
    damage_inside(tmp_path / "bad" / "train-1-covid.png")
    with pytest.raises(ValueError, match="deep=True"):
        train_model(
            tiny_model(1),
            _ds(index, "train", "binary", BINARY),
            _ds(index, "validation", "binary", BINARY),
            epochs=1,
            learning_rate=0.01,
            monitor="val_loss",
        )
