"""CheXNet weights: fetched from a path or URL, sha256-checked, loaded in the Keras 2 layout."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest

from covid_cxnet_pipeline.download import sha256_file
from covid_cxnet_pipeline.models.chexnet import (
    CHEXNET_CLASSES,
    build_chexnet_model,
    fetch_weights_file,
)
from covid_cxnet_pipeline.models.densenet import WeightsUnavailableError, resolve_initialisation

TINY_BLOCKS = (1, 1, 1, 1)
SHAPE = (32, 32, 3)


def _randomise(model: keras.Model, seed: int) -> None:
    """Give every variable (BN statistics included) distinctive values."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        values = rng.uniform(0.5, 1.5, size=tuple(weight.shape)).astype("float32")
        weight.assign(values)


def _weights_by_layer(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


@pytest.fixture
def tiny_chexnet_file(tmp_path, keras2_weights_writer):
    """A CheXNet-layout weights file of a tiny DenseNet, and the backbone that wrote it."""
    chexnet, backbone = build_chexnet_model(SHAPE, TINY_BLOCKS)
    _randomise(chexnet, seed=7)
    path = keras2_weights_writer(chexnet, tmp_path / "chexnet_tiny.h5")
    return path, backbone


def _cfg(path, sha256, url=None):
    return {"chexnet": {"path": str(path), "sha256": sha256, "url": url}}


def test_chexnet_model_has_fourteen_sigmoid_findings():
    chexnet, backbone = build_chexnet_model(SHAPE, TINY_BLOCKS)
    head = chexnet.get_layer("predictions")
    assert chexnet.output_shape == (None, CHEXNET_CLASSES)
    assert head.activation.__name__ == "sigmoid"
    assert backbone.output_shape[-1] == chexnet.get_layer("relu").output.shape[-1]


def test_loads_keras2_layout_file_after_sha256_check(tiny_chexnet_file):
    path, written = tiny_chexnet_file
    init = resolve_initialisation(
        "chexnet", _cfg(path, sha256_file(path)), False, input_shape=SHAPE, blocks=TINY_BLOCKS
    )
    assert init.used == "chexnet"
    assert str(path) in init.reason and sha256_file(path) in init.reason
    loaded, expected = _weights_by_layer(init.backbone), _weights_by_layer(written)
    assert loaded.keys() == expected.keys()
    for name, values in expected.items():
        for got, want in zip(loaded[name], values, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_loaded_backbone_differs_from_random_init(tiny_chexnet_file):
    path, written = tiny_chexnet_file
    random_init = resolve_initialisation(
        "random", None, False, input_shape=SHAPE, blocks=TINY_BLOCKS
    )
    kernel = written.get_layer("conv1_conv").get_weights()[0]
    assert not np.array_equal(random_init.backbone.get_layer("conv1_conv").get_weights()[0], kernel)


def test_full_densenet121_layout_loads(tmp_path, keras2_weights_writer):
    # The real file is a DenseNet-121: check the order-based loading on the full architecture.
    chexnet, backbone = build_chexnet_model(SHAPE)
    _randomise(chexnet, seed=3)
    path = keras2_weights_writer(chexnet, tmp_path / "chexnet121.h5")
    init = resolve_initialisation(
        "chexnet", _cfg(path, sha256_file(path)), False, input_shape=SHAPE
    )
    for name in ("conv1_conv", "conv4_block24_2_conv", "bn"):
        for got, want in zip(
            init.backbone.get_layer(name).get_weights(),
            backbone.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)


def test_wrong_sha256_names_file_and_both_digests(tiny_chexnet_file):
    path, _ = tiny_chexnet_file
    actual = sha256_file(path)
    wrong = "0" * 64
    with pytest.raises(WeightsUnavailableError) as caught:
        resolve_initialisation(
            "chexnet", _cfg(path, wrong), False, input_shape=SHAPE, blocks=TINY_BLOCKS
        )
    message = str(caught.value)
    assert str(path) in message and actual in message and wrong in message
    assert "weights.chexnet.sha256" in message


def test_wrong_sha256_raises_even_with_fallback(tiny_chexnet_file):
    # The fallback covers only an absent file: a present file with the wrong sha256 must
    # never be silently replaced by random weights.
    path, _ = tiny_chexnet_file
    actual = sha256_file(path)
    with pytest.raises(WeightsUnavailableError) as caught:
        resolve_initialisation(
            "chexnet", _cfg(path, "0" * 64), True, input_shape=SHAPE, blocks=TINY_BLOCKS
        )
    assert not caught.value.absent
    message = str(caught.value)
    assert str(path) in message and actual in message and "0" * 64 in message


def test_absent_file_with_fallback_reports_random(tmp_path):
    missing = tmp_path / "absent.h5"
    init = resolve_initialisation(
        "chexnet", _cfg(missing, "a" * 64), True, input_shape=SHAPE, blocks=TINY_BLOCKS
    )
    assert init.used == "random"
    assert init.reason.startswith("chexnet weights unavailable:")
    assert str(missing) in init.reason and "absent" in init.reason
    assert init.describe().startswith("random (chexnet weights unavailable:")


def test_missing_file_without_url_says_what_to_do(tmp_path):
    missing = tmp_path / "absent.h5"
    with pytest.raises(WeightsUnavailableError, match="does not exist") as caught:
        fetch_weights_file(_cfg(missing, "a" * 64)["chexnet"], "CheXNet")
    assert str(missing) in str(caught.value) and "url" in str(caught.value)
    assert caught.value.absent


def test_missing_sha256_is_refused(tiny_chexnet_file):
    path, _ = tiny_chexnet_file
    with pytest.raises(WeightsUnavailableError, match="sha256 is not set") as caught:
        fetch_weights_file({"path": str(path)}, "CheXNet")
    assert not caught.value.absent and sha256_file(path) in str(caught.value)


def test_non_h5_suffix_is_refused(tmp_path):
    with pytest.raises(WeightsUnavailableError, match=r"\.h5 or \.hdf5"):
        fetch_weights_file({"path": str(tmp_path / "w.bin"), "sha256": "a" * 64}, "CheXNet")


def test_file_of_another_architecture_is_rejected(tiny_chexnet_file):
    path, _ = tiny_chexnet_file
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        resolve_initialisation(
            "chexnet", _cfg(path, sha256_file(path)), False, input_shape=SHAPE, blocks=(1, 1, 2, 1)
        )


def test_downloads_from_url_into_configured_path(tiny_chexnet_file, tmp_path, serve_directory):
    path, written = tiny_chexnet_file
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(path, served / "weights.h5")
    base_url = serve_directory(served)
    dest = tmp_path / "cache" / "chexnet.h5"
    cfg = _cfg(dest, sha256_file(path), url=f"{base_url}/weights.h5")
    init = resolve_initialisation("chexnet", cfg, False, input_shape=SHAPE, blocks=TINY_BLOCKS)
    assert dest.is_file() and sha256_file(dest) == sha256_file(path)
    np.testing.assert_array_equal(
        init.backbone.get_layer("conv1_conv").get_weights()[0],
        written.get_layer("conv1_conv").get_weights()[0],
    )


def test_download_failure_names_url(tmp_path, serve_directory):
    base_url = serve_directory(tmp_path)
    url = f"{base_url}/nothing_here.h5"
    cfg = {"path": str(tmp_path / "cache" / "w.h5"), "sha256": "a" * 64, "url": url}
    with pytest.raises(WeightsUnavailableError, match="HTTP 404") as caught:
        fetch_weights_file(cfg, "CheXNet")
    assert url in str(caught.value) and caught.value.absent
    assert not (tmp_path / "cache" / "w.h5").exists()


def test_downloaded_file_with_wrong_sha256_is_not_kept(
    tiny_chexnet_file, tmp_path, serve_directory
):
    path, _ = tiny_chexnet_file
    base_url = serve_directory(path.parent)
    dest = tmp_path / "cache" / "w.h5"
    cfg = {"path": str(dest), "sha256": "b" * 64, "url": f"{base_url}/{path.name}"}
    with pytest.raises(WeightsUnavailableError, match="sha256 mismatch") as caught:
        fetch_weights_file(cfg, "CheXNet")
    assert not caught.value.absent and sha256_file(path) in str(caught.value)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []
