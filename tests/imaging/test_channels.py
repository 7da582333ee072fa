"""The 3-channel stack of original / CLAHE / BEASF / HE."""

from __future__ import annotations

import numpy as np
import pytest

from covid_cxnet_pipeline.imaging.beasf import beasf
from covid_cxnet_pipeline.imaging.channels import stack_channels
from covid_cxnet_pipeline.imaging.enhance import clahe, equalize_histogram

rng = np.random.default_rng(11)
IMAGE = rng.normal(120, 40, (24, 32)).clip(0, 255).astype(np.uint8)


def test_default_is_original_clahe_beasf():
    stacked = stack_channels(IMAGE)
    assert stacked.shape == (24, 32, 3) and stacked.dtype == np.uint8
    np.testing.assert_array_equal(stacked[..., 0], IMAGE)
    np.testing.assert_array_equal(stacked[..., 1], clahe(IMAGE, 2.0, (8, 8)))
    np.testing.assert_array_equal(stacked[..., 2], beasf(IMAGE, 1.5))


def test_order_repeats_and_parameters_are_honoured():
    stacked = stack_channels(
        IMAGE,
        ("he", "original", "clahe"),
        clahe_clip_limit=4.0,
        clahe_tile_grid_size=(2, 2),
    )
    np.testing.assert_array_equal(stacked[..., 0], equalize_histogram(IMAGE))
    np.testing.assert_array_equal(stacked[..., 1], IMAGE)
    np.testing.assert_array_equal(stacked[..., 2], clahe(IMAGE, 4.0, (2, 2)))
    twice = stack_channels(IMAGE, ["beasf", "beasf", "original"], beasf_gamma=3.0)
    np.testing.assert_array_equal(twice[..., 0], beasf(IMAGE, 3.0))
    np.testing.assert_array_equal(twice[..., 0], twice[..., 1])


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        (("original", "clahe"), "exactly 3 names"),
        (("original", "clahe", "beasf", "he"), "exactly 3 names"),
        (("original", "clahe", "gamma"), r"unknown: \['gamma'\]"),
        ("original", "exactly 3 names"),
    ],
)
def test_bad_channel_lists_are_rejected(channels, message):
    with pytest.raises(ValueError, match=message):
        stack_channels(IMAGE, channels)


def test_colour_input_is_rejected():
    with pytest.raises(ValueError, match="2-D uint8"):
        stack_channels(np.dstack([IMAGE] * 3))
