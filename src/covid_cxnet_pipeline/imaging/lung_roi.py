"""Crop the lung region of a chest X-ray from a lung mask, falling back to the full image when unsure.

A crop from a wrong mask would hide the lungs from the classifier, so :func:`crop_roi` only
crops when the mask looks like two plausible lungs and otherwise returns the full image with the
reason. The rules, checked in this order on the binary mask:

1. the mask is empty;
2. its area is below ``min_area_fraction`` of the image (a fragment, not two lungs);
3. its area is above ``max_area_fraction`` (the segmentation leaked into the body);
4. with two or more components, the largest holds more than ``max_component_share`` of the
   mask area (one lung missing or truncated: the crop could cut the other one off);
5. its bounding box is narrower than ``min_bbox_width_fraction`` of the image width (a single
   lung, also when it is the only component).

Defaults were set from the 146 ground-truth masks in the shared data (86 GeneralBlockchain,
60 Shenzhen/Montgomery): two-lung masks cover 13-59 % of the image (median 32 %), the larger
lung holds a median 53 % of the area, and the box spans 34-99 % of the width (1st percentile
48 %, median 80 %); a single lung spans 26-55 % (median 39 %). Falling back is the safe error
(the classifier still sees the lungs), so rule 5 leans towards it: a severely opacified lung
that the U-Net misses is exactly the case a crop to the other lung would hide.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

logger = logging.getLogger(__name__)

BoundingBox = tuple[int, int, int, int]


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def lung_bbox(mask: np.ndarray, margin_fraction: float = 0.0) -> BoundingBox | None:
    """Bounding box of a mask's foreground, enlarged by a margin and clipped to the mask.

    Args:
        mask: 2-D array; non-zero pixels are foreground.
        margin_fraction: Margin added on each side, as a fraction of the box's own height (top
            and bottom) and width (left and right), rounded half up.

    Returns:
        ``(top, left, bottom, right)`` with exclusive bottom/right, so
        ``image[top:bottom, left:right]`` is the box; None for an empty mask.
    """
    if mask.ndim != 2:
        raise ValueError(f"lung_bbox needs a 2-D mask, got shape {mask.shape}")
    if margin_fraction < 0:
        raise ValueError(f"margin_fraction must be >= 0, got {margin_fraction}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(mask.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(columns[0]), int(columns[-1]) + 1
    pad_rows = _round_half_up(margin_fraction * (bottom - top))
    pad_columns = _round_half_up(margin_fraction * (right - left))
    height, width = mask.shape
    return (
        max(0, top - pad_rows),
        max(0, left - pad_columns),
        min(height, bottom + pad_rows),
        min(width, right + pad_columns),
    )


def _implausibility(
    binary: np.ndarray,
    min_area_fraction: float,
    max_area_fraction: float,
    max_component_share: float,
    min_bbox_width_fraction: float,
) -> str | None:
    area = int(binary.sum())
    if area == 0:
        return "empty lung mask"
    fraction = area / binary.size
    if fraction < min_area_fraction:
        return (
            f"lung mask covers {fraction:.1%} of the image, below "
            f"min_area_fraction={min_area_fraction}"
        )
    if fraction > max_area_fraction:
        return (
            f"lung mask covers {fraction:.1%} of the image, above "
            f"max_area_fraction={max_area_fraction}"
        )
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    if count - 1 >= 2:
        share = stats[1:, cv2.CC_STAT_AREA].max() / area
        if share > max_component_share:
            return (
                f"largest of {count - 1} mask components holds {share:.1%} of the lung area, "
                f"above max_component_share={max_component_share} (a lung missing or truncated)"
            )
    columns = np.flatnonzero(binary.any(axis=0))
    width_fraction = (columns[-1] - columns[0] + 1) / binary.shape[1]
    if width_fraction < min_bbox_width_fraction:
        return (
            f"lung mask spans {width_fraction:.1%} of the image width, below "
            f"min_bbox_width_fraction={min_bbox_width_fraction} (a single lung)"
        )
    return None


def crop_roi(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    margin: float = 0.05,
    min_area_fraction: float = 0.08,
    max_area_fraction: float = 0.7,
    max_component_share: float = 0.9,
    min_bbox_width_fraction: float = 0.5,
) -> tuple[np.ndarray, bool, str]:
    """Crop an image to the lungs' bounding box, or return it whole when the mask is implausible.

    The mask may have another resolution than the image (a U-Net output at 256 x 256): the
    box is computed on the mask and scaled to the image, rounding outwards.

    Args:
        image: 2-D (or H x W x C) image.
        mask: 2-D lung mask (non-zero = lung), typically from
            :func:`~covid_cxnet_pipeline.imaging.masks.postprocess_mask`.
        margin: Margin on each side as a fraction of the box height/width.
        min_area_fraction: Rule 2 of the module docstring.
        max_area_fraction: Rule 3.
        max_component_share: Rule 4.
        min_bbox_width_fraction: Rule 5.

    Returns:
        ``(crop, fallback, reason)``: the cropped image (a contiguous copy) and ``False, ""``;
        or the full image, ``True`` and the rule that failed.
    """
    if mask.ndim != 2:
        raise ValueError(f"crop_roi needs a 2-D mask, got shape {mask.shape}")
    binary = mask > 0
    reason = _implausibility(
        binary, min_area_fraction, max_area_fraction, max_component_share, min_bbox_width_fraction
    )
    if reason is not None:
        logger.debug("lung ROI fallback to the full image: %s", reason)
        return image, True, reason
    top, left, bottom, right = lung_bbox(binary, margin)  # type: ignore[misc]  # non-empty here
    scale_rows = image.shape[0] / binary.shape[0]
    scale_columns = image.shape[1] / binary.shape[1]
    top = math.floor(top * scale_rows)
    left = math.floor(left * scale_columns)
    bottom = min(image.shape[0], math.ceil(bottom * scale_rows))
    right = min(image.shape[1], math.ceil(right * scale_columns))
    return np.ascontiguousarray(image[top:bottom, left:right]), False, ""
