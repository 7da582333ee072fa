"""Histogram matching of each image to a reference histogram built from the training split."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from os import PathLike

import numpy as np

from covid_cxnet_pipeline.imaging.decode import load_grayscale
from covid_cxnet_pipeline.imaging.enhance import apply_lut, gray_histogram

logger = logging.getLogger(__name__)

# Absorbs float rounding when a source CDF value equals a reference CDF value exactly.
_CDF_TOLERANCE = 1e-9


def build_reference_histogram(
    images: Iterable[str | PathLike[str] | np.ndarray],
) -> np.ndarray:
    """Average the normalised gray-level histograms of many images, one image at a time.

    Each image contributes equally whatever its size (a 2048 px image does not outweigh a
    512 px one). Only 256 numbers are held in memory, so any number of images can be streamed.
    Pass the training split only: the reference must not see validation or test images.

    Args:
        images: File paths (decoded with :func:`load_grayscale`) or uint8 arrays, e.g. a
            generator yielding images already cropped and resized like the pipeline's.

    Returns:
        float64 array of 256 probabilities summing to 1.

    Raises:
        ValueError: The iterable is empty or holds only empty images.
        ImageDecodeError: A path cannot be decoded.
    """
    accumulated = np.zeros(256, dtype=np.float64)
    count = 0
    for item in images:
        image = item if isinstance(item, np.ndarray) else load_grayscale(item)
        if image.dtype != np.uint8:
            raise ValueError(f"reference images must be uint8, got {image.dtype}")
        if image.size == 0:
            continue
        accumulated += gray_histogram(image) / image.size
        count += 1
    if count == 0:
        raise ValueError(
            "cannot build a reference histogram from no images: check that the training "
            "split selects at least one image"
        )
    logger.info("reference histogram built from %d images", count)
    return accumulated / count


def matching_lut(source_histogram: np.ndarray, reference_histogram: np.ndarray) -> np.ndarray:
    """Map each gray level to the lowest reference level whose CDF reaches the source CDF.

    Args:
        source_histogram: 256 counts or probabilities of the image to transform.
        reference_histogram: 256 counts or probabilities to match.

    Returns:
        uint8 LUT of 256 entries (non-decreasing).
    """
    source = np.asarray(source_histogram, dtype=np.float64)
    reference = np.asarray(reference_histogram, dtype=np.float64)
    for name, hist in (("source", source), ("reference", reference)):
        if hist.shape != (256,) or hist.sum() <= 0 or np.any(hist < 0):
            raise ValueError(
                f"{name} histogram must hold 256 non-negative values with a positive sum, "
                f"got shape {hist.shape}"
            )
    source_cdf = np.cumsum(source) / source.sum()
    reference_cdf = np.cumsum(reference) / reference.sum()
    lut = np.searchsorted(reference_cdf, source_cdf - _CDF_TOLERANCE, side="left")
    return np.minimum(lut, 255).astype(np.uint8)


def match_histogram(image: np.ndarray, reference_histogram: np.ndarray) -> np.ndarray:
    """Transform an image so its gray-level histogram approximates a reference histogram.

    Args:
        image: 2-D uint8 image.
        reference_histogram: 256 values from :func:`build_reference_histogram`.

    Returns:
        uint8 image of the same shape.
    """
    if image.dtype != np.uint8:
        raise ValueError(f"histogram matching needs a uint8 image, got {image.dtype}")
    return apply_lut(image, matching_lut(gray_histogram(image), reference_histogram))
