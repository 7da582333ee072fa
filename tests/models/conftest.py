"""Fixtures for model tests: Keras 2 style legacy HDF5 weights files written by the tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest


def _keras2_name(name: str) -> str:
    # Keras 2 named the DenseNet stem "conv1/conv", "conv1/bn"; Keras 3 says "conv1_conv".
    return name.replace("conv1_", "conv1/", 1) if name.startswith("conv1_") else name


def write_keras2_weights(model: keras.Model, path: Path) -> Path:
    """Write ``model``'s weights as Keras 2's ``save_weights`` did (legacy HDF5 layout).

    Layer and weight names follow Keras 2 (``conv1/conv``, ``kernel:0``), so loading it
    exercises the name-independent, order-based path the real CheXNet file needs.
    """
    with h5py.File(path, "w") as handle:
        names = [_keras2_name(layer.name) for layer in model.layers]
        handle.attrs["layer_names"] = np.array([name.encode("utf8") for name in names])
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.1.5"
        for layer, name in zip(model.layers, names, strict=True):
            group = handle.create_group(name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            weight_names = [f"{name}/{weight.name}:0" for weight in weights]
            group.attrs["weight_names"] = np.array([w.encode("utf8") for w in weight_names])
            for weight_name, weight in zip(weight_names, weights, strict=True):
                group.create_dataset(weight_name, data=np.asarray(weight.numpy()))
    return path


@pytest.fixture
def keras2_weights_writer() -> Callable[[keras.Model, Path], Path]:
    """The ``write_keras2_weights`` function."""
    return write_keras2_weights
