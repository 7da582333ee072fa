"""Nodes of the ``train_segmentation`` pipeline: pairs, patient split, U-Net training, evaluation.

TensorFlow and Keras are imported inside the training and evaluation nodes: the worker processes
that write the pairs import this package, and must not each load TensorFlow.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from covid_cxnet_pipeline.models.digest import weights_digest
from covid_cxnet_pipeline.pipelines.preprocess.chain import chunked, size_pair, worker_pool
from covid_cxnet_pipeline.pipelines.train_segmentation.pairs import (
    PAIR_COLUMNS,
    assign_validation,
    classifier_holdout,
    pair_plan,
    pair_task,
)

logger = logging.getLogger(__name__)

_MONITOR = "val_dice_coefficient"


def build_segmentation_pairs(
    raw_index: pd.DataFrame,
    raw_mask_index: pd.DataFrame,
    params: dict[str, Any],
    decode_options: dict[str, Any],
    namespaces: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Write every image that has lung masks, and its assembled mask, at the U-Net size.

    Pairs already in the cache folder are not recomputed. Images or masks that cannot be
    used are left out with a warning naming the file.

    Args:
        raw_index: Ingest's image index.
        raw_mask_index: Ingest's mask index.
        params: ``train_segmentation`` parameters (``unet.input_size``, ``pairs``).
        decode_options: ``preprocess.decode``: the U-Net learns from images decoded exactly as
            the preprocess pipeline decodes the images it segments (one setting for both).
        namespaces: ``curate.patients.namespaces``, so patient groups match curate's (one
            patient listed by two mask sources is one group).

    Returns:
        One row per usable pair: ``image_id``, ``source_id``, ``patient_group``,
        ``image_path``, ``mask_path``.
    """
    settings = params["pairs"]
    size = size_pair(params["unet"]["input_size"], "train_segmentation.unet.input_size")
    plan = pair_plan(
        raw_index,
        raw_mask_index,
        cache_dir=settings["cache_dir"],
        size=size,
        decode_options=decode_options,
        foreground_threshold=int(settings["foreground_threshold"]),
        namespaces=namespaces,
    )
    if not plan:
        raise ValueError(
            "raw_mask_index holds no mask of an image in raw_index: enable a source with lung "
            "masks (gb_covid_segmentations, shenzhen_montgomery_seg, montgomery) in ingest"
        )
    tasks = [
        (
            entry["image_source"],
            entry["mask_files"],
            entry["image_path"],
            entry["mask_path"],
            size,
            decode_options,
            int(settings["foreground_threshold"]),
        )
        for entry in plan
    ]
    # Finished pairs are answered here, so a re-run starts no worker process at all.
    results: list[tuple[str, bool, str] | None] = [
        (task[2], False, "") if Path(task[2]).exists() and Path(task[3]).exists() else None
        for task in tasks
    ]
    todo = [number for number, result in enumerate(results) if result is None]
    with worker_pool(min(int(settings["workers"]), len(todo)), settings["start_method"]) as mapper:
        for chunk in chunked(todo, 64):
            done = mapper(pair_task, [tasks[number] for number in chunk], chunksize=4)
            for number, result in zip(chunk, done, strict=True):
                results[number] = result
    for entry, (_, _, error) in zip(plan, results, strict=True):
        if error:
            logger.warning("Segmentation pair %s left out: %s", entry["image_id"], error)
    kept = [entry for entry, (_, _, error) in zip(plan, results, strict=True) if not error]
    computed = sum(1 for _, was_computed, _ in results if was_computed)
    logger.info(
        "Segmentation pairs: %d usable of %d (%d written, %d reused) at %dx%d",
        len(kept),
        len(plan),
        computed,
        len(kept) - computed,
        *size,
    )
    return pd.DataFrame(kept, columns=list(PAIR_COLUMNS))


