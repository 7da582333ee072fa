"""The train_segmentation pipeline on tiny synthetic images and the three mask layouts of the sources."""

from __future__ import annotations

import copy
import hashlib

import cv2
import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.tensorflow import TensorFlowModelDataset
from matplotlib.figure import Figure
from PIL import Image

from covid_cxnet_pipeline.pipelines.preprocess.chain import read_png
from covid_cxnet_pipeline.pipelines.train_segmentation import create_pipeline, nodes
from covid_cxnet_pipeline.pipelines.train_segmentation.data import augment_pair
from covid_cxnet_pipeline.pipelines.train_segmentation.pairs import assign_validation, pair_plan
from covid_cxnet_pipeline.training.augment import AugmentConfig
from tests.conftest import PROJECT_ROOT

SIZE = 32
OUTPUTS = (
    "segmentation_pairs_all",
    "segmentation_pairs_unsplit",
    "segmentation_pairs",
    "unet_model",
    "segmentation_learning_curves",
    "segmentation_metrics",
    "segmentation_mlflow_metrics",
    "segmentation_prediction_plot",
)


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test can read intermediate outputs."""

    def _release(self) -> None:
        pass


def save(pixels: np.ndarray, path) -> tuple[str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


def mask_row(image_id: str, source: str, stored: tuple[str, str], **extra) -> dict:
    return {
        "image_id": image_id,
        "source_id": source,
        "structure": extra.pop("structure", "both_lungs"),
        "url": "",
        "sha256": stored[1],
        "path": stored[0],
        "offset_top": extra.pop("offset_top", 0),
        "offset_left": extra.pop("offset_left", 0),
        "scale_to_image": extra.pop("scale_to_image", False),
    }


@pytest.fixture
def indexes(tmp_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Eight 64 x 64 images of three sources whose lungs are two bright 32 x 12 blocks."""
    images, masks = [], []
    lungs = np.zeros((64, 64), bool)
    lungs[16:48, 12:24] = lungs[16:48, 40:52] = True
    for number in range(8):
        rng = np.random.default_rng(number)
        pixels = rng.integers(20, 70, size=(64, 64)).astype(np.uint8)
        pixels[lungs] = rng.integers(160, 230, size=int(lungs.sum()))
        stored = save(pixels, tmp_path / "store" / f"img{number}.png")
        source = ("gb", "shenzhen", "montgomery")[number % 3]
        image_id = f"{source}:img{number}.png"
        images.append(
            {
                "image_id": image_id,
                "source_id": source,
                "patient_id": f"p{number // 2}",  # two images per patient
                "sha256": stored[1],
                "path": stored[0],
            }
        )
        folder = tmp_path / "masks"
        if source == "gb":  # one RGBA crop per lung, at its offset in the image
            for side, left in (("left", 12), ("right", 40)):
                crop = np.zeros((32, 12, 4), np.uint8)
                crop[..., 0] = crop[..., 3] = 255
                crop_file = save(crop, folder / f"{number}_{side}.png")
                masks.append(
                    mask_row(
                        image_id,
                        source,
                        crop_file,
                        structure=f"{side}_lung",
                        offset_top=16,
                        offset_left=left,
                    )
                )
        elif source == "shenzhen":  # a 128 x 128 mask of a squashed image: resized to it
            big = np.kron(lungs, np.ones((2, 2), bool)).astype(np.uint8) * 255
            stored_mask = save(big, folder / f"{number}_both.png")
            masks.append(mask_row(image_id, source, stored_mask, scale_to_image=True))
        else:  # Montgomery: full-size left and right masks
            for side, columns in (("left", slice(0, 32)), ("right", slice(32, 64))):
                half = np.zeros((64, 64), np.uint8)
                half[:, columns] = lungs[:, columns] * 255
                stored_mask = save(half, folder / f"{number}_{side}.png")
                masks.append(mask_row(image_id, source, stored_mask, structure=f"{side}_lung"))
    raw_mask_index = pd.DataFrame(masks)
    # Ingest may list a mask twice; the duplicate must not count twice.
    raw_mask_index = pd.concat([raw_mask_index, raw_mask_index.iloc[:1]], ignore_index=True)
    return pd.DataFrame(images), raw_mask_index


