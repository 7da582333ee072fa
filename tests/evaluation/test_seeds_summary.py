"""Summary of repeated training runs over seeds: mean, std and t-based CI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from covid_cxnet_pipeline.evaluation.seeds_summary import SUMMARY_COLUMNS, summarise_seeds

# Student t quantile t_{0.975, 2}.
T_975_2DF = 4.302652729911275


def test_mean_std_and_t_interval_by_hand():
    runs = [
        {"accuracy": 0.8, "macro_f1": 0.5},
        {"accuracy": 0.9, "macro_f1": 0.7},
        {"accuracy": 1.0, "macro_f1": 0.6},
    ]
    summary = summarise_seeds(runs).set_index("metric")
    row = summary.loc["accuracy"]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(0.9)
    assert row["std"] == pytest.approx(0.1)
    half = T_975_2DF * 0.1 / math.sqrt(3)
    assert row["half_width"] == pytest.approx(half)
    # 0.9 + half = 1.148 is clipped to accuracy's bound.
    assert (row["ci_lower"], row["ci_upper"]) == pytest.approx((0.9 - half, 1.0))
    assert summary.loc["macro_f1", "ci_upper"] == pytest.approx(0.6 + half)
    assert summary.loc["macro_f1", "mean"] == pytest.approx(0.6)
    assert list(summary.reset_index().columns) == list(SUMMARY_COLUMNS)


def test_narrower_confidence_gives_narrower_interval():
    runs = [{"auc": v} for v in (0.81, 0.84, 0.86, 0.9)]
    wide = summarise_seeds(runs, 0.95)["half_width"].item()
    narrow = summarise_seeds(runs, 0.8)["half_width"].item()
    assert narrow < wide


def test_missing_and_nan_values_are_skipped_per_metric():
    runs = [
        {"accuracy": 0.7, "auc_covid": np.nan},
        {"accuracy": 0.9, "auc_covid": 0.8},
        {"accuracy": 0.8},
    ]
    summary = summarise_seeds(runs).set_index("metric")
    assert summary.loc["accuracy", "n"] == 3
    assert summary.loc["auc_covid", "n"] == 1
    assert summary.loc["auc_covid", "mean"] == pytest.approx(0.8)
    assert np.isnan(summary.loc["auc_covid", "std"])
    assert np.isnan(summary.loc["auc_covid", "ci_lower"])
    assert summary.index.tolist() == ["accuracy", "auc_covid"]


def test_identical_runs_have_zero_width():
    summary = summarise_seeds([{"accuracy": 0.75}] * 5)
    assert summary["half_width"].item() == 0.0


def test_empty_input_is_rejected():
    with pytest.raises(ValueError, match="no runs"):
        summarise_seeds([])


def test_bounded_metric_intervals_are_clipped_to_unit_range():
    runs = [{"accuracy": 0.95, "loss": 0.05}, {"accuracy": 1.0, "loss": 0.0}]
    summary = summarise_seeds(runs).set_index("metric")
    # t_{0.975, 1} * std / sqrt(2) = 12.706 * 0.0354 / 1.414 = 0.318: unclipped [0.657, 1.293].
    half = 12.706204736174698 * math.sqrt(0.00125) / math.sqrt(2)
    assert summary.loc["accuracy", "half_width"] == pytest.approx(half)
    assert summary.loc["accuracy", "ci_upper"] == 1.0
    assert summary.loc["accuracy", "ci_lower"] == pytest.approx(0.975 - half)
    assert summary.loc["loss", "ci_lower"] == pytest.approx(0.025 - half)
