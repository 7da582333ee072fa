"""Resize grayscale images and masks to a model's input size, optionally keeping the aspect ratio."""

from __future__ import annotations

import cv2
import numpy as np


def _as_height_width(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if height < 1 or width < 1:
        raise ValueError(f"resize size must be positive (height, width), got {size!r}")
    return height, width


def resize(
    image: np.ndarray,
    size: int | tuple[int, int],
    keep_aspect: bool = False,
    interpolation: int | None = None,
    pad_value: int = 0,
) -> np.ndarray:
    """Resize an image to exactly ``size``.

    Args:
        image: 2-D (or H x W x C) array.
        size: Target ``(height, width)``, or one int for a square.
        keep_aspect: Scale to fit inside ``size`` without distortion and pad the rest
            (centred, extra pixel of an odd padding at the bottom/right) with ``pad_value``.
        interpolation: An OpenCV ``INTER_*`` flag. Default: ``INTER_AREA`` when shrinking (it
            averages, so no aliasing), ``INTER_LINEAR`` when enlarging. Use ``INTER_NEAREST``
            for label masks.
        pad_value: Fill value for the padding when ``keep_aspect`` is True.

    Returns:
        Array of shape ``(height, width[, C])`` with the input's dtype.
    """
    target_h, target_w = _as_height_width(size)
    source_h, source_w = image.shape[:2]
    if keep_aspect:
        scale = min(target_h / source_h, target_w / source_w)
        inner_h = max(1, min(target_h, round(source_h * scale)))
        inner_w = max(1, min(target_w, round(source_w * scale)))
    else:
        inner_h, inner_w = target_h, target_w
    if interpolation is None:
        shrinking = inner_h * inner_w < source_h * source_w
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    if (inner_h, inner_w) == (source_h, source_w):
        resized = image.copy()
    else:
        resized = cv2.resize(image, (inner_w, inner_h), interpolation=interpolation)
    if resized.ndim < image.ndim:
        # OpenCV drops a trailing channel axis of length 1.
        resized = resized[..., np.newaxis]
    if (inner_h, inner_w) == (target_h, target_w):
        return resized
    top = (target_h - inner_h) // 2
    left = (target_w - inner_w) // 2
    padded = np.full((target_h, target_w, *image.shape[2:]), pad_value, dtype=image.dtype)
    padded[top : top + inner_h, left : left + inner_w] = resized
    return padded
