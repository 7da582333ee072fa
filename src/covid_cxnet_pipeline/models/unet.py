"""U-Net for lung segmentation (Ronneberger et al. 2015) with configurable depth and width."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras

from covid_cxnet_pipeline.models.base_cnn import scaled_input
from covid_cxnet_pipeline.models.metrics import BceDiceLoss, dice_coefficient, iou_coefficient

logger = logging.getLogger(__name__)

MASK_OUTPUT_NAME = "lung_mask"


def build_unet(
    input_shape: Sequence[int] = (256, 256, 1),
    levels: int = 4,
    base_filters: int = 16,
    *,
    batch_norm: bool = True,
    dropout: float = 0.0,
    input_scaling: str = "unit",
    name: str = "unet",
) -> keras.Model:
    """U-Net: ``levels`` down-sampling steps, filters doubling per level, sigmoid mask output.

    Args:
        input_shape: ``(height, width, channels)``; height and width must be divisible by
            ``2**levels`` (None for any such size).
        levels: number of 2x down-sampling steps (the bottleneck sits below them).
        base_filters: filters of the first level; level ``k`` has ``base_filters * 2**k``.
        batch_norm: batch normalisation after each convolution.
        dropout: dropout rate in the bottleneck (0 disables it).
        input_scaling: ``"unit"`` expects [0, 255] pixels and divides by 255; ``"none"``
            expects inputs already scaled.
        name: model name.

    Returns:
        The uncompiled model; output ``lung_mask`` is ``(height, width, 1)`` probabilities.
    """
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    for size in input_shape[:2]:
        if size is not None and int(size) % (2**levels):
            raise ValueError(
                f"U-Net input size {tuple(input_shape[:2])} must be divisible by 2**levels = "
                f"{2**levels}; change the segmentation input_size or levels"
            )
    inputs, x = scaled_input(input_shape, input_scaling)
    skips = []
    for level in range(levels):
        x = _conv_block(x, base_filters * 2**level, batch_norm, f"down{level + 1}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = _conv_block(x, base_filters * 2**levels, batch_norm, "bottleneck")
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(levels)):
        filters = base_filters * 2**level
        x = keras.layers.Conv2DTranspose(
            filters, 2, strides=2, padding="same", name=f"up{level + 1}_transpose"
        )(x)
        x = keras.layers.Concatenate(name=f"up{level + 1}_concat")([x, skips[level]])
        x = _conv_block(x, filters, batch_norm, f"up{level + 1}")
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name=MASK_OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=name)
    logger.info(
        "Built U-Net: %d levels, %d base filters, input %s",
        levels,
        base_filters,
        tuple(input_shape),
    )
    return model


def _conv_block(x, filters: int, batch_norm: bool, prefix: str):
    for index in (1, 2):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=not batch_norm, name=f"{prefix}_conv{index}"
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{prefix}_bn{index}")(x)
        x = keras.layers.Activation("relu", name=f"{prefix}_relu{index}")(x)
    return x


def compile_unet(
    model: keras.Model,
    learning_rate: float = 1e-3,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
) -> keras.Model:
    """Compile with Adam, BCE + Dice loss, and thresholded Dice and IoU metrics.

    Args:
        model: from ``build_unet``.
        learning_rate: Adam learning rate.
        bce_weight: weight of binary cross-entropy in the loss.
        dice_weight: weight of ``1 - soft Dice`` in the loss.

    Returns:
        The same model, compiled (metrics logged as ``dice_coefficient``, ``iou_coefficient``).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=BceDiceLoss(bce_weight=bce_weight, dice_weight=dice_weight),
        metrics=[dice_coefficient, iou_coefficient],
    )
    return model