@pytest.fixture
def params(tmp_path) -> dict:
    text = (PROJECT_ROOT / "conf/base/parameters_train_segmentation.yml").read_text()
    settings = copy.deepcopy(yaml.safe_load(text)["train_segmentation"])
    settings["pairs"].update(cache_dir=str(tmp_path / "pairs"), workers=1)
    settings["split"]["validation_fraction"] = 0.25
    settings["unet"].update(input_size=[SIZE, SIZE], levels=2, base_filters=4, dropout=0.0)
    settings["training"].update(epochs=2, batch_size=4, early_stopping_patience=0)
    settings["evaluation"]["plot_examples"] = 2
    return settings


def preprocess_decode() -> dict:
    text = (PROJECT_ROOT / "conf/base/parameters_preprocess.yml").read_text()
    return yaml.safe_load(text)["preprocess"]["decode"]


def lung_mask_params(**changes) -> dict:
    text = (PROJECT_ROOT / "conf/base/parameters_preprocess.yml").read_text()
    return {**yaml.safe_load(text)["preprocess"]["lung_mask"], **changes}


def curate_namespaces() -> dict[str, str]:
    text = (PROJECT_ROOT / "conf/base/parameters_curate.yml").read_text()
    return yaml.safe_load(text)["curate"]["patients"]["namespaces"]


CURATED_COLUMNS = ["image_id", "sha256", "duplicate_group", "split"]


def curated(rows: list[tuple[str, str, str, str]] = ()) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=CURATED_COLUMNS)


def duplicate_groups(rows: list[tuple[str, str]] = ()) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["duplicate_group", "member_image_ids"])


def run(indexes, params, curated_index=None, groups=None) -> DataCatalog:
    raw_index, raw_mask_index = indexes
    catalog = DataCatalog(
        {
            "raw_index": MemoryDataset(raw_index),
            "raw_mask_index": MemoryDataset(raw_mask_index),
            "curated_index": MemoryDataset(curated() if curated_index is None else curated_index),
            "curation_duplicate_groups": MemoryDataset(
                duplicate_groups() if groups is None else groups
            ),
            "params:train_segmentation": MemoryDataset(params),
            "params:curate.patients.namespaces": MemoryDataset(curate_namespaces()),
            "params:preprocess.decode": MemoryDataset(preprocess_decode()),
            "params:preprocess.lung_mask": MemoryDataset(lung_mask_params()),
            **{name: KeptDataset(copy_mode="assign") for name in OUTPUTS},
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


def expected_mask() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[8:24, 6:12] = mask[8:24, 20:26] = 255
    return mask


def test_pipeline_trains_a_unet_and_scores_it_on_validation(indexes, params):
    catalog = run(indexes, params)
    pairs = catalog["segmentation_pairs"].load()
    assert len(pairs) == 8
    assert set(pairs["split"]) == {"train", "validation"}
    # Patients are namespaced by source and never straddle the split.
    assert pairs.groupby("patient_group")["split"].nunique().max() == 1
    assert "gb:p0" in set(pairs["patient_group"])
    model = catalog["unet_model"].load()
    assert model.input_shape == (None, SIZE, SIZE, 1)
    metrics = catalog["segmentation_metrics"].load()
    assert 0.0 <= metrics["validation_dice"] <= 1.0
    assert 0.0 <= metrics["validation_iou"] <= metrics["validation_dice"] + 1e-9
    assert metrics["n_train"] + metrics["n_validation"] == 8
    assert metrics["input_size"] == [SIZE, SIZE]
    mlflow_metrics = catalog["segmentation_mlflow_metrics"].load()
    assert mlflow_metrics["validation_dice"] == {"value": metrics["validation_dice"], "step": 0}
    validation_sources = set(pairs.loc[pairs["split"] == "validation", "source_id"])
    for source in validation_sources:
        assert 0.0 <= mlflow_metrics[f"validation_dice_{source}"]["value"] <= 1.0
    assert (
        sum(metrics[f"n_validation_{source}"] for source in validation_sources)
        == (metrics["n_validation"])
    )
    assert 0.0 <= mlflow_metrics["validation_dice_postprocessed"]["value"] <= 1.0
    assert isinstance(catalog["segmentation_prediction_plot"].load(), Figure)
    assert isinstance(catalog["segmentation_learning_curves"].load(), Figure)


def test_pairs_assemble_every_mask_layout_at_the_unet_size(indexes, params):
    raw_index, raw_mask_index = indexes
    pairs = nodes.build_segmentation_pairs(raw_index, raw_mask_index, params, preprocess_decode())
    assert len(pairs) == 8
    for row in pairs.itertuples():
        image = read_png(row.image_path)
        assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8
        # GB crops at offsets, Shenzhen's 2x mask resized, Montgomery left + right: all
        # give the same two lungs, halved to rows 8-23 and columns 6-11 and 20-25.
        np.testing.assert_array_equal(read_png(row.mask_path), expected_mask(), row.image_id)


def test_pairs_are_written_once(indexes, params, tmp_path, monkeypatch):
    raw_index, raw_mask_index = indexes
    nodes.build_segmentation_pairs(raw_index, raw_mask_index, params, preprocess_decode())
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "pairs").rglob("*.png")}
    assert len(before) == 16

    def forbidden(task):
        raise AssertionError("a finished pair was recomputed")

    monkeypatch.setattr(nodes, "pair_task", forbidden)
    again = nodes.build_segmentation_pairs(raw_index, raw_mask_index, params, preprocess_decode())
    assert len(again) == 8
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "pairs").rglob("*.png")} == before


