"""Global histogram equalisation and CLAHE for 8-bit grayscale chest X-rays."""

from __future__ import annotations

import cv2
import numpy as np

# float32 represents every integer exactly up to 2**24, so OpenCV's float histogram is exact below.
_FLOAT32_EXACT_COUNT = 2**24


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
    if image.dtype != np.uint8:
        raise ValueError(f"gray_histogram needs a uint8 image, got {image.dtype}")
    if image.size < _FLOAT32_EXACT_COUNT:
        # OpenCV is about 5x faster than bincount; its float32 counts are exact below 2**24.
        counts = cv2.calcHist([image.reshape(-1, 1)], [0], None, [256], [0, 256])
        return counts.ravel().astype(np.int64)
    return np.bincount(image.ravel(), minlength=256)


def apply_lut(image: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map every pixel of a uint8 image through a 256-entry uint8 look-up table.

    Args:
        image: uint8 array (2-D, or H x W x C with C <= 4 for the fast OpenCV path).
        lut: 256 uint8 values.

    Returns:
        uint8 array of the image's shape.
    """
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] <= 4):
        return cv2.LUT(image, lut)
    return lut[image]


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
