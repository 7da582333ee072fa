"""Digests of the curate inputs and outputs, and their record in an MLflow run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from covid_cxnet_pipeline.curation.lineage import index_lineage, log_lineage, table_digest


@pytest.fixture
def tracking(tmp_path) -> Iterator[MlflowClient]:
    """A fresh SQLite tracking store; the previous URI is restored after."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = mlflow.create_experiment("curate-tests", str(tmp_path / "artefacts"))
    mlflow.set_experiment(experiment_id=experiment_id)
    yield MlflowClient()
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_table_digest_is_the_sha256_of_a_canonical_csv():
    frame = pd.DataFrame({"image_id": ["a:1", "b:2"], "age_years": [0.1, float("nan")]})
    expected = hashlib.sha256(b"image_id,age_years\na:1,0.10000000000000001\nb:2,\n").hexdigest()
    assert table_digest(frame) == expected


def test_table_digest_ignores_the_row_index_but_not_values_or_column_order():
    frame = pd.DataFrame({"image_id": ["a:1", "b:2"], "split": ["train", "test"]})
    digest = table_digest(frame)
    assert table_digest(frame.set_axis([7, 9])) == digest
    assert table_digest(frame.assign(split=["train", "validation"])) != digest
    assert table_digest(frame[["split", "image_id"]]) != digest


def test_index_lineage_names_digest_and_rows_per_table():
    raw = pd.DataFrame({"image_id": ["a:1", "b:2", "c:3"]})
    curated = raw.iloc[:2]
    assert index_lineage({"raw_index": raw, "curated_index": curated}) == {
        "raw_index_sha256": table_digest(raw),
        "raw_index_rows": 3,
        "curated_index_sha256": table_digest(curated),
        "curated_index_rows": 2,
    }


def test_log_lineage_records_params_and_tags_in_the_active_run(tracking):
    lineage = {"raw_index_sha256": "ab" * 32, "raw_index_rows": 3}
    with mlflow.start_run() as run:
        assert log_lineage(lineage) is True
    data = tracking.get_run(run.info.run_id).data
    assert data.params == {"raw_index_sha256": "ab" * 32, "raw_index_rows": "3"}
    assert {k: data.tags[k] for k in lineage} == data.params


def test_log_lineage_without_an_active_run_logs_nothing(tracking, caplog):
    assert log_lineage({"raw_index_rows": 3}) is False
    assert mlflow.active_run() is None
    assert "No active MLflow run" in caplog.text


def test_log_lineage_prefixes_params_not_tags_and_names_the_stage(tracking, caplog):
    caplog.set_level("INFO", logger="covid_cxnet_pipeline.curation.lineage")
    with mlflow.start_run() as run:
        assert log_lineage({"chain_version": 2}, stage="preprocess", param_prefix="pre.") is True
    data = tracking.get_run(run.info.run_id).data
    assert data.params == {"pre.chain_version": "2"}
    assert data.tags["chain_version"] == "2"
    assert "Logged preprocess lineage to MLflow: {'chain_version': '2'}" in caplog.text
