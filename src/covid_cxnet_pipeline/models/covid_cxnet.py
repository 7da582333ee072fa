"""COVID-CXNet and the ``build_classifier`` factory for every classifier the pipeline trains.

All classifiers are flat functional models (no nested backbone), take raw [0, 255] pixels, scale
them internally, and end in a Dense layer named ``predictions``: one sigmoid unit for two classes
(P(class 1)), a softmax over ``n_classes`` otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import keras

from covid_cxnet_pipeline.models.base_cnn import build_base_cnn, classification_output
from covid_cxnet_pipeline.models.densenet import (
    DENSENET121_BLOCKS,
    Initialisation,
    resolve_initialisation,
)

logger = logging.getLogger(__name__)

BACKBONES = ("base_cnn", "densenet121", "covid_cxnet")


class ClassifierBuild(NamedTuple):
    """A built classifier and the initialisation it really got (for MLflow).

    Attributes:
        model: the uncompiled model.
        init_requested: the ``init`` asked for.
        init_used: ``"chexnet"``, ``"imagenet"`` or ``"random"``.
        init_reason: where the weights came from, or why the requested ones were not used.
    """

    model: keras.Model
    init_requested: str
    init_used: str
    init_reason: str


def build_densenet_classifier(
    initialisation: Initialisation, n_classes: int, name: str = "densenet121_classifier"
) -> keras.Model:
    """Plain DenseNet-121 classifier: backbone, global average pooling, output layer.

    Args:
        initialisation: the backbone from ``resolve_initialisation``.
        n_classes: number of classes.
        name: model name.

    Returns:
        The model.
    """
    backbone = initialisation.backbone
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    return keras.Model(backbone.inputs[0], classification_output(x, n_classes), name=name)


def build_covid_cxnet(
    initialisation: Initialisation,
    n_classes: int,
    *,
    dense_units: int = 10,
    dropout: float = 0.2,
    name: str = "covid_cxnet",
) -> keras.Model:
    """COVID-CXNet: DenseNet-121 features, global average pooling, Dense(10, ReLU), dropout.

    Args:
        initialisation: the backbone from ``resolve_initialisation`` (CheXNet in the paper).
        n_classes: number of classes; 2 gives one sigmoid unit, more give a softmax.
        dense_units: units of the ReLU dense layer (10 in the paper).
        dropout: dropout rate before the output (0.2 in the paper).
        name: model name.

    Returns:
        The model; the last feature map is the backbone's ``relu`` layer.
    """
    backbone = initialisation.backbone
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    x = keras.layers.Dense(dense_units, activation="relu", name="fc_layer")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(backbone.inputs[0], classification_output(x, n_classes), name=name)


def input_shape_from_config(config: Mapping) -> tuple[int, int, int]:
    """``(height, width, channels)`` from ``input_size`` (int or [h, w]) and ``channels``.

    Args:
        config: the classifier configuration.

    Returns:
        The input shape.
    """
    size = config.get("input_size", 320)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return int(height), int(width), int(config.get("channels", 3))


def build_classifier(config: Mapping, weights_key: str = "weights") -> ClassifierBuild:
    """Build any of the paper's classifiers from configuration.

    Args:
        config: keys (defaults in brackets):
            ``backbone``: ``"base_cnn"``, ``"densenet121"`` or ``"covid_cxnet"``;
            ``input_size`` [320]: int or ``[height, width]``; ``channels`` [3];
            ``n_classes``: 2 (binary, one sigmoid unit) or more (softmax);
            ``init`` ["chexnet"]: ``"chexnet"``, ``"imagenet"`` or ``"random"`` (DenseNet-based
            backbones only); ``allow_init_fallback`` [false]: use random weights (and report
            it) when the requested weights file is absent; ``weights``: ``{"chexnet": {path, url,
            sha256, connect_timeout_s, read_timeout_s, max_bytes}, "imagenet": {path, url,
            sha256}}``; ``dense_units`` [10] and ``dropout`` [0.2] (COVID-CXNet head);
            ``input_scaling`` ["imagenet" for DenseNet-based with 3 channels, else "unit"];
            ``densenet_blocks`` [6, 12, 24, 16]; ``base_cnn``: keyword arguments of
            ``build_base_cnn`` (``conv_layers``, ``filters``, ``kernel_size``, ``strides``,
            ``dense_units``); ``seed``: when set, Keras' global seed is set before building so
            the initial weights repeat.
        weights_key: where ``config["weights"]`` sits in the user's configuration, for
            messages (e.g. ``"train.weights"``).

    Returns:
        ``(model, init_requested, init_used, init_reason)``.

    Raises:
        ValueError: unknown backbone or inconsistent settings.
        WeightsUnavailableError: pretrained weights unusable, or absent and fallback not
            allowed (``allow_init_fallback`` covers only an absent file).
    """
    backbone_name = config.get("backbone", "covid_cxnet")
    if backbone_name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone_name!r}")
    input_shape = input_shape_from_config(config)
    n_classes = int(config["n_classes"])
    if config.get("seed") is not None:
        keras.utils.set_random_seed(int(config["seed"]))
    if backbone_name == "base_cnn":
        model = build_base_cnn(
            input_shape,
            n_classes,
            input_scaling=config.get("input_scaling", "unit"),
            **dict(config.get("base_cnn") or {}),
        )
        return ClassifierBuild(model, "random", "random", "base CNN is always trained from scratch")
    requested = config.get("init", "chexnet")
    default_scaling = "imagenet" if input_shape[-1] == 3 else "unit"
    initialisation = resolve_initialisation(
        requested,
        config.get("weights"),
        bool(config.get("allow_init_fallback", False)),
        input_shape=input_shape,
        blocks=_blocks(config.get("densenet_blocks")),
        input_scaling=config.get("input_scaling", default_scaling),
        config_key=weights_key,
    )
    if backbone_name == "densenet121":
        model = build_densenet_classifier(initialisation, n_classes)
    else:
        model = build_covid_cxnet(
            initialisation,
            n_classes,
            dense_units=int(config.get("dense_units", 10)),
            dropout=float(config.get("dropout", 0.2)),
        )
    logger.info(
        "Built %s for %d classes at %s, init %s",
        backbone_name,
        n_classes,
        input_shape,
        initialisation.describe(),
    )
    return ClassifierBuild(model, requested, initialisation.used, initialisation.reason)


def _blocks(value: Sequence[int] | None) -> tuple[int, ...]:
    return DENSENET121_BLOCKS if value is None else tuple(int(block) for block in value)
