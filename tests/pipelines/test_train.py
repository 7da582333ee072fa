"""Tests of the modular training pipeline: one-epoch runs of both instances on tiny images,
MLflow logging into a temporary SQLite store, same-seed reproducibility and config errors."""

from __future__ import annotations

import copy
import os

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from covid_cxnet_pipeline.models.digest import weights_digest
from covid_cxnet_pipeline.models.unet import build_unet
from covid_cxnet_pipeline.pipelines.train import nodes
from covid_cxnet_pipeline.pipelines.train.pipeline import create_pipeline, create_training_instance
from tests.pipelines.test_evaluate import PARAMS as EVALUATE_PARAMS
from tests.training.conftest import make_index

SIZE = 32
TRAIN_DEFAULTS = {
    "backbone": "base_cnn",
    "init": "random",
    "allow_init_fallback": True,
    "weights": {},
    "input_size": SIZE,
    "channels": 3,
    "base_cnn": {"conv_layers": 2, "filters": 4, "dense_units": [4]},
    "epochs": 1,
    "batch_size": 4,
    "learning_rate": 1.0e-2,
    "label_smoothing": 0.1,
    "class_weighting": "balanced",
    "augment": {"enabled": True, "rotation_degrees": 5, "brightness": 0.05},
    "early_stopping_patience": 2,
    "monitor": "val_loss",
    "seed": 7,
    "n_seeds": 1,
    "seeds_confidence": 0.95,
    "op_determinism": True,
    "cache": False,
}
BINARY = {"name": "train_binary", "task": "binary", "classes": ["not_covid", "covid"]}
MULTICLASS = {
    "name": "train_multiclass",
    "task": "multiclass",
    "classes": ["normal", "cap", "covid"],
}
PREPROCESS = {
    "use_lung_roi": True,
    "lung_mask": {"threshold": 0.5},
    "roi": {"margin": 0.05},
    "resize": {"size": [SIZE, SIZE], "keep_aspect": False},
    "histogram_matching": {"enabled": True},
    "channels": ["original", "clahe", "beasf"],
    "enhance": {"clahe_clip_limit": 2.0, "clahe_tile_grid_size": [8, 8], "beasf_gamma": 1.5},
}
HISTOGRAM = {
    "histogram": [1.0 / 256] * 256,
    "digest": "uniform",
    "n_images": 8,
    "use_lung_roi": True,
    "input_size": [SIZE, SIZE],
}
SPLIT_LABELS = {
    "train": ["normal"] * 3 + ["cap"] * 3 + ["covid"] * 3,
    "validation": ["normal", "cap", "covid", "covid"],
    "test": ["normal", "cap", "covid", "covid"],
}


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner does not release, so the test can read it after the run."""

    def _release(self) -> None:
        pass


@pytest.fixture(scope="module")
def model_input_index(tmp_path_factory) -> pd.DataFrame:
    index = make_index(tmp_path_factory.mktemp("train_images"), SPLIT_LABELS, size=SIZE)
    # An "other" image is left out by both tasks, not an error.
    return pd.concat([index, index.iloc[[0]].assign(image_id="other", label="other")])


@pytest.fixture(scope="module")
def unet():
    return build_unet((16, 16, 1), levels=1, base_filters=2)


def evaluate_params() -> dict:
    params = copy.deepcopy(EVALUATE_PARAMS)
    params["gradcam"]["per_class"] = 1
    params["bootstrap"]["n_resamples"] = 50
    return params


def run_instance(
    namespace, overrides, index, unet, defaults=TRAIN_DEFAULTS, *, preprocess=PREPROCESS, saved=None
):
    catalog = DataCatalog(
        {
            "model_input_index": MemoryDataset(index),
            "histogram_reference": MemoryDataset(HISTOGRAM),
            "unet_model": MemoryDataset(unet, copy_mode="assign"),
            "params:train": MemoryDataset(defaults),
            f"params:{namespace}.training": MemoryDataset(overrides),
            "params:evaluate": MemoryDataset(evaluate_params()),
            "params:preprocess": MemoryDataset(preprocess),
            f"{namespace}.model": KeptDataset(copy_mode="assign"),
            f"{namespace}.unet": KeptDataset(copy_mode="assign"),
            f"{namespace}.model_card": KeptDataset(),
            f"{namespace}.training_history": KeptDataset(),
            f"{namespace}.seeds_summary": KeptDataset(),
        }
    )
    if saved is not None:
        saved["catalog"] = catalog
    outputs = SequentialRunner().run(create_training_instance(namespace), catalog)
    return catalog, outputs


def test_binary_instance_trains_evaluates_and_logs_to_mlflow(
    model_input_index, unet, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    defaults = {**TRAIN_DEFAULTS, "n_seeds": 2}
    try:
        mlflow.set_experiment("train_test")
        with mlflow.start_run() as run:
            catalog, outputs = run_instance(
                "train_binary", BINARY, model_input_index, unet, defaults
            )
    finally:
        mlflow.set_tracking_uri(None)
    card = catalog["train_binary.model_card"].load()
    assert card["class_names"] == ["not_covid", "covid"]
    assert card["input_size"] == [SIZE, SIZE]
    assert card["init_used"] == "random"
    assert card["preprocessing"]["histogram_reference"]["digest"] == "uniform"
    assert len(card["preprocessing"]["unet_weights_sha256"]) == 64
    assert card["model_weights_sha256"] == weights_digest(catalog["train_binary.model"].load())
    history = catalog["train_binary.training_history"].load()
    assert set(history) >= {"loss", "val_loss", "auc", "val_auc"}
    report = outputs["train_binary.evaluation_report"].load()
    assert "## Confidence intervals" in report
    summary = catalog["train_binary.seeds_summary"].load()
    assert summary.set_index("metric").loc["accuracy", "n"] == 2
    assert summary["seeds"].iloc[0] == "7,8"
    assert "## Repeated training over seeds" in report
    assert "over 2 seed(s) (7,8)" in report

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        client = mlflow.MlflowClient()
        data = client.get_run(run.info.run_id).data
        model_uri = outputs["train_binary.mlflow_model_uri"].load()
        info = mlflow.models.get_model_info(model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    assert data.params["train_binary.init_used"] == "random"
    assert data.tags["train_binary.init_used"] == "random"
    # The merged configuration, not only the instance's overrides.
    assert data.params["train_binary.config.backbone"] == "base_cnn"
    assert data.params["train_binary.config.augment.rotation_degrees"] == "5"
    assert data.params["train_binary.config.input_size"] == f"[{SIZE}, {SIZE}]"
    assert data.tags["train_binary.card.model_weights_sha256"] == card["model_weights_sha256"]
    assert "model_input_index_sha256" in data.params
    assert "train_binary.val_loss" in data.metrics
    assert info.metadata["model_card"]["class_names"] == ["not_covid", "covid"]
    assert info.metadata["model_card"]["unet_model_uri"].startswith("models:/")
    assert info.signature is not None


def test_multiclass_instance_trains_without_mlflow(model_input_index, unet):
    catalog, outputs = run_instance("train_multiclass", MULTICLASS, model_input_index, unet)
    card = catalog["train_multiclass.model_card"].load()
    assert card["class_names"] == ["normal", "cap", "covid"]
    model = catalog["train_multiclass.model"].load()
    assert model.output_shape == (None, 3)
    assert outputs["train_multiclass.mlflow_model_uri"].load() == ""
    assert catalog["train_multiclass.seeds_summary"].load()["n"].max() == 1


def test_same_seed_gives_same_model(model_input_index):
    config = nodes.resolve_training_config(TRAIN_DEFAULTS, {**BINARY, "epochs": 2})
    first, first_history, _ = nodes.train_classifier(model_input_index, config)
    second, second_history, _ = nodes.train_classifier(model_input_index, config)
    assert first_history == second_history
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = nodes.resolve_training_config(TRAIN_DEFAULTS, {**BINARY, "epochs": 2, "seed": 8})
    third, _, _ = nodes.train_classifier(model_input_index, other)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(first.get_weights(), third.get_weights(), strict=True)
    )


def test_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match="lack"):
        nodes.resolve_training_config({"backbone": "base_cnn"}, BINARY)
    with pytest.raises(ValueError, match="class_weighting"):
        nodes.resolve_training_config(TRAIN_DEFAULTS, {**BINARY, "class_weighting": "inverse"})
    with pytest.raises(ValueError, match="epochs"):
        nodes.resolve_training_config(TRAIN_DEFAULTS, {**BINARY, "epochs": 0})


def test_card_refuses_preprocessing_other_than_the_index_was_made_with():
    nodes.check_preprocessing_replay(PREPROCESS, HISTOGRAM, "abc")
    with pytest.raises(ValueError, match="use_lung_roi"):
        nodes.check_preprocessing_replay({**PREPROCESS, "use_lung_roi": False}, HISTOGRAM, "abc")
    with pytest.raises(ValueError, match="unet_sha256"):
        nodes.check_preprocessing_replay(PREPROCESS, {**HISTOGRAM, "unet_sha256": "old"}, "new")


def _chexnet_config(tmp_path, sha256, write: bool, fallback: bool = True) -> dict:
    weights = tmp_path / "chexnet.h5"
    if write:
        weights.write_bytes(b"not the CheXNet weights")
    overrides = {
        **BINARY,
        "backbone": "densenet121",
        "init": "chexnet",
        "densenet_blocks": [1, 1, 1, 1],
        "allow_init_fallback": fallback,
        "weights": {"chexnet": {"path": str(weights), "url": None, "sha256": sha256}},
    }
    return nodes.resolve_training_config(TRAIN_DEFAULTS, overrides)


def test_only_an_absent_weights_file_falls_back_to_random(tmp_path):
    from covid_cxnet_pipeline.models.densenet import WeightsUnavailableError

    build = nodes.build_for_training(_chexnet_config(tmp_path, None, write=False), 2, 7)
    assert (build.init_requested, build.init_used) == ("chexnet", "random")
    assert "absent" in build.init_reason
    with pytest.raises(WeightsUnavailableError, match="chexnet.h5"):
        nodes.build_for_training(_chexnet_config(tmp_path, None, False, fallback=False), 2, 7)


def test_wrong_or_unset_sha256_of_a_present_file_always_raises(tmp_path):
    import hashlib

    from covid_cxnet_pipeline.models.densenet import WeightsUnavailableError

    actual = hashlib.sha256(b"not the CheXNet weights").hexdigest()
    with pytest.raises(WeightsUnavailableError) as wrong:
        nodes.build_for_training(_chexnet_config(tmp_path, "ab" * 32, write=True), 2, 7)
    message = str(wrong.value)
    assert "chexnet.h5" in message and actual in message and "ab" * 32 in message
    assert "train.weights.chexnet.sha256" in message
    with pytest.raises(
        WeightsUnavailableError, match="configured train.weights.chexnet.sha256 unset"
    ):
        nodes.build_for_training(_chexnet_config(tmp_path, None, write=True), 2, 7)


def test_replay_mismatch_stops_the_run_before_a_model_is_saved(model_input_index, unet):
    from kedro.io import DatasetError

    saved = {}
    with pytest.raises(ValueError, match="use_lung_roi"):
        run_instance(
            "train_binary",
            BINARY,
            model_input_index,
            unet,
            preprocess={**PREPROCESS, "use_lung_roi": False},
            saved=saved,
        )
    # Checked before training: no model was saved that a card would not describe.
    with pytest.raises(DatasetError):
        saved["catalog"]["train_binary.model"].load()


def test_instance_overrides_merge_deeply():
    config = nodes.resolve_training_config(
        TRAIN_DEFAULTS, {**BINARY, "augment": {"rotation_degrees": 2}}
    )
    assert config["augment"] == {"enabled": True, "rotation_degrees": 2, "brightness": 0.05}
    assert config["input_size"] == [SIZE, SIZE]
    assert TRAIN_DEFAULTS["augment"]["rotation_degrees"] == 5


def test_instances_share_inputs_and_prefix_their_own():
    template = create_pipeline()
    assert "params:training" in template.inputs()
    binary = create_training_instance("train_binary")
    inputs = binary.inputs()
    assert {"model_input_index", "params:train", "params:evaluate"} <= inputs
    assert "params:train_binary.training" in inputs
    assert "train_binary.model" in binary.outputs() | {d for n in binary.nodes for d in n.outputs}


VERSION = "2026-11-29T00.00.00.000Z"


def _versioned(root, relative: str):
    """The file path of a Kedro versioned dataset's version ``VERSION``."""
    path = root / relative / VERSION / relative.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    return path


