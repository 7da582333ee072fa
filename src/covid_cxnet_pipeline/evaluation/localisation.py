"""Localisation score: the fraction of a heatmap's mass that falls inside the lung mask.

A heatmap spread uniformly over the image scores the mask's area fraction, so each score is
reported next to ``mask_area`` to read it against that chance level.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import cv2
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

LOCALISATION_COLUMNS = ("image_id", "label", "lung_fraction", "mask_area")
BY_CLASS_COLUMNS = ("label", "n_images", "n_scored", "mean", "std", "median", "mean_mask_area")


def resize_heatmap(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a 2-D heatmap to ``shape`` (height, width), keeping it >= 0.

    Args:
        heatmap: H x W float array.
        shape: target (height, width).

    Returns:
        float32 array of the target shape.
    """
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape == tuple(shape):
        return heat
    resized = cv2.resize(heat, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, None)


def lung_mass_fraction(heatmap: np.ndarray, lung_mask: np.ndarray) -> float:
    """Fraction of the heatmap's total mass inside the lung mask.

    The heatmap and mask must cover the same field of view; the heatmap is resized to the
    mask's size when they differ (Grad-CAM maps are coarser than the image).

    Args:
        heatmap: H x W non-negative float map (Grad-CAM after ReLU, or any saliency).
        lung_mask: H' x W' boolean (or 0/1) lung mask.

    Returns:
        A value in [0, 1]; NaN when the heatmap has no mass or the mask is empty.

    Raises:
        ValueError: if either input is not 2-D, or the heatmap has negative or NaN values.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    mask = np.asarray(lung_mask).astype(bool)
    if heat.ndim != 2 or mask.ndim != 2:
        raise ValueError(
            f"heatmap and lung mask must be 2-D; got shapes {heat.shape} and {mask.shape}"
        )
    if not np.all(np.isfinite(heat)) or heat.min(initial=0.0) < 0.0:
        raise ValueError("heatmap must be finite and >= 0 (apply the Grad-CAM ReLU first)")
    heat = resize_heatmap(heat, mask.shape).astype(np.float64)
    total = float(heat.sum())
    if total <= 0.0 or not mask.any():
        return math.nan
    return float(heat[mask].sum() / total)


def localisation_scores(
    image_ids: Iterable[str],
    labels: Iterable[str],
    heatmaps: Iterable[np.ndarray],
    lung_masks: Iterable[np.ndarray],
) -> pd.DataFrame:
    """Per-image localisation scores; the iterables are consumed one image at a time.

    Args:
        image_ids: one id per image.
        labels: the class to group by (true or predicted label) per image.
        heatmaps: H x W non-negative maps, e.g. a generator reading them from disk.
        lung_masks: the lung mask per image.

    Returns:
        DataFrame with columns ``image_id``, ``label``, ``lung_fraction`` (NaN for an empty
        heatmap or mask) and ``mask_area`` (fraction of the image inside the mask).

    Raises:
        ValueError: if the iterables have different lengths.
    """
    rows = []
    for image_id, label, heatmap, mask in zip(image_ids, labels, heatmaps, lung_masks, strict=True):
        mask_bool = np.asarray(mask).astype(bool)
        rows.append(
            {
                "image_id": str(image_id),
                "label": str(label),
                "lung_fraction": lung_mass_fraction(heatmap, mask_bool),
                "mask_area": float(mask_bool.mean()) if mask_bool.size else math.nan,
            }
        )
    frame = pd.DataFrame(rows, columns=list(LOCALISATION_COLUMNS))
    n_nan = int(frame["lung_fraction"].isna().sum())
    if n_nan:
        logger.warning(
            "%d of %d images have no localisation score (empty heatmap or mask)", n_nan, len(frame)
        )
    return frame


def localisation_by_class(scores: pd.DataFrame, include_overall: bool = True) -> pd.DataFrame:
    """Average localisation score per class.

    Args:
        scores: output of ``localisation_scores`` (columns ``label``, ``lung_fraction``,
            ``mask_area``).
        include_overall: append a row ``label = "all"`` over every image.

    Returns:
        DataFrame with columns ``label``, ``n_images``, ``n_scored`` (non-NaN scores), ``mean``,
        ``std`` (ddof=1), ``median`` and ``mean_mask_area``.
    """
    groups = [(str(label), group) for label, group in scores.groupby("label", sort=True)]
    if include_overall:
        groups.append(("all", scores))
    rows = [
        {
            "label": label,
            "n_images": len(group),
            "n_scored": int(group["lung_fraction"].notna().sum()),
            "mean": float(group["lung_fraction"].mean()),
            "std": float(group["lung_fraction"].std(ddof=1)),
            "median": float(group["lung_fraction"].median()),
            "mean_mask_area": float(group["mask_area"].mean()),
        }
        for label, group in groups
    ]
    return pd.DataFrame(rows, columns=list(BY_CLASS_COLUMNS))
