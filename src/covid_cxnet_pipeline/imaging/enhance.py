"""Global histogram equalisation and CLAHE for 8-bit grayscale chest X-rays."""

from __future__ import annotations

import cv2
import numpy as np


def _check_gray_uint8(image: np.ndarray, operation: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(
            f"{operation} needs a 2-D uint8 grayscale image, got {image.dtype} {image.shape}; "
            f"decode with imaging.decode.load_grayscale first"
        )


def gray_histogram(image: np.ndarray) -> np.ndarray:
    """Count pixels per gray level 0..255 (same as ``np.histogram(image, 256, range=(0, 256))``).

    Args:
        image: uint8 array of any shape.

    Returns:
        int64 array of 256 counts.
    """
    return np.bincount(image.ravel(), minlength=256)


def equalize_histogram(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation (OpenCV ``equalizeHist``).

    The LUT is ``round(255 * (cdf(v) - h(v0)) / (N - h(v0)))`` where ``v0`` is the darkest
    level present, so the darkest level maps to 0 and the brightest to 255; a constant image is
    returned unchanged.

    Args:
        image: 2-D uint8 image.

    Returns:
        Equalised 2-D uint8 image.
    """
    _check_gray_uint8(image, "histogram equalisation")
    return cv2.equalizeHist(image)


def clahe(
    image: np.ndarray, clip_limit: float = 2.0, tile_grid_size: tuple[int, int] = (8, 8)
) -> np.ndarray:
    """Contrast Limited Adaptive Histogram Equalisation (OpenCV), as COVID-CXNet uses it.

    Args:
        image: 2-D uint8 image.
        clip_limit: Contrast limit, relative to a uniform histogram (COVID-CXNet: 2.0).
        tile_grid_size: Number of tiles as ``(rows, columns)`` (COVID-CXNet: 8 x 8).

    Returns:
        Enhanced 2-D uint8 image.
    """
    _check_gray_uint8(image, "CLAHE")
    rows, columns = (int(tile_grid_size[0]), int(tile_grid_size[1]))
    if clip_limit <= 0 or rows < 1 or columns < 1:
        raise ValueError(
            f"CLAHE needs clip_limit > 0 and a tile grid of at least 1 x 1, got "
            f"clip_limit={clip_limit}, tile_grid_size={tile_grid_size}"
        )
    # OpenCV's tileGridSize is (width, height) = (columns, rows).
    operator = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(columns, rows))
    return operator.apply(image)
