"""Tests of the ``covid-cxnet`` console script (click runner and a real subprocess)."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pandas as pd
from click.testing import CliRunner

from covid_cxnet_pipeline.cli import cli
from tests.pipelines.test_predict import (
    log_training_run,
    make_card,
    make_input_folder,
    save_bundle,
    tiny_classifier,
    tiny_unet,
)


def _bundle(tmp_path):
    unet = tiny_unet()
    return save_bundle(tmp_path / "bundle", tiny_classifier(), unet, make_card(unet))


def test_predict_command_writes_predictions_and_reports_failures(tmp_path):
    model_file = _bundle(tmp_path)
    inputs = make_input_folder(tmp_path / "inputs")
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            "--model",
            str(model_file),
            "--input",
            str(inputs),
            "--output",
            str(tmp_path / "out"),
            "--threshold",
            "1.01",
        ],
    )
    # One corrupt file: exit code 1, the other four are predicted.
    assert result.exit_code == 1, result.output
    assert "4 of 5 files predicted" in result.output
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert (table["prediction"].dropna() == "not_covid").all()


def test_clean_folder_exits_zero_and_versioned_folder_is_accepted(tmp_path):
    model_file = _bundle(tmp_path)
    inputs = make_input_folder(tmp_path / "inputs")
    (inputs / "broken.png").unlink()
    versioned_folder = model_file.parent.parent
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            "--model",
            str(versioned_folder),
            "--input",
            str(inputs),
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "out" / "predictions.csv")) == 4


def test_missing_model_is_a_usage_error(tmp_path):
    inputs = make_input_folder(tmp_path / "inputs")
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            "--model",
            str(tmp_path / "nope.keras"),
            "--input",
            str(inputs),
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code != 0
    assert "no model at" in result.output


def test_wrong_mlflow_uri_is_a_clear_error_listing_the_run_models(tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    try:
        run_id, _ = log_training_run()
    finally:
        mlflow.set_tracking_uri(None)
    inputs = make_input_folder(tmp_path / "inputs")
    arguments = ["--input", str(inputs), "--output", str(tmp_path / "out")]
    arguments += ["--tracking-uri", tracking_uri]
    try:
        result = CliRunner().invoke(
            cli, ["predict", "--model", f"runs:/{run_id}/model", *arguments]
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"Error: no MLflow model at runs:/{run_id}/model" in result.output
    assert f"runs:/{run_id}/train_binary (= models:/m-" in result.output
    assert not (tmp_path / "out").exists()


def test_console_script_entry_point_runs(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from covid_cxnet_pipeline.cli import main; main()",
            "predict",
            "--help",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "--model" in completed.stdout and "predictions.csv" in completed.stdout
