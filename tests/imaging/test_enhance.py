"""Histogram equalisation and CLAHE on tiny arrays whose results are computed by hand."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from covid_cxnet_pipeline.imaging import enhance
from covid_cxnet_pipeline.imaging.enhance import (
    apply_lut,
    clahe,
    equalize_histogram,
    gray_histogram,
)


def test_gray_histogram_counts_levels_0_to_255():
    rng = np.random.default_rng(0)
    image = rng.integers(40, 90, (20, 20), dtype=np.uint8)
    hist = gray_histogram(image)
    assert hist.shape == (256,)
    np.testing.assert_array_equal(hist, np.histogram(image, bins=256, range=(0, 256))[0])
    assert hist[:40].sum() == 0


def test_gray_histogram_bincount_path_for_huge_images(monkeypatch):
    image = np.array([[3, 3, 200], [0, 3, 255]], dtype=np.uint8)
    fast = gray_histogram(image)
    monkeypatch.setattr(enhance, "_FLOAT32_EXACT_COUNT", 0)
    slow = gray_histogram(image)
    np.testing.assert_array_equal(fast, slow)
    assert (slow[0], slow[3], slow[200], slow[255], slow.sum()) == (1, 3, 1, 1, 6)
    assert slow.dtype == fast.dtype == np.int64


def test_apply_lut_on_gray_colour_and_many_channels():
    lut = (255 - np.arange(256)).astype(np.uint8)
    gray = np.array([[0, 10], [200, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(apply_lut(gray, lut), [[255, 245], [55, 0]])
    colour = np.dstack([gray] * 3)
    np.testing.assert_array_equal(apply_lut(colour, lut), np.dstack([255 - gray] * 3))
    many = np.dstack([gray] * 5)  # beyond OpenCV's 4 channels: numpy indexing
    np.testing.assert_array_equal(apply_lut(many, lut), 255 - many)


def test_equalize_histogram_known_answer():
    # Counts: level 0 -> 2, 1 -> 1, 2 -> 2 (N = 5). Darkest level 0 -> 0; the rest map to
    # round(255 * (cdf - h(0)) / (N - h(0))): level 1 -> 255 * 1/3 = 85, level 2 -> 255.
    image = np.array([[0, 0, 1, 2, 2]], dtype=np.uint8)
    np.testing.assert_array_equal(equalize_histogram(image), [[0, 0, 85, 255, 255]])


def test_equalize_histogram_keeps_a_constant_image():
    image = np.full((3, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(equalize_histogram(image), image)


def test_clahe_single_tile_known_answer():
    # One 2x2 tile: level 10 x3, level 200 x1. OpenCV's clip limit in counts is
    # max(int(clip_limit * 4 / 256), 1).
    image = np.array([[10, 10], [10, 200]], dtype=np.uint8)
    # clip_limit 1000 -> 15 counts, nothing clipped: LUT = round(cdf * 255 / 4) ->
    # 10 -> 3 * 63.75 = 191.25 -> 191, 200 -> 255.
    np.testing.assert_array_equal(clahe(image, 1000, (1, 1)), [[191, 191], [191, 255]])
    # clip_limit 2 -> 1 count: level 10 keeps 1, its 2 excess counts go one each to levels
    # 0 and 128 (every 256/2 levels), so cdf(10) = 2 -> 2 * 63.75 = 127.5 -> 128.
    np.testing.assert_array_equal(clahe(image, 2.0, (1, 1)), [[128, 128], [128, 255]])


def test_clahe_tile_grid_is_rows_then_columns():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (16, 64), dtype=np.uint8)
    expected = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 2)).apply(image)  # (cols, rows)
    np.testing.assert_array_equal(clahe(image, 2.0, (2, 4)), expected)
    assert not np.array_equal(clahe(image, 2.0, (4, 2)), expected)


def test_invalid_inputs_are_rejected():
    image = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="clip_limit"):
        clahe(image, 0)
    with pytest.raises(ValueError, match="tile grid"):
        clahe(image, 2.0, (0, 8))
    with pytest.raises(ValueError, match="2-D uint8"):
        clahe(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="2-D uint8"):
        equalize_histogram(np.zeros((4, 4), np.uint16))