def test_unusable_pairs_are_left_out_with_a_warning(indexes, params, tmp_path, caplog):
    raw_index, raw_mask_index = indexes
    corrupt = tmp_path / "masks" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    broken = raw_mask_index.copy()
    target = broken.index[broken["image_id"] == "shenzhen:img1.png"][0]
    broken.loc[target, ["path", "sha256"]] = [str(corrupt), "0" * 64]
    pairs = nodes.build_segmentation_pairs(raw_index, broken, params, preprocess_decode())
    assert "shenzhen:img1.png" not in set(pairs["image_id"])
    assert len(pairs) == 7
    assert "corrupt.png" in caplog.text


def test_no_masks_and_a_single_patient_fail_clearly(indexes, params):
    raw_index, raw_mask_index = indexes
    with pytest.raises(ValueError, match="enable a source with lung masks"):
        nodes.build_segmentation_pairs(
            raw_index, raw_mask_index.iloc[:0], params, preprocess_decode()
        )
    one_patient = pd.DataFrame({"patient_group": ["a:1", "a:1"]})
    with pytest.raises(ValueError, match="at least 2"):
        assign_validation(one_patient, 0.2, seed=1)


def test_split_is_seeded_and_by_patient():
    pairs = pd.DataFrame({"patient_group": [f"s:{n // 3}" for n in range(30)]})
    first = assign_validation(pairs, 0.3, seed=7)
    assert first.equals(assign_validation(pairs, 0.3, seed=7))
    assert first.groupby("patient_group")["split"].nunique().max() == 1
    assert first["split"].eq("validation").sum() == 9  # 3 of 10 patients, 3 images each


def test_augmentation_moves_image_and_mask_together():
    mask = np.zeros((SIZE, SIZE, 1), np.float32)
    mask[6:20, 4:14] = 1.0
    image = tf.constant(mask * 255.0)
    config = AugmentConfig(enabled=True, rotation_degrees=15, zoom=0.2, shift=0.1)
    moved = []
    for seed in range(3):
        out_image, out_mask = augment_pair(
            image, tf.constant(mask), tf.constant([seed, 5], tf.int64), config
        )
        # Same geometry: the image (a copy of the mask) thresholded equals the mask exactly.
        np.testing.assert_array_equal(out_image.numpy() >= 127.5, out_mask.numpy() > 0)
        assert set(np.unique(out_mask.numpy())) <= {0.0, 1.0}
        moved.append(not np.array_equal(out_mask.numpy(), mask))
    assert any(moved)


def test_model_round_trips_through_the_catalog_dataset(tmp_path):
    """The unet_model catalog entry (.keras, compile: false, safe_mode) loads what it saved."""
    from covid_cxnet_pipeline.models.unet import build_unet, compile_unet

    model = compile_unet(build_unet((SIZE, SIZE, 1), levels=2, base_filters=4))
    catalog_text = (PROJECT_ROOT / "conf/base/catalog_segmentation.yml").read_text()
    entry = yaml.safe_load(catalog_text)["unet_model"]
    dataset = TensorFlowModelDataset(
        filepath=str(tmp_path / "unet_model.keras"), load_args=entry["load_args"]
    )
    dataset.save(model)
    loaded = dataset.load()
    batch = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 1)).astype(np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(batch)), keras.ops.convert_to_numpy(model(batch))
    )


