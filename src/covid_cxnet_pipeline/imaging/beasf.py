"""BEASF: Bi-histogram Equalisation with Adaptive Sigmoid Functions (Arriaga-Garcia et al., 2014).

COVID-CXNet stacks a BEASF-enhanced channel (gamma 1.5) with the original and CLAHE. The maths
follows the seed repository's port of the authors' MATLAB code, computed as one 256-entry LUT:

1. Histogram over the gray levels 0..255 (``bincount``), and ``m = floor(mean)``.
2. Split it into a lower sub-histogram (levels ``0..m``) and an upper one (``m+1..255``).
3. For each part, the centre ``c`` is the first level whose sub-histogram CDF exceeds 0.5
   (the sub-histogram median).
4. On the part's levels ``t``, evaluate ``s(t) = 1 / (1 + exp(-gamma * 5 * (t - c) / w))``
   with ``w = m`` (lower) or ``255 - m`` (upper): a sigmoid spanning about 5 units over the part.
5. Min-max normalise ``s`` onto the part's output range, ``[0, m]`` and ``[m+1, 255]``, and
   round once.

Corrections to the seed's code, each a bug rather than a design choice:
- the seed binned ``np.histogram(image, bins=256)`` over the image's own min-max, so bin k was
  not gray level k unless the image spans exactly 0..255, and the medians were wrong;
- the upper median was looked up one level late (``cdf[idx + 1]``) and the upper sigmoid was
  sampled one level early (``s_up[idx - m - 1]``);
- the split level ``m`` was counted in both sub-histograms and mapped by both halves;
- intermediate values were truncated to integers twice (here: float until one final rounding);
- ``m == 0``, ``m == 255`` and an empty upper half divided by zero.
"""

from __future__ import annotations

import numpy as np

from covid_cxnet_pipeline.imaging.enhance import apply_lut, gray_histogram

# The sigmoid argument spans 5 units over each sub-range, as in the authors' code.
_SIGMOID_SPAN = 5.0
# Below this the sigmoid is so flat that its span over a sub-range vanishes in floating point
# (1e-17 gives exactly 0 and a NaN LUT); the mapping is already the identity by about 1e-4.
_MIN_GAMMA = 1e-6


def _checked_gamma(gamma: float) -> float:
    """``gamma`` as a float, or a ValueError naming the parameter that sets it."""
    try:
        value = float(gamma)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value >= _MIN_GAMMA):
        raise ValueError(
            f"BEASF gamma must be > 0, finite and at least {_MIN_GAMMA:g} (parameter "
            f"preprocess.enhance.beasf_gamma; COVID-CXNet uses 1.5), got {gamma!r}"
        )
    return value


def _sub_median(counts: np.ndarray, first_level: int) -> float:
    """First level whose CDF over ``counts`` exceeds one half; the range middle if empty."""
    total = counts.sum()
    if total == 0:
        return first_level + (len(counts) - 1) / 2.0
    cdf = np.cumsum(counts) / total
    return float(first_level + np.argmax(cdf > 0.5))


def _sigmoid_segment(
    levels: np.ndarray, centre: float, width: float, gamma: float, out_range: tuple[int, int]
) -> np.ndarray:
    """Sigmoid centred on ``centre``, min-max normalised onto ``out_range`` (inclusive)."""
    out_low, out_high = out_range
    if len(levels) == 1:
        return np.array([float(out_low)])
    curve = 1.0 / (1.0 + np.exp(-gamma * _SIGMOID_SPAN * (levels - centre) / width))
    span = curve[-1] - curve[0]
    return out_low + (out_high - out_low) * (curve - curve[0]) / span


def beasf_lut(histogram: np.ndarray, gamma: float = 1.5) -> np.ndarray:
    """Compute the BEASF mapping of the 256 gray levels from a gray-level histogram.

    Args:
        histogram: 256 non-negative counts, entry k = number of pixels of gray level k
            (:func:`~covid_cxnet_pipeline.imaging.enhance.gray_histogram`).
        gamma: Sigmoid steepness, finite and at least 1e-6. Small values approach the
            identity, large values a step at each sub-histogram median. COVID-CXNet uses 1.5.

    Returns:
        uint8 array of 256 entries, non-decreasing, mapping gray level -> enhanced level.

    Raises:
        ValueError: The histogram does not have 256 entries or is empty, or ``gamma`` is not
            a finite number >= 1e-6.
    """
    counts = np.asarray(histogram, dtype=np.float64)
    if counts.shape != (256,) or counts.sum() <= 0 or np.any(counts < 0):
        raise ValueError(
            f"BEASF needs a 256-bin gray-level histogram with a positive total, got shape "
            f"{counts.shape} and total {counts.sum()}"
        )
    gamma = _checked_gamma(gamma)
    levels = np.arange(256, dtype=np.float64)
    # floor of the mean: the seed truncates the mean to an int the same way.
    split = int(np.floor(np.dot(levels, counts) / counts.sum()))

    lut = np.empty(256, dtype=np.float64)
    lower_centre = _sub_median(counts[: split + 1], 0)
    lut[: split + 1] = _sigmoid_segment(
        levels[: split + 1], lower_centre, max(split, 1), gamma, (0, split)
    )
    if split < 255:
        upper_centre = _sub_median(counts[split + 1 :], split + 1)
        lut[split + 1 :] = _sigmoid_segment(
            levels[split + 1 :], upper_centre, 255 - split, gamma, (split + 1, 255)
        )
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


def beasf(image: np.ndarray, gamma: float = 1.5) -> np.ndarray:
    """Enhance a grayscale image with BEASF (see the module docstring for the maths).

    Args:
        image: 2-D uint8 image.
        gamma: Sigmoid steepness (finite, >= 1e-6); COVID-CXNet uses 1.5.

    Returns:
        Enhanced uint8 image of the same shape.

    Raises:
        ValueError: ``image`` is not uint8 or ``gamma`` is invalid.
    """
    if image.dtype != np.uint8:
        raise ValueError(
            f"BEASF needs a uint8 image, got {image.dtype}; decode with load_grayscale first"
        )
    return apply_lut(image, beasf_lut(gray_histogram(image), gamma))
