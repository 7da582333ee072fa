"""Lung bounding boxes and ROI crops, including every fallback rule."""

from __future__ import annotations

import numpy as np
import pytest

from covid_cxnet_pipeline.imaging.lung_roi import crop_roi, lung_bbox

IMAGE = np.arange(400, dtype=np.int32).reshape(20, 20)


def _two_lungs() -> np.ndarray:
    mask = np.zeros((20, 20), dtype=bool)
    mask[4:16, 2:9] = True  # 84 px
    mask[4:16, 11:18] = True  # 84 px -> area 168/400 = 42 %, share 50 %, box width 16/20
    return mask


def test_lung_bbox_known_answer():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:7] = True
    assert lung_bbox(mask) == (2, 3, 5, 7)
    # Margin 0.5: rows pad round_half_up(1.5) = 2, columns pad round_half_up(2.0) = 2.
    assert lung_bbox(mask, 0.5) == (0, 1, 7, 9)
    # Margin 1.0 pads 3 rows / 4 columns and is clipped at the image edges.
    assert lung_bbox(mask, 1.0) == (0, 0, 8, 10)
    assert lung_bbox(np.zeros((3, 3), bool)) is None
    with pytest.raises(ValueError, match="margin_fraction"):
        lung_bbox(mask, -0.1)


def test_crop_two_lungs():
    crop, fallback, reason = crop_roi(IMAGE, _two_lungs(), margin=0.0)
    assert (fallback, reason) == (False, "")
    np.testing.assert_array_equal(crop, IMAGE[4:16, 2:18])
    # Margin 0.1: 12 rows -> pad 1, 16 columns -> pad 2 (1.6 rounds up).
    crop, fallback, _ = crop_roi(IMAGE, _two_lungs(), margin=0.1)
    np.testing.assert_array_equal(crop, IMAGE[3:17, 0:20])


def test_mask_at_lower_resolution_is_scaled_to_the_image():
    small = _two_lungs()[::2, ::2]  # 10x10: rows 2..7, columns 1..8
    crop, fallback, _ = crop_roi(IMAGE, small, margin=0.0)
    assert not fallback
    np.testing.assert_array_equal(crop, IMAGE[4:16, 2:18])


def test_colour_image_crops_all_channels():
    colour = np.dstack([IMAGE] * 3)
    crop, _, _ = crop_roi(colour, _two_lungs(), margin=0.0)
    assert crop.shape == (12, 16, 3)


def _single_lung() -> np.ndarray:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:18, 2:9] = True  # 112 px = 28 %, but only 7/20 = 35 % of the width
    return mask


def _one_lung_truncated() -> np.ndarray:
    mask = _two_lungs()
    mask[4:16, 11:18] = False
    mask[14:16, 16:18] = True  # 4 px second component: the big one holds 84/88 = 95 %
    return mask


def _huge() -> np.ndarray:
    mask = np.ones((20, 20), dtype=bool)
    mask[:, 9:11] = False  # 90 %
    return mask


def _speck() -> np.ndarray:
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:8, 3:6] = True
    mask[5:8, 14:17] = True  # 18 px = 4.5 %
    return mask


@pytest.mark.parametrize(
    ("mask", "rule"),
    [
        (np.zeros((20, 20), bool), "empty lung mask"),
        (_speck(), "covers 4.5% of the image, below min_area_fraction=0.08"),
        (_huge(), "covers 90.0% of the image, above max_area_fraction=0.7"),
        (_one_lung_truncated(), "holds 95.5% of the lung area, above max_component_share=0.9"),
        (_single_lung(), "spans 35.0% of the image width, below min_bbox_width_fraction=0.5"),
    ],
)
def test_implausible_masks_fall_back_to_the_full_image(mask, rule):
    crop, fallback, reason = crop_roi(IMAGE, mask)
    assert fallback
    assert crop is IMAGE
    assert rule in reason


def test_thresholds_are_parameters():
    _, fallback, _ = crop_roi(IMAGE, _single_lung(), min_bbox_width_fraction=0.3)
    assert not fallback
    _, fallback, _ = crop_roi(IMAGE, _speck(), min_area_fraction=0.01)
    assert not fallback


def test_mask_must_be_2d():
    with pytest.raises(ValueError, match="2-D mask"):
        crop_roi(IMAGE, np.zeros((20, 20, 1)))
