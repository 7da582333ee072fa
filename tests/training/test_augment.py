"""Tests for the chest-radiograph augmentation: known transforms, seeding, config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from covid_cxnet_pipeline.training.augment import (
    AugmentConfig,
    affine_transform,
    augment_image,
    validate_augment_config,
)

FULL = {
    "enabled": True,
    "rotation_degrees": 10,
    "zoom": 0.1,
    "shift": 0.05,
    "brightness": 0.1,
    "contrast": 0.1,
}


def _ramp(size: int = 5) -> np.ndarray:
    values = np.arange(size * size, dtype=np.float32).reshape(size, size) / (size * size)
    return np.stack([values, values * 0.5, values * 0.25], axis=-1)


def test_affine_identity_returns_the_image():
    image = _ramp()
    out = affine_transform(tf.constant(image), 0.0, 1.0, (0.0, 0.0)).numpy()
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_affine_shift_moves_content_right_and_fills_black():
    image = _ramp()
    out = affine_transform(tf.constant(image), 0.0, 1.0, (1.0, 0.0)).numpy()
    np.testing.assert_allclose(out[:, 1:], image[:, :-1], atol=1e-6)
    np.testing.assert_allclose(out[:, 0], 0.0)


def test_affine_quarter_turn_matches_rot90():
    # input = centre + R(angle) (output - centre): out[y, x] = in[x, 4 - y] = rot90(in)[y, x].
    image = _ramp()
    out = affine_transform(tf.constant(image), math.pi / 2, 1.0, (0.0, 0.0)).numpy()
    np.testing.assert_allclose(out, np.rot90(image, 1), atol=1e-5)


def test_affine_zoom_keeps_the_centre_pixel_and_magnifies():
    image = _ramp()
    out = affine_transform(tf.constant(image), 0.0, 2.0, (0.0, 0.0)).numpy()
    np.testing.assert_allclose(out[2, 2], image[2, 2], atol=1e-6)
    # Zoom x2: output column 4 samples input column 2 + (4 - 2) / 2 = 3.
    np.testing.assert_allclose(out[2, 4], image[2, 3], atol=1e-6)


def test_augment_same_seed_same_output_and_shapes_preserved():
    cfg = validate_augment_config(FULL)
    image = tf.constant(255 * np.random.default_rng(0).random((32, 32, 3), dtype=np.float32))
    seed = tf.constant([7, 3], tf.int64)
    first = augment_image(image, seed, cfg)
    second = augment_image(image, seed, cfg)
    other = augment_image(image, tf.constant([8, 3], tf.int64), cfg)
    assert first.shape == image.shape
    assert first.dtype == tf.float32
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    assert not np.allclose(first.numpy(), other.numpy())
    assert float(tf.reduce_min(first)) >= 0.0
    assert float(tf.reduce_max(first)) <= 255.0
    # Brightness scales with the intensity range: on [0, 1] images the output stays in [0, 1].
    unit = augment_image(image / 255.0, seed, cfg, max_value=1.0)
    assert float(tf.reduce_max(unit)) <= 1.0
    np.testing.assert_allclose(unit.numpy() * 255.0, first.numpy(), atol=1e-3)


def test_augment_disabled_is_identity():
    image = tf.constant(_ramp())
    cfg = validate_augment_config({**FULL, "enabled": False})
    assert cfg.is_identity
    out = augment_image(image, tf.constant([1, 2], tf.int64), cfg)
    np.testing.assert_array_equal(out.numpy(), image.numpy())


def test_validate_none_and_dataclass():
    assert validate_augment_config(None) == AugmentConfig()
    cfg = AugmentConfig(enabled=True, rotation_degrees=5.0)
    assert validate_augment_config(cfg) == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"vertical_flip": True}, "vertical_flip"),
        ({"rotation_degrees": 25}, "rotation_degrees"),
        ({"rotation_degrees": -1}, "rotation_degrees"),
        ({"zoom": 0.6}, "zoom"),
        ({"shift": 0.5}, "shift"),
        ({"brightness": 1.5}, "brightness"),
        ({"contrast": 1.0}, "contrast"),
        ({"fill_mode": "wrap"}, "fill_mode"),
        ({"rotaton_degrees": 5}, "rotaton_degrees"),
    ],
)
def test_validate_rejects_implausible_settings(override, message):
    with pytest.raises(ValueError, match=message):
        validate_augment_config({**FULL, **override})


def test_vertical_flip_false_is_accepted():
    assert validate_augment_config({**FULL, "vertical_flip": False}).rotation_degrees == 10