def test_worker_processes_write_the_same_pairs(indexes, params, tmp_path):
    raw_index, raw_mask_index = indexes
    serial = nodes.build_segmentation_pairs(raw_index, raw_mask_index, params, preprocess_decode())
    parallel_params = copy.deepcopy(params)
    parallel_params["pairs"].update(cache_dir=str(tmp_path / "pairs_parallel"), workers=2)
    parallel = nodes.build_segmentation_pairs(
        raw_index, raw_mask_index, parallel_params, preprocess_decode()
    )
    assert serial["image_id"].tolist() == parallel["image_id"].tolist()
    for column in ("image_path", "mask_path"):
        for first, second in zip(serial[column], parallel[column], strict=True):
            np.testing.assert_array_equal(read_png(first), read_png(second))


def test_one_patient_listed_by_two_mask_sources_is_one_patient_group(indexes, params, tmp_path):
    """Montgomery's ManualMask copy and the segmentation mirror's copy of MCUCXR_0001 (the
    same patient, different files) must not land on both sides of the U-Net split."""
    raw_index, raw_mask_index = indexes
    images = raw_index.iloc[[2, 5]].assign(
        source_id=["montgomery", "shenzhen_montgomery_seg"], patient_id="MCUCXR_0001"
    )
    masks = raw_mask_index[raw_mask_index["image_id"].isin(images["image_id"])]
    plan = pair_plan(
        images,
        masks,
        cache_dir=tmp_path / "pairs",
        size=(SIZE, SIZE),
        decode_options={},
        foreground_threshold=0,
        namespaces=curate_namespaces(),
    )
    assert [entry["patient_group"] for entry in plan] == ["nlm_tb:MCUCXR_0001"] * 2
    # Without the shared namespace they would be two patients.
    unmapped = pair_plan(
        images,
        masks,
        cache_dir=tmp_path / "pairs",
        size=(SIZE, SIZE),
        decode_options={},
        foreground_threshold=0,
    )
    assert len({entry["patient_group"] for entry in unmapped}) == 2


def test_classifier_holdout_images_are_left_out_of_unet_training(indexes, params, caplog):
    raw_index, _ = indexes
    sha = dict(zip(raw_index["image_id"], raw_index["sha256"], strict=True))
    curated_index = curated(
        [
            # Same file under another id, in the classifier's test split: left out by sha256.
            ("other:copy.png", sha["gb:img0.png"], "other:copy.png", "test"),
            # Canonical copy in validation; shenzhen:img1.png is a near-duplicate member.
            ("other:canon.png", "f" * 64, "other:canon.png", "validation"),
            # A training image: its pair stays.
            ("montgomery:img2.png", sha["montgomery:img2.png"], "montgomery:img2.png", "train"),
            # A held-out image that matches no pair changes nothing.
            ("other:unrelated.png", "e" * 64, "other:unrelated.png", "external"),
        ]
    )
    groups = duplicate_groups(
        [
            ("other:canon.png", "other:canon.png;shenzhen:img1.png"),
            ("montgomery:img2.png", "gb:img3.png;montgomery:img2.png"),
        ]
    )
    with caplog.at_level("INFO"):
        catalog = run(indexes, params, curated_index, groups)
    pairs = catalog["segmentation_pairs"].load()
    assert len(catalog["segmentation_pairs_all"].load()) == 8
    assert sorted(
        set(catalog["segmentation_pairs_all"].load()["image_id"]) - set(pairs["image_id"])
    ) == [
        "gb:img0.png",
        "shenzhen:img1.png",
    ]
    assert "2 of 8 left out" in caplog.text
    assert (
        catalog["segmentation_metrics"].load()["n_train"]
        + len(pairs[pairs["split"] == "validation"])
        == 6
    )
    # The flag turns the exclusion off.
    kept = nodes.drop_classifier_holdout(
        catalog["segmentation_pairs_all"].load(),
        curated_index,
        groups,
        {**params, "exclude_classifier_holdout": False},
    )
    assert len(kept) == 8


def test_decode_options_have_one_source_of_truth(indexes, params):
    """The U-Net pairs are decoded with preprocess.decode, not a copy that could drift."""
    assert "decode" not in params["pairs"]
    assert "params:preprocess.decode" in create_pipeline().inputs()
    raw_index, raw_mask_index = indexes
    default = nodes.build_segmentation_pairs(raw_index, raw_mask_index, params, preprocess_decode())
    other = nodes.build_segmentation_pairs(
        raw_index, raw_mask_index, params, {**preprocess_decode(), "alpha": "white"}
    )
    # Other decode options are other pixels: their pairs go to another cache folder.
    assert set(default["image_path"]).isdisjoint(other["image_path"])


