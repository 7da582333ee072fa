"""Summarise repeated training over several seeds: mean, std and t-based 95% CI per metric."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

logger = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("metric", "n", "mean", "std", "ci_lower", "ci_upper", "half_width")


# Metrics not bounded to [0, 1]: their t-intervals are not clipped.
UNBOUNDED_METRICS = ("loss",)


def summarise_seeds(
    runs: Sequence[Mapping[str, float]],
    confidence: float = 0.95,
    *,
    unbounded: Sequence[str] = UNBOUNDED_METRICS,
) -> pd.DataFrame:
    """Mean, sample standard deviation and Student-t confidence interval of each metric.

    The interval is ``mean +/- t_{(1+confidence)/2, n-1} * std / sqrt(n)`` with ``std`` the
    sample standard deviation (ddof=1), as in the paper's Table 5 over repeated runs. With few
    seeds that interval can leave [0, 1] (e.g. accuracy 0.98 +/- 0.05); for metrics bounded to
    [0, 1] (every metric but those in ``unbounded``) ``ci_lower``/``ci_upper`` are clipped to
    [0, 1], while ``half_width`` stays the unclipped t half-width.

    Args:
        runs: one metric dict per seed (e.g. ``compute_metrics`` output). A metric missing or
            NaN in some runs is summarised over the runs that have it.
        confidence: central coverage of the interval.
        unbounded: metric names whose interval is not clipped (e.g. ``loss``).

    Returns:
        DataFrame with columns ``metric``, ``n`` (runs with a value), ``mean``, ``std``,
        ``ci_lower``, ``ci_upper``, ``half_width``; metrics in first-seen order. With n < 2 the
        std and interval are NaN.

    Raises:
        ValueError: if ``runs`` is empty or ``confidence`` not in (0, 1).
    """
    if not runs:
        raise ValueError("no runs to summarise: pass one metric dict per seed")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    metrics: list[str] = []
    for run in runs:
        metrics.extend(key for key in run if key not in metrics)
    rows = []
    for metric in metrics:
        values = np.array([float(run.get(metric, np.nan)) for run in runs])
        values = values[~np.isnan(values)]
        n = int(values.size)
        mean = float(values.mean()) if n else math.nan
        if n >= 2:
            std = float(values.std(ddof=1))
            half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1) * std / math.sqrt(n))
        else:
            std = half = math.nan
        rows.append(
            {
                "metric": metric,
                "n": n,
                "mean": mean,
                "std": std,
                "ci_lower": _clip(mean - half, metric not in unbounded),
                "ci_upper": _clip(mean + half, metric not in unbounded),
                "half_width": half,
            }
        )
    logger.info("Summarised %d metrics over %d runs", len(rows), len(runs))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _clip(value: float, bounded: bool) -> float:
    return min(max(value, 0.0), 1.0) if bounded and not math.isnan(value) else value
