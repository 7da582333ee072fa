"""LIME wrapper on a tiny numpy "model" whose evidence lies in one half of the image."""

from __future__ import annotations

import numpy as np
import pytest
from lime import lime_image

from covid_cxnet_pipeline.evaluation.explain_lime import (
    explain_with_lime,
    grid_segmentation,
    make_segmentation_fn,
)


def _half_brightness_model(side: str):
    """Binary 'model': P(positive) rises with the mean brightness of one half of the image."""
    columns = slice(0, 16) if side == "left" else slice(16, 32)

    def predict(batch: np.ndarray) -> np.ndarray:
        brightness = np.asarray(batch, dtype=float)[:, :, columns].mean(axis=(1, 2, 3)) / 255.0
        return 1.0 / (1.0 + np.exp(-10.0 * (brightness - 0.3)))

    return predict


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(60, 256, (32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("side", ["left", "right"])
def test_explanation_favours_the_half_the_model_reads(image, side):
    result = explain_with_lime(
        image,
        _half_brightness_model(side),
        num_samples=64,
        num_features=4,
        seed=0,
        segmentation="grid",
        segmentation_params={"n_cells": 4},
    )
    assert result.label == 1  # the model calls this bright image positive
    read, ignored = (
        (slice(0, 16), slice(16, 32)) if side == "left" else (slice(16, 32), slice(0, 16))
    )
    assert result.mask.sum() == 4 * 64  # four 8x8 cells
    assert not result.mask[:, ignored].any()
    cells_in_half = {int(s) for s in np.unique(result.segments[:, read])}
    top = sorted(result.weights, key=result.weights.get, reverse=True)[:8]
    assert set(top) == cells_in_half
    assert result.overlay.shape == (32, 32, 3)
    assert result.overlay.dtype == np.uint8


def test_same_seed_same_explanation_and_no_progress_bar(image, capsys):
    kwargs = {"num_samples": 40, "seed": 3, "segmentation": "grid", "label": 1}
    progress = lime_image.tqdm
    first = explain_with_lime(image, _half_brightness_model("left"), **kwargs)
    again = explain_with_lime(image, _half_brightness_model("left"), **kwargs)
    assert np.array_equal(first.mask, again.mask)
    assert first.weights == again.weights
    assert "it/s" not in capsys.readouterr().err
    assert lime_image.tqdm is progress  # lime's own progress bar is put back


def test_scikit_image_segmentation_and_float_multiclass_input(image):
    def predict(batch: np.ndarray) -> np.ndarray:
        left = np.asarray(batch)[:, :, :16].mean(axis=(1, 2, 3))
        positive = 1.0 / (1.0 + np.exp(-10.0 * (left - 0.3)))
        return np.column_stack([1.0 - positive, positive * 0.5, positive * 0.5])

    result = explain_with_lime(
        image.astype(np.float32) / 255.0,
        predict,
        label=2,
        num_samples=40,
        segmentation="felzenszwalb",
        segmentation_params={"scale": 50},
    )
    assert result.label == 2
    assert result.mask.shape == (32, 32)
    assert result.overlay.dtype == np.uint8


def test_grid_segmentation_ids():
    segments = grid_segmentation(np.zeros((6, 4)), n_cells=2)
    assert segments.tolist() == [[0, 0, 1, 1]] * 3 + [[2, 2, 3, 3]] * 3


def test_unknown_segmentation_and_bad_image_are_rejected(image):
    with pytest.raises(ValueError, match="segmentation"):
        make_segmentation_fn("watershed", None, 0)
    with pytest.raises(ValueError, match="H x W x 3"):
        explain_with_lime(np.zeros((4, 4, 2)), _half_brightness_model("left"))
