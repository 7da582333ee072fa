"""Nodes of the evaluation stage: thin wrappers over ``covid_cxnet_pipeline.evaluation``.

The stage runs inside every training instance (namespace ``train_binary`` /
``train_multiclass``) and on its own as the ``evaluate`` pipeline, on the latest saved models.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import log_loss

from covid_cxnet_pipeline.evaluation.bootstrap import INTERVAL_COLUMNS, bootstrap_ci
from covid_cxnet_pipeline.evaluation.explain_lime import explain_with_lime
from covid_cxnet_pipeline.evaluation.localisation import (
    localisation_by_class,
    localisation_scores,
)
from covid_cxnet_pipeline.evaluation.metrics import (
    UndefinedMetricWarning,
    confusion_matrix,
    predict_labels,
)
from covid_cxnet_pipeline.evaluation.plots import (
    heatmap_grid,
    plot_calibration,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_roc_curves,
)
from covid_cxnet_pipeline.evaluation.report import build_markdown_report
from covid_cxnet_pipeline.evaluation.thresholds import operating_point_report
from covid_cxnet_pipeline.pipelines.evaluate.inputs import (
    available_splits,
    check_model_matches_card,
    load_model_images,
    model_dataset,
    probability_columns,
    probability_matrix,
    split_arrays,
    task_rows,
)

logger = logging.getLogger(__name__)

# ``decision``: ``default`` (argmax; 0.5 for binary) or ``operating_point`` (binary, at the
# threshold chosen on validation).
DEFAULT, OPERATING_POINT = "default", "operating_point"
METRIC_COLUMNS = ("split", "decision", "threshold", *INTERVAL_COLUMNS)
OPERATING_POINT_COLUMNS = (
    "split",
    "rule",
    "threshold",
    "sensitivity",
    "specificity",
    "tp",
    "fn",
    "tn",
    "fp",
)
# File names of the figures in the report; the catalog saves each figure under the same name
# (MLflow artifact path ``<namespace>/report/figures``), so the report's links resolve there.
REPORT_FIGURES = {
    "Confusion matrix (test)": "confusion_matrix.png",
    "ROC curves (test)": "roc_curves.png",
    "Calibration (test)": "calibration.png",
    "Learning curves": "learning_curves.png",
}
REPORT_GRIDS = {
    "Grad-CAM (test sample per class)": "gradcam_grid.png",
    "LIME (test sample per class)": "lime_grid.png",
}
# File names of evaluation_plots' figures in the order it returns them. The nodes also return
# their figures keyed by these names for the Kedro-versioned copies (``<namespace>.*_versioned``,
# one timestamped folder per run under data/08_reporting/<namespace>/figures_versioned/).
FIGURE_FILES = tuple(REPORT_FIGURES.values())


def _class_names(card: Mapping[str, Any]) -> list[str]:
    return [str(name) for name in card["class_names"]]


# Card fields tagged on the run that evaluates a model, as ``<name>.card.<field>``.
CARD_TAGS = (
    "model_weights_sha256",
    "model_input_index_sha256",
    "task",
    "backbone",
    "init_used",
    "seed",
    "best_epoch",
    "monitor",
)


def tag_model_card(model_card: Mapping[str, Any]) -> None:
    """Tag the active MLflow run with which model it evaluates (weights digest, card fields).

    A stand-alone ``evaluate`` run then names the exact weights it scored. No-op without an
    active run.

    Args:
        model_card: the (checked) card of the evaluated model.
    """
    import mlflow

    if mlflow.active_run() is None:
        return
    name = model_card.get("name", "model")
    tags = {f"{name}.card.{field}": str(model_card.get(field)) for field in CARD_TAGS}
    tags[f"{name}.card.unet_weights_sha256"] = str(
        (model_card.get("preprocessing") or {}).get("unet_weights_sha256")
    )
    mlflow.set_tags(tags)


def predict_splits(
    model: Any,
    model_input_index: pd.DataFrame,
    model_card: Mapping[str, Any],
    params: Mapping[str, Any],
) -> pd.DataFrame:
    """Predict every evaluated split once (validation, test, external when present).

    Args:
        model: the trained classifier (takes [0, 255] pixels).
        model_input_index: the preprocess output.
        model_card: the model's card (task, classes, class names, input size, channels).
        params: ``evaluate`` parameters (``splits``, ``batch_size``).

    Returns:
        One row per image: ``image_id``, ``path``, ``lung_mask_path``, ``label``, ``split``,
        ``y_true`` (output class index) and one ``prob_<class>`` column per output class.

    Raises:
        ValueError: the model's weights or the index are not those its card records (see
            ``inputs.check_model_matches_card``).
    """
    from covid_cxnet_pipeline.training.dataset import split_rows
    from covid_cxnet_pipeline.training.trainer import predict_split

    check_model_matches_card(model, model_card, model_input_index)
    tag_model_card(model_card)
    names = _class_names(model_card)
    rows = task_rows(model_input_index, model_card["task"], model_card["classes"])
    frames = []
    for split in available_splits(rows, params["splits"]):
        dataset = model_dataset(rows, split, model_card, batch_size=params["batch_size"])
        y_true, y_prob = predict_split(model, dataset)
        table = split_rows(rows, split)[["image_id", "path", "lung_mask_path", "label", "split"]]
        table = table.assign(y_true=y_true)
        probabilities = probability_matrix(y_prob, len(names))
        for column, values in zip(probability_columns(names), probabilities.T, strict=True):
            table[column] = values
        frames.append(table)
        logger.info("Predicted %d %s images", len(table), split)
    if not frames:
        raise ValueError(
            f"none of the splits {params['splits']} has rows in model_input_index: "
            "nothing to evaluate"
        )
    return pd.concat(frames, ignore_index=True)


def _log_loss(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    probabilities = np.clip(y_prob, 1e-7, 1.0)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    return float(log_loss(y_true, probabilities, labels=list(range(y_prob.shape[1]))))


def _ci_rows(
    split: str,
    threshold: float,
    y_true: np.ndarray,
    y_prob: np.ndarray,
    *,
    names,
    params,
    decision: str = DEFAULT,
) -> pd.DataFrame:
    boot = params["bootstrap"]
    with warnings.catch_warnings():
        # A class absent from a small split is reported as NaN; the table says so.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        table = bootstrap_ci(
            y_true,
            y_prob,
            names,
            threshold=threshold,
            n_resamples=int(boot["n_resamples"]),
            confidence=float(boot["confidence"]),
            seed=int(boot["seed"]),
            stratified=bool(boot["stratified"]),
        )
    return table.assign(split=split, decision=decision, threshold=threshold)


def _metrics_for_mlflow(metrics: pd.DataFrame, operating: pd.DataFrame) -> dict[str, dict]:
    logged: dict[str, dict] = {}
    for row in metrics.itertuples(index=False):
        at = "" if row.decision == DEFAULT else "at_operating_threshold."
        key = f"{row.split}.{at}{row.metric}"
        logged[key] = {"value": float(row.estimate), "step": 0}
        if not math.isnan(row.ci_lower):
            logged[f"{key}.ci_lower"] = {"value": float(row.ci_lower), "step": 0}
            logged[f"{key}.ci_upper"] = {"value": float(row.ci_upper), "step": 0}
    if not operating.empty:
        logged["operating_threshold"] = {"value": float(operating["threshold"].iloc[0]), "step": 0}
    return logged


def evaluation_metrics(
    predictions: pd.DataFrame, model_card: Mapping[str, Any], params: Mapping[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """Metrics with bootstrap CIs per split, confusion matrices and the binary operating point.

    Every split is scored at the default decision (argmax; 0.5 for binary). For a binary model
    the operating threshold is then chosen on validation with ``params.threshold.rule`` and the
    report splits are scored again at it (sensitivity/specificity with CIs).

    Args:
        predictions: output of ``predict_splits``.
        model_card: the model's card.
        params: ``evaluate`` parameters (``bootstrap``, ``threshold``).

    Returns:
        ``(metrics, confusion, operating_point, mlflow_metrics)``: the long metrics table
        (``METRIC_COLUMNS``; the ``loss`` row is the mean cross-entropy, without CI), the
        confusion counts as a long table (``split``, ``true``, ``predicted``, ``count``), the
        operating-point table (empty for multiclass) and the MLflow metrics dict.
    """
    names = _class_names(model_card)
    splits = available_splits(predictions, params["splits"])
    arrays = {split: split_arrays(predictions, split, names) for split in splits}
    tables, confusions = [], []
    for split in splits:
        y_true, y_prob = arrays[split]
        table = _ci_rows(split, 0.5, y_true, y_prob, names=names, params=params)
        loss = {"split": split, "decision": DEFAULT, "threshold": 0.5, "metric": "loss"}
        loss.update(estimate=_log_loss(y_true, y_prob), ci_lower=math.nan, ci_upper=math.nan)
        loss.update(n_valid=0, n_resamples=0)
        tables += [pd.DataFrame([loss]), table]
        counts = confusion_matrix(y_true, predict_labels(y_prob), names)
        long = counts.stack().rename("count").reset_index()
        confusions.append(long.assign(split=split)[["split", "true", "predicted", "count"]])
    operating = pd.DataFrame(columns=list(OPERATING_POINT_COLUMNS))
    rule = params["threshold"]
    if len(names) == 2 and "validation" in splits:
        y_val, p_val = arrays["validation"]
        report = [s for s in rule["report_on"] if s in splits and s != "validation"]
        operating = operating_point_report(
            y_val,
            p_val,
            {split: arrays[split] for split in report},
            rule=rule["rule"],
            target_sensitivity=rule.get("target_sensitivity"),
            fixed_threshold=rule.get("fixed_threshold"),
        )[list(OPERATING_POINT_COLUMNS)]
        threshold = float(operating["threshold"].iloc[0])
        for split in report:
            y_true, y_prob = arrays[split]
            tables.append(
                _ci_rows(
                    split,
                    threshold,
                    y_true,
                    y_prob,
                    names=names,
                    params=params,
                    decision=OPERATING_POINT,
                )
            )
    elif len(names) == 2:
        logger.warning("No validation split: the binary operating threshold is not chosen")
    metrics = pd.concat(tables, ignore_index=True)[list(METRIC_COLUMNS)]
    confusion = pd.concat(confusions, ignore_index=True)
    return metrics, confusion, operating, _metrics_for_mlflow(metrics, operating)


def operating_threshold(
    operating_point: pd.DataFrame, model_card: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """The binary decision threshold chosen on validation, to be saved beside the model.

    ``predict`` uses it as the default decision of a binary model (``--threshold`` overrides),
    so predictions.csv decides like the reported operating point, not at a fixed 0.5.

    Args:
        operating_point: output of ``evaluation_metrics`` (empty for multiclass).
        model_card: the model's card (its weights digest ties the threshold to the model).
        params: ``evaluate`` parameters (``threshold.rule``).

    Returns:
        ``{"threshold", "rule", "chosen_on", "sensitivity", "specificity",
        "model_weights_sha256"}``; ``threshold`` is None for multiclass (argmax) or when no
        validation split was there to choose on. Also logged to MLflow as
        ``<name>/operating_threshold.json`` when a run is active.
    """
    import mlflow

    record: dict[str, Any] = {
        "threshold": None,
        "rule": params["threshold"]["rule"],
        "chosen_on": None,
        "sensitivity": None,
        "specificity": None,
        "model_weights_sha256": model_card.get("model_weights_sha256"),
    }
    chosen = operating_point.loc[operating_point["split"] == "validation"]
    if not chosen.empty:
        row = chosen.iloc[0]
        record.update(
            threshold=float(row["threshold"]),
            chosen_on="validation",
            sensitivity=float(row["sensitivity"]),
            specificity=float(row["specificity"]),
        )
    if mlflow.active_run() is not None:
        mlflow.log_dict(record, f"{model_card.get('name', 'model')}/operating_threshold.json")
    return record


def evaluation_plots(
    predictions: pd.DataFrame,
    training_history: Mapping[str, Sequence[float]],
    model_card: Mapping[str, Any],
    params: Mapping[str, Any],
    operating_point: pd.DataFrame | None = None,
) -> tuple[Figure, Figure, Figure, Figure, dict[str, Figure]]:
    """Confusion matrix, ROC and calibration on the plot split, and the learning curves.

    The learning curves mark the card's best epoch; a binary ROC marks the operating point
    (the threshold chosen on validation, at its sensitivity/specificity on the plot split).

    Args:
        predictions: output of ``predict_splits``.
        training_history: ``{metric: [value per epoch]}`` of the training run.
        model_card: the model's card.
        params: ``evaluate`` parameters (``plot_split``, ``calibration_bins``).
        operating_point: output of ``evaluation_metrics`` (empty for multiclass).

    Returns:
        ``(confusion, roc, calibration, learning_curves, versioned)``: the four figures, and
        the same four keyed by their file names (``FIGURE_FILES``) for the versioned copy.
    """
    names = _class_names(model_card)
    split = params["plot_split"]
    if not (predictions["split"] == split).any():
        raise ValueError(f"evaluate.plot_split={split!r} has no predictions; choose another split")
    y_true, y_prob = split_arrays(predictions, split, names)
    confusion = plot_confusion_matrix(confusion_matrix(y_true, predict_labels(y_prob), names))
    point, point_label = None, "operating point"
    if operating_point is not None and (operating_point["split"] == split).any():
        row = operating_point.loc[operating_point["split"] == split].iloc[0]
        point = (1.0 - float(row["specificity"]), float(row["sensitivity"]))
        point_label = f"threshold {float(row['threshold']):.3f} (chosen on validation)"
    roc = plot_roc_curves(y_true, y_prob, names, point, point_label)
    calibration = plot_calibration(y_true, y_prob, names, int(params["calibration_bins"]))
    learning = plot_learning_curves(dict(training_history), model_card.get("best_epoch"))
    for figure, title in ((confusion, "confusion"), (roc, "ROC"), (calibration, "calibration")):
        figure.suptitle(f"{model_card['name']}: {title} on {split}")
    learning.suptitle(f"{model_card['name']}: learning curves")
    figures = (confusion, roc, calibration, learning)
    return *figures, dict(zip(FIGURE_FILES, figures, strict=True))


def sample_per_class(
    predictions: pd.DataFrame, split: str, per_class: int, seed: int
) -> pd.DataFrame:
    """A seeded sample of up to ``per_class`` rows of each true class of one split.

    Args:
        predictions: output of ``predict_splits``.
        split: the split to sample.
        per_class: rows per class.
        seed: seed of the sample.

    Returns:
        The sampled rows, ordered by class then original order.
    """
    rows = predictions.loc[predictions["split"] == split]
    rng = np.random.default_rng(seed)
    picks = []
    for _, group in rows.groupby("y_true", sort=True):
        size = min(int(per_class), len(group))
        chosen = np.sort(rng.choice(len(group), size=size, replace=False))
        picks.append(group.iloc[chosen])
    if not picks:
        raise ValueError(f"split {split!r} has no predictions to explain")
    return pd.concat(picks)


def _titles(rows: pd.DataFrame, prob: np.ndarray, names: Sequence[str]) -> list[str]:
    predicted = predict_labels(prob)
    return [
        f"{names[t]} -> {names[p]} ({prob[i, p]:.2f})"
        for i, (t, p) in enumerate(zip(rows["y_true"], predicted, strict=True))
    ]


def _display(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _load_lung_mask(path: Any, shape: tuple[int, int]) -> np.ndarray:
    """The lung mask at the model input's size; empty (no score) when the path is missing."""
    import cv2

    from covid_cxnet_pipeline.imaging.decode import ImageDecodeError
    from covid_cxnet_pipeline.imaging.masks import load_mask

    if not isinstance(path, str) or not path:
        return np.zeros(shape, dtype=bool)
    try:
        mask = load_mask(path)
    except ImageDecodeError as error:
        logger.warning("Lung mask %s unreadable (%s): no localisation score", path, error)
        return np.zeros(shape, dtype=bool)
    if mask.shape != shape:
        # OpenCV does not resize bool arrays; nearest-neighbour keeps the mask binary.
        resized = cv2.resize(
            mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST
        )
        mask = resized > 0
    return mask


