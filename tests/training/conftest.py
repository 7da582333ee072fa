"""Fixtures for the training library tests: tiny labelled PNGs on disk and a 2-layer model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

SIZE = 32
# Brightness encodes the class, so a tiny model can learn it in a couple of epochs.
LEVEL = {"normal": 50, "cap": 128, "covid": 205}
SPLIT_LABELS = {
    "train": ["normal"] * 4 + ["cap"] * 2 + ["covid"] * 2,
    "validation": ["normal", "cap", "covid", "covid"],
    "test": ["normal", "cap", "covid", "normal"],
}


def write_png(path: Path, level: int, seed: int, size: int = SIZE) -> Path:
    """Write a 3-channel PNG whose mean is about ``level``, with seeded noise."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-30, 31, size=(size, size, 3))
    pixels = np.clip(level + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="RGB").save(path)
    return path


def damage_inside(path: Path) -> None:
    """Flip bytes in the middle of a PNG's compressed data; signature and IEND stay intact."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - value for value in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def make_index(
    folder: Path,
    split_labels: dict[str, Sequence[str]] = SPLIT_LABELS,
    size: int = SIZE,
    level: dict[str, int] = LEVEL,
) -> pd.DataFrame:
    """Write one PNG per row and return a model_input_index-like table."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, labels in split_labels.items():
        for number, label in enumerate(labels):
            image_id = f"{split}-{number}-{label}"
            path = write_png(folder / f"{image_id}.png", level[label], seed=len(rows), size=size)
            rows.append(
                {
                    "image_id": image_id,
                    "path": str(path),
                    "lung_mask_path": "",
                    "label": label,
                    "split": split,
                    "mask_area": 0.5,
                    "roi_fallback": False,
                }
            )
    return pd.DataFrame(rows)


def tiny_model(n_outputs: int, size: int = SIZE) -> keras.Model:
    """A 2-layer classifier taking [0, 255] pixels like the real ones: conv, pooling, dense."""
    inputs = keras.Input((size, size, 3))
    scaled = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    features = keras.layers.Conv2D(4, 3, activation="relu")(scaled)
    features = keras.layers.GlobalAveragePooling2D()(features)
    activation = "sigmoid" if n_outputs == 1 else "softmax"
    outputs = keras.layers.Dense(n_outputs, activation=activation)(features)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """16 labelled 32x32 PNGs: 8 train, 4 validation, 4 test (do not modify the files)."""
    return make_index(tmp_path_factory.mktemp("model_input"))


@pytest.fixture(autouse=True)
def _restore_op_determinism() -> Iterator[None]:
    """Op determinism is process-wide: switch it off again so other test files are unaffected."""
    yield
    from tensorflow.python.framework import config as tf_config

    disable = getattr(tf_config, "disable_op_determinism", None)
    if disable is not None:
        disable()
