"""The paper's base CNN, plus the input scaling and classification output shared by all classifiers.

Every classifier takes raw pixel values in [0, 255] (float or uint8 cast to float) and scales them
itself, so training, ``predict`` and Grad-CAM all feed the same thing: the model-ready PNG pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras

logger = logging.getLogger(__name__)

OUTPUT_LAYER_NAME = "predictions"
INPUT_SCALINGS = ("unit", "imagenet", "none")
# ImageNet statistics used by keras.applications.densenet.preprocess_input and by CheXNet-Keras.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def output_units(n_classes: int) -> int:
    """Units of the output layer: 1 sigmoid unit for two classes, else one softmax unit per class.

    Args:
        n_classes: number of classes (>= 2).

    Returns:
        1 when ``n_classes == 2`` (the unit is P(positive class, index 1)), else ``n_classes``.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    return 1 if n_classes == 2 else n_classes


def classification_output(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """The output layer, named ``predictions``: sigmoid(1) for binary, softmax(n) for multiclass.

    Args:
        x: the features feeding the output layer.
        n_classes: number of classes (2 gives a single sigmoid unit).

    Returns:
        The output tensor.
    """
    units = output_units(n_classes)
    activation = "sigmoid" if units == 1 else "softmax"
    return keras.layers.Dense(units, activation=activation, name=OUTPUT_LAYER_NAME)(x)


def input_scaling_layer(scaling: str, channels: int) -> keras.layers.Layer | None:
    """A weightless layer mapping [0, 255] pixels to what the network expects.

    Args:
        scaling: ``"unit"`` (divide by 255), ``"imagenet"`` (divide by 255, then subtract the
            ImageNet mean and divide by its std per channel, as DenseNet/CheXNet were trained;
            needs 3 channels) or ``"none"`` (inputs are used as given).
        channels: number of input channels.

    Returns:
        The layer, or None for ``"none"``.
    """
    if scaling == "none":
        return None
    if scaling == "unit":
        return keras.layers.Rescaling(1.0 / 255.0, name="input_scaling")
    if scaling == "imagenet":
        if channels != 3:
            raise ValueError(
                f"input_scaling 'imagenet' needs 3 channels, got {channels}; use 'unit' instead"
            )
        scale = [1.0 / (255.0 * std) for std in _IMAGENET_STD]
        offset = [-mean / std for mean, std in zip(_IMAGENET_MEAN, _IMAGENET_STD, strict=True)]
        return keras.layers.Rescaling(scale, offset=offset, name="input_scaling")
    raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}, got {scaling!r}")


def scaled_input(
    input_shape: Sequence[int], scaling: str
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """An ``Input`` and the tensor after input scaling.

    Args:
        input_shape: ``(height, width, channels)``.
        scaling: see ``input_scaling_layer``.

    Returns:
        ``(inputs, scaled)``; ``scaled is inputs`` for ``"none"``.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    layer = input_scaling_layer(scaling, int(input_shape[-1]))
    return inputs, (layer(inputs) if layer is not None else inputs)


def build_base_cnn(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    conv_layers: int = 5,
    filters: int = 32,
    kernel_size: int = 3,
    strides: int = 2,
    dense_units: Sequence[int] = (10, 10),
    input_scaling: str = "unit",
    name: str = "base_cnn",
) -> keras.Model:
    """The paper's base CNN: stacked 3x3 ReLU convolutions, flatten, small dense layers.

    No batch normalisation and no pooling, as in the paper; the convolutions downsample with
    stride 2 instead (as the seed repository's base model does), which keeps the flattened
    vector small (9x9x32 at 320x320) rather than tens of millions of dense weights.

    Args:
        input_shape: ``(height, width, channels)``.
        n_classes: number of classes; 2 gives one sigmoid unit, more give a softmax.
        conv_layers: number of convolutions (named ``conv_layer1`` ...).
        filters: filters per convolution.
        kernel_size: convolution kernel size.
        strides: convolution strides.
        dense_units: units of the ReLU dense layers after flattening (named ``fc_layer1`` ...).
        input_scaling: see ``input_scaling_layer``.
        name: model name.

    Returns:
        The uncompiled model; its output layer is named ``predictions``.
    """
    _check_conv_stack_fits(input_shape, conv_layers, kernel_size, strides)
    inputs, x = scaled_input(input_shape, input_scaling)
    for index in range(1, conv_layers + 1):
        x = keras.layers.Conv2D(
            filters, kernel_size, strides=strides, activation="relu", name=f"conv_layer{index}"
        )(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for index, units in enumerate(dense_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"fc_layer{index}")(x)
    model = keras.Model(inputs, classification_output(x, n_classes), name=name)
    logger.info("Built %s: input %s, %d classes", name, tuple(input_shape), n_classes)
    return model


def _check_conv_stack_fits(
    input_shape: Sequence[int], conv_layers: int, kernel_size: int, strides: int
) -> None:
    """Fail early, naming the sizes, when 'valid' convolutions would shrink the image to nothing."""
    sizes = [int(input_shape[0]), int(input_shape[1])]
    for _ in range(conv_layers):
        sizes = [(size - kernel_size) // strides + 1 for size in sizes]
        if min(sizes) < 1:
            raise ValueError(
                f"input size {tuple(input_shape[:2])} is too small for {conv_layers} convolutions "
                f"of kernel {kernel_size} and stride {strides}; use a larger input_size or fewer "
                "conv_layers / smaller strides"
            )
