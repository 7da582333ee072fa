"""Figures: each builder returns a drawable Figure holding what it claims to show."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from covid_cxnet_pipeline.evaluation.metrics import confusion_matrix
from covid_cxnet_pipeline.evaluation.plots import (
    heatmap_grid,
    plot_calibration,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_roc_curves,
    reliability_points,
)

NAMES = ["normal", "cap", "covid"]


def _renders(figure: Figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def _texts(axis) -> list[str]:
    return [text.get_text() for text in axis.texts]


def test_confusion_matrix_counts_and_row_normalised():
    cm = confusion_matrix([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], NAMES)
    figure = plot_confusion_matrix(cm)
    counts_axis, normalised_axis = figure.axes[:2]
    assert _texts(counts_axis) == ["1", "1", "0", "0", "2", "0", "1", "0", "1"]
    assert _texts(normalised_axis)[:3] == ["0.50", "0.50", "0.00"]
    assert [t.get_text() for t in counts_axis.get_yticklabels()] == NAMES
    _renders(figure)


def test_roc_curves_carry_aucs_in_the_legend():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    prob = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.3, 0.6, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.2, 0.7],
            [0.5, 0.1, 0.4],
        ]
    )
    figure = plot_roc_curves(y_true, prob, NAMES)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["normal (AUC = 0.875)", "cap (AUC = 1.000)", "covid (AUC = 1.000)", "chance"]
    _renders(figure)


def test_roc_curve_steps_once_per_run_of_tied_scores_from_the_origin():
    # Sorted: 0.9 (pos) | 0.5 (neg, pos) | 0.2 (neg, pos, neg); 3 positives, 3 negatives.
    figure = plot_roc_curves(
        [0, 1, 1, 0, 1, 0], [0.5, 0.5, 0.9, 0.2, 0.2, 0.2], ["not_covid", "covid"]
    )
    curve = figure.axes[0].lines[0]
    np.testing.assert_array_equal(curve.get_xdata(), [0.0, 0.0, 1 / 3, 1.0])
    np.testing.assert_array_equal(curve.get_ydata(), [0.0, 1 / 3, 2 / 3, 1.0])


def test_binary_roc_plots_the_positive_class_and_skips_absent_classes():
    figure = plot_roc_curves([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.8, 0.9], ["not_covid", "covid"])
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["covid (AUC = 0.833)", "chance"]
    absent = plot_roc_curves([0, 0, 1], np.eye(3)[[0, 0, 1]], NAMES)
    legend = [t.get_text() for t in absent.axes[0].get_legend().get_texts()]
    assert [entry.split(" ")[0] for entry in legend] == ["normal", "cap", "chance"]


def test_reliability_points_by_hand():
    scores = np.array([0.05, 0.15, 0.12, 0.95, 1.0])
    positive = np.array([False, True, False, True, True])
    points = reliability_points(positive, scores, n_bins=10)
    assert points["bin"].tolist() == [0, 1, 9]
    assert points["count"].tolist() == [1, 2, 2]
    assert points["mean_predicted"].tolist() == pytest.approx([0.05, 0.135, 0.975])
    assert points["observed"].tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_calibration_figure():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 50)
    figure = plot_calibration(y_true, rng.random(50), ["not_covid", "covid"], n_bins=5)
    assert len(figure.axes) == 2
    _renders(figure)


def test_binary_roc_marks_the_operating_point():
    figure = plot_roc_curves(
        [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8], ["not_covid", "covid"], (0.5, 0.5), "threshold 0.5"
    )
    marker = [line for line in figure.axes[0].get_lines() if line.get_label() == "threshold 0.5"]
    assert len(marker) == 1
    assert marker[0].get_xydata().tolist() == [[0.5, 0.5]]
    _renders(figure)


def test_learning_curves_mark_the_best_epoch():
    figure = plot_learning_curves({"loss": [1.0, 0.5, 0.6], "val_loss": [1.1, 0.7, 0.9]}, 2)
    lines = figure.axes[0].get_lines()
    best = [line for line in lines if line.get_label() == "best epoch 2"]
    assert len(best) == 1 and list(best[0].get_xdata()) == [2, 2]


def test_learning_curves_pair_train_and_validation():
    history = {
        "loss": [1.0, 0.7, 0.5],
        "accuracy": [0.5, 0.7, 0.8],
        "val_loss": [1.1, 0.9, 0.8],
        "val_accuracy": [0.4, 0.6, 0.7],
        "auc": [0.6, 0.7, 0.8],
    }
    figure = plot_learning_curves(history)
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in visible] == ["loss", "accuracy", "auc"]
    loss_lines = visible[0].get_lines()
    assert [line.get_label() for line in loss_lines] == ["train", "validation"]
    assert loss_lines[1].get_ydata().tolist() == [1.1, 0.9, 0.8]
    assert loss_lines[0].get_xdata().tolist() == [1, 2, 3]
    assert len(visible[2].get_lines()) == 1

    class History:
        history = {"loss": [0.3]}

    assert plot_learning_curves(History()).axes[0].get_title() == "loss"
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curves({})


def test_heatmap_grid_layout_and_overlays():
    images = [np.full((16, 16), 100, dtype=np.uint8)] * 3 + [np.zeros((16, 16, 3), np.uint8)]
    overlays = [np.ones((4, 4)), None, np.zeros((16, 16, 3), np.uint8), np.eye(4)]
    titles = ["covid 0.91", "normal 0.80", "lime", "cap 0.55"]
    figure = heatmap_grid(images, overlays, titles, ncols=3)
    axes = figure.axes
    assert len(axes) == 6  # 2 rows x 3 columns
    assert [axis.get_visible() for axis in axes] == [True] * 4 + [False] * 2
    assert [axis.get_title() for axis in axes[:4]] == titles
    assert [len(axis.get_images()) for axis in axes[:4]] == [2, 1, 1, 2]
    # The coarse heatmap is stretched over the full image.
    assert axes[0].get_images()[1].get_extent() == [0, 16, 16, 0]
    _renders(figure)


def test_heatmap_grid_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="2 images, 1 overlays"):
        heatmap_grid([np.zeros((4, 4))] * 2, [None], ["a", "b"])
