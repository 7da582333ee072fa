"""Bootstrap confidence intervals: reproducibility, degenerate cases and coverage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from covid_cxnet_pipeline.evaluation.bootstrap import (
    bootstrap_ci,
    bootstrap_samples,
    percentile_interval,
    resample_weights,
)
from covid_cxnet_pipeline.evaluation.metrics import compute_metrics


def _noisy_binary(rng: np.random.Generator, n: int, accuracy: float):
    y_true = rng.integers(0, 2, n)
    correct = rng.random(n) < accuracy
    predicted = np.where(correct, y_true, 1 - y_true)
    prob = np.where(predicted == 1, 0.5 + 0.5 * rng.random(n), 0.5 * rng.random(n))
    return y_true, np.clip(prob, 0.0, 0.999)


def test_same_seed_same_intervals_other_seed_differs():
    y_true, prob = _noisy_binary(np.random.default_rng(0), 80, 0.8)
    first = bootstrap_ci(y_true, prob, n_resamples=200, seed=7)
    again = bootstrap_ci(y_true, prob, n_resamples=200, seed=7)
    other = bootstrap_ci(y_true, prob, n_resamples=200, seed=8)
    assert first.equals(again)
    assert not first["ci_lower"].equals(other["ci_lower"])
    assert tuple(first.columns) == (
        "metric",
        "estimate",
        "ci_lower",
        "ci_upper",
        "n_valid",
        "n_resamples",
        "confidence",
        "stratified",
    )


def test_estimates_are_the_full_data_metrics():
    y_true, prob = _noisy_binary(np.random.default_rng(1), 60, 0.7)
    ci = bootstrap_ci(y_true, prob, ["neg", "pos"], n_resamples=100, threshold=0.4)
    expected = compute_metrics(y_true, prob, ["neg", "pos"], threshold=0.4)
    assert dict(zip(ci["metric"], ci["estimate"], strict=True)) == expected
    assert (ci["ci_lower"] <= ci["estimate"] + 1e-12).all()
    assert (ci["estimate"] <= ci["ci_upper"] + 1e-12).all()


def test_constant_predictions_give_zero_width_under_stratified_resampling():
    # Always "positive": per class the recall is fixed, and with class counts fixed by the
    # stratified resampling so is the accuracy (= share of positives).
    y_true = np.array([0] * 6 + [1] * 14)
    prob = np.full(20, 0.9)
    ci = bootstrap_ci(y_true, prob, n_resamples=300, stratified=True).set_index("metric")
    for metric, value in (("accuracy", 0.7), ("sensitivity", 1.0), ("specificity", 0.0)):
        assert ci.loc[metric, "ci_lower"] == pytest.approx(value)
        assert ci.loc[metric, "ci_upper"] == pytest.approx(value)
    plain = bootstrap_ci(y_true, prob, n_resamples=300, stratified=False).set_index("metric")
    assert plain.loc["accuracy", "ci_upper"] - plain.loc["accuracy", "ci_lower"] > 0.1


def test_perfect_classifier_has_degenerate_intervals():
    y_true = np.array([0, 1, 2] * 5)
    prob = np.eye(3)[y_true] * 0.8 + 0.2 / 3
    ci = bootstrap_ci(y_true, prob, n_resamples=200).set_index("metric")
    for metric in ("accuracy", "macro_f1", "macro_auc", "auc_class_1"):
        assert (ci.loc[metric, "ci_lower"], ci.loc[metric, "ci_upper"]) == (1.0, 1.0)


def test_resample_weights_rows_and_strata_sums():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    rng = np.random.default_rng(0)
    plain = resample_weights(y_true, 50, rng, stratified=False)
    strat = resample_weights(y_true, 50, rng, stratified=True)
    assert plain.shape == (50, 10)
    assert (plain.sum(axis=1) == 10).all()
    for c, size in ((0, 3), (1, 2), (2, 5)):
        assert (strat[:, y_true == c].sum(axis=1) == size).all()
    assert (plain >= 0).all()
    assert np.array_equal(plain, np.round(plain))


def test_vectorised_samples_match_one_resample_at_a_time():
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 3, 40)
    prob = np.round(rng.dirichlet([1, 1, 1], 40), 1)
    samples = bootstrap_samples(y_true, prob, n_resamples=5, seed=11, stratified=False)
    weights = resample_weights(y_true, 5, np.random.default_rng(11), stratified=False)
    for row in range(5):
        idx = np.repeat(np.arange(40), weights[row].astype(int))
        # A resample may miss a class; the warning about it is expected here.
        with warnings.catch_warnings(action="ignore"):
            expected = compute_metrics(y_true[idx], prob[idx])
        for key, value in expected.items():
            assert samples[key][row] == pytest.approx(value, nan_ok=True), key


def test_undefined_resamples_are_counted_not_fatal():
    # One positive among 12: many plain resamples miss it, so its AUC is undefined there.
    y_true = np.array([0] * 11 + [1])
    prob = np.linspace(0.05, 0.95, 12)
    ci = bootstrap_ci(y_true, prob, n_resamples=200, stratified=False).set_index("metric")
    assert 0 < ci.loc["auc_class_1", "n_valid"] < 200
    assert ci.loc["accuracy", "n_valid"] == 200


def test_percentile_interval_known_values_and_nan():
    samples = np.arange(101, dtype=float)
    assert percentile_interval(samples, 0.9) == pytest.approx((5.0, 95.0))
    assert np.isnan(percentile_interval(np.array([np.nan, np.nan]))[0])


def test_coverage_of_the_accuracy_interval():
    # Accuracy of a classifier that is right with probability 0.8, n = 200: the 95% interval
    # should cover 0.8 in about 95% of datasets, and be about as wide as the normal interval.
    rng = np.random.default_rng(2024)
    covered, widths = 0, []
    for trial in range(100):
        y_true, prob = _noisy_binary(rng, 200, 0.8)
        ci = bootstrap_ci(y_true, prob, n_resamples=400, seed=trial, stratified=False)
        row = ci.set_index("metric").loc["accuracy"]
        covered += row["ci_lower"] <= 0.8 <= row["ci_upper"]
        widths.append(row["ci_upper"] - row["ci_lower"])
    assert 0.87 <= covered / 100 <= 1.0
    normal_width = 2 * 1.96 * np.sqrt(0.8 * 0.2 / 200)
    assert np.mean(widths) == pytest.approx(normal_width, rel=0.15)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_resamples": 0}, "n_resamples"), ({"confidence": 1.5}, "confidence")],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci([0, 1], [0.2, 0.8], **kwargs)


def test_table_records_confidence_and_stratification():
    y_true, prob = _noisy_binary(np.random.default_rng(4), 60, 0.75)
    ci = bootstrap_ci(y_true, prob, n_resamples=200, confidence=0.9, stratified=False, seed=1)
    # The six original columns keep their place; the two settings are appended.
    assert tuple(ci.columns[:6]) == (
        "metric",
        "estimate",
        "ci_lower",
        "ci_upper",
        "n_valid",
        "n_resamples",
    )
    assert tuple(ci.columns[6:]) == ("confidence", "stratified")
    assert (ci["confidence"] == 0.9).all()
    assert not ci["stratified"].any()
    default = bootstrap_ci(y_true, prob, n_resamples=200, seed=1)
    assert (default["confidence"] == 0.95).all() and default["stratified"].all()
