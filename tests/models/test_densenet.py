"""DenseNet backbone and initialisation resolution (random, ImageNet file, offline ImageNet)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from covid_cxnet_pipeline.download import sha256_file
from covid_cxnet_pipeline.models import densenet
from covid_cxnet_pipeline.models.densenet import (
    WeightsUnavailableError,
    build_densenet_backbone,
    resolve_initialisation,
)

SHAPE = (32, 32, 3)
TINY = (1, 1, 1, 1)


def test_backbone_ends_in_relu_feature_maps():
    backbone = build_densenet_backbone(SHAPE, TINY, input_scaling="unit")
    assert backbone.layers[-1].name == "relu"
    assert len(backbone.output_shape) == 4
    assert backbone.get_layer("input_scaling") is not None
    assert len(backbone.inputs) == 1


def test_random_init_reports_random():
    init = resolve_initialisation("random", None, False, input_shape=SHAPE, blocks=TINY)
    assert (init.used, init.reason) == ("random", "requested")


def test_unknown_init_and_grayscale_pretrained_are_config_errors():
    with pytest.raises(ValueError, match="init must be one of"):
        resolve_initialisation("chexpert", None, True, input_shape=SHAPE, blocks=TINY)
    with pytest.raises(ValueError, match="need 3 input channels"):
        resolve_initialisation("chexnet", None, True, input_shape=(32, 32, 1), blocks=TINY)


def test_imagenet_from_configured_file(tmp_path, keras2_weights_writer):
    reference = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=SHAPE)
    shape = reference.get_layer("conv1_conv").kernel.shape
    kernel = np.random.default_rng(1).normal(size=shape).astype("float32")
    reference.get_layer("conv1_conv").kernel.assign(kernel)
    path = keras2_weights_writer(reference, tmp_path / densenet.IMAGENET_NOTOP_FILE)
    cfg = {"imagenet": {"path": str(path), "sha256": sha256_file(path)}}
    init = resolve_initialisation("imagenet", cfg, False, input_shape=SHAPE)
    assert init.used == "imagenet" and str(path) in init.reason
    np.testing.assert_array_equal(init.backbone.get_layer("conv1_conv").get_weights()[0], kernel)


def test_offline_imagenet_download_is_reported(monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: Name unknown")

    monkeypatch.setattr(keras.applications, "DenseNet121", offline)
    with pytest.raises(WeightsUnavailableError, match="weights.imagenet.path") as caught:
        resolve_initialisation("imagenet", {}, False, input_shape=SHAPE)
    assert "URL fetch failure" in str(caught.value) and caught.value.absent
    monkeypatch.undo()
    monkeypatch.setattr(densenet, "build_imagenet_backbone", _raise_absent)
    init = resolve_initialisation("imagenet", {}, True, input_shape=SHAPE)
    assert init.used == "random" and "imagenet weights unavailable: offline" in init.reason
    # Weights that are there but unusable are never replaced by random ones.
    monkeypatch.setattr(densenet, "build_imagenet_backbone", _raise_unusable)
    with pytest.raises(WeightsUnavailableError, match="corrupt"):
        resolve_initialisation("imagenet", {}, True, input_shape=SHAPE)


def _raise_absent(*args, **kwargs):
    raise WeightsUnavailableError("offline", absent=True)


def _raise_unusable(*args, **kwargs):
    raise WeightsUnavailableError("corrupt")


def test_imagenet_needs_densenet121_blocks():
    with pytest.raises(ValueError, match="only for DenseNet-121"):
        build_densenet_backbone(SHAPE, TINY, weights="imagenet")
