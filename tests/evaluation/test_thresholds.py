"""Operating-threshold rules against hand-computed ROC points."""

from __future__ import annotations

import numpy as np
import pytest

from covid_cxnet_pipeline.evaluation.thresholds import (
    choose_threshold,
    operating_point_report,
    roc_points,
    sensitivity_specificity,
)

# Sorted by score: 0.9(+) 0.7(+) 0.6(-) 0.5(+) 0.3(-) 0.2(-) 0.1(-).
# TPR: 1/3 2/3 2/3 1 1 1 1; FPR: 0 0 1/4 1/4 1/2 3/4 1; Youden J peaks (0.75) at 0.5.
VAL_TRUE = np.array([0, 0, 0, 0, 1, 1, 1])
VAL_SCORE = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.9])


def test_roc_points_by_hand():
    thresholds, tpr, fpr = roc_points(VAL_TRUE, VAL_SCORE)
    assert thresholds.tolist() == [0.9, 0.7, 0.6, 0.5, 0.3, 0.2, 0.1]
    assert tpr == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1])
    assert fpr == pytest.approx([0, 0, 1 / 4, 1 / 4, 1 / 2, 3 / 4, 1])


def test_tied_scores_share_one_roc_point():
    thresholds, tpr, fpr = roc_points([0, 1, 1, 0], [0.5, 0.5, 0.8, 0.1])
    assert thresholds.tolist() == [0.8, 0.5, 0.1]
    assert tpr == pytest.approx([0.5, 1.0, 1.0])
    assert fpr == pytest.approx([0.0, 0.5, 1.0])


def test_youden_by_hand():
    assert choose_threshold(VAL_TRUE, VAL_SCORE, "youden") == 0.5


def test_youden_ties_go_to_the_highest_threshold():
    # Scores 0.8(+) 0.4(-) 0.35(+) 0.1(-): J = 0.5, 0, 0.5, 0.
    assert choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], "youden") == 0.8


@pytest.mark.parametrize(
    ("target", "expected"), [(0.3, 0.9), (0.5, 0.7), (2 / 3, 0.7), (0.9, 0.5), (1.0, 0.5)]
)
def test_target_sensitivity_by_hand(target, expected):
    assert choose_threshold(VAL_TRUE, VAL_SCORE, "target_sensitivity", target) == expected


def test_fixed_rule_and_two_column_scores():
    assert choose_threshold(VAL_TRUE, VAL_SCORE, "fixed", fixed_threshold=0.42) == 0.42
    two = np.column_stack([1 - VAL_SCORE, VAL_SCORE])
    assert choose_threshold(VAL_TRUE, two, "youden") == 0.5


def test_sensitivity_specificity_counts():
    result = sensitivity_specificity(VAL_TRUE, VAL_SCORE, 0.5)
    assert (result["tp"], result["fn"], result["tn"], result["fp"]) == (3, 0, 3, 1)
    assert result["sensitivity"] == 1.0
    assert result["specificity"] == pytest.approx(3 / 4)
    only_negatives = sensitivity_specificity([0, 0], [0.2, 0.7], 0.5)
    assert np.isnan(only_negatives["sensitivity"])
    assert only_negatives["specificity"] == 0.5


def test_report_chooses_on_validation_and_applies_to_test():
    test_true = np.array([1, 1, 0, 0, 0])
    test_score = np.array([0.55, 0.45, 0.6, 0.2, 0.1])
    report = operating_point_report(
        VAL_TRUE, VAL_SCORE, {"test": (test_true, test_score)}, rule="youden"
    )
    assert report["split"].tolist() == ["validation", "test"]
    assert (report["threshold"] == 0.5).all()
    test_row = report.set_index("split").loc["test"]
    assert test_row["sensitivity"] == pytest.approx(1 / 2)
    assert test_row["specificity"] == pytest.approx(2 / 3)
    assert test_row["rule"] == "youden"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nearest",), "unknown threshold rule"),
        (("target_sensitivity",), "target_sensitivity"),
        (("target_sensitivity", 1.5), "target_sensitivity"),
        (("fixed",), "fixed_threshold"),
    ],
)
def test_bad_rules_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        choose_threshold(VAL_TRUE, VAL_SCORE, *args)


def test_single_class_validation_split_is_rejected():
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold([1, 1, 1], [0.2, 0.5, 0.9])


def test_multiclass_scores_are_rejected():
    with pytest.raises(ValueError, match="binary"):
        choose_threshold([0, 1, 2], np.eye(3))
