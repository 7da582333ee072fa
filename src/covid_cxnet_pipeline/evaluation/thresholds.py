"""Binary operating threshold: chosen on validation by a named rule, then reported on another split.

A sample is called positive when its positive-class score is >= the threshold. Candidate
thresholds are the distinct validation scores, as in ``sklearn.metrics.roc_curve``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from covid_cxnet_pipeline.evaluation.metrics import as_probability_matrix, validate_labels

logger = logging.getLogger(__name__)

THRESHOLD_RULES = ("youden", "target_sensitivity", "fixed")


def positive_scores(y_score: np.ndarray | Sequence[float]) -> np.ndarray:
    """The positive-class score per sample.

    Args:
        y_score: a vector of positive-class probabilities, an N x 1 column, or N x 2
            probabilities (column 1 is the positive class).

    Returns:
        1-D float array.

    Raises:
        ValueError: for more than two columns (thresholds are for binary models).
    """
    prob = as_probability_matrix(y_score)
    if prob.shape[1] != 2:
        raise ValueError(
            f"an operating threshold needs a binary model; y_score has {prob.shape[1]} columns"
        )
    return prob[:, 1]


def roc_points(
    y_true: np.ndarray | Sequence[int], y_score: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sensitivity (TPR) and false-positive rate at every distinct score used as a threshold.

    Args:
        y_true: N labels, 1 = positive, 0 = negative.
        y_score: positive-class scores (see ``positive_scores``).

    Returns:
        (thresholds in decreasing order, TPR, FPR), each of length = number of distinct scores.

    Raises:
        ValueError: if y_true has no positive or no negative sample.
    """
    scores = positive_scores(y_score)
    labels = validate_labels(y_true, scores.shape[0], 2)
    n_positive = int(labels.sum())
    n_negative = labels.shape[0] - n_positive
    if n_positive == 0 or n_negative == 0:
        raise ValueError(
            f"ROC points need both classes; got {n_positive} positive and {n_negative} negative "
            "samples: check that the split used to choose the threshold holds both classes"
        )
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # Last index of each run of equal scores: all tied samples flip together.
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    true_positive = np.cumsum(sorted_labels)[ends]
    false_positive = np.cumsum(1 - sorted_labels)[ends]
    return sorted_scores[ends], true_positive / n_positive, false_positive / n_negative


def choose_threshold(
    y_true: np.ndarray | Sequence[int],
    y_score: np.ndarray | Sequence[float],
    rule: str = "youden",
    target_sensitivity: float | None = None,
    fixed_threshold: float | None = None,
) -> float:
    """Choose the operating threshold on a (validation) split.

    Args:
        y_true: N labels, 1 = positive.
        y_score: positive-class scores.
        rule: ``youden`` (maximise TPR - FPR; ties go to the highest threshold),
            ``target_sensitivity`` (the lowest-FPR threshold whose sensitivity reaches the
            target, i.e. the highest such threshold) or ``fixed`` (``fixed_threshold``).
        target_sensitivity: required sensitivity in (0, 1] for ``target_sensitivity``.
        fixed_threshold: the threshold for ``fixed``.

    Returns:
        The threshold (a positive call is score >= threshold).

    Raises:
        ValueError: on an unknown rule or a missing/out-of-range rule parameter.
    """
    if rule == "fixed":
        if fixed_threshold is None:
            raise ValueError("threshold rule 'fixed' needs fixed_threshold (e.g. 0.5)")
        return float(fixed_threshold)
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; use one of {THRESHOLD_RULES}")
    thresholds, tpr, fpr = roc_points(y_true, y_score)
    if rule == "youden":
        # argmax returns the first maximum, i.e. the highest threshold among ties.
        best = int(np.argmax(tpr - fpr))
    else:
        if target_sensitivity is None or not 0.0 < target_sensitivity <= 1.0:
            raise ValueError(
                "threshold rule 'target_sensitivity' needs target_sensitivity in (0, 1]; "
                f"got {target_sensitivity}"
            )
        # TPR and FPR only grow as the threshold falls, so the first threshold reaching the
        # target has the lowest FPR among those that do. The lowest score always reaches TPR 1.
        best = int(np.argmax(tpr >= target_sensitivity - 1e-12))
    logger.info(
        "Threshold rule %s: threshold %.4f (validation TPR %.3f, FPR %.3f)",
        rule,
        thresholds[best],
        tpr[best],
        fpr[best],
    )
    return float(thresholds[best])


def sensitivity_specificity(
    y_true: np.ndarray | Sequence[int], y_score: np.ndarray | Sequence[float], threshold: float
) -> dict[str, float]:
    """Counts, sensitivity and specificity at a threshold.

    Args:
        y_true: N labels, 1 = positive.
        y_score: positive-class scores.
        threshold: positive when score >= threshold.

    Returns:
        Dict with ``threshold``, ``sensitivity``, ``specificity`` (NaN when the split has no
        positive / no negative sample), ``tp``, ``fn``, ``tn``, ``fp``.
    """
    scores = positive_scores(y_score)
    labels = validate_labels(y_true, scores.shape[0], 2).astype(bool)
    called = scores >= threshold
    tp = int(np.sum(called & labels))
    fn = int(np.sum(~called & labels))
    tn = int(np.sum(~called & ~labels))
    fp = int(np.sum(called & ~labels))
    return {
        "threshold": float(threshold),
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
    }


def operating_point_report(
    choose_true: np.ndarray | Sequence[int],
    choose_score: np.ndarray | Sequence[float],
    report_splits: dict[str, tuple[np.ndarray | Sequence[int], np.ndarray | Sequence[float]]],
    *,
    rule: str = "youden",
    target_sensitivity: float | None = None,
    fixed_threshold: float | None = None,
    choose_split_name: str = "validation",
) -> pd.DataFrame:
    """Choose the threshold on one split and report sensitivity/specificity on it and others.

    Args:
        choose_true: labels of the split the threshold is chosen on (validation).
        choose_score: positive-class scores of that split.
        report_splits: split name -> (labels, scores) to report at the chosen threshold (test,
            external...).
        rule: see ``choose_threshold``.
        target_sensitivity: see ``choose_threshold``.
        fixed_threshold: see ``choose_threshold``.
        choose_split_name: name of the choosing split in the output.

    Returns:
        DataFrame with one row per split (the choosing split first) and columns ``split``,
        ``rule``, ``threshold``, ``sensitivity``, ``specificity``, ``tp``, ``fn``, ``tn``, ``fp``.
    """
    threshold = choose_threshold(
        choose_true, choose_score, rule, target_sensitivity, fixed_threshold
    )
    splits = {choose_split_name: (choose_true, choose_score), **report_splits}
    rows = [
        {"split": name, "rule": rule, **sensitivity_specificity(labels, scores, threshold)}
        for name, (labels, scores) in splits.items()
    ]
    return pd.DataFrame(rows)
