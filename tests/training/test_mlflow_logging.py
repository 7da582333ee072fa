"""Tests for the MLflow helpers against a temporary SQLite tracking store."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib.figure
import mlflow
import mlflow.keras
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from covid_cxnet_pipeline.training.dataset import make_dataset
from covid_cxnet_pipeline.training.mlflow_logging import (
    MlflowEpochLogger,
    dataframe_digest,
    learning_curve_figure,
    log_dataset_digest,
    log_history,
    log_keras_model,
)
from covid_cxnet_pipeline.training.trainer import train_model
from tests.training.conftest import tiny_model

HISTORY = {"loss": [0.9, 0.7, 0.6], "val_loss": [0.8, 0.75, 0.9], "val_auc": [0.6, 0.7, 0.65]}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowClient]:
    """A fresh SQLite tracking store and experiment; the previous URI is restored after."""
    folder: Path = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    experiment_id = mlflow.create_experiment(
        "training-tests", artifact_location=str(folder / "art")
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    yield MlflowClient()
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def _index_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": ["a", "b", "c"],
            "path": ["/x/a.png", "/x/b.png", "/x/c.png"],
            "label": ["normal", "covid", "cap"],
            "split": ["train", "train", "test"],
            "mask_area": [0.41, 0.5, 0.33],
        }
    )


def test_log_history_steps_are_epochs(tracking):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with mlflow.start_run() as run:
            logged = log_history(HISTORY, prefix="binary_")
    assert logged == 9
    values = tracking.get_metric_history(run.info.run_id, "binary_val_auc")
    assert [(metric.step, metric.value) for metric in values] == [(1, 0.6), (2, 0.7), (3, 0.65)]


def test_helpers_without_active_run_log_nothing_and_start_no_run(tracking, caplog):
    assert mlflow.active_run() is None
    experiment_id = mlflow.get_experiment_by_name("training-tests").experiment_id
    runs_before = len(tracking.search_runs([experiment_id]))
    with caplog.at_level(logging.WARNING, logger="covid_cxnet_pipeline.training.mlflow_logging"):
        assert log_history(HISTORY) is None
        assert log_dataset_digest(_index_table(), "model_input_index") is None
        assert log_keras_model(tiny_model(1), "m", np.zeros((1, 32, 32, 3))) is None
    assert mlflow.active_run() is None
    assert len(tracking.search_runs([experiment_id])) == runs_before
    assert sum("No active MLflow run" in record.message for record in caplog.records) == 3


def test_dataframe_digest_is_stable_and_content_sensitive():
    table = _index_table()
    assert dataframe_digest(table) == dataframe_digest(table.copy())
    # The row index is not content: a filtered-then-reindexed copy of the same rows matches.
    assert dataframe_digest(table) == dataframe_digest(table.set_axis([5, 6, 7]))
    changed = table.copy()
    changed.loc[2, "label"] = "covid"
    assert dataframe_digest(changed) != dataframe_digest(table)
    assert len(dataframe_digest(table)) == 64


def test_log_dataset_digest_records_param_tag_and_input(tracking):
    table = _index_table()
    with mlflow.start_run() as run:
        digest = log_dataset_digest(table, "model_input_index")
    assert digest == dataframe_digest(table)
    logged = tracking.get_run(run.info.run_id)
    assert logged.data.params["model_input_index_sha256"] == digest
    assert logged.data.tags["model_input_index_rows"] == "3"
    inputs = logged.inputs.dataset_inputs
    assert [item.dataset.name for item in inputs] == ["model_input_index"]
    assert inputs[0].dataset.digest == digest[:16]


def test_log_keras_model_with_signature_loads_back(tracking):
    model = tiny_model(3)
    example = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    with mlflow.start_run():
        uri = log_keras_model(model, "tiny_multiclass", example)
    assert uri is not None
    info = mlflow.models.get_model_info(uri)
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 32, 32, 3)
    assert info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 3)
    reloaded = mlflow.keras.load_model(uri)
    np.testing.assert_allclose(reloaded.predict_on_batch(example), model.predict_on_batch(example))
    # The generic pyfunc flavour (what `predict` with an MLflow URI would use) agrees too.
    pyfunc = mlflow.pyfunc.load_model(uri)
    np.testing.assert_allclose(
        np.asarray(pyfunc.predict(example)), model.predict_on_batch(example), atol=1e-6
    )


def test_log_keras_model_stores_metadata_in_the_mlmodel_file(tracking):
    model = tiny_model(1)
    example = np.zeros((1, 32, 32, 3), dtype=np.float32)
    card = {"name": "tiny", "classes": ["normal", "covid"]}
    with mlflow.start_run():
        with_card = log_keras_model(model, "tiny_card", example, metadata={"model_card": card})
        without = log_keras_model(model, "tiny_plain", example)
    assert mlflow.models.get_model_info(with_card).metadata == {"model_card": card}
    assert not mlflow.models.get_model_info(without).metadata


def test_learning_curve_figure_has_one_panel_per_metric():
    figure = learning_curve_figure(HISTORY, title="binary")
    assert isinstance(figure, matplotlib.figure.Figure)
    titles = sorted(axis.get_title() for axis in figure.axes)
    assert titles == ["auc", "loss"]
    loss_axis = next(axis for axis in figure.axes if axis.get_title() == "loss")
    assert len(loss_axis.get_lines()) == 2


def test_epoch_logger_callback_logs_live_during_fit(tracking, tiny_index):
    def dataset(split):
        return make_dataset(
            tiny_index,
            split,
            "binary",
            ["not_covid", "covid"],
            32,
            batch_size=4,
            shuffle=False,
            seed=0,
        )

    with mlflow.start_run() as run:
        _, history, _ = train_model(
            tiny_model(1),
            dataset("train"),
            dataset("validation"),
            epochs=2,
            learning_rate=0.01,
            monitor="val_loss",
            callbacks_extra=[MlflowEpochLogger("live_")],
        )
    logged = tracking.get_metric_history(run.info.run_id, "live_val_loss")
    assert [metric.step for metric in logged] == [1, 2]
    np.testing.assert_allclose([metric.value for metric in logged], history["val_loss"])
