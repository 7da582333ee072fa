"""The paper's base CNN and the shared input scaling / output head."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from covid_cxnet_pipeline.models.base_cnn import (
    build_base_cnn,
    input_scaling_layer,
    output_units,
)


@pytest.mark.parametrize(
    ("n_classes", "units", "activation"), [(2, 1, "sigmoid"), (3, 3, "softmax")]
)
def test_head_is_sigmoid_for_binary_and_softmax_for_multiclass(n_classes, units, activation):
    model = build_base_cnn((64, 64, 3), n_classes)
    head = model.get_layer("predictions")
    assert model.output_shape == (None, units)
    assert head.units == units and head.activation.__name__ == activation


def test_architecture_matches_the_paper():
    model = build_base_cnn((64, 64, 1), 2)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 5
    assert all(c.filters == 32 and c.kernel_size == (3, 3) for c in convs)
    assert all(c.activation.__name__ == "relu" for c in convs)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense[:-1]] == [10, 10]
    forbidden = (keras.layers.BatchNormalization, keras.layers.MaxPooling2D)
    assert not any(isinstance(layer, forbidden) for layer in model.layers)
    assert model.input_shape == (None, 64, 64, 1)


def test_too_small_input_is_refused_with_sizes():
    with pytest.raises(ValueError, match=r"\(32, 32\) is too small"):
        build_base_cnn((32, 32, 3), 2)


def test_output_units_rejects_single_class():
    with pytest.raises(ValueError, match="at least 2"):
        output_units(1)


def test_imagenet_scaling_known_values():
    layer = input_scaling_layer("imagenet", 3)
    # 255 * mean maps to 0; 255 * (mean + std) maps to 1 in every channel.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = np.stack([255 * mean, 255 * (mean + std)]).reshape(1, 1, 2, 3).astype("float32")
    out = np.asarray(layer(pixels))
    np.testing.assert_allclose(out[0, 0, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(out[0, 0, 1], 1.0, atol=1e-5)


def test_unit_scaling_and_errors():
    np.testing.assert_allclose(
        np.asarray(input_scaling_layer("unit", 1)(np.full((1, 1), 255.0))), 1.0
    )
    assert input_scaling_layer("none", 1) is None
    with pytest.raises(ValueError, match="needs 3 channels"):
        input_scaling_layer("imagenet", 1)
    with pytest.raises(ValueError, match="input_scaling must be one of"):
        input_scaling_layer("zscore", 3)
