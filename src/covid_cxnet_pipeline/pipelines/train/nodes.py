"""Nodes of the modular training pipeline: thin wrappers over ``training/`` and ``models/``.

Each instance (``train_binary``, ``train_multiclass``) merges the shared ``train`` defaults with
its own ``<instance>.training`` block, trains with model selection on validation only, saves the
model with a model card (class names and preprocessing travel with it) and logs to the active
MLflow run that kedro-mlflow opens around ``kedro run``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from covid_cxnet_pipeline.evaluation.metrics import UndefinedMetricWarning, compute_metrics
from covid_cxnet_pipeline.evaluation.seeds_summary import summarise_seeds
from covid_cxnet_pipeline.pipelines.evaluate.inputs import (
    MODEL_CARD_VERSION,
    PIXEL_MAX,
    model_dataset,
    probability_matrix,
    task_rows,
)

logger = logging.getLogger(__name__)

_REQUIRED_KEYS = (
    "name",
    "task",
    "classes",
    "backbone",
    "input_size",
    "channels",
    "epochs",
    "batch_size",
    "learning_rate",
    "label_smoothing",
    "class_weighting",
    "monitor",
    "seed",
    "n_seeds",
)
CLASS_WEIGHTINGS = ("balanced", "none")


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_training_config(
    defaults: Mapping[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge the shared ``train`` defaults with one instance's ``training`` block.

    Args:
        defaults: ``params:train`` (the paper's settings).
        overrides: ``params:<instance>.training`` (task, classes, epochs...).

    Returns:
        The instance's full configuration, ``input_size`` as ``[height, width]``.

    Raises:
        ValueError: on a missing key or an out-of-range value, naming the parameter.
    """
    config = _deep_merge(defaults, overrides or {})
    missing = [key for key in _REQUIRED_KEYS if key not in config]
    if missing:
        raise ValueError(
            f"training parameters lack {missing}: set them under `train` in "
            "parameters_train.yml or under `<instance>.training`"
        )
    size = config["input_size"]
    config["input_size"] = (
        [int(size), int(size)] if isinstance(size, int) else [int(v) for v in size]
    )
    if config["class_weighting"] not in CLASS_WEIGHTINGS:
        raise ValueError(
            f"{config['name']}.training.class_weighting={config['class_weighting']!r}: "
            f"use one of {CLASS_WEIGHTINGS}"
        )
    for key in ("epochs", "batch_size", "n_seeds"):
        if int(config[key]) < 1:
            raise ValueError(f"{config['name']}.training.{key} must be >= 1, got {config[key]}")
    return config


def _card_inputs(config: Mapping[str, Any]) -> dict[str, Any]:
    from covid_cxnet_pipeline.training.dataset import output_class_names

    return {
        "task": config["task"],
        "classes": [str(name) for name in config["classes"]],
        "class_names": output_class_names(config["task"], config["classes"]),
        "input_size": list(config["input_size"]),
        "channels": int(config["channels"]),
    }


def build_for_training(config: Mapping[str, Any], n_classes: int, seed: int) -> Any:
    """Build the classifier; fall back to random weights only when the weights file is absent.

    ``allow_init_fallback`` covers a weights file that is missing (no file at
    ``weights.<init>.path`` and no reachable ``url``). A file that is present but fails its
    sha256, has no configured sha256, or does not load always stops the run: training on other
    weights than the configured ones must never happen silently (see
    ``models.densenet.resolve_initialisation``).

    Args:
        config: output of ``resolve_training_config``.
        n_classes: output units' classes.
        seed: the run's seed (initial weights repeat).

    Returns:
        ``models.covid_cxnet.ClassifierBuild``; ``init_used``/``init_reason`` say what happened.

    Raises:
        WeightsUnavailableError: naming the file, its actual and configured sha256 and the
            ``train.weights.<init>`` key, when a present file cannot be used, or when the file
            is absent and ``allow_init_fallback`` is false.
    """
    from covid_cxnet_pipeline.models.covid_cxnet import build_classifier

    return build_classifier(
        {**config, "n_classes": int(n_classes), "seed": int(seed)}, weights_key="train.weights"
    )


def _fit_one_seed(
    rows: pd.DataFrame, config: Mapping[str, Any], seed: int, callbacks: tuple = ()
) -> tuple[Any, dict[str, list[float]], dict[str, Any]]:
    """Build and train one model with ``seed``; the test split is not read."""
    from covid_cxnet_pipeline.training.dataset import class_weights
    from covid_cxnet_pipeline.training.seeding import set_global_seed
    from covid_cxnet_pipeline.training.trainer import train_model

    set_global_seed(int(seed), op_determinism=bool(config.get("op_determinism", True)))
    card = _card_inputs(config)
    build = build_for_training(config, len(card["class_names"]), seed)
    batch = int(config["batch_size"])
    train_ds = model_dataset(
        rows,
        "train",
        card,
        batch_size=batch,
        shuffle=True,
        seed=seed,
        augment_cfg=config.get("augment"),
        cache=bool(config.get("cache", False)),
    )
    val_ds = model_dataset(rows, "validation", card, batch_size=batch)
    weights = None
    if config["class_weighting"] == "balanced":
        weights = class_weights(rows, "train", config["task"], config["classes"])
    started = time.perf_counter()
    model, history, best_epoch = train_model(
        build.model,
        train_ds,
        val_ds,
        epochs=int(config["epochs"]),
        learning_rate=float(config["learning_rate"]),
        class_weight=weights,
        label_smoothing=float(config["label_smoothing"]),
        early_stopping_patience=config.get("early_stopping_patience"),
        monitor=config["monitor"],
        callbacks_extra=callbacks,
    )
    info = {
        "seed": int(seed),
        "init_requested": build.init_requested,
        "init_used": build.init_used,
        "init_reason": build.init_reason,
        "best_epoch": int(best_epoch),
        "epochs_run": len(next(iter(history.values()))),
        "train_seconds": round(time.perf_counter() - started, 1),
        "n_train": int((rows["split"] == "train").sum()),
        "n_validation": int((rows["split"] == "validation").sum()),
    }
    return model, history, info


def train_classifier(
    model_input_index: pd.DataFrame,
    config: Mapping[str, Any],
    preprocessing_replay: Mapping[str, Any] | None = None,
) -> tuple[Any, dict[str, list[float]], dict[str, Any]]:
    """Train the instance's classifier on ``train``, selecting the epoch on ``validation``.

    Args:
        model_input_index: the preprocess output.
        config: output of ``resolve_training_config``.
        preprocessing_replay: output of ``preprocessing_replay``. The pipeline passes it so that
            the replay check runs before training: a mismatch then fails before any model is
            saved (a saved model without a card would mislead predict and evaluate).

    Returns:
        ``(model with the best validation epoch's weights, history per epoch, training info)``;
        the info says which initialisation was really used and why.
    """
    from covid_cxnet_pipeline.training.mlflow_logging import MlflowEpochLogger

    rows = task_rows(model_input_index, config["task"], config["classes"])
    # Per-epoch metrics reach the active MLflow run live, as <instance>.<metric> by epoch.
    live = (MlflowEpochLogger(prefix=f"{config['name']}."),)
    model, history, info = _fit_one_seed(rows, config, int(config["seed"]), live)
    if preprocessing_replay is not None:
        info["unet_weights_sha256"] = preprocessing_replay["unet_weights_sha256"]
    logger.info(
        "%s: trained %d epochs in %.1f s (best epoch %d), init %s (%s)",
        config["name"],
        info["epochs_run"],
        info["train_seconds"],
        info["best_epoch"],
        info["init_used"],
        info["init_reason"],
    )
    return model, history, info


