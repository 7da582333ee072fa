"""Per-image features that curation needs (quality, perceptual hash, thumbnail), cached by sha256.

Each image is decoded once, one at a time (optionally in worker processes), reduced to a few
numbers and a tiny thumbnail, and forgotten: memory stays flat whatever the number of images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from covid_cxnet_pipeline.imaging.decode import (
    ImageDecodeError,
    detect_file_format,
    load_grayscale,
    min_max_to_uint8,
)

logger = logging.getLogger(__name__)

FEATURE_COLUMNS = (
    "sha256",
    "feature_key",  # hash of the FeatureConfig that produced the row (cache invalidation)
    "decode_error",  # "" when the image decoded
    "decoded_width",
    "decoded_height",
    "gray_std",  # std of a small gray version, 0-255 scale (near-constant images score ~0)
    "phash",  # hex perceptual hash of the border-trimmed image
    "thumbnail",  # thumb_size x thumb_size uint8 gray of the border-trimmed image, raw bytes
)

# Part of every cache key: bump it when the decoding changes what a row holds for the same
# configuration. 2: DICOM files are decoded (version 1 recorded them all as undecodable).
FEATURES_VERSION = 2

# The feature columns of an image that could not be read (always spread into a new dict).
_NO_FEATURES: dict[str, Any] = {
    "decoded_width": 0,
    "decoded_height": 0,
    "gray_std": float("nan"),
    "phash": "",
    "thumbnail": b"",
}


@dataclass(frozen=True)
class FeatureConfig:
    """How features are computed; every field is a ``curate.features`` parameter.

    Attributes:
        phash_size: side of the pHash DCT grid; the hash has ``phash_size**2`` bits.
        thumb_size: side of the gray thumbnail used for the correlation check.
        work_side: images are reduced to at most this side before anything else.
        trim_std: border rows/columns whose gray std is at or below this are trimmed.
        max_trim_fraction: never trim more than this fraction of a side from each edge.
        normalise_contrast: stretch gray levels (1 % tails clipped) before hashing, so that
            brightness and linear contrast changes of a re-published copy barely move its hash
            (full histogram equalisation was tried: it amplifies noise and lost 2 of the 83
            manifest groups).
    """

    phash_size: int = 16
    thumb_size: int = 32
    work_side: int = 512
    trim_std: float = 4.0
    max_trim_fraction: float = 0.2
    normalise_contrast: bool = True

    def key(self) -> str:
        """A short stable digest of the configuration, stored beside cached rows."""
        blob = json.dumps({**asdict(self), "version": FEATURES_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_gray(path: str | Path, work_side: int = 512) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one image file to a gray uint8 array whose longest side is at most ``work_side``.

    DICOM goes through :func:`imaging.decode.load_grayscale` (rescale, VOI window, MONOCHROME1
    inversion); every other file through Pillow with JPEG draft decoding.

    Args:
        path: image file (PNG, JPEG, WebP, TIFF, BMP, DICOM...).
        work_side: longest side of the returned array (smaller images are not enlarged).

    Returns:
        A 2-D uint8 array and the file's full ``(width, height)`` as stored, before any
        reduction or EXIF rotation.
    """
    path = Path(path)
    try:
        is_dicom = detect_file_format(path) == "dicom"
    except ImageDecodeError:
        # Unknown to imaging.decode (e.g. TIFF) or unreadable: Pillow decides and reports below.
        is_dicom = False
    if is_dicom:
        image = Image.fromarray(load_grayscale(path))
        size = image.size
    else:
        image = Image.open(path)
        size = image.size  # before draft(), which shrinks the reported size
        # JPEG draft decoding at a reduced scale is several times faster on big radiographs.
        image.draft("L", (work_side, work_side))
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            image = Image.fromarray(min_max_to_uint8(np.asarray(image)))
        elif image.mode != "L":
            image = image.convert("RGBA").convert("L") if "A" in image.mode else image.convert("L")
    image.thumbnail((work_side, work_side), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8), size


def trim_borders(gray: np.ndarray, trim_std: float, max_fraction: float) -> np.ndarray:
    """Remove near-uniform border rows/columns (black frames, white margins, padding).

    Re-publications of a radiograph often add or remove such margins; trimming them first makes
    hashes of the same picture agree.

    Args:
        gray: 2-D uint8 image.
        trim_std: a border row/column is trimmed while its std is at or below this.
        max_fraction: at most this fraction of the height/width is trimmed from each edge.

    Returns:
        A view of ``gray`` without its uniform borders.
    """
    row_std = gray.std(axis=1)
    col_std = gray.std(axis=0)

    def _span(std: np.ndarray) -> tuple[int, int]:
        limit = int(len(std) * max_fraction)
        start = 0
        while start < limit and std[start] <= trim_std:
            start += 1
        stop = len(std)
        while len(std) - stop < limit and std[stop - 1] <= trim_std:
            stop -= 1
        return start, stop

    top, bottom = _span(row_std)
    left, right = _span(col_std)
    return gray[top:bottom, left:right]


