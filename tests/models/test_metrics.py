"""Dice and IoU: NumPy and Keras versions against hand-computed values, and the BCE + Dice loss."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from covid_cxnet_pipeline.models.metrics import (
    BceDiceLoss,
    dice_coefficient,
    dice_score,
    iou_coefficient,
    iou_score,
    soft_dice,
)

TRUTH = np.array([[1, 1], [0, 0]], dtype=np.float32)
PRED = np.array([[1, 0], [1, 0]], dtype=np.float32)


def test_numpy_known_values():
    assert dice_score(TRUTH, PRED) == pytest.approx(0.5)  # 2*1 / (2 + 2)
    assert iou_score(TRUTH, PRED) == pytest.approx(1 / 3)  # 1 / 3
    assert dice_score(TRUTH, TRUTH) == 1.0 and iou_score(TRUTH, 1 - TRUTH) == 0.0
    empty = np.zeros((2, 2))
    assert dice_score(empty, empty) == 1.0 and iou_score(empty, empty) == 1.0
    assert dice_score(TRUTH, PRED * 0.7) == pytest.approx(0.5)  # probabilities are thresholded


def test_numpy_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        dice_score(TRUTH, np.zeros((3, 3)))


def test_keras_metrics_match_numpy_per_image_mean():
    y_true = np.stack([TRUTH, np.zeros((2, 2), np.float32)])[..., None]
    y_pred = np.stack([PRED, np.zeros((2, 2), np.float32)])[..., None]
    # Image 1: dice 0.5, IoU 1/3; image 2 empty vs empty: 1.0 each.
    assert float(dice_coefficient(y_true, y_pred)) == pytest.approx((0.5 + 1.0) / 2)
    assert float(iou_coefficient(y_true, y_pred)) == pytest.approx((1 / 3 + 1.0) / 2)


def test_soft_dice_known_value():
    y_true = TRUTH[None, ..., None]
    y_pred = np.full_like(y_true, 0.5)
    # (2 * 1.0 + 1) / (2 + 2 + 1) = 0.6
    assert float(soft_dice(y_true, y_pred)) == pytest.approx(0.6)


def test_bce_dice_loss_known_value():
    y_true = TRUTH[None, ..., None]
    y_pred = np.full_like(y_true, 0.5)
    loss = BceDiceLoss()(y_true, y_pred)
    assert float(loss) == pytest.approx(math.log(2) + (1 - 0.6), rel=1e-4)
    dice_only = BceDiceLoss(bce_weight=0.0)(y_true, y_pred)
    assert float(dice_only) == pytest.approx(0.4, rel=1e-4)


def test_loss_round_trips_through_keras_serialisation():
    restored = keras.losses.deserialize(keras.losses.serialize(BceDiceLoss(bce_weight=0.5)))
    assert isinstance(restored, BceDiceLoss) and restored.bce_weight == 0.5
