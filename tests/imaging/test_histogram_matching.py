"""Reference histograms streamed over images, and CDF matching with hand-computed LUTs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from covid_cxnet_pipeline.imaging.histogram_matching import (
    build_reference_histogram,
    match_histogram,
    matching_lut,
)


def test_reference_is_the_mean_of_per_image_distributions():
    half_and_half = np.array([[0, 0], [255, 255]], dtype=np.uint8)  # 0: 1/2, 255: 1/2
    quarter = np.array([[0, 255, 255, 255]], dtype=np.uint8)  # 0: 1/4, 255: 3/4
    reference = build_reference_histogram([half_and_half, quarter])
    assert reference.shape == (256,)
    assert reference[0] == pytest.approx(0.375) and reference[255] == pytest.approx(0.625)
    assert reference.sum() == pytest.approx(1.0)


def test_reference_from_paths_is_streamed_lazily(tmp_path):
    arrays = [np.full((2, 2), 10, np.uint8), np.full((4, 4), 30, np.uint8)]
    paths = []
    for index, array in enumerate(arrays):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(array).save(paths[-1])
    consumed = []

    def one_at_a_time():
        for path in paths:
            consumed.append(path)
            yield path

    reference = build_reference_histogram(one_at_a_time())
    assert consumed == paths
    # Each image weighs 1/2 whatever its size.
    assert reference[10] == pytest.approx(0.5) and reference[30] == pytest.approx(0.5)


def test_empty_reference_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        build_reference_histogram([])


def test_matching_lut_known_answer():
    source = np.zeros(256)
    source[[10, 20]] = 2  # CDF: 0.5 at 10, 1 at 20
    reference = np.zeros(256)
    reference[[0, 100, 200]] = [1, 1, 2]  # CDF: 0.25 at 0, 0.5 at 100, 1 at 200
    lut = matching_lut(source, reference)
    # Lowest reference level whose CDF reaches the source CDF: 0.5 -> 100, 1 -> 200;
    # levels below 10 have CDF 0 -> 0.
    assert (lut[0], lut[9], lut[10], lut[19], lut[20], lut[255]) == (0, 0, 100, 100, 200, 200)


def test_match_histogram_moves_the_image_onto_the_reference():
    image = np.array([[10, 10], [20, 20]], dtype=np.uint8)
    reference = np.zeros(256)
    reference[[0, 100, 200]] = [0.25, 0.25, 0.5]
    np.testing.assert_array_equal(match_histogram(image, reference), [[100, 100], [200, 200]])


def test_matching_to_its_own_histogram_is_identity():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    own = np.bincount(image.ravel(), minlength=256)
    np.testing.assert_array_equal(match_histogram(image, own), image)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="uint8"):
        match_histogram(np.zeros((2, 2), np.float64), np.ones(256))
    with pytest.raises(ValueError, match="reference histogram must hold 256"):
        match_histogram(np.zeros((2, 2), np.uint8), np.ones(10))
