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


def summarise_seeds(runs: Sequence[Mapping[str, float]], confidence: float = 0.95) -> pd.DataFrame:
    """Mean, sample standard deviation and Student-t confidence interval of each metric.

    The interval is ``mean +/- t_{(1+confidence)/2, n-1} * std / sqrt(n)`` with ``std`` the
    sample standard deviation (ddof=1), as in the paper's Table 5 over repeated runs.

    Args:
        runs: one metric dict per seed (e.g. ``compute_metrics`` output). A metric missing or
            NaN in some runs is summarised over the runs that have it.
        confidence: central coverage of the interval.

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
                "ci_lower": mean - half,
                "ci_upper": mean + half,
                "half_width": half,
            }
        )
    logger.info("Summarised %d metrics over %d runs", len(rows), len(runs))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
