"""Dice and IoU for lung masks: NumPy versions for evaluation, Keras versions for training.

Conventions: masks are foreground probabilities or {0, 1}; when both the true and the predicted
mask are empty the overlap is perfect (1.0), so empty-vs-empty images do not drag scores down.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

_PACKAGE = "covid_cxnet"


def dice_score(true_mask: np.ndarray, pred_mask: np.ndarray, threshold: float = 0.5) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|) of two binary masks.

    Args:
        true_mask: ground truth; values > ``threshold`` are foreground.
        pred_mask: prediction (probabilities or binary), same shape.
        threshold: binarisation threshold for both masks.

    Returns:
        Dice in [0, 1]; 1.0 when both masks are empty.
    """
    truth, pred = _binarise_pair(true_mask, pred_mask, threshold)
    total = truth.sum() + pred.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(truth, pred).sum() / total)


def iou_score(true_mask: np.ndarray, pred_mask: np.ndarray, threshold: float = 0.5) -> float:
    """Intersection over union |A∩B| / |A∪B| of two binary masks.

    Args:
        true_mask: ground truth; values > ``threshold`` are foreground.
        pred_mask: prediction (probabilities or binary), same shape.
        threshold: binarisation threshold for both masks.

    Returns:
        IoU in [0, 1]; 1.0 when both masks are empty.
    """
    truth, pred = _binarise_pair(true_mask, pred_mask, threshold)
    union = np.logical_or(truth, pred).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(truth, pred).sum() / union)


def _binarise_pair(
    true_mask: np.ndarray, pred_mask: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    true_mask, pred_mask = np.asarray(true_mask), np.asarray(pred_mask)
    if true_mask.shape != pred_mask.shape:
        raise ValueError(f"mask shapes differ: {true_mask.shape} vs {pred_mask.shape}")
    return true_mask > threshold, pred_mask > threshold


@keras.saving.register_keras_serializable(package=_PACKAGE)
def soft_dice(y_true, y_pred, smooth: float = 1.0):
    """Soft Dice per image on probabilities (differentiable), averaged over the batch.

    Args:
        y_true: ``(batch, H, W, 1)`` true masks in {0, 1}.
        y_pred: ``(batch, H, W, 1)`` predicted probabilities.
        smooth: added to numerator and denominator so empty masks score 1, not 0/0.

    Returns:
        Scalar tensor.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return ops.mean((2.0 * intersection + smooth) / (total + smooth))


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_coefficient(y_true, y_pred):
    """Training metric: Dice of the masks thresholded at 0.5, per image, batch mean."""
    return _thresholded_overlap(y_true, y_pred, iou=False)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def iou_coefficient(y_true, y_pred):
    """Training metric: IoU of the masks thresholded at 0.5, per image, batch mean."""
    return _thresholded_overlap(y_true, y_pred, iou=True)


def _thresholded_overlap(y_true, y_pred, iou: bool):
    truth = ops.cast(y_true > 0.5, "float32")
    pred = ops.cast(y_pred > 0.5, "float32")
    axes = tuple(range(1, len(y_pred.shape)))
    intersection = ops.sum(truth * pred, axis=axes)
    total = ops.sum(truth, axis=axes) + ops.sum(pred, axis=axes)
    denominator = total - intersection if iou else total
    numerator = intersection if iou else 2.0 * intersection
    # Both masks empty: perfect agreement, as in the NumPy versions.
    score = ops.where(denominator > 0, numerator / ops.maximum(denominator, 1.0), 1.0)
    return ops.mean(score)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BceDiceLoss(keras.losses.Loss):
    """``bce_weight * binary cross-entropy + dice_weight * (1 - soft Dice)`` for lung masks."""

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        name: str = "bce_dice",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.smooth = smooth

    def call(self, y_true, y_pred):
        """Per-image loss (Keras reduces over the batch)."""
        y_true = ops.cast(y_true, y_pred.dtype)
        axes = tuple(range(1, len(y_pred.shape)))
        bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=axes[:-1])
        intersection = ops.sum(y_true * y_pred, axis=axes)
        total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth)
        return self.bce_weight * bce + self.dice_weight * (1.0 - dice)

    def get_config(self) -> dict:
        """Serialisable configuration."""
        return {
            **super().get_config(),
            "bce_weight": self.bce_weight,
            "dice_weight": self.dice_weight,
            "smooth": self.smooth,
        }
