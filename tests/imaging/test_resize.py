"""Resizing with and without keeping the aspect ratio, on arrays small enough to check by hand."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from covid_cxnet_pipeline.imaging.resize import resize

BLOCKS = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [8, 8, 12, 12], [8, 8, 16, 16]], dtype=np.uint8)


def test_downscale_averages_blocks():
    # INTER_AREA by 2 averages each 2x2 block; the last block is (12+12+16+16)/4 = 14.
    np.testing.assert_array_equal(resize(BLOCKS, 2), [[0, 4], [8, 14]])


def test_exact_size_is_a_copy():
    out = resize(BLOCKS, (4, 4))
    np.testing.assert_array_equal(out, BLOCKS)
    assert out is not BLOCKS


def test_keep_aspect_pads_centred():
    image = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.uint8)
    # Scale min(4/2, 4/4) = 1: the 2x4 image sits in rows 1..2 of a 4x4 canvas.
    out = resize(image, (4, 4), keep_aspect=True, pad_value=9)
    np.testing.assert_array_equal(out, [[9] * 4, [1, 2, 3, 4], [5, 6, 7, 8], [9] * 4])


def test_keep_aspect_shrinks_then_pads():
    image = np.zeros((4, 8), dtype=np.uint8)
    image[:, 4:] = 100
    # Scale min(2/4, 2/8) = 1/4 -> 1x2 (left block mean 0, right 100), padded below.
    out = resize(image, (2, 2), keep_aspect=True)
    np.testing.assert_array_equal(out, [[0, 100], [0, 0]])


def test_upscale_uses_linear_and_masks_can_use_nearest():
    image = np.array([[0, 100]], dtype=np.uint8)
    expected = cv2.resize(image, (4, 1), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(resize(image, (1, 4)), expected)
    np.testing.assert_array_equal(
        resize(image, (1, 4), interpolation=cv2.INTER_NEAREST), [[0, 0, 100, 100]]
    )


def test_channels_are_kept():
    image = np.dstack([BLOCKS, BLOCKS, BLOCKS])
    assert resize(image, (2, 2)).shape == (2, 2, 3)
    assert resize(image[..., :1], (2, 2)).shape == (2, 2, 1)
    assert resize(image, (8, 6), keep_aspect=True).shape == (8, 6, 3)


def test_invalid_size():
    with pytest.raises(ValueError, match="must be positive"):
        resize(BLOCKS, (0, 4))
