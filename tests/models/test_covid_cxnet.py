"""build_classifier: every backbone's head for binary and multiclass, init reporting, seeds."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from covid_cxnet_pipeline.models.covid_cxnet import build_classifier, input_shape_from_config
from covid_cxnet_pipeline.models.densenet import WeightsUnavailableError

TINY = [1, 1, 1, 1]


def _config(backbone: str, n_classes: int, **extra) -> dict:
    size = 64 if backbone == "base_cnn" else 32
    return {
        "backbone": backbone,
        "input_size": size,
        "channels": 3,
        "n_classes": n_classes,
        "init": "random",
        "densenet_blocks": TINY,
        **extra,
    }


@pytest.mark.parametrize("backbone", ["base_cnn", "densenet121", "covid_cxnet"])
@pytest.mark.parametrize(
    ("n_classes", "units", "activation"), [(2, 1, "sigmoid"), (3, 3, "softmax")]
)
def test_heads(backbone, n_classes, units, activation):
    build = build_classifier(_config(backbone, n_classes))
    model = build.model
    head = model.get_layer("predictions")
    assert model.output_shape == (None, units)
    assert (head.units, head.activation.__name__) == (units, activation)
    assert model.input_shape[1:] == ((64, 64, 3) if backbone == "base_cnn" else (32, 32, 3))
    # Flat models: no nested backbone, so Grad-CAM can reach the feature maps directly.
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    out = model(np.zeros((2, *model.input_shape[1:]), "float32"))
    assert out.shape == (2, units)


def test_covid_cxnet_head_is_dense10_relu_dropout():
    model = build_classifier(_config("covid_cxnet", 3, dropout=0.3, dense_units=12)).model
    names = [layer.name for layer in model.layers[-4:]]
    assert names == ["avg_pool", "fc_layer", "dropout", "predictions"]
    assert model.get_layer("fc_layer").units == 12
    assert model.get_layer("fc_layer").activation.__name__ == "relu"
    assert model.get_layer("dropout").rate == pytest.approx(0.3)
    default = build_classifier(_config("covid_cxnet", 2)).model
    assert default.get_layer("fc_layer").units == 10
    assert default.get_layer("dropout").rate == pytest.approx(0.2)


def test_densenet_inputs_are_scaled_imagenet_style_by_default():
    model = build_classifier(_config("covid_cxnet", 2)).model
    scale = model.get_layer("input_scaling")
    assert np.allclose(np.asarray(scale.scale), 1 / (255 * np.array([0.229, 0.224, 0.225])))
    gray = build_classifier(_config("densenet121", 2, channels=1)).model
    assert np.isclose(float(gray.get_layer("input_scaling").scale), 1 / 255)


def test_same_seed_same_initial_weights():
    first = build_classifier(_config("covid_cxnet", 2, seed=5)).model.get_weights()
    second = build_classifier(_config("covid_cxnet", 2, seed=5)).model.get_weights()
    other = build_classifier(_config("covid_cxnet", 2, seed=6)).model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_unavailable_chexnet_falls_back_and_says_so(tmp_path):
    weights = {"chexnet": {"path": str(tmp_path / "missing.h5"), "sha256": "a" * 64}}
    config = _config("covid_cxnet", 2, init="chexnet", weights=weights, allow_init_fallback=True)
    build = build_classifier(config)
    assert (build.init_requested, build.init_used) == ("chexnet", "random")
    assert "missing.h5" in build.init_reason
    with pytest.raises(WeightsUnavailableError):
        build_classifier({**config, "allow_init_fallback": False})


def test_base_cnn_reports_random_and_takes_its_own_settings():
    build = build_classifier(
        _config("base_cnn", 2, base_cnn={"conv_layers": 3, "dense_units": [10]})
    )
    convs = [layer for layer in build.model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 3 and build.init_used == "random"


def test_config_errors():
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_classifier(_config("resnet50", 2))
    assert input_shape_from_config({"input_size": [40, 48], "channels": 1}) == (40, 48, 1)
