"""U-Net: shapes, configuration errors, and one training step on a tiny image."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from covid_cxnet_pipeline.models.metrics import BceDiceLoss
from covid_cxnet_pipeline.models.unet import build_unet, compile_unet


def test_shapes_and_widths():
    model = build_unet((32, 32, 1), levels=2, base_filters=4)
    assert model.output_shape == (None, 32, 32, 1)
    assert model.get_layer("lung_mask").activation.__name__ == "sigmoid"
    assert model.get_layer("down1_conv1").filters == 4
    assert model.get_layer("bottleneck_conv1").filters == 16
    assert model.get_layer("up1_conv2").filters == 4


def test_depth_follows_levels():
    pools = [
        layer
        for layer in build_unet((64, 64, 1), levels=3, base_filters=2).layers
        if isinstance(layer, keras.layers.MaxPooling2D)
    ]
    assert len(pools) == 3


def test_size_not_divisible_is_refused():
    with pytest.raises(ValueError, match=r"divisible by 2\*\*levels = 8"):
        build_unet((36, 36, 1), levels=3)


def test_one_training_step_and_save_load(tmp_path):
    keras.utils.set_random_seed(0)
    model = compile_unet(build_unet((32, 32, 1), levels=2, base_filters=4, dropout=0.1))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    masks = (images > 127).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(images, masks, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert set(history.history) >= {"loss", "dice_coefficient", "iou_coefficient"}
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    path = tmp_path / "unet.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, BceDiceLoss)
    np.testing.assert_allclose(
        restored.predict(images, verbose=0), model.predict(images, verbose=0)
    )
