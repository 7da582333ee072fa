"""Tests of predict: a tiny model bundle saved like the training pipeline saves it, run on a
folder of tiny PNGs, a DICOM built here and a corrupt file; the Kedro pipeline; an MLflow URI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from covid_cxnet_pipeline.models.covid_cxnet import build_classifier
from covid_cxnet_pipeline.models.digest import weights_digest
from covid_cxnet_pipeline.models.unet import build_unet
from covid_cxnet_pipeline.pipelines.predict import inference
from covid_cxnet_pipeline.pipelines.predict.pipeline import create_pipeline
from covid_cxnet_pipeline.pipelines.train import nodes as train_nodes
from tests.conftest import PROJECT_ROOT
from tests.pipelines.test_preprocess import brightness_unet, lung_picture
from tests.pipelines.test_preprocess import run as run_preprocess

SIZE = 32
VERSION = "2026-11-29T20.00.00.000Z"
PREPROCESS = {
    "use_lung_roi": True,
    "decode": {"alpha": "black", "apply_exif_orientation": True},
    "lung_mask": {
        "threshold": 0.5,
        "keep_components": 2,
        "min_component_fraction": 0.0,
        "fill_holes_inside": True,
        "dilation_px": 1,
    },
    "roi": {
        "margin": 0.05,
        "min_area_fraction": 0.08,
        "max_area_fraction": 0.7,
        "max_component_share": 0.9,
        "min_bbox_width_fraction": 0.5,
    },
    "resize": {"size": [SIZE, SIZE], "keep_aspect": False},
    "histogram_matching": {"enabled": True},
    "channels": ["original", "clahe", "beasf"],
    "enhance": {"clahe_clip_limit": 2.0, "clahe_tile_grid_size": [4, 4], "beasf_gamma": 1.5},
}
HISTOGRAM = {"histogram": (np.arange(256) / np.arange(256).sum()).tolist(), "digest": "ramp"}


def tiny_classifier(n_classes: int = 2, size: int = SIZE) -> keras.Model:
    config = {
        "backbone": "base_cnn",
        "input_size": size,
        "channels": 3,
        "n_classes": n_classes,
        "base_cnn": {"conv_layers": 2, "filters": 4, "dense_units": [4]},
        "seed": 3,
    }
    return build_classifier(config).model


def tiny_unet() -> keras.Model:
    keras.utils.set_random_seed(5)
    return build_unet((16, 16, 1), levels=1, base_filters=2)


def make_card(unet: keras.Model, classes=("not_covid", "covid"), size: int = SIZE) -> dict:
    return {
        "card_version": 1,
        "name": "train_binary",
        "task": "binary" if len(classes) == 2 else "multiclass",
        "classes": list(classes),
        "class_names": list(classes),
        "input_size": [size, size],
        "channels": 3,
        "preprocessing": {
            "params": PREPROCESS,
            "histogram_reference": HISTOGRAM,
            "unet_weights_sha256": weights_digest(unet),
        },
    }


def save_bundle(root: Path, model: keras.Model, unet: keras.Model, card: dict) -> Path:
    """Lay the files out as Kedro's versioned datasets of one training run do."""
    model_file = root / "model.keras" / VERSION / "model.keras"
    for name in ("model.keras", "unet.keras", "model_card.json"):
        (root / name / VERSION).mkdir(parents=True)
    model.save(model_file)
    unet.save(root / "unet.keras" / VERSION / "unet.keras")
    (root / "model_card.json" / VERSION / "model_card.json").write_text(json.dumps(card))
    return model_file


def write_dicom(path: Path) -> None:
    rng = np.random.default_rng(1)
    pixels = (rng.random((40, 36)) * 4095).astype(np.uint16)
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.set_pixel_data(pixels, "MONOCHROME2", 12)
    dataset.save_as(path, enforce_file_format=True)


