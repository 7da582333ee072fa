"""Classification metrics from class indices and predicted probabilities, binary or multiclass.

Every scalar metric is computed from per-sample weights, so the same code gives the point
estimate (all weights 1) and, vectorised over rows of a weight matrix, every bootstrap resample
(``bootstrap.py``): a resample is a vector of multiplicities.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

# Keeps one weight matrix chunk near 2M floats (16 MB; a few live at once) whatever the split size.
_MAX_WEIGHT_CELLS = 2_000_000


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined on the given data (e.g. ROC AUC for a class absent from y_true)."""


def as_probability_matrix(y_prob: np.ndarray | Sequence[float]) -> np.ndarray:
    """Turn model outputs into an N x C score matrix.

    Args:
        y_prob: N x C class probabilities, or for a binary model the positive-class probability
            as a vector of length N or an N x 1 column.

    Returns:
        Float array N x C; a binary input becomes the two columns ``[1 - p, p]``.

    Raises:
        ValueError: if the array has more than two dimensions or holds NaN/inf.
    """
    prob = np.asarray(y_prob, dtype=float)
    if prob.ndim == 2 and prob.shape[1] == 1:
        prob = prob[:, 0]
    if prob.ndim == 1:
        prob = np.column_stack([1.0 - prob, prob])
    if prob.ndim != 2:
        raise ValueError(f"y_prob must be N, N x 1 or N x C; got shape {prob.shape}")
    if not np.all(np.isfinite(prob)):
        raise ValueError("y_prob holds NaN or inf: check the model outputs before evaluating")
    return prob


def resolve_class_names(n_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """Class names, defaulting to ``class_0 ... class_{C-1}``.

    Args:
        n_classes: number of columns of the probability matrix.
        class_names: names in column order, or None.

    Returns:
        A list of ``n_classes`` names.

    Raises:
        ValueError: if the number of names does not match the number of columns.
    """
    if class_names is None:
        return [f"class_{i}" for i in range(n_classes)]
    names = [str(name) for name in class_names]
    if len(names) != n_classes:
        raise ValueError(
            f"class_names has {len(names)} names {names} but y_prob has {n_classes} columns"
        )
    return names


def validate_labels(
    y_true: np.ndarray | Sequence[int], n_samples: int, n_classes: int
) -> np.ndarray:
    """Check and return the true class indices as an int array.

    Args:
        y_true: class index per sample.
        n_samples: expected length (rows of y_prob).
        n_classes: number of classes; every index must lie in ``[0, n_classes)``.

    Returns:
        1-D int64 array.

    Raises:
        ValueError: on a length mismatch, a non-integer value or an index out of range.
    """
    labels = np.asarray(y_true)
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise ValueError(
            f"y_true must be a vector of {n_samples} class indices; got {labels.shape}"
        )
    if labels.dtype.kind not in "biuf" or (
        labels.size and not np.all(np.equal(np.mod(labels, 1), 0))
    ):
        raise ValueError("y_true must hold integer class indices, not probabilities or names")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"y_true holds indices outside [0, {n_classes}) (min {labels.min()}, max {labels.max()})"
        )
    return labels


def predict_labels(y_prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Predicted class per sample.

    Args:
        y_prob: scores accepted by ``as_probability_matrix``.
        threshold: binary only: the positive class is predicted when its score is >= threshold.
            Multiclass predictions are the argmax and ignore it.

    Returns:
        1-D int64 array of class indices.
    """
    prob = as_probability_matrix(y_prob)
    if prob.shape[1] == 2:
        return (prob[:, 1] >= threshold).astype(np.int64)
    return np.argmax(prob, axis=1).astype(np.int64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio that is NaN, silently, where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (no warning) when a row is all NaN."""
    valid = ~np.isnan(values)
    count = valid.sum(axis=-1)
    total = np.where(valid, values, 0.0).sum(axis=-1)
    return _safe_divide(total, count.astype(float))


def weighted_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray, n_classes: int
) -> np.ndarray:
    """Confusion matrices for each row of a sample-weight matrix.

    Args:
        y_true: N true class indices.
        y_pred: N predicted class indices.
        weights: B x N sample multiplicities.
        n_classes: C.

    Returns:
        B x C x C array; entry ``[b, i, j]`` is the weight of samples of true class i predicted j.
    """
    cells = y_true * n_classes + y_pred
    onehot = np.zeros((y_true.shape[0], n_classes * n_classes))
    onehot[np.arange(y_true.shape[0]), cells] = 1.0
    return (weights @ onehot).reshape(weights.shape[0], n_classes, n_classes)


def weighted_roc_auc(
    scores: np.ndarray, is_positive: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """ROC AUC (Mann-Whitney, ties count one half) for each row of a sample-weight matrix.

    Args:
        scores: N scores for the positive class.
        is_positive: N booleans.
        weights: B x N sample multiplicities.

    Returns:
        B AUC values; NaN where a row has no positive or no negative weight.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    sorted_positive = is_positive[order]
    sorted_weights = weights[:, order]
    # Tie groups of equal scores: ties between a positive and a negative count one half.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    pos_weight = np.add.reduceat(sorted_weights * sorted_positive, starts, axis=1)
    neg_weight = np.add.reduceat(sorted_weights * ~sorted_positive, starts, axis=1)
    neg_below = np.cumsum(neg_weight, axis=1) - neg_weight
    numerator = np.sum(pos_weight * (neg_below + 0.5 * neg_weight), axis=1)
    denominator = pos_weight.sum(axis=1) * neg_weight.sum(axis=1)
    return _safe_divide(numerator, denominator)


def metric_arrays(
    y_true: np.ndarray,
    prob: np.ndarray,
    class_names: Sequence[str],
    weights: np.ndarray,
    threshold: float = 0.5,
) -> dict[str, np.ndarray]:
    """Every scalar metric for each row of a sample-weight matrix (vectorised over rows).

    Undefined values (0/0: a class never predicted for precision, absent for recall/AUC) are NaN;
    macro averages skip NaN classes and are NaN only when every class is undefined.

    Args:
        y_true: N validated class indices.
        prob: N x C score matrix (``as_probability_matrix``).
        class_names: C names, used in the metric keys.
        weights: B x N sample multiplicities (ones for the point estimate).
        threshold: binary decision threshold on the positive-class score.

    Returns:
        Ordered dict of metric name -> array of B values. Keys: ``accuracy``, ``macro_f1``,
        ``macro_auc``, then ``precision_<class>``, ``recall_<class>``, ``f1_<class>``,
        ``auc_<class>`` per class; binary adds ``sensitivity`` and ``specificity`` (recall of the
        positive class, index 1, and of the negative class, index 0).
    """
    n_classes = prob.shape[1]
    y_pred = predict_labels(prob, threshold)
    counts = weighted_confusion(y_true, y_pred, weights, n_classes)
    true_positive = np.diagonal(counts, axis1=1, axis2=2)
    support = counts.sum(axis=2)
    predicted = counts.sum(axis=1)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, support)
    f1 = _safe_divide(2.0 * true_positive, support + predicted)
    auc = np.column_stack(
        [weighted_roc_auc(prob[:, c], y_true == c, weights) for c in range(n_classes)]
    )
    out: dict[str, np.ndarray] = {
        "accuracy": _safe_divide(true_positive.sum(axis=1), support.sum(axis=1)),
        "macro_f1": _nanmean_rows(f1),
        # Binary one-vs-rest AUCs of the two classes are equal; the macro is that same value.
        "macro_auc": _nanmean_rows(auc),
    }
    if n_classes == 2:
        out["sensitivity"] = recall[:, 1]
        out["specificity"] = recall[:, 0]
    for c, name in enumerate(class_names):
        out[f"precision_{name}"] = precision[:, c]
        out[f"recall_{name}"] = recall[:, c]
        out[f"f1_{name}"] = f1[:, c]
        out[f"auc_{name}"] = auc[:, c]
    return out


def prepare_inputs(
    y_true: np.ndarray | Sequence[int],
    y_prob: np.ndarray | Sequence[float],
    class_names: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validate and normalise evaluation inputs.

    Args:
        y_true: N class indices.
        y_prob: scores accepted by ``as_probability_matrix``.
        class_names: names in column order, or None.

    Returns:
        (int labels, N x C score matrix, class names).

    Raises:
        ValueError: on empty input, shape mismatch or out-of-range labels.
    """
    prob = as_probability_matrix(y_prob)
    if prob.shape[0] == 0:
        raise ValueError("no samples to evaluate: y_prob is empty")
    names = resolve_class_names(prob.shape[1], class_names)
    labels = validate_labels(y_true, prob.shape[0], prob.shape[1])
    return labels, prob, names


def compute_metrics(
    y_true: np.ndarray | Sequence[int],
    y_prob: np.ndarray | Sequence[float],
    class_names: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Accuracy, per-class precision/recall/F1, macro F1, one-vs-rest ROC AUC (per class, macro).

    Args:
        y_true: N class indices.
        y_prob: N x C probabilities, or the positive-class probability (N or N x 1) for binary.
        class_names: names in column order (default ``class_<i>``); binary: [negative, positive].
        threshold: binary only: positive when the positive-class score is >= threshold.

    Returns:
        Flat dict metric name -> float (keys as in ``metric_arrays``), ready for MLflow.
        Binary results include ``sensitivity`` and ``specificity`` at ``threshold``.

    Warns:
        UndefinedMetricWarning: when a class is absent from y_true (its recall and AUC are NaN).
    """
    labels, prob, names = prepare_inputs(y_true, y_prob, class_names)
    present = np.bincount(labels, minlength=prob.shape[1])
    absent = [names[c] for c in range(prob.shape[1]) if present[c] == 0]
    if absent:
        warnings.warn(
            f"class(es) {absent} absent from y_true: their recall and ROC AUC are NaN and the "
            "macro averages use the remaining classes",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    arrays = metric_arrays(labels, prob, names, np.ones((1, labels.shape[0])), threshold)
    return {key: float(values[0]) for key, values in arrays.items()}


def confusion_matrix(
    y_true: np.ndarray | Sequence[int],
    y_pred: np.ndarray | Sequence[int],
    class_names: Sequence[str],
) -> pd.DataFrame:
    """Confusion matrix of counts, rows = true class, columns = predicted class.

    Args:
        y_true: N true class indices.
        y_pred: N predicted class indices (``predict_labels``).
        class_names: the C class names, in index order.

    Returns:
        C x C int DataFrame indexed by true class names (index name ``true``) with predicted
        class names as columns (columns name ``predicted``).
    """
    names = [str(name) for name in class_names]
    labels = validate_labels(y_true, len(y_true), len(names))
    predicted = validate_labels(y_pred, labels.shape[0], len(names))
    counts = weighted_confusion(labels, predicted, np.ones((1, labels.shape[0])), len(names))[0]
    frame = pd.DataFrame(counts.astype(np.int64), index=names, columns=names)
    frame.index.name = "true"
    frame.columns.name = "predicted"
    return frame


def weight_chunk_size(n_samples: int) -> int:
    """How many weight rows (resamples) to process at once for a split of ``n_samples``."""
    return max(1, _MAX_WEIGHT_CELLS // max(1, n_samples))
