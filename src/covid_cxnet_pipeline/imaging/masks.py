"""Lung masks: assemble the sources' mask files into one image-sized mask, and clean predicted masks.

The sources lay masks out three ways, all handled by :func:`assemble_lung_mask`:
GeneralBlockchain ships one RGBA crop per lung placed at a (top, left) offset in the image,
Shenzhen masks keep the original aspect ratio of an image the uploader squashed (so they are
resized to the image with nearest-neighbour), Montgomery ships full-size left and right masks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from covid_cxnet_pipeline.imaging.decode import ImageDecodeError, detect_file_format

logger = logging.getLogger(__name__)

# (path, offset_top, offset_left, scale_to_image), the columns of schema.RAW_MASK_INDEX_COLUMNS.
MaskFile = tuple[str | PathLike[str], int, int, bool]


def load_mask(path: str | PathLike[str], foreground_threshold: int = 0) -> np.ndarray:
    """Read a mask image as a boolean array.

    A pixel is foreground when its brightest colour channel exceeds ``foreground_threshold``
    and, if the file has an alpha channel, it is not fully transparent. This reads white-on-black
    masks (Shenzhen, Montgomery) and coloured-on-black RGBA crops (GeneralBlockchain) alike.

    Args:
        path: Mask image file (PNG, JPEG, WebP or BMP).
        foreground_threshold: Gray level a pixel must exceed to count as lung (raise it for
            lossy JPEG masks).

    Returns:
        2-D bool array.

    Raises:
        ImageDecodeError: The file cannot be decoded.
    """
    file_path = Path(path)
    image_format = detect_file_format(file_path)
    if image_format == "dicom":
        raise ImageDecodeError(file_path, "DICOM files are not supported as lung masks")
    try:
        with Image.open(file_path) as opened:
            image = opened
            if opened.mode in ("P", "PA", "1"):
                image = opened.convert("RGBA" if opened.mode != "1" else "L")
            bands = image.getbands()
            pixels = np.asarray(image)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(file_path, f"decompression bomb guard tripped ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(file_path, f"truncated or corrupt mask image ({error})") from error
    if pixels.ndim == 2:
        return pixels > foreground_threshold
    colour = [index for index, band in enumerate(bands) if band != "A"]
    foreground = pixels[..., colour].max(axis=-1) > foreground_threshold
    if "A" in bands:
        foreground &= pixels[..., bands.index("A")] > 0
    return foreground


def assemble_lung_mask(
    image_shape: tuple[int, int],
    mask_files: Sequence[MaskFile],
    foreground_threshold: int = 0,
) -> np.ndarray:
    """Combine a source's mask files into one binary lung mask of the image's size.

    Args:
        image_shape: ``(height, width)`` of the image the masks belong to.
        mask_files: One ``(path, offset_top, offset_left, scale_to_image)`` per mask file
            (the ``raw_mask_index`` columns). A crop is pasted with its top-left corner at the
            offset (parts outside the image are cut off); ``scale_to_image`` resizes the mask to
            the image size with nearest-neighbour and needs zero offsets.
        foreground_threshold: See :func:`load_mask`.

    Returns:
        2-D bool array of ``image_shape``, the union of all masks.

    Raises:
        ValueError: No mask files, a scaled mask with an offset, or a crop entirely outside.
        ImageDecodeError: A mask file cannot be decoded.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if not mask_files:
        raise ValueError("assemble_lung_mask needs at least one mask file")
    lung_mask = np.zeros((height, width), dtype=bool)
    for path, offset_top, offset_left, scale_to_image in mask_files:
        part = load_mask(path, foreground_threshold)
        top, left = int(offset_top), int(offset_left)
        if scale_to_image:
            if top or left:
                raise ValueError(
                    f"mask {path}: scale_to_image masks cover the whole image and cannot have "
                    f"an offset (got top={top}, left={left})"
                )
            if part.shape != (height, width):
                part = cv2.resize(
                    part.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
                ).astype(bool)
        bottom, right = top + part.shape[0], left + part.shape[1]
        clip_top, clip_left = max(top, 0), max(left, 0)
        clip_bottom, clip_right = min(bottom, height), min(right, width)
        if clip_top >= clip_bottom or clip_left >= clip_right:
            raise ValueError(
                f"mask {path} ({part.shape[0]}x{part.shape[1]} at top={top}, left={left}) lies "
                f"entirely outside the {height}x{width} image: check its offsets and the image"
            )
        if (clip_top, clip_left, clip_bottom, clip_right) != (top, left, bottom, right):
            logger.debug("mask %s extends past the %dx%d image; cut off", path, height, width)
        lung_mask[clip_top:clip_bottom, clip_left:clip_right] |= part[
            clip_top - top : clip_bottom - top, clip_left - left : clip_right - left
        ]
    return lung_mask


