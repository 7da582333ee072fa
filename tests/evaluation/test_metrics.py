"""Known-answer tests for the classification metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from covid_cxnet_pipeline.evaluation.metrics import (
    UndefinedMetricWarning,
    as_probability_matrix,
    compute_metrics,
    confusion_matrix,
    metric_arrays,
    predict_labels,
    weighted_roc_auc,
)

BINARY_TRUE = np.array([0, 0, 1, 1, 1])
BINARY_PROB = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
# Argmax predictions: 0, 1, 1, 1, 2, 0.
MULTI_TRUE = np.array([0, 0, 1, 1, 2, 2])
MULTI_PROB = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.2, 0.7],
        [0.5, 0.1, 0.4],
    ]
)


def test_binary_metrics_by_hand():
    # At 0.5 the predictions are 0, 1, 0, 1, 1: TP 2, FN 1, TN 1, FP 1.
    m = compute_metrics(BINARY_TRUE, BINARY_PROB, ["not_covid", "covid"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["precision_covid"] == pytest.approx(2 / 3)
    assert m["precision_not_covid"] == pytest.approx(1 / 2)
    assert m["f1_covid"] == pytest.approx(2 / 3)
    assert m["f1_not_covid"] == pytest.approx(1 / 2)
    assert m["macro_f1"] == pytest.approx(7 / 12)
    # Positive scores 0.4, 0.8, 0.9 against negatives 0.1, 0.6: 5 of 6 pairs ordered.
    assert m["auc_covid"] == pytest.approx(5 / 6)
    assert m["auc_not_covid"] == pytest.approx(5 / 6)
    assert m["macro_auc"] == pytest.approx(5 / 6)


def test_binary_threshold_moves_the_operating_point():
    m = compute_metrics(BINARY_TRUE, BINARY_PROB, threshold=0.35)
    # Predictions 0, 1, 1, 1, 1.
    assert m["sensitivity"] == pytest.approx(1.0)
    assert m["specificity"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(4 / 5)


def test_binary_input_shapes_are_equivalent():
    as_vector = compute_metrics(BINARY_TRUE, BINARY_PROB)
    as_column = compute_metrics(BINARY_TRUE, BINARY_PROB[:, None])
    as_two = compute_metrics(BINARY_TRUE, np.column_stack([1 - BINARY_PROB, BINARY_PROB]))
    assert as_vector == as_column == as_two


def test_ties_count_one_half_in_auc():
    m = compute_metrics([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])
    # Pairs (pos, neg): (0.5, 0.5) tie = 0.5, the other three ordered: 3.5 / 4.
    assert m["macro_auc"] == pytest.approx(0.875)


def test_multiclass_metrics_by_hand():
    m = compute_metrics(MULTI_TRUE, MULTI_PROB, ["normal", "cap", "covid"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert (m["precision_normal"], m["recall_normal"], m["f1_normal"]) == pytest.approx(
        (1 / 2, 1 / 2, 1 / 2)
    )
    assert (m["precision_cap"], m["recall_cap"], m["f1_cap"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (m["precision_covid"], m["recall_covid"], m["f1_covid"]) == pytest.approx(
        (1.0, 1 / 2, 2 / 3)
    )
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # normal: positives 0.7, 0.3 vs negatives 0.1, 0.2, 0.1, 0.5: 7 of 8 pairs ordered.
    assert m["auc_normal"] == pytest.approx(7 / 8)
    assert m["auc_cap"] == pytest.approx(1.0)
    assert m["auc_covid"] == pytest.approx(1.0)
    assert m["macro_auc"] == pytest.approx((7 / 8 + 2) / 3)
    assert "sensitivity" not in m


def test_confusion_matrix_by_hand():
    names = ["normal", "cap", "covid"]
    cm = confusion_matrix(MULTI_TRUE, predict_labels(MULTI_PROB), names)
    assert cm.to_numpy().tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert list(cm.index) == names
    assert list(cm.columns) == names
    assert cm.index.name == "true"
    assert cm.columns.name == "predicted"


def test_class_absent_from_truth_is_nan_with_a_warning():
    y_true = np.array([0, 0, 1, 1])
    prob = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    with pytest.warns(UndefinedMetricWarning, match="covid"):
        m = compute_metrics(y_true, prob, ["normal", "cap", "covid"])
    assert np.isnan(m["auc_covid"])
    assert np.isnan(m["recall_covid"])
    assert m["precision_covid"] == 0.0  # predicted once, wrongly
    # normal: positives 0.8, 0.2 vs negatives 0.1, 0.3; cap: 0.8, 0.3 vs 0.1, 0.7.
    assert m["auc_normal"] == pytest.approx(3 / 4)
    assert m["auc_cap"] == pytest.approx(3 / 4)
    assert m["macro_auc"] == pytest.approx(3 / 4)
    # Predictions 0, 1, 1, 2. covid's F1 is 0 (one false positive), so the macro includes it.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0.0) / 3)


def test_agrees_with_scikit_learn_on_random_data_with_ties():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 200)
    prob = rng.dirichlet([1, 1, 1], 200)
    prob[np.arange(200), y_true] += 0.4
    prob = np.round(prob / prob.sum(axis=1, keepdims=True), 1)  # rounding creates ties
    m = compute_metrics(y_true, prob)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, predict_labels(prob), labels=[0, 1, 2], zero_division=np.nan
    )
    for c in range(3):
        assert m[f"precision_class_{c}"] == pytest.approx(precision[c])
        assert m[f"recall_class_{c}"] == pytest.approx(recall[c])
        assert m[f"f1_class_{c}"] == pytest.approx(f1[c])
        assert m[f"auc_class_{c}"] == pytest.approx(roc_auc_score(y_true == c, prob[:, c]))


def test_weights_equal_repeating_samples():
    # The bootstrap relies on this: weight k is the same as k copies of the sample.
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 30)
    prob = np.round(rng.dirichlet([1, 1, 1], 30), 1)
    weights = rng.integers(0, 4, (3, 30)).astype(float)
    arrays = metric_arrays(y_true, prob, ["a", "b", "c"], weights)
    for row in range(3):
        repeat = np.repeat(np.arange(30), weights[row].astype(int))
        expected = compute_metrics(y_true[repeat], prob[repeat], ["a", "b", "c"])
        for key, value in expected.items():
            assert arrays[key][row] == pytest.approx(value, nan_ok=True), key


def test_weighted_auc_is_nan_without_both_classes():
    auc = weighted_roc_auc(np.array([0.2, 0.8]), np.array([True, True]), np.ones((1, 2)))
    assert np.isnan(auc[0])


@pytest.mark.parametrize(
    ("y_true", "y_prob", "names", "message"),
    [
        ([0, 3], [[0.5, 0.5, 0.0], [0.1, 0.1, 0.8]], None, "outside"),
        ([0, 1, 1], [0.2, 0.7], None, "vector of 2"),
        ([0, 1], [0.2, np.nan], None, "NaN"),
        ([0, 1], [0.2, 0.7], ["a", "b", "c"], "class_names"),
        ([0.5, 1], [0.2, 0.7], None, "integer"),
        (["covid", "normal"], [0.2, 0.7], None, "integer"),
    ],
)
def test_bad_inputs_are_rejected(y_true, y_prob, names, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(y_true, y_prob, names)


def test_as_probability_matrix_rejects_3d():
    with pytest.raises(ValueError, match="shape"):
        as_probability_matrix(np.zeros((2, 2, 2)))