@pytest.mark.slow
def test_kedro_session_runs_train_binary_and_predicts_with_its_model(tmp_path, monkeypatch):
    """The real catalog, parameters and kedro-mlflow hooks on a tiny project copy."""
    import json
    import shutil

    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession

    from covid_cxnet_pipeline.pipelines.predict.inference import load_bundle, predict_directory
    from tests.conftest import PROJECT_ROOT

    project = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project / "pyproject.toml")
    index = make_index(project / "images", SPLIT_LABELS, size=SIZE)
    index.to_parquet(_versioned(project, "data/05_model_input/model_input_index.parquet"))
    _versioned(project, "data/04_feature/histogram_reference.json").write_text(
        json.dumps(HISTOGRAM)
    )
    build_unet((16, 16, 1), levels=1, base_filters=2).save(
        _versioned(project, "data/06_models/unet_model.keras")
    )
    monkeypatch.chdir(project)
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # kedro-mlflow sets MLflow's active experiment (a module global and an environment
    # variable); both are cleared again when the test ends.
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    tiny = {
        "train": {
            "backbone": "base_cnn",
            "init": "random",
            "input_size": SIZE,
            "base_cnn": {"conv_layers": 2, "filters": 4, "dense_units": [4]},
            "batch_size": 4,
        },
        "train_binary": {"training": {"epochs": 1}},
        # As the (pretend) preprocess run that made the index: the card checks it.
        "preprocess": {"resize": {"size": [SIZE, SIZE]}},
        "evaluate": {
            "bootstrap": {"n_resamples": 50},
            "gradcam": {"per_class": 1},
            "lime": {
                "num_samples": 20,
                "segmentation": "grid",
                "segmentation_params": {"n_cells": 2},
            },
        },
    }
    configure_project("covid_cxnet_pipeline")
    try:
        with KedroSession.create(project, env="mirror", runtime_params=tiny) as session:
            session.run(pipeline_names=["train_binary"])
    finally:
        # In one process the session leaves kedro-mlflow's run on MLflow's active-run stack
        # (a CLI run ends with its process); clear it so later tests can start their own runs.
        while mlflow.active_run() is not None:
            mlflow.end_run()
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        mlflow.set_tracking_uri(None)
    root = project / "data" / "06_models" / "train_binary"
    assert len(list((root / "model.keras").iterdir())) == 1
    report = (project / "data" / "08_reporting" / "train_binary" / "report.md").read_text()
    assert "figures/roc_curves.png" in report
    assert (
        project / "data" / "08_reporting" / "train_binary" / "figures" / "roc_curves.png"
    ).is_file()
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(experiment_names=["covid_cxnet_pipeline"])
        artifacts = mlflow.MlflowClient().list_artifacts(
            runs.sort_values("start_time")["run_id"].iloc[0], "train_binary/report"
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1
    assert "metrics.train_binary.test.accuracy" in runs.columns
    assert "train_binary/report/report.md" in {item.path for item in artifacts}
    images = project / "predict_in"
    images.mkdir()
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(images / "a.png")
    bundle = load_bundle(str(root / "model.keras"))
    # The training run's evaluation saved its validation threshold beside the model.
    saved = json.loads(next((root / "operating_threshold.json").glob("*/*.json")).read_text())
    assert bundle.operating_threshold == pytest.approx(saved["threshold"])
    table = predict_directory(bundle, images, project / "out")
    assert table["error"].eq("").all()


def test_missing_trained_model_names_the_pipeline_and_namespaces(tmp_path):
    from kedro.io import Version
    from kedro.io.core import DatasetError

    from covid_cxnet_pipeline.pipelines.train.model_dataset import TrainedModelDataset

    missing = TrainedModelDataset(
        filepath=str(tmp_path / "train_multiclass" / "model.keras"), version=Version(None, None)
    )
    with pytest.raises(DatasetError, match="--namespaces train_binary") as error:
        missing.load()
    assert "--pipeline=train_multiclass" in str(error.value)
    saved = TrainedModelDataset(
        filepath=str(tmp_path / "train_binary" / "model.keras"), version=Version(None, None)
    )
    saved.save(build_unet((16, 16, 1), levels=1, base_filters=2))
    assert saved.load().input_shape == (None, 16, 16, 1)
