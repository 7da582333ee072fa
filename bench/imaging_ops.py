"""Time the per-image enhancement operations (ms per image) at two input sizes.

Usage: python bench/imaging_ops.py [--repeats 30]
Uses a real chest X-ray from ../shared/data when present, otherwise a seeded synthetic image.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from covid_cxnet_pipeline.imaging import (
    beasf,
    clahe,
    equalize_histogram,
    gray_histogram,
    load_grayscale,
    match_histogram,
    resize,
    stack_channels,
)

SHARED_IMAGE = (
    Path(__file__).resolve().parents[1]
    / "../shared/data/mirror/darkcovidnet_nih/X-Ray Image DataSet/No_findings"
)


def _source_image() -> tuple[np.ndarray, str]:
    candidates = sorted(SHARED_IMAGE.glob("*.png")) if SHARED_IMAGE.is_dir() else []
    if candidates:
        return load_grayscale(candidates[0]), str(candidates[0].name)
    rng = np.random.default_rng(0)
    return rng.normal(110, 45, (1024, 1024)).clip(0, 255).astype(np.uint8), "synthetic"


def _ms_per_call(operation: Callable[[], object], repeats: int) -> float:
    operation()  # warm-up (OpenCV allocations, numpy caches)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        operation()
        timings.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(timings))


def main(argv: list[str] | None = None) -> int:
    """Print a table of median ms per image for each operation and size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    source, name = _source_image()
    reference = gray_histogram(source).astype(np.float64)
    print(f"source image: {name} {source.shape}; cv2 threads: {cv2.getNumThreads()}")
    print(f"{'operation':<28}{'1024x1024':>12}{'320x320':>12}")
    images = {size: resize(source, size) for size in (1024, 320)}
    operations: dict[str, Callable[[np.ndarray], object]] = {
        "clahe (2.0, 8x8)": lambda image: clahe(image, 2.0, (8, 8)),
        "beasf (gamma 1.5)": lambda image: beasf(image, 1.5),
        "equalize_histogram": equalize_histogram,
        "match_histogram": lambda image: match_histogram(image, reference),
        "np.histogram min-max (seed)": lambda image: np.histogram(image, bins=256),
        "gray_histogram (calcHist)": gray_histogram,
        "stack_channels (default)": stack_channels,
    }
    for label, operation in operations.items():
        row = [
            _ms_per_call(lambda op=operation, s=size: op(images[s]), args.repeats)
            for size in (1024, 320)
        ]
        print(f"{label:<28}{row[0]:>12.2f}{row[1]:>12.2f}")
    shrink = _ms_per_call(lambda: resize(images[1024], 320), args.repeats)
    print(f"{'resize 1024->320 (AREA)':<28}{shrink:>12.2f}{'':>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
