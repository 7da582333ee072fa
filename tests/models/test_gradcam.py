"""Grad-CAM on tiny models whose answer is known by construction, and heatmap overlays."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from covid_cxnet_pipeline.models.covid_cxnet import build_classifier
from covid_cxnet_pipeline.models.gradcam import (
    GradCamError,
    find_last_conv_layer,
    grad_cam,
    overlay_heatmap,
)

SIZE = 32
HALF = SIZE // 2


def _quadrant_features(inputs):
    """Layers that keep only the top-left quadrant, then a hand-set 2x2 stride-2 averaging conv."""
    x = keras.layers.Cropping2D(((0, HALF), (0, HALF)), name="keep_top_left")(inputs)
    x = keras.layers.ZeroPadding2D(((0, HALF), (0, HALF)), name="pad_back")(x)
    conv = keras.layers.Conv2D(1, 2, strides=2, activation="relu", name="conv")
    x = conv(x)
    conv.set_weights([np.full((2, 2, 1, 1), 0.25, "float32"), np.zeros(1, "float32")])
    return x


def _head(x, units=1, activation="sigmoid"):
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    dense = keras.layers.Dense(units, activation=activation, name="predictions")
    out = dense(x)
    kernel = np.ones((1, units), "float32") * np.arange(1, units + 1, dtype="float32")
    dense.set_weights([kernel, np.zeros(units, "float32")])
    return out


def quadrant_model() -> keras.Model:
    """Sees only the top-left quadrant; its score grows with the brightness there."""
    inputs = keras.Input((SIZE, SIZE, 1))
    return keras.Model(inputs, _head(_quadrant_features(inputs)), name="quadrant")


def nested_quadrant_model() -> keras.Model:
    """Same function, with the feature extractor nested as a model inside the classifier."""
    inner_in = keras.Input((SIZE, SIZE, 1))
    backbone = keras.Model(inner_in, _quadrant_features(inner_in), name="backbone")
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1.0, name="identity_scaling")(inputs)
    return keras.Model(inputs, _head(backbone(x)), name="outer")


def _images(count=3, seed=0):
    # Bright everywhere, so only the model's wiring can put the heat in one quadrant.
    return np.random.default_rng(seed).uniform(0.5, 1.0, (count, SIZE, SIZE, 1)).astype("float32")


def test_heat_concentrates_in_the_only_quadrant_the_model_sees():
    heatmaps = grad_cam(quadrant_model(), _images())
    assert heatmaps.shape == (3, SIZE, SIZE)
    assert heatmaps.min() >= 0.0 and heatmaps.max() == pytest.approx(1.0)
    for heatmap in heatmaps:
        inside = heatmap[:HALF, :HALF].sum()
        assert inside / heatmap.sum() > 0.9


def test_finds_the_last_conv_layer_flat_and_nested():
    assert find_last_conv_layer(quadrant_model()) == ("conv",)
    assert find_last_conv_layer(nested_quadrant_model()) == ("backbone", "conv")


def test_nested_backbone_gives_the_same_heatmaps_as_flat():
    images = _images(seed=1)
    flat = grad_cam(quadrant_model(), images)
    nested = grad_cam(nested_quadrant_model(), images)
    np.testing.assert_allclose(nested, flat, atol=1e-6)


def test_negative_class_has_no_supporting_evidence():
    # Class 0 of a sigmoid model scores -logit: every feature map counts against it, so after
    # the ReLU nothing is left.
    heatmap = grad_cam(quadrant_model(), _images(1)[0], class_index=0)
    assert heatmap.shape == (SIZE, SIZE)
    assert np.all(heatmap == 0.0)


def test_multiclass_explains_the_requested_class():
    inputs = keras.Input((SIZE, SIZE, 1))
    model = keras.Model(inputs, _head(_quadrant_features(inputs), units=3, activation="softmax"))
    images = _images(2)
    predicted = grad_cam(model, images)
    explicit = grad_cam(model, images, class_index=[2, 2])
    # Logits grow fastest for class 2 (kernel 1, 2, 3): it is the prediction and gets the map.
    np.testing.assert_allclose(predicted, explicit)
    assert (predicted[:, :HALF, :HALF].sum() / predicted.sum()) > 0.9


def test_works_on_built_classifiers():
    for backbone, size in (("covid_cxnet", 32), ("base_cnn", 64)):
        config = {"backbone": backbone, "input_size": size, "n_classes": 3, "init": "random"}
        model = build_classifier({**config, "densenet_blocks": [1, 1, 1, 1], "seed": 0}).model
        images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
        heatmaps = grad_cam(model, images)
        assert heatmaps.shape == (2, size, size)
        assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0


def test_model_without_spatial_layers_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    with pytest.raises(GradCamError, match="no layer with 4-D"):
        find_last_conv_layer(model)


def test_overlay_known_colours():
    gray = np.full((4, 4), 100, np.uint8)
    cold, hot = np.zeros((4, 4)), np.ones((4, 4))
    np.testing.assert_array_equal(overlay_heatmap(gray, hot, alpha=0.0), np.full((4, 4, 3), 100))
    # Jet colour map: 0 is dark blue (0, 0, 128), 1 is dark red (128, 0, 0), in RGB.
    np.testing.assert_array_equal(overlay_heatmap(gray, cold, alpha=1.0)[0, 0], [0, 0, 128])
    np.testing.assert_array_equal(overlay_heatmap(gray, hot, alpha=1.0)[0, 0], [128, 0, 0])
    half = overlay_heatmap(gray[..., None], cold, alpha=0.5)
    np.testing.assert_array_equal(half[0, 0], [50, 50, 114])
    assert half.dtype == np.uint8 and half.shape == (4, 4, 3)


def test_overlay_resizes_heatmap_and_checks_dtype():
    rgb = np.zeros((8, 6, 3), np.uint8)
    assert overlay_heatmap(rgb, np.ones((2, 2))).shape == (8, 6, 3)
    with pytest.raises(ValueError, match="uint8"):
        overlay_heatmap(rgb.astype(np.float32), np.ones((2, 2)))


def test_nested_model_that_is_not_a_chain_is_refused():
    inner_in = keras.Input((SIZE, SIZE, 1))
    backbone = keras.Model(inner_in, _quadrant_features(inner_in), name="backbone")
    inputs = keras.Input((SIZE, SIZE, 1))
    from_backbone = keras.layers.GlobalAveragePooling2D(name="gap_backbone")(backbone(inputs))
    from_input = keras.layers.GlobalAveragePooling2D(name="gap_input")(inputs)
    merged = keras.layers.Concatenate(name="merge")([from_backbone, from_input])
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(merged))
    with pytest.raises(GradCamError, match="not a simple chain"):
        grad_cam(model, _images(1))


def test_saved_and_reloaded_classifier_gives_the_same_heatmaps(tmp_path):
    config = {"backbone": "covid_cxnet", "input_size": 32, "n_classes": 2, "init": "random"}
    model = build_classifier({**config, "densenet_blocks": [1, 1, 1, 1], "seed": 0}).model
    model.save(tmp_path / "classifier.keras")
    reloaded = keras.models.load_model(tmp_path / "classifier.keras")
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert find_last_conv_layer(reloaded) == ("relu",)
    np.testing.assert_allclose(grad_cam(reloaded, images), grad_cam(model, images), atol=1e-6)


# --- Known answer computed independently in the test ------------------------------------------


def _random_multiclass_model() -> keras.Model:
    """Random weights, and a non-linear head, so logit, probability and activations all differ."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((12, 12, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(5, 3, strides=2, activation="relu", name="conv_b")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(6, activation="tanh", name="hidden")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="random_multiclass")