def check_preprocessing_replay(
    preprocess_params: Mapping[str, Any], histogram_reference: Mapping[str, Any], unet_digest: str
) -> None:
    """Check that the preprocessing the card will replay is the one that made the index.

    The preprocess run records its ROI switch, input size and U-Net digest in the reference
    histogram; a training run whose ``preprocess`` parameters or U-Net differ (e.g. preprocess
    was run with ``--params preprocess.use_lung_roi=false`` and training without, or the U-Net
    was retrained since) would give ``predict`` the wrong recipe.

    Args:
        preprocess_params: ``params:preprocess`` of this run.
        histogram_reference: the ``histogram_reference`` dataset of the preprocess run.
        unet_digest: weights digest of the catalog's ``unet_model``.

    Raises:
        ValueError: naming each mismatch and what to do.
    """
    recorded = {
        "use_lung_roi": histogram_reference.get("use_lung_roi"),
        "input_size": histogram_reference.get("input_size"),
        "unet_sha256": histogram_reference.get("unet_sha256"),
    }
    size = preprocess_params.get("resize", {}).get("size")
    current = {
        "use_lung_roi": preprocess_params.get("use_lung_roi"),
        "input_size": [size, size] if isinstance(size, int) else size,
        "unet_sha256": unet_digest,
    }
    mismatches = [
        f"{key}: preprocess run {recorded[key]!r}, now {current[key]!r}"
        for key in recorded
        if recorded[key] is not None and list_or_value(recorded[key]) != list_or_value(current[key])
    ]
    if mismatches:
        raise ValueError(
            "model_input_index was made with other preprocessing than this run's "
            f"preprocess parameters / U-Net ({'; '.join(mismatches)}): run training with the "
            "same --params as preprocess, or re-run preprocess"
        )


def list_or_value(value: Any) -> Any:
    """Lists and tuples as lists (YAML and JSON disagree on tuples); anything else unchanged."""
    return [list_or_value(item) for item in value] if isinstance(value, list | tuple) else value


def preprocessing_replay(
    preprocess_params: Mapping[str, Any],
    histogram_reference: Mapping[str, Any],
    unet_model: Any,
) -> dict[str, Any]:
    """The preprocessing the model card will replay, checked against the index's own record.

    Runs before training (``check_preprocessing_replay``), so a run whose ``preprocess``
    parameters or U-Net differ from those that made ``model_input_index`` stops before it
    saves a model.

    Args:
        preprocess_params: ``params:preprocess`` of this run.
        histogram_reference: the preprocess ``histogram_reference`` dataset.
        unet_model: the lung-segmentation U-Net of the catalog (``unet_model``).

    Returns:
        The card's ``preprocessing`` block: ``params``, ``histogram_reference`` and
        ``unet_weights_sha256``.

    Raises:
        ValueError: see ``check_preprocessing_replay``.
    """
    from covid_cxnet_pipeline.models.digest import weights_digest

    unet_digest = weights_digest(unet_model)
    check_preprocessing_replay(preprocess_params, histogram_reference, unet_digest)
    return {
        "params": copy.deepcopy(dict(preprocess_params)),
        "histogram_reference": copy.deepcopy(dict(histogram_reference)),
        "unet_weights_sha256": unet_digest,
    }


def build_model_card(
    *,
    config: Mapping[str, Any],
    training_info: Mapping[str, Any],
    model_input_index: pd.DataFrame,
    preprocessing: Mapping[str, Any],
    model: Any,
    unet_model: Any,
) -> tuple[dict[str, Any], Any]:
    """The model card, and the U-Net saved beside the model, so both travel with it.

    ``predict`` replays the preprocessing from the card alone (parameters, the reference
    histogram of the training split, the U-Net's weight digest), so it needs no project config.
    The card records the model's weights digest: ``evaluate`` refuses a model whose weights are
    not the ones this card describes.

    Args:
        config: output of ``resolve_training_config``.
        training_info: output of ``train_classifier``.
        model_input_index: the index the model was trained on (its digest is recorded).
        preprocessing: output of ``preprocessing_replay`` (already checked).
        model: the trained classifier.
        unet_model: the lung-segmentation U-Net the preprocessing used.

    Returns:
        ``(card, U-Net)``: the JSON-serialisable card (task, classes, output class names, input
        size, channels, pixel range, backbone, initialisation, seed, best epoch, index digest,
        model weights digest, preprocessing) and the U-Net, to be saved beside the model.
    """
    from covid_cxnet_pipeline.digests import table_digest
    from covid_cxnet_pipeline.models.digest import weights_digest

    card = {
        "card_version": MODEL_CARD_VERSION,
        "name": config["name"],
        **_card_inputs(config),
        "pixel_range": [0.0, PIXEL_MAX],
        "backbone": config["backbone"],
        "init_requested": training_info["init_requested"],
        "init_used": training_info["init_used"],
        "init_reason": training_info["init_reason"],
        "seed": int(config["seed"]),
        "best_epoch": int(training_info["best_epoch"]),
        "monitor": config["monitor"],
        "model_input_index_sha256": table_digest(model_input_index),
        "model_weights_sha256": weights_digest(model),
        "preprocessing": copy.deepcopy(dict(preprocessing)),
    }
    return card, unet_model


