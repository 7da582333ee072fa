"""Stack enhanced versions of a grayscale X-ray into the 3 channels a CNN expects."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from covid_cxnet_pipeline.imaging.beasf import beasf
from covid_cxnet_pipeline.imaging.enhance import clahe, equalize_histogram

CHANNEL_NAMES = ("original", "clahe", "beasf", "he")
DEFAULT_CHANNELS = ("original", "clahe", "beasf")


def stack_channels(
    image: np.ndarray,
    channels: Sequence[str] = DEFAULT_CHANNELS,
    *,
    clahe_clip_limit: float = 2.0,
    clahe_tile_grid_size: tuple[int, int] = (8, 8),
    beasf_gamma: float = 1.5,
) -> np.ndarray:
    """Build an H x W x 3 image whose channels are enhanced versions of one grayscale image.

    Channel k of the result is ``channels[k]``. Note that ``cv2.imwrite`` treats the channels
    as BGR: write with Pillow (or reverse the last axis) to keep channel 0 first on disk.

    Args:
        image: 2-D uint8 image (already resized / cropped / histogram matched).
        channels: Exactly three names among ``original``, ``clahe``, ``beasf``, ``he``
            (repeats allowed). COVID-CXNet stacks original, CLAHE and BEASF.
        clahe_clip_limit: CLAHE contrast limit.
        clahe_tile_grid_size: CLAHE tiles as (rows, columns).
        beasf_gamma: BEASF sigmoid steepness.

    Returns:
        uint8 array of shape (H, W, 3).

    Raises:
        ValueError: ``channels`` is not three known names, or the image is not 2-D uint8.
    """
    names = [channels] if isinstance(channels, str) else list(channels)
    unknown = [name for name in names if name not in CHANNEL_NAMES]
    if len(names) != 3 or unknown:
        raise ValueError(
            f"channels must be exactly 3 names among {CHANNEL_NAMES}, got {names!r}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"stack_channels needs a 2-D uint8 image, got {image.dtype} {image.shape}")
    operations: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "original": lambda gray: gray,
        "clahe": lambda gray: clahe(gray, clahe_clip_limit, clahe_tile_grid_size),
        "beasf": lambda gray: beasf(gray, beasf_gamma),
        "he": equalize_histogram,
    }
    # Each distinct enhancement runs once even if it fills several channels.
    computed = {name: operations[name](image) for name in dict.fromkeys(names)}
    return np.stack([computed[name] for name in names], axis=-1)