def _by_hand(model: keras.Model, images: np.ndarray, classes: list[int], score: str) -> np.ndarray:
    """Grad-CAM written out step by step; ``score`` is "logit" or "probability"."""
    import tensorflow as tf

    probe = keras.Model(
        model.inputs[0], [model.get_layer("conv_b").output, model.get_layer("hidden").output]
    )
    head = model.get_layer("predictions")
    kernel, bias = (np.asarray(weight) for weight in head.get_weights())
    with tf.GradientTape() as tape:
        maps, hidden = probe(tf.constant(images), training=False)
        logits = tf.matmul(hidden, kernel) + bias
        values = logits if score == "logit" else tf.nn.softmax(logits)
        picked = tf.reduce_sum(values * tf.one_hot(classes, 3))
    gradients = tape.gradient(picked, maps).numpy()
    maps = maps.numpy()
    heatmaps = []
    for image_maps, image_gradients in zip(maps, gradients, strict=True):
        weights = image_gradients.mean(axis=(0, 1))  # one weight per channel
        cam = np.maximum((image_maps * weights).sum(axis=-1), 0.0)
        heatmaps.append(_upsample_and_scale(cam, images.shape[1:3]))
    return np.stack(heatmaps)


def _upsample_and_scale(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import tensorflow as tf

    # Bilinear with half-pixel centres (tf.image.resize), the same grid as OpenCV INTER_LINEAR.
    up = tf.image.resize(cam[None, ..., None].astype("float32"), size, method="bilinear")
    up = np.maximum(up.numpy()[0, ..., 0], 0.0)
    return up / up.max() if up.max() > 0 else up


def test_matches_grad_cam_computed_by_hand_on_random_weights():
    model = _random_multiclass_model()
    images = np.random.default_rng(3).uniform(0.0, 1.0, (2, 12, 12, 2)).astype("float32")
    classes = [0, 2]
    expected = _by_hand(model, images, classes, score="logit")
    assert np.all(expected.max(axis=(1, 2)) == pytest.approx(1.0))  # nothing degenerate
    np.testing.assert_allclose(grad_cam(model, images, class_index=classes), expected, atol=1e-5)

    # The same test would catch a library using the probability or the raw activations.
    by_probability = _by_hand(model, images, classes, score="probability")
    assert np.abs(by_probability - expected).max() > 1e-2
    raw_maps = keras.Model(model.inputs[0], model.get_layer("conv_b").output)(images).numpy()
    raw_average = np.stack(
        [_upsample_and_scale(maps.mean(axis=-1), images.shape[1:3]) for maps in raw_maps]
    )
    assert np.abs(raw_average - expected).max() > 1e-2
