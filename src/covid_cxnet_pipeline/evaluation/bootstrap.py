"""Percentile bootstrap confidence intervals for every scalar classification metric.

A resample is drawn as a vector of multiplicities (multinomial counts), so all resamples of a
chunk are evaluated at once by ``metrics.metric_arrays`` instead of one Python loop per resample.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from covid_cxnet_pipeline.evaluation.metrics import (
    compute_metrics,
    metric_arrays,
    prepare_inputs,
    weight_chunk_size,
)

logger = logging.getLogger(__name__)

# The interval itself; the evaluate stage's metrics table carries these columns after its own.
INTERVAL_COLUMNS = ("metric", "estimate", "ci_lower", "ci_upper", "n_valid", "n_resamples")
# confidence and stratified come last so code that selects the first six columns still works.
CI_COLUMNS = (*INTERVAL_COLUMNS, "confidence", "stratified")


def resample_weights(
    y_true: np.ndarray, n_resamples: int, rng: np.random.Generator, stratified: bool
) -> np.ndarray:
    """Bootstrap multiplicities: row b says how often each sample appears in resample b.

    Args:
        y_true: N class indices.
        n_resamples: B, the number of rows to draw.
        rng: the generator to draw from.
        stratified: resample within each class, keeping each class's count fixed.

    Returns:
        B x N float array of non-negative integer counts; each row sums to N (and, when
        stratified, to each class's size over that class's samples).
    """
    n_samples = y_true.shape[0]
    weights = np.zeros((n_resamples, n_samples))
    groups = (
        [np.flatnonzero(y_true == c) for c in np.unique(y_true)]
        if stratified
        else [np.arange(n_samples)]
    )
    for members in groups:
        size = members.shape[0]
        weights[:, members] = rng.multinomial(size, np.full(size, 1.0 / size), size=n_resamples)
    return weights


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples, ignoring NaN (undefined) resamples.

    Args:
        samples: 1-D array of a metric over resamples.
        confidence: central coverage, e.g. 0.95.

    Returns:
        (lower, upper); (NaN, NaN) when no resample is defined.
    """
    valid = samples[~np.isnan(samples)]
    if valid.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(valid, [alpha, 1.0 - alpha])
    return float(lower), float(upper)


def bootstrap_samples(
    y_true: np.ndarray | Sequence[int],
    y_prob: np.ndarray | Sequence[float],
    class_names: Sequence[str] | None = None,
    *,
    threshold: float = 0.5,
    n_resamples: int = 1000,
    seed: int = 0,
    stratified: bool = True,
) -> dict[str, np.ndarray]:
    """Every scalar metric of ``compute_metrics`` on each of ``n_resamples`` bootstrap resamples.

    Args:
        y_true: N class indices.
        y_prob: N x C probabilities, or the positive-class probability for binary.
        class_names: names in column order.
        threshold: binary decision threshold (fixed; not re-chosen per resample).
        n_resamples: number of resamples B.
        seed: seed of the NumPy generator; the same seed gives the same samples.
        stratified: resample within each true class (class counts fixed).

    Returns:
        Metric name -> array of B values (NaN where the metric is undefined on a resample).

    Raises:
        ValueError: if ``n_resamples`` < 1.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    labels, prob, names = prepare_inputs(y_true, y_prob, class_names)
    rng = np.random.default_rng(seed)
    chunk = weight_chunk_size(labels.shape[0])
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        weights = resample_weights(labels, size, rng, stratified)
        parts.append(metric_arrays(labels, prob, names, weights, threshold))
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def bootstrap_ci(
    y_true: np.ndarray | Sequence[int],
    y_prob: np.ndarray | Sequence[float],
    class_names: Sequence[str] | None = None,
    *,
    threshold: float = 0.5,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    stratified: bool = True,
) -> pd.DataFrame:
    """Point estimates with percentile bootstrap confidence intervals for every scalar metric.

    Args:
        y_true: N class indices.
        y_prob: N x C probabilities, or the positive-class probability for binary.
        class_names: names in column order.
        threshold: binary decision threshold at which sensitivity/specificity etc. are measured.
        n_resamples: number of bootstrap resamples.
        confidence: central coverage of the interval (0.95 for a 95% CI).
        seed: seed of the resampling; the same seed gives identical intervals.
        stratified: resample within each true class, so every resample keeps the split's class
            mix and per-class metrics stay defined.

    Returns:
        DataFrame with columns ``metric``, ``estimate`` (on the full data), ``ci_lower``,
        ``ci_upper``, ``n_valid`` (resamples where the metric is defined), ``n_resamples``,
        ``confidence`` and ``stratified`` (the settings that produced the interval, so a
        report can say which interval it shows).

    Raises:
        ValueError: if ``confidence`` is not in (0, 1) or ``n_resamples`` < 1.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    estimates = compute_metrics(y_true, y_prob, class_names, threshold)
    samples = bootstrap_samples(
        y_true,
        y_prob,
        class_names,
        threshold=threshold,
        n_resamples=n_resamples,
        seed=seed,
        stratified=stratified,
    )
    rows = []
    for metric, estimate in estimates.items():
        lower, upper = percentile_interval(samples[metric], confidence)
        rows.append(
            {
                "metric": metric,
                "estimate": estimate,
                "ci_lower": lower,
                "ci_upper": upper,
                "n_valid": int(np.count_nonzero(~np.isnan(samples[metric]))),
                "n_resamples": n_resamples,
                "confidence": float(confidence),
                "stratified": bool(stratified),
            }
        )
    logger.info(
        "Bootstrap CIs: %d metrics, %d resamples (stratified=%s, seed=%d)",
        len(rows),
        n_resamples,
        stratified,
        seed,
    )
    return pd.DataFrame(rows, columns=list(CI_COLUMNS))