def image_features(path: str | Path, config: FeatureConfig) -> dict[str, Any]:
    """Features of one image file; never raises for a bad file (``decode_error`` says why).

    Args:
        path: the stored image file.
        config: how to compute the features.

    Returns:
        A dict with ``FEATURE_COLUMNS`` except ``sha256`` and ``feature_key``.
    """
    try:
        gray, (width, height) = load_gray(path, config.work_side)
    except Exception as error:  # any decoder failure is a property of the file, recorded
        return {"decode_error": f"{type(error).__name__}: {error}"[:300], **_NO_FEATURES}
    small = np.asarray(Image.fromarray(gray).resize((64, 64), Image.Resampling.BOX), np.float64)
    trimmed = trim_borders(gray, config.trim_std, config.max_trim_fraction)
    if min(trimmed.shape) < 8:  # an almost uniform image: hash what there is
        trimmed = gray
    trimmed_image = Image.fromarray(np.ascontiguousarray(trimmed))
    if config.normalise_contrast:
        trimmed_image = ImageOps.autocontrast(trimmed_image, cutoff=1)
    thumb = trimmed_image.resize((config.thumb_size, config.thumb_size), Image.Resampling.BOX)
    return {
        "decode_error": "",
        "decoded_width": int(width),
        "decoded_height": int(height),
        "gray_std": float(small.std()),
        "phash": str(imagehash.phash(trimmed_image, hash_size=config.phash_size)),
        "thumbnail": np.asarray(thumb, dtype=np.uint8).tobytes(),
    }


def _features_task(args: tuple[str, str, FeatureConfig]) -> dict[str, Any]:
    sha256, path, config = args
    if not path or not os.path.isfile(path):
        row = {"decode_error": f"FileNotFoundError: {path!r}", **_NO_FEATURES}
    else:
        row = image_features(path, config)
    return {"sha256": sha256, "feature_key": config.key(), **row}


def _empty_features() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in FEATURE_COLUMNS})


def read_feature_cache(cache_path: str | Path | None, config: FeatureConfig) -> pd.DataFrame:
    """Rows of the feature cache computed with ``config`` (empty when there is no cache).

    Args:
        cache_path: the cache parquet, or None for no cache.
        config: only rows computed with this configuration are reused.

    Returns:
        A frame with ``FEATURE_COLUMNS``, one row per sha256.
    """
    if not cache_path or not Path(cache_path).is_file():
        return _empty_features()
    try:
        cache = pd.read_parquet(cache_path)
    except Exception as error:  # a damaged cache costs a recomputation, not the run
        logger.warning("Ignoring unreadable feature cache %s (%s)", cache_path, error)
        return _empty_features()
    if not set(FEATURE_COLUMNS) <= set(cache.columns):
        return _empty_features()
    cache = cache[cache["feature_key"] == config.key()]
    return cache.drop_duplicates("sha256")[list(FEATURE_COLUMNS)]


def compute_features(
    images: pd.DataFrame,
    config: FeatureConfig,
    cache_path: str | Path | None = None,
    workers: int = 1,
    progress: bool = False,
) -> pd.DataFrame:
    """Features for every distinct sha256 in ``images``, reusing and updating the cache.

    Args:
        images: rows with ``sha256`` and ``path``.
        config: how features are computed.
        cache_path: parquet file keyed by sha256 (written atomically); None disables caching.
        workers: worker processes for decoding (1 decodes in this process).
        progress: show a tqdm progress bar over the images to decode.

    Returns:
        A frame with ``FEATURE_COLUMNS``, one row per distinct sha256 of ``images``.
    """
    cache = read_feature_cache(cache_path, config)
    distinct = images[["sha256", "path"]].drop_duplicates("sha256")
    todo = distinct[~distinct["sha256"].isin(set(cache["sha256"]))]
    logger.info(
        "Image features: %d distinct images, %d cached, %d to compute",
        len(distinct),
        len(distinct) - len(todo),
        len(todo),
    )
    tasks = [(str(s), str(p), config) for s, p in zip(todo["sha256"], todo["path"], strict=True)]
    bar = {"total": len(tasks), "desc": "Image features", "unit": "image"}
    bar["disable"] = not (progress and tasks)  # an all-cached run needs no empty bar
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            # Executor.map yields results in task order as they arrive (an ordered imap), so
            # the bar advances while the workers run.
            results = pool.map(_features_task, tasks, chunksize=8)
            computed = list(tqdm(results, **bar))
    else:
        computed = [_features_task(task) for task in tqdm(tasks, **bar)]
    fresh = pd.DataFrame(computed, columns=list(FEATURE_COLUMNS)) if computed else None
    combined = cache if fresh is None else pd.concat([cache, fresh], ignore_index=True)
    if cache_path and fresh is not None:
        # A missing file may appear later under the same sha256: do not cache its absence.
        missing = combined["decode_error"].str.startswith("FileNotFoundError")
        _write_cache(combined[~missing], Path(cache_path))
    result = combined[combined["sha256"].isin(set(distinct["sha256"]))]
    return result.reset_index(drop=True)


def _write_cache(frame: pd.DataFrame, cache_path: Path) -> None:
    """Write the cache next to its final name, then rename, so a crash never leaves half a file."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_path.with_name(cache_path.name + ".tmp")
    frame.to_parquet(temporary, index=False)
    os.replace(temporary, cache_path)
