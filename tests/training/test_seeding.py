"""Same seed, same training run: weights and metrics match exactly; another seed differs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import tensorflow as tf

from covid_cxnet_pipeline.training.dataset import make_dataset
from covid_cxnet_pipeline.training.seeding import set_global_seed
from covid_cxnet_pipeline.training.trainer import train_model
from tests.training.conftest import tiny_model

AUGMENT = {"enabled": True, "rotation_degrees": 10, "zoom": 0.1, "shift": 0.05, "contrast": 0.1}


def _fit(index, seed):
    set_global_seed(seed)
    train_ds = make_dataset(
        index,
        "train",
        "binary",
        ["not_covid", "covid"],
        32,
        batch_size=4,
        shuffle=True,
        seed=seed,
        augment_cfg=AUGMENT,
    )
    val_ds = make_dataset(
        index,
        "validation",
        "binary",
        ["not_covid", "covid"],
        32,
        batch_size=4,
        shuffle=False,
        seed=seed,
    )
    model, history, best_epoch = train_model(
        tiny_model(1), train_ds, val_ds, epochs=2, learning_rate=0.01, monitor="val_loss"
    )
    return model.get_weights(), history, best_epoch


def test_same_seed_same_weights_and_metrics(tiny_index):
    weights_a, history_a, best_a = _fit(tiny_index, 11)
    weights_b, history_b, best_b = _fit(tiny_index, 11)
    weights_c, history_c, _ = _fit(tiny_index, 12)
    assert history_a == history_b
    assert best_a == best_b
    for array_a, array_b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(array_a, array_b)
    assert history_a["loss"] != history_c["loss"]
    assert any(
        not np.array_equal(array_a, array_c)
        for array_a, array_c in zip(weights_a, weights_c, strict=True)
    )


def test_seeds_python_numpy_and_tensorflow():
    set_global_seed(5)
    first = (random.random(), np.random.random(), float(tf.random.uniform(())))
    set_global_seed(5)
    second = (random.random(), np.random.random(), float(tf.random.uniform(())))
    assert first == second
    assert tf.config.experimental.enable_op_determinism is not None
    from tensorflow.python.framework import config as tf_config

    assert tf_config.is_op_determinism_enabled()


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_rejects_invalid_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        set_global_seed(seed)