def drop_classifier_holdout(
    pairs: pd.DataFrame,
    curated_index: pd.DataFrame,
    duplicate_groups: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Leave out pairs whose image the classifiers validate or test on.

    The U-Net's masks crop every classifier image; had it trained on a test image's true
    lung mask, that image's crop would be better than an unseen image's and the test score
    optimistic. With ``exclude_classifier_holdout: false`` all pairs are kept.

    Args:
        pairs: Output of :func:`build_segmentation_pairs`.
        curated_index: Curate's output (its ``split`` column).
        duplicate_groups: ``curation_duplicate_groups``.
        params: ``train_segmentation`` parameters (``exclude_classifier_holdout``).

    Returns:
        The pairs to train and validate the U-Net on.
    """
    if not bool(params.get("exclude_classifier_holdout", True)):
        logger.info("Segmentation pairs: classifier hold-out images kept (flag is false)")
        return pairs
    held = classifier_holdout(pairs, curated_index, duplicate_groups)
    by_source = pairs.loc[held, "source_id"].value_counts().to_dict()
    logger.info(
        "Segmentation pairs: %d of %d left out as curated validation/test/external images "
        "(train_segmentation.exclude_classifier_holdout)%s",
        int(held.sum()),
        len(pairs),
        f", by source {by_source}" if by_source else "",
    )
    return pairs[~held].reset_index(drop=True)


def split_segmentation_pairs(pairs: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Hold out a seeded share of patient groups for validation.

    Args:
        pairs: Output of :func:`build_segmentation_pairs`.
        params: ``train_segmentation`` parameters (``seed``, ``split.validation_fraction``).

    Returns:
        The pairs with a ``split`` column.
    """
    split = assign_validation(
        pairs, float(params["split"]["validation_fraction"]), int(params["seed"])
    )
    counts = split["split"].value_counts().to_dict()
    logger.info(
        "Segmentation split by patient: %d train, %d validation pairs",
        counts.get("train", 0),
        counts.get("validation", 0),
    )
    return split


def _datasets(pairs: pd.DataFrame, params: dict[str, Any], augment: bool):
    from covid_cxnet_pipeline.pipelines.train_segmentation.data import pair_dataset
    from covid_cxnet_pipeline.training.augment import validate_augment_config

    size = size_pair(params["unet"]["input_size"], "train_segmentation.unet.input_size")
    batch_size = int(params["training"]["batch_size"])
    seed = int(params["seed"])
    train = pairs[pairs["split"] == "train"]
    validation = pairs[pairs["split"] == "validation"]
    if train.empty or validation.empty:
        raise ValueError(
            f"the segmentation split has {len(train)} train and {len(validation)} validation "
            "pairs; both must be non-empty (check split.validation_fraction)"
        )
    train_ds = pair_dataset(
        train["image_path"].tolist(),
        train["mask_path"].tolist(),
        size,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        augment=validate_augment_config(params["augment"]) if augment else None,
    )
    validation_ds = pair_dataset(
        validation["image_path"].tolist(),
        validation["mask_path"].tolist(),
        size,
        batch_size=batch_size,
        shuffle=False,
        seed=seed,
    )
    return train_ds, validation_ds, size


def train_unet(pairs: pd.DataFrame, params: dict[str, Any]) -> tuple[Any, Figure]:
    """Train the U-Net and keep the weights of its best validation Dice epoch.

    Per-epoch losses, Dice and IoU go to the active MLflow run (prefix ``segmentation_``).

    Args:
        pairs: Output of :func:`split_segmentation_pairs`.
        params: ``train_segmentation`` parameters (``seed``, ``unet``, ``training``,
            ``augment``).

    Returns:
        ``(Keras model, learning-curve figure)``.
    """
    import keras
    import mlflow

    from covid_cxnet_pipeline.models.unet import build_unet, compile_unet
    from covid_cxnet_pipeline.training.mlflow_logging import learning_curve_figure, log_history
    from covid_cxnet_pipeline.training.seeding import set_global_seed

    seed = int(params["seed"])
    set_global_seed(seed)
    train_ds, validation_ds, size = _datasets(pairs, params, augment=True)
    unet, training = params["unet"], params["training"]
    model = build_unet(
        (*size, 1),
        levels=int(unet["levels"]),
        base_filters=int(unet["base_filters"]),
        batch_norm=bool(unet["batch_norm"]),
        dropout=float(unet["dropout"]),
    )
    compile_unet(
        model,
        learning_rate=float(training["learning_rate"]),
        bce_weight=float(training["bce_weight"]),
        dice_weight=float(training["dice_weight"]),
    )
    epoch_logger = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: logger.info(
            "U-Net epoch %d: %s",
            epoch + 1,
            ", ".join(f"{name}={value:.4f}" for name, value in sorted((logs or {}).items())),
        )
    )
    with tempfile.TemporaryDirectory(prefix="cxnet-unet-") as scratch:
        checkpoint = Path(scratch) / "best.weights.h5"
        callbacks = [
            epoch_logger,
            keras.callbacks.ModelCheckpoint(
                str(checkpoint),
                monitor=_MONITOR,
                mode="max",
                save_best_only=True,
                save_weights_only=True,
            ),
        ]
        patience = int(training.get("early_stopping_patience") or 0)
        if patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(monitor=_MONITOR, mode="max", patience=patience)
            )
        fit = model.fit(
            train_ds,
            validation_data=validation_ds,
            epochs=int(training["epochs"]),
            callbacks=callbacks,
            # The dataset shuffles itself (seeded); Keras' own flag would only warn.
            shuffle=False,
            verbose=0,
        )
        if checkpoint.exists():
            model.load_weights(str(checkpoint))
    history = {name: [float(value) for value in values] for name, values in fit.history.items()}
    best_epoch = int(np.argmax(history[_MONITOR])) + 1
    logger.info(
        "U-Net: best epoch %d of %d, validation Dice %.4f",
        best_epoch,
        len(history[_MONITOR]),
        history[_MONITOR][best_epoch - 1],
    )
    log_history(history, prefix="segmentation_")
    if mlflow.active_run() is not None:
        mlflow.log_metric("segmentation_best_epoch", best_epoch)
    return model, learning_curve_figure(history, title="U-Net lung segmentation")


