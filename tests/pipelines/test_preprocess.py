"""The preprocess pipeline on tiny synthetic images with a 1x1-convolution "U-Net" of known output."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure
from PIL import Image

from covid_cxnet_pipeline.imaging import gray_histogram, load_grayscale, resize
from covid_cxnet_pipeline.pipelines.preprocess import chain, create_pipeline, nodes
from covid_cxnet_pipeline.schema import MODEL_INPUT_COLUMNS
from tests.conftest import PROJECT_ROOT

INPUT_SIZE = (24, 40)  # (height, width): not square, so a swapped axis shows
UNET_SIZE = (16, 16)
SPLITS = ("train", "train", "train", "validation", "test", "train")
OUTPUTS = (
    "preprocess_lung_masks",
    "preprocess_lung_roi",
    "histogram_reference",
    "model_input_index",
    "preprocess_model_input_stats",
    "preprocess_metrics",
    "preprocess_roi_fallbacks",
    "preprocess_contact_sheet",
    "preprocess_lineage",
)


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test can read intermediate outputs."""

    def _release(self) -> None:
        pass


def brightness_unet() -> keras.Model:
    """A stand-in U-Net: lung probability = sigmoid(x - 128), so "lungs" are the bright pixels."""
    inputs = keras.Input((*UNET_SIZE, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.set_weights([np.ones((1, 1, 1, 1), np.float32), np.array([-128.0], np.float32)])
    return model


def lung_picture(number: int, with_lungs: bool = True) -> np.ndarray:
    """64 x 96 dark image with two bright 32 x 24 "lungs" (25 % of the image) and noise."""
    rng = np.random.default_rng(number)
    image = rng.integers(10, 60, size=(64, 96)).astype(np.uint8)
    if with_lungs:
        image[16:48, 16:40] = rng.integers(170, 250, size=(32, 24))
        image[16:48, 56:80] = rng.integers(170, 250, size=(32, 24))
    return image


@pytest.fixture
def curated_index(tmp_path) -> pd.DataFrame:
    rows = []
    for number, split in enumerate(SPLITS):
        # Image 5 has no bright region: its mask is empty and its ROI falls back.
        pixels = lung_picture(number, with_lungs=number != 5)
        path = tmp_path / "store" / f"{number}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path)
        rows.append(
            {
                "image_id": f"src:{number}.png",
                "source_id": "src",
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "path": str(path),
                "label": ("normal", "cap", "covid")[number % 3],
                "split": split,
                "patient_group": f"src:p{number}",
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def params(tmp_path) -> dict:
    text = (PROJECT_ROOT / "conf/base/parameters_preprocess.yml").read_text()
    settings = copy.deepcopy(yaml.safe_load(text)["preprocess"])
    settings["folders"] = {
        name: str(tmp_path / "out" / name)
        for name in (
            "lung_probabilities",
            "lung_masks",
            "lung_roi",
            "histogram_references",
            "model_input",
        )
    }
    settings.update(workers=1, chunk_size=4, predict_batch_size=3)
    settings["lung_mask"]["dilation_px"] = 0
    settings["resize"]["size"] = list(INPUT_SIZE)
    settings["enhance"]["clahe_tile_grid_size"] = [2, 2]
    settings["contact_sheet"]["images"] = 2
    return settings


def run(curated_index: pd.DataFrame, params: dict, model: keras.Model) -> DataCatalog:
    catalog = DataCatalog(
        {
            "curated_index": MemoryDataset(curated_index),
            "unet_model": MemoryDataset(model, copy_mode="assign"),
            "params:preprocess": MemoryDataset(params),
            **{name: KeptDataset(copy_mode="assign") for name in OUTPUTS},
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


def output_files(root) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def test_pipeline_writes_one_model_ready_png_per_image(curated_index, params):
    catalog = run(curated_index, params, brightness_unet())
    index = catalog["model_input_index"].load()
    assert list(index.columns) == list(MODEL_INPUT_COLUMNS) + list(nodes.MODEL_INPUT_EXTRA_COLUMNS)
    assert index["image_id"].tolist() == curated_index["image_id"].tolist()
    assert index["split"].tolist() == list(SPLITS)
    assert index["path"].nunique() == len(index)
    for row in index.itertuples():
        stacked = chain.read_png(row.path)
        assert stacked.shape == (*INPUT_SIZE, 3) and stacked.dtype == np.uint8
        assert chain.read_png(row.lung_mask_path).shape == INPUT_SIZE
    # The "lungs" are 25 % of the image; the 1x1 U-Net finds exactly the bright pixels.
    assert index["mask_area"].iloc[:5].tolist() == pytest.approx([0.25] * 5, abs=0.02)
    assert index["roi_fallback"].tolist() == [False] * 5 + [True]
    assert index["fallback_reason"].iloc[5] == "empty lung mask"
    metrics = {name: entry["value"] for name, entry in catalog["preprocess_metrics"].load().items()}
    assert metrics["images"] == 6
    assert metrics["masks_predicted"] == metrics["masks_postprocessed"] == 6
    assert metrics["model_inputs_written"] == 6
    assert metrics["roi_fallback_rate"] == pytest.approx(1 / 6)
    assert metrics["images.train"] == 4
    fallbacks = catalog["preprocess_roi_fallbacks"].load()
    assert fallbacks["image_id"].tolist() == ["src:5.png"]
    assert isinstance(catalog["preprocess_contact_sheet"].load(), Figure)


def test_roi_crop_keeps_the_lungs_and_its_mask_is_aligned(curated_index, params):
    catalog = run(curated_index, params, brightness_unet())
    roi = catalog["preprocess_lung_roi"].load().iloc[0]
    # Lungs span rows 16-47 and columns 16-39 and 56-79 of the 64 x 96 image. At the 16 x 16
    # U-Net size a mask pixel is 4 rows x 6 columns: rows 4-11 are lung, and the columns at
    # least half bright: 3-6 and 9-12, i.e. image rows 16-47 and columns 18-41 and 54-77.
    # Margin 5 % of the 32 x 60 box, rounded half up: 2 rows, 3 columns.
    image = load_grayscale(curated_index["path"].iloc[0])
    expected = resize(image[14:50, 15:81], INPUT_SIZE)
    np.testing.assert_array_equal(chain.read_png(roi["roi_path"]), expected)
    # The mask, scaled to the image, is cropped with the same box and resized nearest.
    full_mask = np.zeros((64, 96), np.uint8)
    full_mask[16:48, 18:42] = full_mask[16:48, 54:78] = 255
    expected_mask = resize(full_mask[14:50, 15:81], INPUT_SIZE, interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(chain.read_png(roi["lung_mask_path"]), expected_mask)


def test_histogram_reference_is_built_from_the_train_split_only(curated_index, params):
    catalog = run(curated_index, params, brightness_unet())
    reference = catalog["histogram_reference"].load()
    roi = catalog["preprocess_lung_roi"].load()
    train = roi[roi["split"] == "train"]
    expected = np.mean(
        [gray_histogram(chain.read_png(path)) / np.prod(INPUT_SIZE) for path in train["roi_path"]],
        axis=0,
    )
    np.testing.assert_allclose(reference["histogram"], expected)
    assert reference["n_images"] == 4 and reference["split"] == "train"
    assert reference["input_size"] == list(INPUT_SIZE)
    assert reference["unet_sha256"] == nodes.weights_digest(brightness_unet())


def test_rerun_recomputes_nothing(curated_index, params, tmp_path, monkeypatch):
    model = brightness_unet()
    first = run(curated_index, params, model)
    files_before = output_files(tmp_path / "out")
    assert len(files_before) > 6 * 3

    def forbidden(*args, **kwargs):
        raise AssertionError("a re-run decoded an image or predicted a mask")

    # Nothing may be decoded or predicted the second time (workers=1 runs in this process).
    monkeypatch.setattr(chain, "load_grayscale", forbidden)
    monkeypatch.setattr(model, "predict_on_batch", forbidden)
    second = run(curated_index, params, model)
    metrics = {name: entry["value"] for name, entry in second["preprocess_metrics"].load().items()}
    assert metrics["masks_predicted"] == metrics["masks_postprocessed"] == 0
    assert metrics["rois_computed"] == 0
    assert metrics["model_inputs_written"] == 0
    assert metrics["model_inputs_reused"] == 6
    assert output_files(tmp_path / "out") == files_before
    pd.testing.assert_frame_equal(
        first["model_input_index"].load(), second["model_input_index"].load()
    )


def test_changing_the_channels_recomputes_only_the_model_inputs(curated_index, params):
    run(curated_index, params, brightness_unet())
    changed = {**params, "channels": ["original", "he", "beasf"]}
    catalog = run(curated_index, changed, brightness_unet())
    metrics = {name: entry["value"] for name, entry in catalog["preprocess_metrics"].load().items()}
    assert (metrics["masks_predicted"], metrics["rois_computed"]) == (0, 0)
    assert metrics["model_inputs_written"] == 6


def test_without_lung_roi_the_full_image_is_resized(curated_index, params):
    catalog = run(curated_index, {**params, "use_lung_roi": False}, brightness_unet())
    roi = catalog["preprocess_lung_roi"].load()
    assert not roi["roi_fallback"].any()
    for row in roi.itertuples():
        full = resize(load_grayscale(row.path), INPUT_SIZE)
        np.testing.assert_array_equal(chain.read_png(row.roi_path), full)


def test_histogram_matching_off_keeps_the_roi_pixels_in_channel_original(curated_index, params):
    settings = {**params, "histogram_matching": {"enabled": False}}
    catalog = run(curated_index, settings, brightness_unet())
    roi = catalog["preprocess_lung_roi"].load()
    index = catalog["model_input_index"].load()
    for roi_path, path in zip(roi["roi_path"], index["path"], strict=True):
        np.testing.assert_array_equal(chain.read_png(path)[..., 0], chain.read_png(roi_path))


def test_worker_processes_give_the_same_files(curated_index, params, tmp_path):
    run(curated_index, params, brightness_unet())
    parallel = {**params, "workers": 2}
    parallel["folders"] = {
        name: folder.replace("/out/", "/out_parallel/")
        for name, folder in params["folders"].items()
    }
    run(curated_index, parallel, brightness_unet())
    serial = {
        path.relative_to(tmp_path / "out"): path.read_bytes()
        for path in (tmp_path / "out").rglob("*.png")
    }
    spawned = {
        path.relative_to(tmp_path / "out_parallel"): path.read_bytes()
        for path in (tmp_path / "out_parallel").rglob("*.png")
    }
    assert serial == spawned


def test_missing_columns_and_empty_train_split_fail_clearly(curated_index, params):
    with pytest.raises(ValueError, match="lacks the columns"):
        nodes.predict_lung_masks(curated_index.drop(columns="sha256"), brightness_unet(), params)
    no_train = curated_index.assign(split="test")
    with pytest.raises(ValueError, match="train split"):
        run(no_train, params, brightness_unet())


def test_model_ready_image_matches_the_files_the_pipeline_wrote(curated_index, params):
    model = brightness_unet()
    catalog = run(curated_index, params, model)
    reference = catalog["histogram_reference"].load()["histogram"]
    index = catalog["model_input_index"].load()
    image = load_grayscale(curated_index["path"].iloc[3])
    probabilities = model.predict_on_batch(resize(image, UNET_SIZE)[None, ..., None] * 1.0)
    result = chain.model_ready_image(image, np.asarray(probabilities)[0, ..., 0], reference, params)
    np.testing.assert_array_equal(result["image"], chain.read_png(index["path"].iloc[3]))
    np.testing.assert_array_equal(
        result["lung_mask"], chain.read_png(index["lung_mask_path"].iloc[3])
    )
    assert result["roi_fallback"] is False


def test_a_real_unet_predicts_masks_through_the_node(curated_index, params):
    from covid_cxnet_pipeline.models.unet import build_unet

    keras.utils.set_random_seed(0)
    unet = build_unet((*UNET_SIZE, 1), levels=2, base_filters=4)
    masks = nodes.predict_lung_masks(curated_index, unet, params)
    assert masks["mask_computed"].all()
    assert masks["unet_sha256"].unique().tolist() == [nodes.weights_digest(unet)]
    assert masks["mask_area"].between(0.0, 1.0).all()
    for path in masks["lung_mask_full_path"]:
        mask = chain.read_png(path)
        assert mask.shape == UNET_SIZE and set(np.unique(mask)) <= {0, 255}


def test_mask_areas_of_new_and_reused_masks_agree_with_their_sidecars(curated_index, params):
    first = nodes.predict_lung_masks(curated_index, brightness_unet(), params)
    assert first["mask_computed"].all()
    sidecars = [chain.read_mask_area(path) for path in first["lung_mask_full_path"]]
    assert first["mask_area"].tolist() == sidecars  # returned by the workers, same values
    Path(first["lung_mask_full_path"].iloc[0]).unlink()  # one mask to redo, the rest reused
    second = nodes.predict_lung_masks(curated_index, brightness_unet(), params)
    assert second["mask_computed"].tolist() == [True] + [False] * (len(second) - 1)
    assert second["mask_area"].tolist() == sidecars


def _moved_split(curated_index: pd.DataFrame) -> pd.DataFrame:
    """One train image moved to validation: the train-only reference histogram changes."""
    return curated_index.assign(split=["validation", *SPLITS[1:]])


def _with(params: dict, section: str, name: str, value) -> dict:
    changed = copy.deepcopy(params)
    changed[section][name] = value
    return changed


def _other_unet() -> keras.Model:
    model = brightness_unet()
    model.set_weights([np.ones((1, 1, 1, 1), np.float32), np.array([-120.0], np.float32)])
    return model


# (what changes, new curated_index, new params, new U-Net) -> which stages recompute:
# (U-Net predictions, masks post-processed, ROIs computed, model inputs written) of 6 images.
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda index, params: (index, params, _other_unet()), (6, 6, 6, 6)),
        (
            lambda index, params: (index, _with(params, "lung_mask", "dilation_px", 1), None),
            (0, 6, 6, 6),
        ),
        (lambda index, params: (index, _with(params, "roi", "margin", 0.2), None), (0, 0, 6, 6)),
        (
            lambda index, params: (index, _with(params, "resize", "keep_aspect", True), None),
            (0, 0, 6, 6),
        ),
        (lambda index, params: (_moved_split(index), params, None), (0, 0, 0, 6)),
        (
            lambda index, params: (index, _with(params, "enhance", "beasf_gamma", 2.0), None),
            (0, 0, 0, 6),
        ),
    ],
    ids=[
        "new-unet-weights",
        "lung-mask-dilation",
        "roi-margin",
        "keep-aspect",
        "moved-split",
        "beasf-gamma",
    ],
)
def test_each_change_recomputes_exactly_the_stages_it_affects(
    curated_index, params, change, expected
):
    run(curated_index, params, brightness_unet())
    index, changed_params, model = change(curated_index, params)
    catalog = run(index, changed_params, model or brightness_unet())
    metrics = {name: entry["value"] for name, entry in catalog["preprocess_metrics"].load().items()}
    recomputed = (
        metrics["masks_predicted"],
        metrics["masks_postprocessed"],
        metrics["rois_computed"],
        metrics["model_inputs_written"],
    )
    assert recomputed == expected
    # And a second identical run after the change recomputes nothing.
    again = run(index, changed_params, model or brightness_unet())
    metrics = {name: entry["value"] for name, entry in again["preprocess_metrics"].load().items()}
    assert (metrics["masks_predicted"], metrics["rois_computed"]) == (0, 0)
    assert metrics["model_inputs_written"] == 0


def test_weights_digest_lives_in_models_and_is_re_exported():
    from covid_cxnet_pipeline.models import digest

    assert nodes.weights_digest is digest.weights_digest
    first, second = brightness_unet(), brightness_unet()
    assert digest.weights_digest(first) == digest.weights_digest(second)
    assert digest.weights_digest(_other_unet()) != digest.weights_digest(first)


def test_a_new_chain_version_recomputes_every_stage(curated_index, params, monkeypatch):
    run(curated_index, params, brightness_unet())
    monkeypatch.setattr(chain, "CHAIN_VERSION", chain.CHAIN_VERSION + 1)
    catalog = run(curated_index, params, brightness_unet())
    metrics = {name: entry["value"] for name, entry in catalog["preprocess_metrics"].load().items()}
    assert (
        metrics["masks_predicted"],
        metrics["masks_postprocessed"],
        metrics["rois_computed"],
        metrics["model_inputs_written"],
    ) == (6, 6, 6, 6)


def test_lineage_names_the_unet_reference_and_index_in_mlflow(
    curated_index, params, tmp_path, monkeypatch
):
    import mlflow
    from mlflow.tracking import MlflowClient

    from covid_cxnet_pipeline.digests import table_digest

    catalog = run(curated_index, params, brightness_unet())
    index = catalog["model_input_index"].load()
    reference = catalog["histogram_reference"].load()
    lineage = catalog["preprocess_lineage"].load()
    assert lineage["unet_sha256"] == nodes.weights_digest(brightness_unet())
    assert lineage["histogram_reference_digest"] == reference["digest"]
    assert lineage["model_input_index_sha256"] == table_digest(index)
    assert lineage["model_input_index_rows"] == 6
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("preprocess_test")
        with mlflow.start_run() as active:
            nodes.record_lineage(index, reference)
        logged = MlflowClient().get_run(active.info.run_id).data
    finally:
        mlflow.set_tracking_uri(None)
    assert logged.tags["model_input_index_sha256"] == table_digest(index)
    assert logged.params["preprocess.unet_sha256"] == lineage["unet_sha256"]
    assert logged.params["preprocess.histogram_reference_digest"] == reference["digest"]
    assert logged.tags["model_input_index_rows"] == "6"