def test_training_changes_the_weights_and_lowers_the_training_loss(indexes, params):
    from covid_cxnet_pipeline.models.unet import build_unet, compile_unet
    from covid_cxnet_pipeline.training.seeding import set_global_seed

    raw_index, raw_mask_index = indexes
    pairs = nodes.split_segmentation_pairs(
        nodes.build_segmentation_pairs(raw_index, raw_mask_index, params, preprocess_decode()),
        params,
    )
    settings = copy.deepcopy(params)
    settings["training"].update(epochs=5, learning_rate=0.01)
    settings["augment"]["enabled"] = False
    # Without batch normalisation, inference mode computes what training optimised (five
    # epochs barely move batch-norm moving statistics).
    settings["unet"]["batch_norm"] = False
    unet = settings["unet"]

    def initial_model() -> keras.Model:
        # The same seed and architecture as train_unet starts from.
        set_global_seed(int(settings["seed"]))
        return build_unet(
            (SIZE, SIZE, 1),
            levels=unet["levels"],
            base_filters=unet["base_filters"],
            batch_norm=unet["batch_norm"],
            dropout=unet["dropout"],
        )

    before = initial_model()
    np.testing.assert_array_equal(before.get_weights()[0], initial_model().get_weights()[0])
    trained, _ = nodes.train_unet(pairs, settings)
    changed = [
        not np.allclose(old, new)
        for old, new in zip(before.get_weights(), trained.get_weights(), strict=True)
    ]
    assert sum(changed) > len(changed) // 2
    train_ds, _, _ = nodes._datasets(pairs, settings, augment=False)

    def loss(model: keras.Model) -> float:
        compile_unet(model, bce_weight=1.0, dice_weight=1.0)
        return float(model.evaluate(train_ds, verbose=0, return_dict=True)["loss"])

    assert loss(trained) < loss(before) - 0.05


def test_validation_scores_per_source_and_after_postprocessing(indexes, params):
    """A stand-in U-Net that finds exactly the bright "lungs" scores Dice 1 on every source;
    dilating its masks (as preprocess does) lowers the post-processed Dice by a known amount."""
    raw_index, raw_mask_index = indexes
    pairs = nodes.build_segmentation_pairs(raw_index, raw_mask_index, params, preprocess_decode())
    # Validation: one image of each source; training: the rest.
    validation_ids = {"gb:img0.png", "shenzhen:img1.png", "montgomery:img2.png"}
    pairs = pairs.assign(
        split=["validation" if i in validation_ids else "train" for i in pairs["image_id"]]
    )
    inputs = keras.Input((SIZE, SIZE, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    # Lungs are 160-230, background 20-70 after resizing: 10 * (x - 115) separates them.
    model.set_weights([np.full((1, 1, 1, 1), 10.0, np.float32), np.array([-1150.0], np.float32)])
    report, mlflow_metrics, _ = nodes.evaluate_unet(
        model, pairs, params, lung_mask_params(dilation_px=0)
    )
    for source in ("gb", "shenzhen", "montgomery"):
        assert report[f"validation_dice_{source}"] == pytest.approx(1.0)
        assert report[f"n_validation_{source}"] == 1
        assert mlflow_metrics[f"validation_dice_{source}"]["value"] == pytest.approx(1.0)
    assert report["validation_dice_postprocessed"] == pytest.approx(1.0)
    assert mlflow_metrics["validation_dice_postprocessed"]["value"] == pytest.approx(1.0)
    # Dilation by 1 px (the 3 x 3 elliptical kernel) grows each 16 x 6 lung by a ring:
    # the predicted area exceeds the true one, so the post-processed Dice falls below 1
    # while the raw Dice stays 1.
    dilated, _, _ = nodes.evaluate_unet(model, pairs, params, lung_mask_params(dilation_px=1))
    assert dilated["validation_dice"] == pytest.approx(1.0)
    truth = expected_mask() > 0
    grown = cv2.dilate(truth.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    expected = 2 * truth.sum() / (truth.sum() + grown.sum())
    assert dilated["validation_dice_postprocessed"] == pytest.approx(expected)
