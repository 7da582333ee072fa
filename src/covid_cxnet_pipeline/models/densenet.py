"""DenseNet-121 feature extractor, initialised from ImageNet, from CheXNet or at random.

``resolve_initialisation`` builds the backbone with the requested weights and says which
initialisation was actually used, so a run without reachable weights can fall back to random
weights and record that, instead of silently training something else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import keras

from covid_cxnet_pipeline.models.base_cnn import scaled_input

logger = logging.getLogger(__name__)

INITIALISATIONS = ("chexnet", "imagenet", "random")
DENSENET121_BLOCKS = (6, 12, 24, 16)
LAST_FEATURE_LAYER = "relu"
IMAGENET_NOTOP_FILE = "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained, verified or loaded.

    Attributes:
        absent: True only when the weights file is simply not there and cannot be fetched (no
            file and no URL, or a download that failed for a reason other than a checksum
            mismatch). Only then may ``resolve_initialisation`` fall back to random weights: a
            file that is present but wrong, unverifiable or unloadable always stops the run.
    """

    def __init__(self, message: str, *, absent: bool = False) -> None:
        super().__init__(message)
        self.absent = absent


class Initialisation(NamedTuple):
    """A built backbone and how it was initialised.

    Attributes:
        backbone: the DenseNet feature extractor (weights already set).
        used: ``"chexnet"``, ``"imagenet"`` or ``"random"``: what the weights really are.
        reason: where the weights came from, or why the requested ones were not used.
    """

    backbone: keras.Model
    used: str
    reason: str

    def describe(self) -> str:
        """One line for logs and MLflow, e.g. ``random (chexnet weights unavailable: ...)``."""
        return f"{self.used} ({self.reason})"


def build_densenet_backbone(
    input_shape: Sequence[int],
    blocks: Sequence[int] = DENSENET121_BLOCKS,
    weights: str | None = None,
    input_scaling: str = "none",
) -> keras.Model:
    """A DenseNet without its top: output is the last ReLU feature map (named ``relu``).

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32.
        blocks: dense-block sizes; ``(6, 12, 24, 16)`` is DenseNet-121, the public Keras
            application. Other sizes (tests use ``(1, 1, 1, 1)``) use Keras' generic builder.
        weights: None (random), ``"imagenet"`` (Keras downloads them) or a weights file path.
        input_scaling: weightless input scaling placed before the first convolution (see
            ``base_cnn.input_scaling_layer``); it does not disturb order-based weight loading.

    Returns:
        A flat model from the ``image`` input to the ``relu`` feature maps, named
        ``densenet121`` (or ``densenet`` for other block sizes).
    """
    blocks = tuple(int(block) for block in blocks)
    inputs, scaled = scaled_input(input_shape, input_scaling)
    if blocks == DENSENET121_BLOCKS:
        backbone = keras.applications.DenseNet121(
            include_top=False, weights=weights, input_tensor=scaled, input_shape=tuple(input_shape)
        )
    else:
        if weights is not None:
            raise ValueError(f"pretrained weights exist only for DenseNet-121 blocks, not {blocks}")
        # The generic builder is not exported by keras.applications; only test models use it.
        from keras.src.applications.densenet import DenseNet

        backbone = DenseNet(
            list(blocks),
            include_top=False,
            weights=None,
            input_tensor=scaled,
            input_shape=tuple(input_shape),
        )
    # Rewrap so the model's input is the single tensor, not the one-element list Keras builds.
    return keras.Model(inputs, backbone.output, name=backbone.name)


def build_imagenet_backbone(
    input_shape: Sequence[int],
    imagenet_cfg: Mapping | None = None,
    input_scaling: str = "none",
    config_key: str = "weights.imagenet",
) -> keras.Model:
    """DenseNet-121 with ImageNet weights from a configured file, or Keras' own download.

    Args:
        input_shape: ``(height, width, 3)``.
        imagenet_cfg: ``weights.imagenet`` block; with ``path`` (and optionally ``url``,
            ``sha256``) the file ``densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5`` is
            used from there; without, Keras fetches it into ``~/.keras/models``.
        input_scaling: see ``build_densenet_backbone``.
        config_key: the configuration block, for messages (e.g. ``"train.weights.imagenet"``).

    Returns:
        The backbone.

    Raises:
        WeightsUnavailableError: the weights cannot be fetched (e.g. offline) or loaded;
            ``absent`` when no file is configured and Keras' own download failed.
    """
    imagenet_cfg = imagenet_cfg or {}
    if imagenet_cfg.get("path"):
        from covid_cxnet_pipeline.models.chexnet import fetch_weights_file

        weights = str(
            fetch_weights_file(
                imagenet_cfg, "ImageNet", require_sha256=False, config_key=config_key
            )
        )
    else:
        weights = "imagenet"
    try:
        return build_densenet_backbone(input_shape, weights=weights, input_scaling=input_scaling)
    except WeightsUnavailableError:
        raise
    except Exception as error:  # Keras raises a bare Exception for a failed download
        raise WeightsUnavailableError(
            f"DenseNet-121 ImageNet weights could not be loaded from {weights!r}: {error}. "
            f"Offline, download {IMAGENET_NOTOP_FILE} elsewhere and set {config_key}.path "
            f"(and {config_key}.sha256) to it.",
            # Keras' own download (no configured file) failing means the weights are not
            # there; a configured file that does not load is present but unusable.
            absent=weights == "imagenet",
        ) from error