def _keep_largest_components(
    binary: np.ndarray, keep_components: int | None, min_component_fraction: float
) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=8
    )
    areas = stats[1:, cv2.CC_STAT_AREA]
    # Stable sort: equal areas keep label (raster) order, so the result is deterministic.
    order = np.argsort(-areas, kind="stable")
    min_area = min_component_fraction * binary.size
    kept = [index + 1 for index in order if areas[index] >= min_area]
    if keep_components is not None and keep_components > 0:
        kept = kept[:keep_components]
    keep_label = np.zeros(count, dtype=bool)
    keep_label[kept] = True
    return keep_label[labels]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected (4-connectivity) to the image border.

    Args:
        mask: 2-D binary array.

    Returns:
        2-D bool array with the holes filled.
    """
    foreground = mask.astype(bool)
    padded = np.pad(~foreground, 1, constant_values=True).astype(np.uint8)
    # Flood the outside background from the padded corner; whatever background is left is a hole.
    flood_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), dtype=np.uint8)
    cv2.floodFill(padded, flood_mask, (0, 0), 2, flags=4)
    holes = padded[1:-1, 1:-1] == 1
    return foreground | holes


def postprocess_mask(
    prob_mask: np.ndarray,
    threshold: float = 0.5,
    *,
    keep_components: int | None = 2,
    dilation_px: int = 0,
    fill_holes_inside: bool = True,
    min_component_fraction: float = 0.0,
) -> np.ndarray:
    """Turn a predicted lung probability map into a clean binary lung mask.

    Steps, in order: threshold (``prob >= threshold``); drop components smaller than
    ``min_component_fraction`` of the image; keep the ``keep_components`` largest
    (8-connectivity; two lungs); fill holes; dilate with an elliptical kernel of radius
    ``dilation_px`` so the crop keeps the lung borders.

    Args:
        prob_mask: 2-D float probabilities (or a binary mask).
        threshold: Probability at or above which a pixel is lung.
        keep_components: How many of the largest components to keep; None or 0 keeps all.
        dilation_px: Dilation radius in pixels (0: none).
        fill_holes_inside: Fill background enclosed by lung (consolidations the U-Net missed).
        min_component_fraction: Minimum component area as a fraction of the image.

    Returns:
        2-D bool array of the same shape.
    """
    if prob_mask.ndim != 2:
        raise ValueError(f"postprocess_mask needs a 2-D map, got shape {prob_mask.shape}")
    if dilation_px < 0:
        raise ValueError(f"dilation_px must be >= 0, got {dilation_px}")
    binary = np.asarray(prob_mask, dtype=np.float64) >= threshold
    binary = _keep_largest_components(binary, keep_components, min_component_fraction)
    if fill_holes_inside:
        binary = fill_holes(binary)
    if dilation_px > 0:
        kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * dilation_px + 1, 2 * dilation_px + 1)
        )
        binary = cv2.dilate(binary.astype(np.uint8), kernel).astype(bool)
    return binary
