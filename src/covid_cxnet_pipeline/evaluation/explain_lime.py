"""LIME image explanations (``lime.lime_image``) with a fixed seed, as a mask plus an overlay.

LIME perturbs superpixels of one image, asks the model for probabilities on each perturbed copy
and fits a local linear model; the superpixels with the largest positive weights for a class are
its explanation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from lime import lime_image
from lime.lime_image import LimeImageExplainer
from lime.wrappers.scikit_image import SegmentationAlgorithm
from skimage.segmentation import mark_boundaries

from covid_cxnet_pipeline.evaluation.metrics import as_probability_matrix

logger = logging.getLogger(__name__)

SEGMENTATIONS = ("quickshift", "slic", "felzenszwalb", "grid")
# Colour of the explaining superpixels in the overlay (RGB in [0, 1]) and its opacity.
_TINT = np.array([0.0, 1.0, 0.0])
_TINT_ALPHA = 0.35


@dataclass(frozen=True)
class LimeExplanation:
    """One LIME explanation.

    Attributes:
        label: the explained class index.
        mask: H x W bool, the superpixels chosen as the explanation.
        overlay: H x W x 3 uint8, the image with those superpixels tinted and outlined.
        segments: H x W int superpixel ids.
        weights: superpixel id -> weight of the local linear model for ``label``.
        score: R^2 of the local linear model on the perturbed samples.
    """

    label: int
    mask: np.ndarray
    overlay: np.ndarray
    segments: np.ndarray
    weights: dict[int, float]
    score: float


def grid_segmentation(image: np.ndarray, n_cells: int = 8) -> np.ndarray:
    """Superpixels as a regular grid of ``n_cells`` x ``n_cells`` rectangles.

    Args:
        image: H x W (x C) image.
        n_cells: cells per side.

    Returns:
        H x W int array of cell ids, row-major.
    """
    height, width = image.shape[:2]
    rows = np.minimum(np.arange(height) * n_cells // height, n_cells - 1)
    cols = np.minimum(np.arange(width) * n_cells // width, n_cells - 1)
    return rows[:, None] * n_cells + cols[None, :]


def make_segmentation_fn(
    segmentation: str, params: Mapping[str, Any] | None, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    """The superpixel function LIME uses.

    Args:
        segmentation: one of ``SEGMENTATIONS``.
        params: keyword arguments of the scikit-image algorithm (or ``n_cells`` for grid).
        seed: seed for algorithms that take one (quickshift).

    Returns:
        A callable image -> H x W int segments.

    Raises:
        ValueError: on an unknown segmentation name.
    """
    params = dict(params or {})
    if segmentation == "grid":
        n_cells = int(params.get("n_cells", 8))
        return lambda image: grid_segmentation(image, n_cells)
    if segmentation not in SEGMENTATIONS:
        raise ValueError(f"unknown LIME segmentation {segmentation!r}; use one of {SEGMENTATIONS}")
    if segmentation == "quickshift":
        # lime's own defaults for quickshift, seeded.
        params = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2, **params, "random_seed": seed}
    return SegmentationAlgorithm(segmentation, **params)


def _display_image(image: np.ndarray) -> np.ndarray:
    """Image as H x W x 3 float in [0, 1] for drawing: uint8 scaled, floats min-max scaled."""
    rgb = np.asarray(image)
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64) / 255.0
    rgb = rgb.astype(np.float64)
    low, high = float(rgb.min()), float(rgb.max())
    return (rgb - low) / (high - low) if high > low else np.zeros_like(rgb)


def lime_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Tint and outline the explaining region of an image.

    Args:
        image: H x W or H x W x 3 image (uint8 or float).
        mask: H x W bool region.

    Returns:
        H x W x 3 uint8 overlay.
    """
    base = _display_image(image)
    tinted = np.where(mask[..., None], (1 - _TINT_ALPHA) * base + _TINT_ALPHA * _TINT, base)
    outlined = mark_boundaries(tinted, mask.astype(np.int64), color=(1.0, 1.0, 0.0))
    return np.clip(np.round(outlined * 255.0), 0, 255).astype(np.uint8)


@contextlib.contextmanager
def _lime_progress(show: bool) -> Iterator[None]:
    """Silence lime's per-image tqdm bar (lime 0.2 has no switch) unless asked for."""
    if show:
        yield
        return
    original = lime_image.tqdm
    lime_image.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        lime_image.tqdm = original


def explain_with_lime(
    image: np.ndarray,
    predict_fn: Callable[[np.ndarray], np.ndarray],
    *,
    label: int | None = None,
    num_samples: int = 1000,
    num_features: int = 5,
    seed: int = 0,
    segmentation: str = "quickshift",
    segmentation_params: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    positive_only: bool = True,
    hide_color: float | None = 0.0,
    show_progress: bool = False,
) -> LimeExplanation:
    """Explain one prediction with LIME.

    Args:
        image: H x W x 3 (or H x W) image as the model takes it, uint8 or float.
        predict_fn: batch (n x H x W x 3) -> probabilities (n x C, or the positive-class
            probability n or n x 1 for a binary model).
        label: class index to explain; default: the class the model predicts for ``image``.
        num_samples: perturbed copies LIME scores (more = stabler, slower).
        num_features: superpixels kept in the explanation mask.
        seed: seeds LIME's sampling and the segmentation: same seed, same explanation.
        segmentation: superpixel algorithm, one of ``SEGMENTATIONS``.
        segmentation_params: its keyword arguments (``n_cells`` for ``grid``).
        batch_size: images per ``predict_fn`` call.
        positive_only: keep only superpixels that support ``label``.
        hide_color: value a switched-off superpixel is filled with; None fills it with its own
            mean colour (LIME's default), which a model that reads mean intensity cannot see,
            so the default is black (0).
        show_progress: show lime's progress bar over the perturbed samples.

    Returns:
        The ``LimeExplanation``.

    Raises:
        ValueError: if the image is not H x W or H x W x 3.
    """
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"LIME needs an H x W x 3 image; got shape {pixels.shape}")

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        return as_probability_matrix(predict_fn(batch))

    if label is None:
        label = int(np.argmax(classifier_fn(pixels[None])[0]))
    explainer = LimeImageExplainer(random_state=seed)
    with _lime_progress(show_progress):
        explanation = explainer.explain_instance(
            pixels,
            classifier_fn,
            labels=(label,),
            hide_color=hide_color,
            top_labels=None,
            num_samples=num_samples,
            batch_size=batch_size,
            segmentation_fn=make_segmentation_fn(segmentation, segmentation_params, seed),
            random_seed=seed,
        )
    _, mask = explanation.get_image_and_mask(
        label, positive_only=positive_only, num_features=num_features, hide_rest=False
    )
    mask = np.asarray(mask).astype(bool)
    logger.info(
        "LIME: class %d, %d superpixels, %.1f%% of the image in the explanation (R^2 %.3f)",
        label,
        int(np.unique(explanation.segments).size),
        100.0 * mask.mean(),
        float(explanation.score),
    )
    return LimeExplanation(
        label=label,
        mask=mask,
        overlay=lime_overlay(pixels, mask),
        segments=np.asarray(explanation.segments),
        weights={int(k): float(w) for k, w in explanation.local_exp[label]},
        score=float(explanation.score),
    )
