"""Markdown report assembly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covid_cxnet_pipeline.evaluation.report import build_markdown_report, markdown_table


def _inputs():
    metrics = pd.DataFrame({"metric": ["accuracy", "macro_f1"], "value": [0.91234, np.nan]})
    ci = pd.DataFrame(
        {
            "metric": ["accuracy"],
            "estimate": [0.91234],
            "ci_lower": [0.88],
            "ci_upper": [0.94],
            "n_valid": [1000],
            "n_resamples": [1000],
        }
    )
    return metrics, ci


def test_report_holds_metrics_intervals_and_image_links():
    metrics, ci = _inputs()
    text = build_markdown_report(
        "COVID-CXNet binary, test split",
        metrics,
        ci,
        figures={"ROC curves": "figures/roc.png", "Confusion matrix": "figures/confusion.png"},
        heatmap_grids={"Grad-CAM covid": "grids/gradcam covid.png"},
        notes=["threshold: youden on validation", "data: model_input_index 2026-11-29"],
        tables={"Localisation": pd.DataFrame({"label": ["covid"], "mean": [0.8]})},
    )
    assert text.startswith("# COVID-CXNet binary, test split\n")
    assert "| accuracy | 0.912 |" in text
    assert "| macro_f1 | n/a |" in text
    assert "0.912 [0.880, 0.940]" in text
    assert "![ROC curves](figures/roc.png)" in text
    assert "![Confusion matrix](figures/confusion.png)" in text
    assert "![Grad-CAM covid](grids/gradcam%20covid.png)" in text
    assert "- threshold: youden on validation" in text
    assert "## Localisation" in text
    assert "| covid | 0.800 |" in text
    assert text.endswith("\n")


def test_absolute_image_paths_are_rejected():
    metrics, _ = _inputs()
    with pytest.raises(ValueError, match="relative"):
        build_markdown_report("r", metrics, figures={"roc": "/tmp/roc.png"})


def test_markdown_table_alignment_and_escaping():
    table = markdown_table(pd.DataFrame({"name": ["a|b"], "n": [3]}))
    assert table.splitlines() == ["| name | n |", "| --- | ---: |", "| a\\|b | 3 |"]
    assert markdown_table(pd.DataFrame()) == "_(empty)_"


def _ci_at(confidence: float, stratified: bool) -> pd.DataFrame:
    from covid_cxnet_pipeline.evaluation.bootstrap import bootstrap_ci

    y_true = np.array([0, 0, 0, 1, 1, 1, 0, 1, 1, 0])
    prob = np.array([0.1, 0.3, 0.6, 0.8, 0.7, 0.4, 0.2, 0.9, 0.6, 0.5])
    return bootstrap_ci(
        y_true, prob, n_resamples=50, confidence=confidence, stratified=stratified, seed=0
    )


def test_interval_header_comes_from_the_table_confidence():
    metrics, _ = _inputs()
    text = build_markdown_report("r", metrics, _ci_at(0.9, stratified=True))
    assert "| metric | estimate [90% CI] | n_valid | n_resamples |" in text
    assert "95%" not in text
    assert "resampled within each true class" in text
    text = build_markdown_report("r", metrics, _ci_at(0.975, stratified=False))
    assert "estimate [97.5% CI]" in text and "resampled over all samples" in text


def test_interval_header_without_a_recorded_level():
    metrics, ci = _inputs()  # a table without a confidence column
    assert "estimate [80% CI]" in build_markdown_report("r", metrics, ci, confidence=0.8)
    unlabelled = build_markdown_report("r", metrics, ci)
    assert "| metric | estimate [CI] |" in unlabelled and "95%" not in unlabelled
    mixed = pd.concat([_ci_at(0.9, True), _ci_at(0.95, True)], ignore_index=True)
    text = build_markdown_report("r", metrics, mixed)
    assert "| metric | estimate [CI] | n_valid | n_resamples | confidence |" in text
    with pytest.raises(ValueError, match="contradicts"):
        build_markdown_report("r", metrics, _ci_at(0.9, True), confidence=0.95)
