"""Evaluation figures as matplotlib ``Figure`` objects (Agg canvas, not saved, no pyplot state).

Figures are built with ``matplotlib.figure.Figure`` directly, so nothing registers with pyplot,
nothing needs closing and no display is needed; callers save them (e.g. through a
``matplotlib.MatplotlibDataset``) or log them to MLflow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from covid_cxnet_pipeline.evaluation.metrics import (
    as_probability_matrix,
    resolve_class_names,
    validate_labels,
    weighted_roc_auc,
)
from covid_cxnet_pipeline.evaluation.thresholds import roc_points

logger = logging.getLogger(__name__)


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_confusion_matrix(
    confusion: pd.DataFrame | np.ndarray, class_names: Sequence[str] | None = None
) -> Figure:
    """Confusion matrix as counts (left) and row-normalised, i.e. per-true-class recall (right).

    Args:
        confusion: C x C counts, rows = true class (``metrics.confusion_matrix`` output or array).
        class_names: names when ``confusion`` is an array (a DataFrame brings its own).

    Returns:
        The figure.
    """
    if isinstance(confusion, pd.DataFrame):
        names = [str(c) for c in confusion.index]
        counts = confusion.to_numpy(dtype=float)
    else:
        counts = np.asarray(confusion, dtype=float)
        names = resolve_class_names(counts.shape[0], class_names)
    row_sums = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    figure = _new_figure(4.2 * 2, 3.8)
    axes = figure.subplots(1, 2)
    panels = (
        (axes[0], counts, "Counts", "{:.0f}"),
        (axes[1], normalised, "Row-normalised (recall)", "{:.2f}"),
    )
    for axis, values, title, fmt in panels:
        vmax = values.max() if values.size and values.max() > 0 else 1.0
        image = axis.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
        for (i, j), value in np.ndenumerate(values):
            colour = "white" if value > 0.5 * vmax else "black"
            axis.text(j, i, fmt.format(value), ha="center", va="center", color=colour)
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_yticks(range(len(names)), names)
        axis.set_xlabel("Predicted")
        axis.set_ylabel("True")
        axis.set_title(title)
        figure.colorbar(image, ax=axis, shrink=0.8)
    return figure


def plot_roc_curves(
    y_true: np.ndarray | Sequence[int],
    y_prob: np.ndarray | Sequence[float],
    class_names: Sequence[str] | None = None,
    operating_point: tuple[float, float] | None = None,
    operating_label: str = "operating point",
) -> Figure:
    """One-vs-rest ROC curve per class with its AUC in the legend (binary: the positive class).

    Args:
        y_true: N class indices.
        y_prob: N x C probabilities, or the positive-class probability for binary.
        class_names: names in column order.
        operating_point: ``(false positive rate, true positive rate)`` of the decision in use
            (binary: at the threshold chosen on validation), marked on the curve.
        operating_label: its legend entry.

    Returns:
        The figure. A class absent from y_true is left out of the plot (its AUC is undefined).
    """
    prob = as_probability_matrix(y_prob)
    names = resolve_class_names(prob.shape[1], class_names)
    labels = validate_labels(y_true, prob.shape[0], prob.shape[1])
    figure = _new_figure(5.0, 4.6)
    axis = figure.subplots()
    classes = [1] if prob.shape[1] == 2 else range(prob.shape[1])
    ones = np.ones((1, labels.shape[0]))
    for c in classes:
        is_positive = labels == c
        if is_positive.all() or not is_positive.any():
            logger.warning("ROC curve for class %s skipped: it needs both classes", names[c])
            continue
        auc = float(weighted_roc_auc(prob[:, c], is_positive, ones)[0])
        _, tpr, fpr = roc_points(is_positive.astype(np.int64), prob[:, c])
        # The curve starts at the origin: no sample called positive above the top score.
        fpr, tpr = np.r_[0.0, fpr], np.r_[0.0, tpr]
        axis.plot(fpr, tpr, label=f"{names[c]} (AUC = {auc:.3f})")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    if operating_point is not None:
        fpr_point, tpr_point = (float(v) for v in operating_point)
        axis.plot([fpr_point], [tpr_point], "o", color="black", markersize=7, label=operating_label)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("False positive rate (1 - specificity)")
    axis.set_ylabel("True positive rate (sensitivity)")
    axis.set_title("ROC curves (one-vs-rest)")
    axis.legend(loc="lower right")
    return figure


def reliability_points(
    is_positive: np.ndarray, scores: np.ndarray, n_bins: int = 10
) -> pd.DataFrame:
    """Observed frequency against mean predicted probability in equal-width bins.

    Args:
        is_positive: N booleans (sample belongs to the class).
        scores: N predicted probabilities for the class, in [0, 1].
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        DataFrame with one row per non-empty bin and columns ``bin``, ``mean_predicted``,
        ``observed``, ``count``.
    """
    bins = np.minimum((np.clip(scores, 0.0, 1.0) * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    summed_score = np.bincount(bins, weights=scores, minlength=n_bins)
    summed_positive = np.bincount(bins, weights=is_positive.astype(float), minlength=n_bins)
    keep = count > 0
    return pd.DataFrame(
        {
            "bin": np.flatnonzero(keep),
            "mean_predicted": summed_score[keep] / count[keep],
            "observed": summed_positive[keep] / count[keep],
            "count": count[keep],
        }
    )


def plot_calibration(
    y_true: np.ndarray | Sequence[int],
    y_prob: np.ndarray | Sequence[float],
    class_names: Sequence[str] | None = None,
    n_bins: int = 10,
) -> Figure:
    """Reliability diagram (one-vs-rest per class; binary: the positive class) with a histogram.

    Args:
        y_true: N class indices.
        y_prob: N x C probabilities, or the positive-class probability for binary.
        class_names: names in column order.
        n_bins: equal-width probability bins.

    Returns:
        The figure: reliability curves on top, counts of predictions per bin below.
    """
    prob = as_probability_matrix(y_prob)
    names = resolve_class_names(prob.shape[1], class_names)
    labels = validate_labels(y_true, prob.shape[0], prob.shape[1])
    figure = _new_figure(5.0, 6.0)
    curve_axis, hist_axis = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    curve_axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    classes = [1] if prob.shape[1] == 2 else range(prob.shape[1])
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for c in classes:
        points = reliability_points(labels == c, prob[:, c], n_bins)
        curve_axis.plot(points["mean_predicted"], points["observed"], marker="o", label=names[c])
        hist_axis.hist(prob[:, c], bins=edges, histtype="step", label=names[c])
    curve_axis.set_ylabel("Observed frequency")
    curve_axis.set_ylim(0, 1)
    curve_axis.set_title("Calibration (reliability)")
    curve_axis.legend(loc="upper left")
    hist_axis.set_xlabel("Predicted probability")
    hist_axis.set_ylabel("Count")
    hist_axis.set_xlim(0, 1)
    return figure


def plot_learning_curves(
    history: Mapping[str, Sequence[float]] | Any, best_epoch: int | None = None
) -> Figure:
    """Training against validation curves, one panel per metric, from a Keras-like history.

    Args:
        history: dict metric -> per-epoch values, with validation values under ``val_<metric>``
            (``keras.callbacks.History.history``); a History object is accepted too.
        best_epoch: the 1-based epoch model selection kept, marked by a vertical line.

    Returns:
        The figure, one panel per training metric (``loss`` first).

    Raises:
        ValueError: if the history holds no metric.
    """
    records = dict(getattr(history, "history", history))
    metrics = [key for key in records if not key.startswith("val_")]
    metrics += [key[4:] for key in records if key.startswith("val_") and key[4:] not in records]
    metrics.sort(key=lambda key: (key != "loss", key != "accuracy"))
    if not metrics:
        raise ValueError("the training history is empty: nothing to plot")
    ncols = min(len(metrics), 3)
    nrows = math.ceil(len(metrics) / ncols)
    figure = _new_figure(4.2 * ncols, 3.4 * nrows)
    axes = np.atleast_1d(figure.subplots(nrows, ncols)).ravel()
    for axis, metric in zip(axes, metrics, strict=False):
        for key, label, style in ((metric, "train", "-"), (f"val_{metric}", "validation", "--")):
            values = records.get(key)
            if values is not None and len(values):
                epochs = np.arange(1, len(values) + 1)
                axis.plot(epochs, np.asarray(values, dtype=float), style, marker=".", label=label)
        if best_epoch is not None:
            axis.axvline(
                int(best_epoch), color="black", linestyle=":", label=f"best epoch {best_epoch}"
            )
        axis.set_title(metric)
        axis.set_xlabel("Epoch")
        axis.legend()
    for axis in axes[len(metrics) :]:
        axis.set_visible(False)
    return figure


def heatmap_grid(
    images: Sequence[np.ndarray],
    overlays: Sequence[np.ndarray | None] | None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    *,
    alpha: float = 0.45,
    cmap: str = "jet",
) -> Figure:
    """A grid of images with their explanation overlays (Grad-CAM heatmaps, LIME overlays).

    Args:
        images: H x W (grey) or H x W x 3 images, uint8 or float.
        overlays: per image: None (image only), an h x w heatmap (colour-mapped, stretched over
            the image, drawn with ``alpha``), or an H x W x 3 image drawn instead of the image
            (e.g. ``LimeExplanation.overlay``). None for no overlays at all.
        titles: a caption per image (e.g. "covid p=0.93").
        ncols: images per row.
        alpha: opacity of heatmaps.
        cmap: colour map of heatmaps.

    Returns:
        The figure.

    Raises:
        ValueError: if the lists have different lengths or there is no image.
    """
    n_images = len(images)
    overlays = list(overlays) if overlays is not None else [None] * n_images
    titles = list(titles) if titles is not None else [""] * n_images
    if n_images == 0:
        raise ValueError("heatmap_grid needs at least one image")
    if len(overlays) != n_images or len(titles) != n_images:
        raise ValueError(
            f"heatmap_grid got {n_images} images, {len(overlays)} overlays and {len(titles)} titles"
        )
    ncols = max(1, min(ncols, n_images))
    nrows = math.ceil(n_images / ncols)
    figure = _new_figure(2.6 * ncols, 2.8 * nrows)
    axes = np.atleast_1d(figure.subplots(nrows, ncols)).ravel()
    for axis, image, overlay, title in zip(axes, images, overlays, titles, strict=False):
        pixels = np.asarray(image)
        height, width = pixels.shape[:2]
        extent = (0, width, height, 0)
        layer = None if overlay is None else np.asarray(overlay)
        if layer is not None and layer.ndim == 3:
            axis.imshow(layer, extent=extent)
        else:
            axis.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, extent=extent)
            if layer is not None:
                axis.imshow(layer, cmap=cmap, alpha=alpha, extent=extent, interpolation="bilinear")
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    for axis in axes[n_images:]:
        axis.set_visible(False)
    return figure