def make_input_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for number in range(3):
        pixels = rng.integers(0, 256, size=(48 + 4 * number, 40), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"xray_{number}.png")
    (folder / "nested").mkdir()
    write_dicom(folder / "nested" / "scan.dcm")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / ".hidden.png").write_bytes(b"ignored")
    return folder


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle") / "train_binary"
    unet = tiny_unet()
    save_bundle(root, tiny_classifier(), unet, make_card(unet))
    return root


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory) -> Path:
    return make_input_folder(tmp_path_factory.mktemp("predict") / "inputs")


def test_predict_folder_writes_csv_overlays_and_error_rows(bundle_dir, input_dir, tmp_path):
    bundle = inference.load_bundle(str(bundle_dir / "model.keras"))
    table = inference.predict_directory(bundle, input_dir, tmp_path / "out", batch_size=2)
    written = pd.read_csv(tmp_path / "out" / "predictions.csv")
    written[["prediction", "error"]] = written[["prediction", "error"]].fillna("")
    assert list(written.columns) == ["path", "prob_not_covid", "prob_covid", "prediction", "error"]
    assert len(written) == len(table) == 5
    rows = written.set_index(written["path"].map(lambda p: Path(p).name))
    assert rows.loc["broken.png", "error"].startswith("ImageDecodeError")
    assert rows.loc["broken.png", "prediction"] == ""
    good = rows.drop(index="broken.png")
    assert (good["error"] == "").all()
    np.testing.assert_allclose(good["prob_not_covid"] + good["prob_covid"], 1.0, atol=1e-6)
    expected = np.where(good["prob_covid"] >= 0.5, "covid", "not_covid")
    assert list(good["prediction"]) == list(expected)
    assert (tmp_path / "out" / "overlays" / "nested" / "scan.dcm.png").is_file()
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlays" / "xray_0.png.png"))
    assert overlay.shape == (SIZE, SIZE, 3)
    assert not (tmp_path / "out" / "overlays" / "broken.png.png").exists()