def resolve_initialisation(
    requested: str,
    weights_cfg: Mapping | None,
    allow_fallback: bool,
    *,
    input_shape: Sequence[int],
    blocks: Sequence[int] = DENSENET121_BLOCKS,
    input_scaling: str = "none",
    config_key: str = "weights",
) -> Initialisation:
    """Build the DenseNet backbone with the requested initialisation, falling back if allowed.

    Args:
        requested: ``"chexnet"``, ``"imagenet"`` or ``"random"``.
        weights_cfg: the ``weights`` block: ``{"chexnet": {path, url, sha256, ...},
            "imagenet": {path, url, sha256}}`` (see ``chexnet.fetch_weights_file``).
        allow_fallback: when the weights file is absent (``WeightsUnavailableError.absent``),
            use random weights (and say so in ``used``/``reason``) instead of raising. A file
            that is present but fails its sha256, has none configured or does not load
            always raises.
        input_shape: ``(height, width, channels)``; pretrained weights need 3 channels.
        blocks: dense-block sizes (DenseNet-121 unless testing).
        input_scaling: weightless input scaling inside the backbone (see
            ``base_cnn.input_scaling_layer``).
        config_key: where ``weights_cfg`` sits in the configuration, for messages (e.g.
            ``"train.weights"`` -> ``train.weights.chexnet.sha256``).

    Returns:
        ``(backbone, used, reason)``.

    Raises:
        WeightsUnavailableError: weights unusable, or absent and ``allow_fallback`` is false.
        ValueError: unknown initialisation, or pretrained weights with channels != 3.
    """
    if requested not in INITIALISATIONS:
        raise ValueError(f"init must be one of {INITIALISATIONS}, got {requested!r}")
    if requested == "random":
        return Initialisation(
            build_densenet_backbone(input_shape, blocks, input_scaling=input_scaling),
            "random",
            "requested",
        )
    if int(input_shape[-1]) != 3:
        raise ValueError(
            f"{requested} weights need 3 input channels, got input shape {tuple(input_shape)}; "
            "use channels: 3 or init: random"
        )
    weights_cfg = weights_cfg or {}
    try:
        if requested == "chexnet":
            from covid_cxnet_pipeline.models.chexnet import (
                fetch_weights_file,
                load_chexnet_backbone,
            )

            chexnet_cfg = weights_cfg.get("chexnet") or {}
            path = fetch_weights_file(chexnet_cfg, "CheXNet", config_key=f"{config_key}.chexnet")
            backbone = load_chexnet_backbone(path, input_shape, blocks, input_scaling)
            digest = str(chexnet_cfg.get("sha256")).lower()
            return Initialisation(backbone, "chexnet", f"weights from {path} (sha256 {digest})")
        if tuple(blocks) != DENSENET121_BLOCKS:
            raise ValueError(f"ImageNet weights exist only for DenseNet-121, not blocks {blocks}")
        backbone = build_imagenet_backbone(
            input_shape, weights_cfg.get("imagenet"), input_scaling, f"{config_key}.imagenet"
        )
        source = (weights_cfg.get("imagenet") or {}).get("path") or "Keras download"
        return Initialisation(backbone, "imagenet", f"weights from {source}")
    except WeightsUnavailableError as error:
        if not allow_fallback:
            raise
        if not error.absent:
            logger.error(
                "The fallback to random weights applies only to an absent weights file; the "
                "%s weights are present but unusable: fix %s.%s or set init: random",
                requested,
                config_key,
                requested,
            )
            raise
        reason = f"{requested} weights unavailable: {error} (file absent: random weights used)"
        logger.warning("Falling back to random initialisation: %s", reason)
        backbone = build_densenet_backbone(input_shape, blocks, input_scaling=input_scaling)
        return Initialisation(backbone, "random", reason)