def flat_params(config: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """A nested configuration as flat MLflow parameters ``<prefix>.<key>.<subkey>``.

    Args:
        config: e.g. the output of ``resolve_training_config``.
        prefix: e.g. ``train_binary.config``.

    Returns:
        ``{dotted key: value as text}``; lists stay one value (``[128, 128]``), an empty
        mapping is ``{}``.
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_params(value, name))
        else:
            flat[name] = str(list_or_value(value))[:6000]
    return flat


def log_training_run(
    model: Any,
    model_card: Mapping[str, Any],
    unet_model: Any,
    training_info: Mapping[str, Any],
    model_input_index: pd.DataFrame,
    *,
    config: Mapping[str, Any] | None = None,
) -> str:
    """Log the input digest, the initialisation used, the U-Net and the classifier to MLflow.

    The classifier is logged with its signature and with the model card as MLflow model
    metadata (plus ``unet_model_uri``), so ``predict`` on a ``runs:/`` or ``models:/`` URI finds
    the class names, the preprocessing and the U-Net. Per-epoch metrics were logged live.

    Args:
        model: the trained classifier.
        model_card: output of ``build_model_card``.
        unet_model: the U-Net the preprocessing used.
        training_info: output of ``train_classifier``.
        model_input_index: the training index (its digest is logged).
        config: output of ``resolve_training_config``: the merged configuration the model was
            really trained with, logged as ``<instance>.config.*`` parameters.

    Returns:
        The MLflow model URI, or ``""`` when no MLflow run is active (e.g. in unit tests).
    """
    import mlflow

    from covid_cxnet_pipeline.training import mlflow_logging

    if mlflow.active_run() is None:
        logger.warning("No active MLflow run: %s is not logged to MLflow", model_card["name"])
        return ""
    name = model_card["name"]
    mlflow_logging.log_dataset_digest(model_input_index, "model_input_index")
    for key in ("init_requested", "init_used", "best_epoch", "epochs_run", "train_seconds"):
        mlflow.log_param(f"{name}.{key}", training_info[key])
    if config is not None:
        mlflow.log_params(flat_params(config, f"{name}.config"))
    mlflow.set_tag(f"{name}.init_used", training_info["init_used"])
    mlflow.set_tag(f"{name}.init_reason", str(training_info["init_reason"])[:5000])
    card = dict(model_card)
    if model_card["preprocessing"]["params"].get("use_lung_roi", True):
        unet_input = np.zeros((1, *unet_model.input_shape[1:]), dtype=np.float32)
        card["unet_model_uri"] = mlflow_logging.log_keras_model(
            unet_model, f"{name}_unet", unet_input
        )
    height, width = model_card["input_size"]
    example = np.zeros((1, height, width, model_card["channels"]), dtype=np.float32)
    # The card travels inside the MLmodel file, so predict on the URI finds it.
    model_uri = mlflow_logging.log_keras_model(model, name, example, metadata={"model_card": card})
    mlflow.log_dict(card, f"{name}/model_card.json")
    mlflow.set_tag(f"{name}.model_uri", model_uri)
    return model_uri


def train_repeat_seeds(model_input_index: pd.DataFrame, config: Mapping[str, Any]) -> pd.DataFrame:
    """Retrain with seeds ``seed+1 .. seed+n_seeds-1`` and score each once on ``test``.

    Each repeat selects its epoch on validation exactly like the main run; its test metrics are
    at the default decision (argmax; 0.5 for binary). The repeats' models are not kept.

    Args:
        model_input_index: the preprocess output.
        config: output of ``resolve_training_config``.

    Returns:
        One row per extra seed: ``seed`` and every metric of ``compute_metrics``; empty when
        ``n_seeds`` is 1.
    """
    from covid_cxnet_pipeline.training.trainer import predict_split

    extra = [int(config["seed"]) + k for k in range(1, int(config["n_seeds"]))]
    if not extra:
        return pd.DataFrame({"seed": pd.Series(dtype="int64")})
    rows = task_rows(model_input_index, config["task"], config["classes"])
    card = _card_inputs(config)
    # Built (and its images checked) once: the test split is the same for every seed.
    test_ds = model_dataset(rows, "test", card, batch_size=int(config["batch_size"]))
    records = []
    for seed in extra:
        model, _, _ = _fit_one_seed(rows, config, seed)
        y_true, y_prob = predict_split(model, test_ds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            prob = probability_matrix(y_prob, len(card["class_names"]))
            metrics = compute_metrics(y_true, prob, card["class_names"])
        records.append({"seed": seed, **metrics})
        logger.info("%s seed %d: test accuracy %.3f", config["name"], seed, metrics["accuracy"])
        del model
    return pd.DataFrame(records)


def summarise_over_seeds(
    evaluation_metrics: pd.DataFrame, repeat_runs: pd.DataFrame, config: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Mean and t-based CI of each test metric over all seeds (the paper's Table 5).

    Args:
        evaluation_metrics: the main run's metrics table (its ``test`` rows at the default
            decision are used, like the repeats').
        repeat_runs: output of ``train_repeat_seeds``.
        config: output of ``resolve_training_config`` (``seed``, ``seeds_confidence``).

    Returns:
        ``(summary table with a leading seeds column, MLflow metrics ``seeds.<metric>.*``)``.
    """
    main = evaluation_metrics.loc[
        (evaluation_metrics["split"] == "test")
        & (evaluation_metrics["decision"] == "default")
        & (evaluation_metrics["metric"] != "loss")
    ]
    runs = [dict(zip(main["metric"], main["estimate"], strict=True))]
    runs += [
        {k: float(v) for k, v in row.items() if k != "seed"}
        for row in repeat_runs.to_dict("records")
    ]
    summary = summarise_seeds(runs, float(config.get("seeds_confidence", 0.95)))
    seeds = [int(config["seed"])] + [int(s) for s in repeat_runs.get("seed", [])]
    summary.insert(1, "seeds", ",".join(str(s) for s in seeds))
    logged = {}
    for row in summary.itertuples(index=False):
        for field in ("mean", "ci_lower", "ci_upper"):
            value = float(getattr(row, field))
            if not math.isnan(value):
                logged[f"seeds.{row.metric}.{field}"] = {"value": value, "step": 0}
    logger.info("%s: summarised %d seeds", config["name"], len(runs))
    return summary, logged


def report_with_seeds(
    evaluation_report: str,
    seeds_summary: pd.DataFrame,
    config: Mapping[str, Any],
    evaluate_params: Mapping[str, Any],
) -> str:
    """The evaluation report with a section on the repeats over seeds (the paper's Table 5).

    Args:
        evaluation_report: the evaluation stage's Markdown report.
        seeds_summary: output of ``summarise_over_seeds``.
        config: output of ``resolve_training_config`` (``name``, ``seeds_confidence``).
        evaluate_params: ``params:evaluate`` (``report.float_digits``).

    Returns:
        The report with a ``## Repeated training over seeds`` section appended.
    """
    from covid_cxnet_pipeline.evaluation.report import markdown_table

    seeds = str(seeds_summary["seeds"].iloc[0]) if len(seeds_summary) else str(config["seed"])
    level = float(config.get("seeds_confidence", 0.95))
    section = [
        "## Repeated training over seeds",
        "",
        f"Test metrics at the default decision over {len(seeds.split(','))} seed(s) ({seeds}), "
        "each run selecting its epoch on validation: mean, sample std and Student-t "
        f"{level:.0%} CI (mean +/- t * std / sqrt(n)). Intervals of metrics bounded to [0, 1] "
        "are clipped to [0, 1] (half_width is the unclipped t half-width); with one seed std "
        f'and CI are n/a. More seeds: `--params "{config["name"]}.training.n_seeds=5"`.',
        "",
        markdown_table(
            seeds_summary.drop(columns=["seeds"]),
            float_digits=int(evaluate_params["report"]["float_digits"]),
        ),
    ]
    return evaluation_report.rstrip("\n") + "\n\n" + "\n".join(section).rstrip("\n") + "\n"
