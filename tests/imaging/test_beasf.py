"""BEASF against hand-computed LUTs, its invariants, and the seed's min-max binning bug."""

from __future__ import annotations

import math

import numpy as np
import pytest

from covid_cxnet_pipeline.imaging.beasf import beasf, beasf_lut
from covid_cxnet_pipeline.imaging.enhance import gray_histogram


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_known_answer_on_a_five_pixel_image():
    image = np.array([[0, 0, 0, 4, 8]], dtype=np.uint8)
    gamma = 1.5
    # mean = 12 / 5 = 2.4 -> split m = 2.
    # Lower part, levels 0..2, counts [3, 0, 0]: CDF(0) = 1 > 0.5 -> centre 0, width m = 2.
    #   s(t) = sigmoid(1.5 * 5 * (t - 0) / 2); LUT(t) = 2 * (s(t) - s(0)) / (s(2) - s(0)).
    s_low = [_sigmoid(gamma * 5 * t / 2) for t in range(3)]
    lower = [2 * (s - s_low[0]) / (s_low[2] - s_low[0]) for s in s_low]
    assert lower[1] == pytest.approx(1.9102, abs=1e-4)

    # Upper part, levels 3..255, one pixel at 4 and one at 8: CDF(4) = 0.5 is not > 0.5,
    # CDF(8) = 1 -> centre 8, width 255 - m = 253, output range [3, 255].
    def s_up(t: int) -> float:
        return _sigmoid(gamma * 5 * (t - 8) / 253)

    def upper(t: int) -> float:
        return 3 + 252 * (s_up(t) - s_up(3)) / (s_up(255) - s_up(3))

    assert upper(4) == pytest.approx(6.467, abs=1e-3)
    assert upper(8) == pytest.approx(20.379, abs=1e-3)

    lut = beasf_lut(gray_histogram(image), gamma)
    assert list(lut[:3]) == [0, 2, 2]
    assert [lut[3], lut[4], lut[8], lut[255]] == [3, 6, 20, 255]
    assert lut[4] == round(upper(4)) and lut[8] == round(upper(8))
    np.testing.assert_array_equal(beasf(image, gamma), [[0, 0, 0, 6, 20]])


def test_symmetric_lower_part_keeps_its_centre():
    # Lower part of [0, 2, 4, 10]: mean 4 -> m = 4; CDF over 0..4 = 1/3, 1/3, 2/3 -> centre 2,
    # the middle of 0..4, so by the sigmoid's symmetry LUT(2) = 4 * 0.5 = 2.
    image = np.array([[0, 2], [4, 10]], dtype=np.uint8)
    lut = beasf_lut(gray_histogram(image), 1.5)
    assert (lut[0], lut[2], lut[4]) == (0, 2, 4)

    # Upper part 5..255 holds only 10 -> centre 10:
    # 5 + 250 * (s(10) - s(5)) / (s(255) - s(5)), s(t) = sigmoid(1.5 * 5 * (t - 10) / 251).
    def s(t: int) -> float:
        return _sigmoid(1.5 * 5 * (t - 10) / 251)

    assert lut[10] == round(5 + 250 * (s(10) - s(5)) / (s(255) - s(5)))  # = 22


def test_lut_is_monotone_and_respects_the_split():
    rng = np.random.default_rng(7)
    image = rng.normal(90, 30, (64, 64)).clip(0, 255).astype(np.uint8)
    lut = beasf_lut(gray_histogram(image), 1.5)
    split = int(image.mean())
    assert np.all(np.diff(lut.astype(int)) >= 0)
    assert lut[0] == 0 and lut[split] == split and lut[split + 1] == split + 1 and lut[255] == 255
    assert lut[: split + 1].max() <= split < lut[split + 1 :].min()


def test_tiny_gamma_approaches_identity():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    np.testing.assert_array_equal(beasf_lut(gray_histogram(image), 1e-4), np.arange(256))


@pytest.mark.parametrize("value", [0, 100, 255])
def test_constant_images_are_unchanged(value):
    image = np.full((4, 4), value, dtype=np.uint8)
    np.testing.assert_array_equal(beasf(image), image)


def test_min_max_binning_bug_of_the_seed_gives_a_different_answer():
    # An image spanning 100..150 only: np.histogram(image, bins=256) spreads 100..150 over 256
    # bins, so "bin k" is not gray level k (bin 255 holds the 150s) and the medians land on
    # the wrong levels. Gray-level binning is np.histogram with range=(0, 256).
    image = np.array([[100, 100, 100, 110], [120, 130, 140, 150]], dtype=np.uint8)
    min_max_hist = np.histogram(image, bins=256)[0]
    gray_hist = np.histogram(image, bins=256, range=(0, 256))[0]
    np.testing.assert_array_equal(gray_hist, gray_histogram(image))
    assert min_max_hist[255] == 1 and gray_histogram(image)[150] == 1
    correct = beasf(image, 1.5)
    buggy = beasf_lut(min_max_hist, 1.5)[image]
    assert not np.array_equal(correct, buggy)
    # The correct split is the image's own floor(mean) = 118: 110 stays below it, 120 above.
    assert correct[0, 3] <= 118 < correct[1, 0]


@pytest.mark.parametrize("gamma", [1e-17, 1e-7, -1.5, 0.0, float("nan"), float("inf"), "steep"])
def test_unusable_gamma_names_the_parameter(gamma):
    # 1e-17 used to give a zero sigmoid span -> NaN -> an all-zero LUT with only a warning.
    image = np.array([[0, 50, 100], [150, 200, 255]], dtype=np.uint8)
    with pytest.raises(ValueError, match=r"preprocess\.enhance\.beasf_gamma"):
        beasf(image, gamma)


def test_smallest_accepted_gamma_is_the_identity():
    image = np.random.default_rng(5).integers(0, 256, (16, 16), dtype=np.uint8)
    np.testing.assert_array_equal(beasf_lut(gray_histogram(image), 1e-6), np.arange(256))


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="gamma must be > 0"):
        beasf(np.zeros((2, 2), np.uint8), gamma=0)
    with pytest.raises(ValueError, match="uint8"):
        beasf(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="256-bin"):
        beasf_lut(np.ones(128))
    with pytest.raises(ValueError, match="256-bin"):
        beasf_lut(np.zeros(256))