def _gradcam_batches(
    model: Any, images: np.ndarray, batch_size: int, layer_path: Sequence[str]
) -> np.ndarray:
    from covid_cxnet_pipeline.models.gradcam import grad_cam

    return np.concatenate(
        [
            grad_cam(model, images[i : i + batch_size], layer_path=layer_path)
            for i in range(0, len(images), batch_size)
        ]
    )


def with_lift(scores: pd.DataFrame) -> pd.DataFrame:
    """Add ``lift = lung_fraction / mask_area``: the localisation score against chance.

    A heatmap spread uniformly over the image puts ``mask_area`` of its mass in the lungs, so
    lift 1.0 is no better than uniform heat; 2.0 is twice as concentrated on the lungs. NaN when
    the score is NaN or the mask is empty.

    Args:
        scores: output of ``localisation_scores`` (``lung_fraction``, ``mask_area``).

    Returns:
        The table with a ``lift`` column.
    """
    area = scores["mask_area"].astype(float)
    fraction = scores["lung_fraction"].astype(float)
    lift = (fraction / area.where(area > 0)).where(fraction.notna())
    return scores.assign(lift=lift.astype(float))


def lift_by_class(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean lift per class and over all images (``label = "all"``), NaN-skipping.

    Args:
        scores: output of ``with_lift``.

    Returns:
        Columns ``label`` and ``mean_lift``.
    """
    per_class = scores.groupby("label", sort=True)["lift"].mean()
    rows = [{"label": str(label), "mean_lift": float(v)} for label, v in per_class.items()]
    rows.append({"label": "all", "mean_lift": float(scores["lift"].mean())})
    return pd.DataFrame(rows, columns=["label", "mean_lift"])


def gradcam_and_localisation(
    model: Any,
    predictions: pd.DataFrame,
    model_card: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[Figure, pd.DataFrame, pd.DataFrame, dict[str, dict], dict[str, Figure]]:
    """Grad-CAM grid for a sample per class, and the lung-localisation score per image and class.

    Grad-CAM explains the predicted class. The localisation score is the fraction of its mass
    inside the image's lung mask (``lung_mask_path``, in the model input's geometry); its lift
    divides it by the mask's area (1.0 = no better than uniform heat over the image). Heatmaps
    are scored chunk by chunk, so memory does not grow with the split.

    Args:
        model: the trained classifier.
        predictions: output of ``predict_splits``.
        model_card: the model's card.
        params: ``evaluate`` parameters (``gradcam``, ``localisation``, ``batch_size``).

    Returns:
        ``(grid figure, per-image scores, per-class scores, MLflow metrics, versioned)``, the
        last being ``{"gradcam_grid.png": grid}`` for the versioned copy.
    """
    from covid_cxnet_pipeline.models.gradcam import find_last_conv_layer

    names = _class_names(model_card)
    cfg = params["gradcam"]
    sample = sample_per_class(predictions, cfg["split"], cfg["per_class"], cfg["seed"])
    images = load_model_images(sample, cfg["split"], model_card)
    # Searched once for the model, not again for every batch below.
    layer_path = find_last_conv_layer(model)
    heatmaps = _gradcam_batches(model, images, int(params["batch_size"]), layer_path)
    prob = sample[probability_columns(names)].to_numpy()
    grid = heatmap_grid(
        # Channel 0 is the histogram-matched original: the radiograph as a reader sees it.
        [_display(image[..., 0]) for image in images],
        list(heatmaps),
        _titles(sample, prob, names),
        ncols=int(cfg["ncols"]),
        alpha=float(cfg["alpha"]),
    )
    grid.suptitle(f"{model_card['name']}: Grad-CAM of the predicted class ({cfg['split']})")

    loc = params["localisation"]
    rows = predictions.loc[predictions["split"] == loc["split"]]
    if loc.get("max_images") and len(rows) > int(loc["max_images"]):
        rng = np.random.default_rng(int(loc["seed"]))
        rows = rows.iloc[np.sort(rng.choice(len(rows), int(loc["max_images"]), replace=False))]
    shape = tuple(int(v) for v in model_card["input_size"])
    batch = int(params["batch_size"])

    def heatmaps():
        # One chunk of maps at a time: localisation_scores consumes them image by image.
        for start in range(0, len(rows), batch):
            chunk = rows.iloc[start : start + batch]
            yield from _gradcam_batches(
                model, load_model_images(chunk, loc["split"], model_card, batch), batch, layer_path
            )

    masks = (_load_lung_mask(path, shape) for path in rows["lung_mask_path"])
    labels = [names[i] for i in rows["y_true"]]
    scores = with_lift(localisation_scores(rows["image_id"], labels, heatmaps(), masks))
    by_class = localisation_by_class(scores).merge(lift_by_class(scores), on="label", how="left")
    logged = {}
    for row in by_class.itertuples(index=False):
        for field in ("mean", "median", "mean_mask_area", "mean_lift"):
            value = float(getattr(row, field))
            if not math.isnan(value):
                logged[f"localisation.{row.label}.{field}"] = {"value": value, "step": 0}
    return grid, scores, by_class, logged, {REPORT_GRIDS["Grad-CAM (test sample per class)"]: grid}


def lime_explanations(
    model: Any,
    predictions: pd.DataFrame,
    model_card: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[Figure, dict[str, Figure]]:
    """LIME explanations of the predicted class for a small seeded sample per class.

    Args:
        model: the trained classifier.
        predictions: output of ``predict_splits``.
        model_card: the model's card.
        params: ``evaluate`` parameters (``lime``).

    Returns:
        ``(grid, versioned)``: a grid of LIME overlays, and ``{"lime_grid.png": grid}`` for the
        versioned copy.
    """
    names = _class_names(model_card)
    cfg = params["lime"]
    sample = sample_per_class(predictions, cfg["split"], cfg["per_class"], cfg["seed"])
    images = load_model_images(sample, cfg["split"], model_card)
    prob = sample[probability_columns(names)].to_numpy()

    def predict_fn(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(np.asarray(batch, dtype=np.float32)))

    displayed = [_display(image) for image in images]
    overlays = []
    for image, label in zip(displayed, predict_labels(prob), strict=True):
        explanation = explain_with_lime(
            image,
            predict_fn,
            label=int(label),
            num_samples=int(cfg["num_samples"]),
            num_features=int(cfg["num_features"]),
            seed=int(cfg["seed"]),
            segmentation=cfg["segmentation"],
            segmentation_params=cfg.get("segmentation_params"),
            batch_size=int(cfg["batch_size"]),
        )
        overlays.append(explanation.overlay)
    grid = heatmap_grid(
        displayed,
        overlays,
        _titles(sample, prob, names),
        ncols=int(cfg["ncols"]),
    )
    grid.suptitle(f"{model_card['name']}: LIME of the predicted class ({cfg['split']})")
    return grid, {REPORT_GRIDS["LIME (test sample per class)"]: grid}


def _wide_estimates(metrics: pd.DataFrame) -> pd.DataFrame:
    default = metrics.loc[metrics["decision"] == DEFAULT]
    wide = default.pivot(index="metric", columns="split", values="estimate")
    order = list(dict.fromkeys(default["metric"]))
    splits = list(dict.fromkeys(default["split"]))
    return wide.reindex(index=order, columns=splits).reset_index()


def _per_class(metrics: pd.DataFrame, split: str, names: Sequence[str]) -> pd.DataFrame:
    rows = metrics.loc[(metrics["split"] == split) & (metrics["decision"] == DEFAULT)]
    estimates = dict(zip(rows["metric"], rows["estimate"], strict=True))
    return pd.DataFrame(
        [
            {"class": name}
            | {
                m: estimates.get(f"{m}_{name}", math.nan)
                for m in ("precision", "recall", "f1", "auc")
            }
            for name in names
        ]
    )


def evaluation_report(
    *,
    metrics: pd.DataFrame,
    operating_point: pd.DataFrame,
    confusion: pd.DataFrame,
    localisation_by_class: pd.DataFrame,
    model_card: Mapping[str, Any],
    params: Mapping[str, Any],
) -> str:
    """The Markdown report of one model: metrics, CIs, operating point, figures, explanations.

    Args:
        metrics: output of ``evaluation_metrics``.
        operating_point: the binary operating-point table (empty for multiclass).
        confusion: the long confusion table.
        localisation_by_class: per-class localisation scores.
        model_card: the model's card.
        params: ``evaluate`` parameters (``plot_split``, ``report``).

    Returns:
        The Markdown text; its images are ``figures/<name>.png`` beside it in MLflow.
    """
    split = params["plot_split"]
    digits = int(params["report"]["float_digits"])
    ci = metrics.loc[(metrics["split"] == split) & (metrics["decision"] == DEFAULT)]
    ci = ci.loc[ci["metric"] != "loss"].drop(columns=["split", "decision", "threshold"])
    test_confusion = confusion.loc[confusion["split"] == split]
    confusion_wide = test_confusion.pivot(index="true", columns="predicted", values="count")
    names = _class_names(model_card)
    confusion_wide = confusion_wide.reindex(index=names, columns=names).reset_index()
    notes = [
        f"Task: {model_card['task']} ({', '.join(names)}); backbone {model_card['backbone']}, "
        f"initialisation used: {model_card['init_used']} ({model_card['init_reason']}).",
        f"Input {model_card['input_size'][0]}x{model_card['input_size'][1]}x"
        f"{model_card['channels']}; seed {model_card['seed']}; best epoch "
        f"{model_card['best_epoch']} by {model_card['monitor']} (validation only).",
        f"model_input_index sha256 {model_card['model_input_index_sha256']}.",
        f"{params['bootstrap']['confidence']:.0%} percentile bootstrap CIs, "
        f"{params['bootstrap']['n_resamples']} "
        f"{'stratified (within-class) ' if params['bootstrap']['stratified'] else ''}"
        f"resamples (seed {params['bootstrap']['seed']}); loss is the mean cross-entropy "
        "without smoothing.",
        "Figures sit beside this report in figures/ (MLflow artefacts of the run that wrote "
        "it; on disk, data/08_reporting/<pipeline>/ holds the latest run's report).",
    ]
    tables = {"Confusion matrix (" + split + ")": confusion_wide}
    if not operating_point.empty:
        rule = params["threshold"]["rule"]
        tables[f"Operating point (threshold chosen on validation, rule {rule})"] = operating_point
        at = metrics.loc[(metrics["decision"] == OPERATING_POINT) & (metrics["split"] == split)]
        tables["At the operating threshold (" + split + ")"] = at.drop(
            columns=["split", "decision"]
        )
    tables[f"Per class ({split})"] = _per_class(metrics, split, names)
    tables[
        "Lung localisation of Grad-CAM (mean: fraction of mass inside the lung mask; "
        "mean_lift: that fraction / the mask's area, 1.0 = no better than uniform heat over "
        "the image)"
    ] = localisation_by_class
    return build_markdown_report(
        f"{model_card['name']}: evaluation",
        _wide_estimates(metrics),
        ci,
        {title: f"figures/{name}" for title, name in REPORT_FIGURES.items()},
        {title: f"figures/{name}" for title, name in REPORT_GRIDS.items()},
        notes=notes,
        tables=tables,
        float_digits=digits,
        confidence=float(params["bootstrap"]["confidence"]),
    )