def test_binary_decision_defaults_to_the_saved_operating_threshold(input_dir, tmp_path):
    unet = tiny_unet()
    card = {**make_card(unet), "model_weights_sha256": "a" * 64}
    model_file = save_bundle(tmp_path / "m", tiny_classifier(), unet, card)
    folder = tmp_path / "m" / "operating_threshold.json" / VERSION
    folder.mkdir(parents=True)
    record = {"threshold": 1e-9, "rule": "youden", "model_weights_sha256": "a" * 64}
    (folder / "operating_threshold.json").write_text(json.dumps(record))
    bundle = inference.load_bundle(str(model_file))
    assert bundle.operating_threshold == pytest.approx(1e-9)
    table = inference.predict_directory(bundle, input_dir, tmp_path / "out")
    good = table.loc[table["error"] == ""]
    # Every p(covid) > 1e-9: all positive at the saved threshold, unlike at 0.5.
    assert (good["prediction"] == "covid").all()
    assert (good["prob_covid"] < 0.5).any()
    override = inference.predict_directory(bundle, input_dir, tmp_path / "o", threshold=0.5)
    good = override.loc[override["error"] == ""]
    assert list(good["prediction"]) == list(
        np.where(good["prob_covid"] >= 0.5, "covid", "not_covid")
    )
    record["model_weights_sha256"] = "b" * 64
    (folder / "operating_threshold.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="b" * 64):
        inference.load_bundle(str(model_file))


def test_prediction_replays_the_pngs_the_preprocess_pipeline_wrote(tmp_path):
    """prepare_image on the raw files gives, pixel for pixel, the preprocess node's PNGs."""
    import hashlib

    import yaml

    from covid_cxnet_pipeline.pipelines.preprocess.chain import read_png

    rows = []
    for number, split in enumerate(("train", "train", "validation", "test")):
        path = tmp_path / "store" / f"{number}.png"
        path.parent.mkdir(exist_ok=True)
        # Image 3 has no bright "lungs": its ROI falls back to the full image.
        Image.fromarray(lung_picture(number, with_lungs=number != 3)).save(path)
        rows.append(
            {
                "image_id": f"src:{number}.png",
                "source_id": "src",
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "path": str(path),
                "label": ("normal", "covid")[number % 2],
                "split": split,
                "patient_group": f"src:p{number}",
            }
        )
    curated_index = pd.DataFrame(rows)
    text = (PROJECT_ROOT / "conf/base/parameters_preprocess.yml").read_text()
    params = yaml.safe_load(text)["preprocess"]
    # Every output folder of the configuration goes to the test's own directory.
    params["folders"] = {name: str(tmp_path / "out" / name) for name in params["folders"]}
    params.update(workers=1, chunk_size=4, predict_batch_size=3)
    params["resize"]["size"] = [24, 40]
    params["enhance"]["clahe_tile_grid_size"] = [2, 2]
    params["contact_sheet"]["images"] = 2
    unet = brightness_unet()
    catalog = run_preprocess(curated_index, params, unet)
    index = catalog["model_input_index"].load().set_index("image_id")
    card = make_card(unet)
    card["input_size"] = list(params["resize"]["size"])
    card["preprocessing"]["params"] = params
    card["preprocessing"]["histogram_reference"] = catalog["histogram_reference"].load()
    bundle = inference.ClassifierBundle(None, card, unet, "preprocess test")
    # One image without bright "lungs" falls back to the full image: both paths are covered.
    assert index["roi_fallback"].any() and not index["roi_fallback"].all()
    for row in curated_index.itertuples():
        written = read_png(index.loc[row.image_id, "path"]).astype(np.float32)
        np.testing.assert_array_equal(inference.prepare_image(Path(row.path), bundle), written)


def test_model_input_size_different_from_preprocess_is_resized_like_training(tmp_path):
    unet = tiny_unet()
    model_file = save_bundle(
        tmp_path / "bundle", tiny_classifier(size=24), unet, make_card(unet, size=24)
    )
    bundle = inference.load_bundle(str(model_file))
    folder = make_input_folder(tmp_path / "inputs")
    assert inference.prepare_image(folder / "xray_0.png", bundle).shape == (24, 24, 3)


def test_missing_card_and_wrong_unet_are_named(tmp_path):
    unet = tiny_unet()
    model_file = save_bundle(tmp_path / "a", tiny_classifier(), unet, make_card(unet))
    (tmp_path / "a" / "model_card.json" / VERSION / "model_card.json").unlink()
    with pytest.raises(FileNotFoundError, match="model_card.json"):
        inference.load_bundle(str(model_file))
    other = build_unet((16, 16, 1), levels=1, base_filters=2)
    other.save(tmp_path / "other_unet.keras")
    model_file = save_bundle(tmp_path / "b", tiny_classifier(), unet, make_card(unet))
    with pytest.raises(ValueError, match="digest"):
        inference.load_bundle(str(model_file), unet=str(tmp_path / "other_unet.keras"))


def test_versioned_folder_resolves_to_the_newest_version_with_a_card(tmp_path):
    unet = tiny_unet()
    save_bundle(tmp_path, tiny_classifier(), unet, make_card(unet))
    # A later run that failed after saving its model: model.keras without model_card.json.
    newer = tmp_path / "model.keras" / "2026-11-29T21.00.00.000Z" / "model.keras"
    newer.parent.mkdir()
    tiny_classifier().save(newer)
    chosen = inference.resolve_model_file(tmp_path / "model.keras")
    assert chosen.parent.name == VERSION
    (tmp_path / "model_card.json" / VERSION / "model_card.json").unlink()
    with pytest.raises(FileNotFoundError, match="model_card.json"):
        inference.resolve_model_file(tmp_path / "model.keras")


def test_exported_folder_layout_and_no_roi(tmp_path):
    unet = tiny_unet()
    card = make_card(unet, classes=("normal", "cap", "covid"))
    card["preprocessing"]["params"] = {**PREPROCESS, "use_lung_roi": False}
    folder = tmp_path / "export"
    folder.mkdir()
    tiny_classifier(n_classes=3).save(folder / "model.keras")
    (folder / "model_card.json").write_text(json.dumps(card))
    bundle = inference.load_bundle(str(folder / "model.keras"))
    assert bundle.unet is None
    table = inference.predict_directory(bundle, make_input_folder(tmp_path / "in"), tmp_path / "o")
    assert {"prob_normal", "prob_cap", "prob_covid"} <= set(table.columns)
    good = table.loc[table["error"] == ""]
    assert set(good["prediction"]) <= {"normal", "cap", "covid"}


def test_predict_pipeline_runs_with_kedro(bundle_dir, input_dir, tmp_path):
    params = {
        "model": str(bundle_dir / "model.keras"),
        "unet": None,
        "input_dir": str(input_dir),
        "output_dir": str(tmp_path / "kedro_out"),
        "threshold": 0.0,
        "batch_size": 4,
        "overlay_alpha": 0.4,
    }
    catalog = DataCatalog({"params:predict": MemoryDataset(params)})
    outputs = SequentialRunner().run(create_pipeline(), catalog)
    table = outputs["predictions"].load()
    # Threshold 0: every readable file is called positive.
    assert list(table.loc[table["error"] == "", "prediction"].unique()) == ["covid"]
    assert (tmp_path / "kedro_out" / "predictions.csv").is_file()


def log_training_run() -> tuple[str, str]:
    """Log a tiny classifier and its U-Net as the training pipeline does, in the current store.

    Returns:
        ``(run id, model URI returned by the training node)``.
    """
    unet = tiny_unet()
    model = tiny_classifier()
    card = {
        **make_card(unet),
        "backbone": "base_cnn",
        "init_used": "random",
    }
    info = {"init_requested": "random", "init_used": "random", "best_epoch": 1}
    info |= {"epochs_run": 1, "train_seconds": 0.1, "init_reason": "test"}
    mlflow.set_experiment("predict_test")
    with mlflow.start_run() as run:
        uri = train_nodes.log_training_run(
            model, card, unet, info, pd.DataFrame({"path": ["a"], "label": ["covid"]})
        )
    return run.info.run_id, uri


def test_predict_from_an_mlflow_model_uri(input_dir, tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        _, uri = log_training_run()
        bundle = inference.load_bundle(uri)
        table = inference.predict_directory(bundle, input_dir, tmp_path / "uri_out")
    finally:
        mlflow.set_tracking_uri(None)
    assert bundle.card["class_names"] == ["not_covid", "covid"]
    assert bundle.unet is not None
    assert (table["error"] != "").sum() == 1


def test_wrong_mlflow_uri_names_the_models_its_run_logged(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        run_id, uri = log_training_run()
        # Another experiment active: the run's models are still found.
        mlflow.set_experiment("elsewhere")
        # The classifier is logged under its instance name, not "model".
        with pytest.raises(FileNotFoundError) as caught:
            inference.load_bundle(f"runs:/{run_id}/model")
        message = str(caught.value)
        assert message.startswith(f"no MLflow model at runs:/{run_id}/model in tracking store")
        assert f"these classifiers: runs:/{run_id}/train_binary (= {uri}). Pass" in message
        assert (
            f"(other models of the run: runs:/{run_id}/train_binary_unet (= models:/m-" in message
        )
        # The URIs the message suggests do load.
        for suggested in (f"runs:/{run_id}/train_binary", uri):
            assert inference.load_bundle(suggested).card["name"] == "train_binary"
        with pytest.raises(FileNotFoundError, match="There is no run 0123abcd in this tracking"):
            inference.load_bundle("runs:/0123abcd/train_binary")
        with pytest.raises(FileNotFoundError, match=r"models:/<registered name>/<version>"):
            inference.load_bundle("models:/m-0000000000")
    finally:
        mlflow.set_tracking_uri(None)


def test_shared_images_predict(shared_data, bundle_dir, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    manifest = pd.read_csv(shared_data / "manifest.csv")
    images = manifest.loc[manifest["kind"] == "image", "path"].head(3)
    for relative in images:
        shutil.copy(shared_data / relative, folder / Path(relative).name)
    bundle = inference.load_bundle(str(bundle_dir / "model.keras"))
    table = inference.predict_directory(bundle, folder, tmp_path / "shared_out")
    assert len(table) == 3
    assert (table["error"] == "").all()
