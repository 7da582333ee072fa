"""Tests of the evaluation stage: metrics tables, operating point, Grad-CAM localisation, report.

A hand-set 16x16 "brightness" classifier makes the answers known: COVID images are a bright
patch inside the lung mask on black, so the model says COVID with p ~ 0.99, and its Grad-CAM
mass lies entirely inside the mask (localisation 1.0).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure
from PIL import Image

from covid_cxnet_pipeline.pipelines.evaluate import nodes
from covid_cxnet_pipeline.pipelines.evaluate.pipeline import (
    create_evaluation_instance,
    create_pipeline,
)
from tests.conftest import PROJECT_ROOT

SIZE = 16
CARD = {
    "card_version": 1,
    "name": "tiny_binary",
    "task": "binary",
    "classes": ["not_covid", "covid"],
    "class_names": ["not_covid", "covid"],
    "input_size": [SIZE, SIZE],
    "channels": 3,
    "backbone": "hand_set",
    "init_used": "random",
    "init_reason": "test",
    "seed": 0,
    "best_epoch": 1,
    "monitor": "val_auc",
    "model_input_index_sha256": "0" * 64,
}
PARAMS = {
    "splits": ["validation", "test", "external"],
    "batch_size": 4,
    "bootstrap": {"n_resamples": 200, "confidence": 0.95, "seed": 0, "stratified": True},
    "threshold": {
        "rule": "youden",
        "target_sensitivity": 0.9,
        "fixed_threshold": 0.5,
        "report_on": ["test", "external"],
    },
    "plot_split": "test",
    "calibration_bins": 5,
    "gradcam": {"split": "test", "per_class": 2, "seed": 0, "ncols": 2, "alpha": 0.45},
    "localisation": {"split": "test", "max_images": None, "seed": 0},
    "lime": {
        "split": "test",
        "per_class": 1,
        "num_samples": 20,
        "num_features": 2,
        "segmentation": "grid",
        "segmentation_params": {"n_cells": 2},
        "seed": 0,
        "batch_size": 10,
        "ncols": 2,
    },
    "report": {"float_digits": 3},
}


def brightness_model() -> keras.Model:
    """p(covid) = sigmoid(60 * mean(pixels / 255) - 5), through one 1x1 conv feature map."""
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.Conv2D(1, 1, activation="relu", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="predictions")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("features").set_weights(
        [np.full((1, 1, 3, 1), 1.0 / (3 * 255.0), np.float32), np.zeros(1, np.float32)]
    )
    model.get_layer("predictions").set_weights(
        [np.array([[60.0]], np.float32), np.array([-5.0], np.float32)]
    )
    return model


def write_case(folder: Path, image_id: str, label: str, seed: int) -> tuple[str, str]:
    """A COVID image is a bright patch in the left half (the 'lung'); others are near black."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    if label == "covid":
        pixels[4:12, 1:7] = rng.integers(200, 256, size=(8, 6, 3))
    else:
        pixels[4:12, 1:7] = rng.integers(0, 20, size=(8, 6, 3))
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, : SIZE // 2] = 255
    image_path = folder / f"{image_id}.png"
    mask_path = folder / f"{image_id}_mask.png"
    Image.fromarray(pixels, mode="RGB").save(image_path)
    Image.fromarray(mask, mode="L").save(mask_path)
    return str(image_path), str(mask_path)