def _overlay(axis, image: np.ndarray, mask: np.ndarray, colour: str, title: str) -> None:
    axis.imshow(image, cmap="gray", vmin=0, vmax=255)
    if mask.any():
        axis.contour(mask, levels=[0.5], colors=colour, linewidths=1.0)
    axis.set_title(title, fontsize=8)
    axis.set_xticks([])
    axis.set_yticks([])


def evaluate_unet(
    model: Any,
    pairs: pd.DataFrame,
    params: dict[str, Any],
    lung_mask_params: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, float]], Figure]:
    """Dice and IoU of the U-Net on the validation pairs, and a plot of predicted vs true masks.

    Scores are given overall, per source (``validation_dice_<source>``: a source whose masks
    differ in style shows here), and after ``postprocess_mask`` with the preprocess pipeline's
    ``lung_mask`` settings (``validation_dice_postprocessed``): the masks that actually crop
    the classifier's images.

    Args:
        model: Output of :func:`train_unet`.
        pairs: Output of :func:`split_segmentation_pairs`.
        params: ``train_segmentation`` parameters (``evaluation``).
        lung_mask_params: ``preprocess.lung_mask`` (``postprocess_mask`` arguments); None
            skips the post-processed scores.

    Returns:
        ``(metrics for the JSON report, the same for MLflow, figure)``.
    """
    from covid_cxnet_pipeline.imaging import postprocess_mask
    from covid_cxnet_pipeline.models.metrics import dice_score, iou_score

    settings = params["evaluation"]
    threshold = float(settings["threshold"])
    _, validation_ds, size = _datasets(pairs, params, augment=False)
    # The validation dataset is not shuffled: its order is the validation rows' order.
    sources = pairs.loc[pairs["split"] == "validation", "source_id"].astype(str).tolist()
    scores: dict[str, list[float]] = {"dice": [], "iou": [], "dice_post": [], "iou_post": []}
    examples = []
    for images, masks in validation_ds:
        probabilities = np.asarray(model.predict_on_batch(images))[..., 0]
        for image, mask, probability in zip(
            np.asarray(images)[..., 0], np.asarray(masks)[..., 0], probabilities, strict=True
        ):
            scores["dice"].append(dice_score(mask, probability, threshold))
            scores["iou"].append(iou_score(mask, probability, threshold))
            if lung_mask_params is not None:
                cleaned = postprocess_mask(probability, **lung_mask_params).astype(np.float32)
                scores["dice_post"].append(dice_score(mask, cleaned, 0.5))
                scores["iou_post"].append(iou_score(mask, cleaned, 0.5))
            if len(examples) < int(settings["plot_examples"]):
                examples.append((image, mask > 0.5, probability >= threshold, scores["dice"][-1]))
    if len(scores["dice"]) != len(sources):
        raise RuntimeError(
            f"scored {len(scores['dice'])} validation images but the pairs list {len(sources)}"
        )
    dice, iou = scores["dice"], scores["iou"]
    counts = pairs["split"].value_counts()
    report: dict[str, Any] = {
        "validation_dice": float(np.mean(dice)),
        "validation_dice_median": float(np.median(dice)),
        "validation_iou": float(np.mean(iou)),
        "validation_iou_median": float(np.median(iou)),
        "n_train": int(counts.get("train", 0)),
        "n_validation": int(counts.get("validation", 0)),
        "input_size": list(size),
        "threshold": threshold,
        "model_digest": weights_digest(model),
    }
    if lung_mask_params is not None:
        report["validation_dice_postprocessed"] = float(np.mean(scores["dice_post"]))
        report["validation_iou_postprocessed"] = float(np.mean(scores["iou_post"]))
    by_source = pd.DataFrame({"source": sources, "dice": dice, "iou": iou})
    per_source_names = []
    for source, group in by_source.groupby("source", sort=True):
        report[f"validation_dice_{source}"] = float(group["dice"].mean())
        report[f"validation_iou_{source}"] = float(group["iou"].mean())
        report[f"n_validation_{source}"] = len(group)
        per_source_names += [f"{kind}_{source}" for kind in ("validation_dice", "n_validation")]
        per_source_names.append(f"validation_iou_{source}")
    logger.info(
        "U-Net validation: Dice %.4f, IoU %.4f on %d images%s; per source: %s",
        report["validation_dice"],
        report["validation_iou"],
        len(dice),
        (
            f" (after postprocess_mask: Dice {report['validation_dice_postprocessed']:.4f})"
            if lung_mask_params is not None
            else ""
        ),
        ", ".join(
            f"{source} Dice {group['dice'].mean():.4f} (n={len(group)})"
            for source, group in by_source.groupby("source", sort=True)
        ),
    )
    logged = ["validation_dice", "validation_iou", "n_train", "n_validation", *per_source_names]
    if lung_mask_params is not None:
        logged += ["validation_dice_postprocessed", "validation_iou_postprocessed"]
    mlflow_metrics = {name: {"value": float(report[name]), "step": 0} for name in logged}
    figure = Figure(figsize=(6.6, 2.2 * max(len(examples), 1)))
    axes = figure.subplots(max(len(examples), 1), 3, squeeze=False)
    for row, (image, truth, predicted, score) in zip(axes, examples, strict=False):
        _overlay(row[0], image, np.zeros_like(truth), "lime", "image")
        _overlay(row[1], image, truth, "lime", "true mask")
        _overlay(row[2], image, predicted, "red", f"predicted (Dice {score:.3f})")
    figure.suptitle(
        f"U-Net on validation: mean Dice {report['validation_dice']:.3f}, "
        f"IoU {report['validation_iou']:.3f}",
        fontsize=9,
    )
    figure.tight_layout()
    return report, mlflow_metrics, figure
