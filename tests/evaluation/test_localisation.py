"""Localisation score on synthetic heatmaps and lung masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from covid_cxnet_pipeline.evaluation.localisation import (
    BY_CLASS_COLUMNS,
    localisation_by_class,
    localisation_scores,
    lung_mass_fraction,
)


def _left_half_mask(size: int = 4) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[:, : size // 2] = True
    return mask


def test_known_fraction_same_size():
    heat = np.zeros((4, 4))
    heat[0, 0] = 3.0  # inside
    heat[3, 3] = 1.0  # outside
    assert lung_mass_fraction(heat, _left_half_mask()) == pytest.approx(0.75)


def test_uniform_heatmap_scores_the_mask_area():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:7, 1:5] = True  # 20 of 100 pixels
    assert lung_mass_fraction(np.ones((10, 10)), mask) == pytest.approx(0.2)
    # A coarse uniform map resized to the mask stays uniform.
    assert lung_mass_fraction(np.full((3, 3), 0.4), mask) == pytest.approx(0.2)


def test_coarse_heatmap_is_resized_bilinearly():
    # 2x2 -> 4x4 bilinear (pixel centres aligned): each axis weighs 1, 0.75, 0.25, 0, so the
    # top-left 2x2 quadrant holds 1.75^2 of the total 2^2.
    heat = np.array([[1.0, 0.0], [0.0, 0.0]])
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    assert lung_mass_fraction(heat, mask) == pytest.approx(1.75**2 / 4)


def test_empty_heatmap_or_mask_is_nan():
    assert np.isnan(lung_mass_fraction(np.zeros((4, 4)), _left_half_mask()))
    assert np.isnan(lung_mass_fraction(np.ones((4, 4)), np.zeros((4, 4), dtype=bool)))


@pytest.mark.parametrize(
    ("heat", "mask", "message"),
    [
        (-np.ones((4, 4)), _left_half_mask(), ">= 0"),
        (np.full((4, 4), np.nan), _left_half_mask(), "finite"),
        (np.ones((4, 4, 3)), _left_half_mask(), "2-D"),
    ],
)
def test_bad_heatmaps_are_rejected(heat, mask, message):
    with pytest.raises(ValueError, match=message):
        lung_mass_fraction(heat, mask)


def test_scores_per_image_and_per_class():
    mask = _left_half_mask()
    inside = np.zeros((4, 4))
    inside[1, 1] = 1.0
    half = np.ones((4, 4))
    outside = np.zeros((4, 4))
    outside[2, 3] = 1.0
    images = ["a", "b", "c", "d"]
    labels = ["covid", "covid", "normal", "normal"]
    heatmaps = iter([inside, half, outside, np.zeros((4, 4))])  # a generator is fine
    scores = localisation_scores(images, labels, heatmaps, (mask for _ in range(4)))
    assert scores["lung_fraction"].tolist()[:3] == pytest.approx([1.0, 0.5, 0.0])
    assert np.isnan(scores["lung_fraction"].iloc[3])
    assert scores["mask_area"].tolist() == pytest.approx([0.5] * 4)

    by_class = localisation_by_class(scores).set_index("label")
    assert list(by_class.reset_index().columns) == list(BY_CLASS_COLUMNS)
    assert by_class.loc["covid", "mean"] == pytest.approx(0.75)
    assert by_class.loc["covid", "n_scored"] == 2
    assert by_class.loc["normal", "mean"] == pytest.approx(0.0)
    assert by_class.loc["normal", "n_images"] == 2
    assert by_class.loc["normal", "n_scored"] == 1
    assert by_class.loc["all", "mean"] == pytest.approx(0.5)
    assert by_class.loc["all", "mean_mask_area"] == pytest.approx(0.5)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError):
        localisation_scores(["a", "b"], ["covid"], [np.ones((2, 2))], [np.ones((2, 2))])