@pytest.fixture(scope="module")
def model_input_index(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("evaluate_images")
    layout = {
        "train": ["normal", "covid"],
        "validation": ["normal", "cap", "covid", "covid"],
        "test": ["normal", "cap", "normal", "covid", "covid", "covid"],
    }
    rows = []
    for split, labels in layout.items():
        for number, label in enumerate(labels):
            image_id = f"{split}-{number}"
            path, mask = write_case(folder, image_id, label, seed=len(rows))
            rows.append(
                {
                    "image_id": image_id,
                    "path": path,
                    "lung_mask_path": mask,
                    "label": label,
                    "split": split,
                    "mask_area": 0.5,
                    "roi_fallback": False,
                }
            )
    # An image of a label the classifiers do not use is left out, not an error.
    rows.append({**rows[0], "image_id": "other-0", "label": "other", "split": "test"})
    return pd.DataFrame(rows)


def card_for(model: keras.Model, index: pd.DataFrame) -> dict:
    """CARD with the digests a training run records for ``model`` and ``index``."""
    from covid_cxnet_pipeline.digests import table_digest
    from covid_cxnet_pipeline.models.digest import weights_digest

    return {
        **CARD,
        "model_weights_sha256": weights_digest(model),
        "model_input_index_sha256": table_digest(index),
    }


@pytest.fixture(scope="module")
def predictions(model_input_index) -> pd.DataFrame:
    model = brightness_model()
    return nodes.predict_splits(
        model, model_input_index, card_for(model, model_input_index), PARAMS
    )


def test_evaluate_refuses_a_model_or_index_its_card_does_not_describe(model_input_index, tmp_path):
    model = brightness_model()
    card = card_for(model, model_input_index)
    # The card's digest survives a save/load round trip of the model.
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    nodes.predict_splits(reloaded, model_input_index, card, PARAMS)
    other = brightness_model()
    other.get_layer("predictions").set_weights(
        [np.array([[50.0]], np.float32), np.array([-5.0], np.float32)]
    )
    with pytest.raises(ValueError, match=card["model_weights_sha256"]):
        nodes.predict_splits(other, model_input_index, card, PARAMS)
    with pytest.raises(ValueError, match="no model_weights_sha256"):
        nodes.predict_splits(model, model_input_index, CARD, PARAMS)
    remade = model_input_index.iloc[1:]
    with pytest.raises(ValueError, match=card["model_input_index_sha256"]):
        nodes.predict_splits(model, remade, card, PARAMS)


def test_predict_splits_aligns_rows_and_probabilities(predictions):
    assert list(predictions["split"].unique()) == ["validation", "test"]
    assert "other-0" not in set(predictions["image_id"])
    assert len(predictions) == 10
    covid = predictions["label"] == "covid"
    assert (predictions.loc[covid, "y_true"] == 1).all()
    assert (predictions.loc[~covid, "y_true"] == 0).all()
    assert (predictions.loc[covid, "prob_covid"] > 0.9).all()
    assert (predictions.loc[~covid, "prob_covid"] < 0.1).all()
    total = predictions["prob_covid"] + predictions["prob_not_covid"]
    np.testing.assert_allclose(total, 1.0)


def hand_predictions() -> pd.DataFrame:
    """Validation separates perfectly above 0.6; test has one error at 0.5 and none at 0.6."""
    val_scores = [0.1, 0.3, 0.55, 0.7, 0.9]
    val_true = [0, 0, 0, 1, 1]
    test_scores = [0.2, 0.55, 0.4, 0.8, 0.95, 0.65]
    test_true = [0, 0, 0, 1, 1, 1]
    frames = []
    for split, score_list, truth in (
        ("validation", val_scores, val_true),
        ("test", test_scores, test_true),
    ):
        scores = np.array(score_list)
        frames.append(
            pd.DataFrame(
                {
                    "image_id": [f"{split}-{i}" for i in range(len(scores))],
                    "split": split,
                    "y_true": truth,
                    "prob_not_covid": 1.0 - scores,
                    "prob_covid": scores,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_evaluation_metrics_known_answers():
    metrics, confusion, operating, logged = nodes.evaluation_metrics(
        hand_predictions(), CARD, PARAMS
    )
    test = metrics.loc[(metrics["split"] == "test") & (metrics["decision"] == "default")]
    estimate = dict(zip(test["metric"], test["estimate"], strict=True))
    assert estimate["accuracy"] == pytest.approx(5 / 6)
    assert estimate["specificity"] == pytest.approx(2 / 3)
    assert estimate["sensitivity"] == pytest.approx(1.0)
    # Mean cross-entropy by hand.
    p = np.array([0.2, 0.55, 0.4, 0.8, 0.95, 0.65])
    y = np.array([0, 0, 0, 1, 1, 1])
    expected_loss = -np.mean(np.where(y == 1, np.log(p), np.log(1 - p)))
    assert estimate["loss"] == pytest.approx(expected_loss)
    row = test.loc[test["metric"] == "accuracy"].iloc[0]
    assert row["ci_lower"] <= row["estimate"] <= row["ci_upper"]
    # Youden on validation: the highest threshold with TPR 1 and FPR 0 is 0.7.
    assert operating["threshold"].iloc[0] == pytest.approx(0.7)
    assert list(operating["split"]) == ["validation", "test"]
    at_threshold = metrics.loc[
        (metrics["split"] == "test") & (metrics["decision"] == "operating_point")
    ]
    np.testing.assert_allclose(at_threshold["threshold"], 0.7)
    at = dict(zip(at_threshold["metric"], at_threshold["estimate"], strict=True))
    assert at["sensitivity"] == pytest.approx(2 / 3)
    assert at["specificity"] == pytest.approx(1.0)
    counts = confusion.loc[confusion["split"] == "test"].set_index(["true", "predicted"])["count"]
    assert counts[("not_covid", "covid")] == 1
    assert counts[("covid", "covid")] == 3
    assert logged["operating_threshold"]["value"] == pytest.approx(0.7)
    assert logged["test.accuracy"]["value"] == pytest.approx(5 / 6)
    assert "test.at_operating_threshold.sensitivity" in logged


def test_operating_threshold_is_the_one_chosen_on_validation():
    metrics, _, operating, _ = nodes.evaluation_metrics(hand_predictions(), CARD, PARAMS)
    record = nodes.operating_threshold(operating, {**CARD, "model_weights_sha256": "d"}, PARAMS)
    chosen = operating.set_index("split").loc["validation"]
    assert record["threshold"] == pytest.approx(float(chosen["threshold"]))
    assert (record["chosen_on"], record["model_weights_sha256"]) == ("validation", "d")
    empty = operating.iloc[0:0]
    assert nodes.operating_threshold(empty, CARD, PARAMS)["threshold"] is None


def test_multiclass_has_no_operating_point():
    card = {**CARD, "task": "multiclass", "classes": ["normal", "cap", "covid"]}
    card["class_names"] = card["classes"]
    prob = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    frame = pd.DataFrame(prob, columns=["prob_normal", "prob_cap", "prob_covid"])
    frame = frame.assign(split=["validation", "validation", "test", "test"], y_true=[0, 1, 2, 1])
    metrics, _, operating, logged = nodes.evaluation_metrics(frame, card, PARAMS)
    assert tuple(metrics.columns) == (
        "split",
        "decision",
        "threshold",
        "metric",
        "estimate",
        "ci_lower",
        "ci_upper",
        "n_valid",
        "n_resamples",
    )
    assert operating.empty
    assert "operating_threshold" not in logged
    test = metrics.loc[metrics["split"] == "test"].set_index("metric")["estimate"]
    assert test["accuracy"] == pytest.approx(0.5)


def test_fixed_threshold_at_one_half_keeps_both_decisions_apart():
    params = {**PARAMS, "threshold": {**PARAMS["threshold"], "rule": "fixed"}}
    metrics, confusion, operating, logged = nodes.evaluation_metrics(
        hand_predictions(), CARD, params
    )
    assert operating["threshold"].iloc[0] == 0.5
    assert set(metrics["decision"]) == {"default", "operating_point"}
    assert logged["test.at_operating_threshold.accuracy"]["value"] == pytest.approx(5 / 6)
    report = nodes.evaluation_report(
        metrics=metrics,
        operating_point=operating,
        confusion=confusion,
        localisation_by_class=pd.DataFrame(columns=["label", "mean"]),
        model_card=CARD,
        params=params,
    )
    assert "At the operating threshold (test)" in report
    assert "[95% CI]" in report
    assert "stratified (within-class) resamples" in report


def test_report_states_the_configured_confidence_and_resampling():
    params = {
        **PARAMS,
        "bootstrap": {**PARAMS["bootstrap"], "confidence": 0.9, "stratified": False},
    }
    metrics, confusion, operating, _ = nodes.evaluation_metrics(hand_predictions(), CARD, params)
    report = nodes.evaluation_report(
        metrics=metrics,
        operating_point=operating,
        confusion=confusion,
        localisation_by_class=pd.DataFrame(columns=["label", "mean"]),
        model_card=CARD,
        params=params,
    )
    assert "[90% CI]" in report and "[95% CI]" not in report
    assert "90% percentile bootstrap CIs" in report
    assert "stratified" not in report


def test_threshold_rule_errors_name_the_problem():
    params = {**PARAMS, "threshold": {**PARAMS["threshold"], "rule": "magic"}}
    with pytest.raises(ValueError, match="unknown threshold rule"):
        nodes.evaluation_metrics(hand_predictions(), CARD, params)


def test_gradcam_mass_lies_in_the_lungs(predictions):
    grid, scores, by_class, logged, versioned = nodes.gradcam_and_localisation(
        brightness_model(), predictions, CARD, PARAMS
    )
    assert isinstance(grid, Figure)
    assert versioned == {"gradcam_grid.png": grid}
    covid = scores.loc[scores["label"] == "covid", "lung_fraction"]
    np.testing.assert_allclose(covid, 1.0, atol=1e-6)
    # Explaining "not covid" for a dark image gives a zero map: no score rather than a guess.
    assert scores.loc[scores["label"] == "not_covid", "lung_fraction"].isna().all()
    assert by_class.set_index("label").loc["covid", "mean"] == pytest.approx(1.0)
    assert logged["localisation.covid.mean"]["value"] == pytest.approx(1.0)
    assert by_class.set_index("label").loc["covid", "mean_mask_area"] == pytest.approx(0.5)
    # All mass in a mask covering half the image: twice uniform heat.
    np.testing.assert_allclose(scores.loc[scores["label"] == "covid", "lift"], 2.0, atol=1e-6)
    assert by_class.set_index("label").loc["covid", "mean_lift"] == pytest.approx(2.0)
    assert logged["localisation.covid.mean_lift"]["value"] == pytest.approx(2.0)


def test_gradcam_finds_the_feature_layer_once_per_model(predictions, monkeypatch):
    from covid_cxnet_pipeline.models import gradcam

    calls = []
    real = gradcam.find_last_conv_layer

    def counting(model):
        calls.append(model.name)
        return real(model)

    monkeypatch.setattr(gradcam, "find_last_conv_layer", counting)
    # Batches of one image: several grad_cam calls for the grid and for the localisation.
    nodes.gradcam_and_localisation(
        brightness_model(), predictions, CARD, {**PARAMS, "batch_size": 1}
    )
    assert len(calls) == 1


@pytest.mark.parametrize("shape", [(12, 10), (7, 9), (24, 20)])
def test_lung_mask_reads_grey_masks_as_load_grayscale_above_zero(tmp_path, shape):
    import cv2
    from PIL import Image

    from covid_cxnet_pipeline.imaging.decode import load_grayscale

    grey = np.random.default_rng(3).choice([0, 1, 2, 128, 255], size=(12, 10)).astype(np.uint8)
    path = tmp_path / "mask.png"
    Image.fromarray(grey).save(path)
    # The rule the node applied before it used imaging.masks.load_mask.
    expected = load_grayscale(path)
    if expected.shape != shape:
        expected = cv2.resize(expected, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    mask = nodes._load_lung_mask(str(path), shape)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected > 0)


def test_missing_or_unreadable_lung_mask_gives_an_empty_mask(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    for path in (str(tmp_path / "absent.png"), str(broken), "", None):
        mask = nodes._load_lung_mask(path, (5, 4))
        assert mask.dtype == bool and mask.shape == (5, 4) and not mask.any()


def test_lift_is_nan_safe():
    scores = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "label": ["covid", "covid", "normal", "normal"],
            "lung_fraction": [0.6, math.nan, 0.3, 0.5],
            "mask_area": [0.3, 0.4, 0.0, 0.5],
        }
    )
    lift = nodes.with_lift(scores)["lift"]
    np.testing.assert_allclose(lift.to_numpy(), [2.0, math.nan, math.nan, 1.0])
    by_class = nodes.lift_by_class(nodes.with_lift(scores)).set_index("label")["mean_lift"]
    assert by_class.to_dict() == pytest.approx({"covid": 2.0, "normal": 1.0, "all": 1.5})


def figure_datasets(namespace: str, root: Path, save_version: str) -> dict[str, Any]:
    """The project's figure datasets of one instance, from its catalog, with paths under root.

    The MLflow wrappers are replaced by their inner (unversioned) dataset, so saving them needs
    no MLflow run; the ``*_versioned`` copies are built as configured, at ``save_version``.
    """
    config = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog_evaluate.yml").read_text())
    entries = {}
    for pattern, outer in config.items():
        entry = outer.get("dataset", outer)
        if entry["type"] != "matplotlib.MatplotlibDataset":
            continue
        filepath = str(root / entry["filepath"].replace("{namespace}", namespace))
        entries[pattern.replace("{namespace}", namespace)] = {**entry, "filepath": filepath}
    catalog = DataCatalog.from_config(entries, save_version=save_version)
    return {name: catalog[name] for name in entries}


def test_evaluation_stage_runs_namespaced(model_input_index, tmp_path):
    stage = create_evaluation_instance("train_binary")
    model = brightness_model()
    version = "2026-11-29T21.00.00.000Z"
    on_disk = figure_datasets("train_binary", tmp_path, version)
    # Six figures, three versioned copies; the figures inspected below stay in memory.
    assert len(on_disk) == 9
    inspected = (
        "train_binary.roc_plot",
        "train_binary.lime_grid",
        "train_binary.learning_curves_plot",
    )
    for name in inspected:
        on_disk.pop(name)
    catalog = DataCatalog(
        {
            "model_input_index": MemoryDataset(model_input_index),
            "train_binary.model": MemoryDataset(model, copy_mode="assign"),
            "train_binary.model_card": MemoryDataset(card_for(model, model_input_index)),
            "train_binary.training_history": MemoryDataset(
                {"loss": [0.7, 0.5], "val_loss": [0.8, 0.6], "auc": [0.5, 0.9]}
            ),
            "params:evaluate": MemoryDataset(PARAMS),
            **on_disk,
        }
    )
    outputs = SequentialRunner().run(stage, catalog)
    reporting = tmp_path / "data/08_reporting/train_binary"
    # figures/ (the MLflow artefacts' local copies) as before, and every figure under the same
    # name in a timestamped folder of figures_versioned/.
    assert {p.name for p in (reporting / "figures").iterdir()} == {
        "confusion_matrix.png",
        "calibration.png",
        "gradcam_grid.png",
    }
    versioned = {
        p.relative_to(reporting / "figures_versioned").as_posix()
        for p in (reporting / "figures_versioned").rglob("*.png")
    }
    assert versioned == {
        f"plots/{version}/plots/confusion_matrix.png",
        f"plots/{version}/plots/roc_curves.png",
        f"plots/{version}/plots/calibration.png",
        f"plots/{version}/plots/learning_curves.png",
        f"gradcam/{version}/gradcam/gradcam_grid.png",
        f"lime/{version}/lime/lime_grid.png",
    }
    for path in (reporting / "figures_versioned").rglob("*.png"):
        assert Image.open(path).size[0] > 100
    report = outputs["train_binary.evaluation_report"].load()
    assert report.startswith("# tiny_binary: evaluation")
    assert "1.0 = no better than uniform heat over the image" in report
    for section in ("## Confidence intervals", "Operating point", "figures/gradcam_grid.png"):
        assert section in report
    assert isinstance(outputs["train_binary.lime_grid"].load(), Figure)
    assert isinstance(outputs["train_binary.learning_curves_plot"].load(), Figure)
    roc = outputs["train_binary.roc_plot"].load()
    legend = [t.get_text() for t in roc.axes[0].get_legend().get_texts()]
    assert any("(chosen on validation)" in entry for entry in legend)
    logged = outputs["train_binary.metrics_mlflow"].load()
    assert logged["test.accuracy"]["value"] == pytest.approx(1.0)
    by_class = outputs["train_binary.localisation_scores"].load()
    assert len(by_class) == 6


def test_evaluate_pipeline_instances_every_training_namespace():
    evaluate = create_pipeline()
    assert {"train_binary.model", "train_multiclass.model"} <= evaluate.inputs()
    assert "params:evaluate" in evaluate.inputs()
    assert "model_input_index" in evaluate.inputs()


def test_plot_split_without_predictions_is_an_error(predictions):
    params = {**PARAMS, "plot_split": "external"}
    with pytest.raises(ValueError, match="plot_split"):
        nodes.evaluation_plots(predictions, {"loss": [1.0]}, CARD, params)


def test_report_lists_nan_as_na():
    metrics, confusion, operating, _ = nodes.evaluation_metrics(hand_predictions(), CARD, PARAMS)
    by_class = pd.DataFrame(
        [
            {
                "label": "covid",
                "n_images": 1,
                "n_scored": 0,
                "mean": math.nan,
                "std": math.nan,
                "median": math.nan,
                "mean_mask_area": 0.5,
                "mean_lift": math.nan,
            }
        ]
    )
    report = nodes.evaluation_report(
        metrics=metrics,
        operating_point=operating,
        confusion=confusion,
        localisation_by_class=by_class,
        model_card=CARD,
        params=PARAMS,
    )
    assert "n/a" in report
    assert "| not_covid |" in report
