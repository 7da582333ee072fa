"""Nodes of the ``preprocess`` pipeline: lung masks, ROI crops, reference histogram, model inputs.

Each node streams its images in bounded chunks through a pool of worker processes (image maths)
while the Kedro process only predicts with the U-Net, so memory does not grow with the number
of images. Files are named by hashes of their inputs and parameters (see ``chain``) and skipped
when present: a re-run with unchanged inputs decodes, predicts and writes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from covid_cxnet_pipeline.digests import table_digest
from covid_cxnet_pipeline.imaging import build_reference_histogram
from covid_cxnet_pipeline.models.digest import weights_digest
from covid_cxnet_pipeline.pipelines.preprocess import chain
from covid_cxnet_pipeline.schema import MODEL_INPUT_COLUMNS

logger = logging.getLogger(__name__)

# Columns of curated_index that the preprocess pipeline reads.
_CURATED_COLUMNS = ("image_id", "source_id", "sha256", "path", "label", "split", "patient_group")
# Extra columns after schema.MODEL_INPUT_COLUMNS in model_input_index.
MODEL_INPUT_EXTRA_COLUMNS = ("source_id", "patient_group", "sha256", "fallback_reason")


def _unet_size(model: Any) -> tuple[int, int]:
    height, width = model.input_shape[1:3]
    if height is None or width is None:
        raise ValueError(
            "the U-Net (catalog unet_model) has no fixed input size; retrain it with "
            "train_segmentation.unet.input_size set"
        )
    return int(height), int(width)


def _curated_rows(curated_index: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in _CURATED_COLUMNS if column not in curated_index.columns]
    if missing:
        raise ValueError(f"curated_index lacks the columns {missing}; re-run the curate pipeline")
    if curated_index["image_id"].duplicated().any():
        raise ValueError("curated_index has duplicate image_id values; re-run the curate pipeline")
    return curated_index[list(_CURATED_COLUMNS)].reset_index(drop=True)


def _predict(model: Any, images: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """U-Net probabilities for a chunk of images, ``batch_size`` at a time."""
    probabilities: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        batch = np.stack(images[start : start + batch_size]).astype(np.float32)[..., np.newaxis]
        output = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
        probabilities.extend(output[..., 0])
    return probabilities


def predict_lung_masks(
    curated_index: pd.DataFrame, unet_model: Any, params: dict[str, Any]
) -> pd.DataFrame:
    """Predict and post-process a lung mask per curated image; reuse what is already written.

    Two caches: the U-Net's raw probabilities (keyed by image, U-Net digest and size, decode
    options) and the post-processed masks (keyed by the probabilities' key and ``lung_mask``).
    Changing only the post-processing therefore re-runs no U-Net prediction.

    Args:
        curated_index: The curate output.
        unet_model: The trained U-Net (catalog ``unet_model``).
        params: ``preprocess`` parameters.

    Returns:
        The curated rows with ``unet_sha256`` (:func:`weights_digest`), ``mask_key``,
        ``lung_mask_full_path`` (mask at the U-Net size), ``mask_area``, ``unet_predicted``
        (the U-Net ran on the image) and ``mask_computed`` (the mask was post-processed).
    """
    rows = _curated_rows(curated_index)
    unet_size = _unet_size(unet_model)
    model_digest = weights_digest(unet_model)
    probability_folder = Path(params["folders"]["lung_probabilities"])
    mask_folder = Path(params["folders"]["lung_masks"])
    prediction = {"unet": model_digest, "unet_size": unet_size, "decode": params["decode"]}
    probability_keys = [chain.digest({"image": sha, **prediction}) for sha in rows["sha256"]]
    probability_paths = [str(probability_folder / f"{key}.npy") for key in probability_keys]
    keys = [
        chain.digest({"probabilities": key, "lung_mask": params["lung_mask"]})
        for key in probability_keys
    ]
    mask_paths = [str(mask_folder / f"{key}.png") for key in keys]
    # Unique work by content: an image listed twice is predicted and post-processed once.
    masks_todo: dict[str, str] = {}
    for probability_path, mask_path in zip(probability_paths, mask_paths, strict=True):
        if not (Path(mask_path).exists() and Path(mask_path).with_suffix(".json").exists()):
            masks_todo.setdefault(mask_path, probability_path)
    needed = set(masks_todo.values())
    predict_todo: dict[str, str] = {}
    for probability_path, image_path in zip(probability_paths, rows["path"], strict=True):
        if probability_path in needed and not Path(probability_path).exists():
            predict_todo.setdefault(probability_path, str(image_path))
    logger.info(
        "Lung masks: %d images, %d to predict with U-Net %s (%dx%d), %d to post-process, %d reused",
        len(rows),
        len(predict_todo),
        model_digest[:12],
        *unet_size,
        len(masks_todo),
        len(rows) - len(masks_todo),
    )
    predictions = list(predict_todo.items())
    masks = [(probability, mask) for mask, probability in masks_todo.items()]
    workers = min(int(params["workers"]), max(len(predictions), len(masks)))
    with chain.worker_pool(workers, params["start_method"]) as mapper:
        for chunk in chain.chunked(predictions, int(params["chunk_size"])):
            images = list(
                mapper(
                    chain.unet_input_task,
                    [(image_path, params["decode"], unet_size) for _, image_path in chunk],
                    chunksize=4,
                )
            )
            probabilities = _predict(unet_model, images, int(params["predict_batch_size"]))
            del images
            for probability, (probability_path, _) in zip(probabilities, chunk, strict=True):
                chain.write_probabilities(probability, probability_path)
        areas = mapper(
            chain.lung_mask_task,
            [(probability, mask, params["lung_mask"]) for probability, mask in masks],
            chunksize=8,
        )
        # The workers return each new mask's area; only reused masks have it read back.
        computed_areas = dict(zip(masks_todo, areas, strict=True))
    return rows.assign(
        unet_sha256=model_digest,
        mask_key=keys,
        lung_mask_full_path=mask_paths,
        mask_area=[
            computed_areas[path] if path in computed_areas else chain.read_mask_area(path)
            for path in mask_paths
        ],
        unet_predicted=[path in predict_todo for path in probability_paths],
        mask_computed=[path in masks_todo for path in mask_paths],
    )


def _roi_settings(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "decode": params["decode"],
        "use_lung_roi": bool(params["use_lung_roi"]),
        "roi": params["roi"],
        "input_size": chain.size_pair(params["resize"]["size"], "preprocess.resize.size"),
        "keep_aspect": bool(params["resize"]["keep_aspect"]),
    }


def crop_lung_roi(lung_masks: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Crop each image to its lungs (or keep it whole) at the input size; reuse finished crops.

    Args:
        lung_masks: Output of :func:`predict_lung_masks`.
        params: ``preprocess`` parameters (``use_lung_roi``, ``roi``, ``resize``).

    Returns:
        The rows with ``roi_key``, ``roi_path``, ``lung_mask_path`` (aligned with the ROI
        image), ``roi_fallback``, ``fallback_reason`` and ``roi_computed``.
    """
    settings = _roi_settings(params)
    hashed = {**settings, "roi": settings["roi"] if settings["use_lung_roi"] else None}
    keys = [chain.digest({"mask": key, **hashed}) for key in lung_masks["mask_key"]]
    folder = Path(params["folders"]["lung_roi"])
    roi_paths = [str(folder / f"{key}.png") for key in keys]
    tasks = [
        (str(image_path), mask_path, roi_path, settings)
        for image_path, mask_path, roi_path in zip(
            lung_masks["path"], lung_masks["lung_mask_full_path"], roi_paths, strict=True
        )
    ]
    # Finished crops are read back here, so a re-run starts no worker process at all.
    results = [chain.finished_roi(roi_path) for roi_path in roi_paths]
    todo = [number for number, result in enumerate(results) if result is None]
    with chain.worker_pool(
        min(int(params["workers"]), len(todo)), params["start_method"]
    ) as mapper:
        done = mapper(chain.roi_task, [tasks[number] for number in todo], chunksize=8)
        for number, result in zip(todo, done, strict=True):
            results[number] = result
    table = lung_masks.assign(
        roi_key=keys,
        roi_path=roi_paths,
        lung_mask_path=[str(chain.roi_mask_path(path)) for path in roi_paths],
        roi_fallback=[fallback for fallback, _, _ in results],
        fallback_reason=[reason if fallback else "" for fallback, reason, _ in results],
        roi_computed=[computed for _, _, computed in results],
    )
    for image_id, reason in table.loc[
        table["roi_fallback"], ["image_id", "fallback_reason"]
    ].values:
        logger.info("Lung ROI fallback to the full image for %s: %s", image_id, reason)
    logger.info(
        "Lung ROI: %d images (%d computed, %d reused), %d fell back to the full image (%.1f%%)%s",
        len(table),
        int(table["roi_computed"].sum()),
        int((~table["roi_computed"]).sum()),
        int(table["roi_fallback"].sum()),
        100.0 * table["roi_fallback"].mean() if len(table) else 0.0,
        "" if settings["use_lung_roi"] else " [use_lung_roi is false: full images]",
    )
    return table


def build_histogram_reference(roi_table: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Average the gray-level histograms of the training split's ROI images, one at a time.

    Only training images contribute, after the same crop and resize as every image, so the
    reference never sees validation or test pixels. The result is cached by the ROI keys of
    the training images, so a re-run reads it back instead of decoding them again.

    Args:
        roi_table: Output of :func:`crop_lung_roi`.
        params: ``preprocess`` parameters (``folders.histogram_references``).

    Returns:
        ``{"histogram": [256 floats], "digest", "n_images", "split": "train", "input_size",
        "use_lung_roi", "unet_sha256"}`` (catalog ``histogram_reference``).
    """
    train = roi_table[roi_table["split"] == "train"]
    if train.empty:
        raise ValueError(
            "no image in the train split of curated_index: the histogram reference is built "
            "from the train split only; check curate.split"
        )
    key = chain.digest({"train_roi_keys": sorted(train["roi_key"])})
    cache_path = Path(params["folders"]["histogram_references"]) / f"{key}.npy"
    if cache_path.exists():
        histogram = np.load(cache_path)
        logger.info("Histogram reference %s reused (%d train images)", key[:12], len(train))
    else:
        histogram = build_reference_histogram(chain.read_png(path) for path in train["roi_path"])
        chain.write_npy_atomic(histogram, cache_path)
    values = [float(value) for value in histogram]
    return {
        "histogram": values,
        "digest": chain.digest({"histogram": values}),
        "n_images": len(train),
        "split": "train",
        "input_size": list(_roi_settings(params)["input_size"]),
        "use_lung_roi": bool(params["use_lung_roi"]),
        # The U-Net whose masks cropped these images: train and predict can check it.
        "unet_sha256": str(roi_table["unet_sha256"].iloc[0]),
    }


def write_model_inputs(
    roi_table: pd.DataFrame, histogram_reference: dict[str, Any], params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Histogram-match and channel-stack every ROI image into a 3-channel PNG; reuse existing.

    Args:
        roi_table: Output of :func:`crop_lung_roi`.
        histogram_reference: Output of :func:`build_histogram_reference`.
        params: ``preprocess`` parameters (``histogram_matching``, ``channels``, ``enhance``).

    Returns:
        ``(model_input_index, {"written": n, "reused": n})``; the index has
        ``schema.MODEL_INPUT_COLUMNS`` then ``MODEL_INPUT_EXTRA_COLUMNS``.
    """
    matching = bool(params["histogram_matching"]["enabled"])
    reference = np.asarray(histogram_reference["histogram"]) if matching else None
    settings = {"channels": list(params["channels"]), "enhance": params["enhance"]}
    hashed = {**settings, "reference": histogram_reference["digest"] if matching else None}
    keys = [chain.digest({"roi": key, **hashed}) for key in roi_table["roi_key"]]
    folder = Path(params["folders"]["model_input"])
    paths = [str(folder / f"{key}.png") for key in keys]
    tasks = [
        (roi_path, path, reference, settings)
        for roi_path, path in zip(roi_table["roi_path"], paths, strict=True)
    ]
    todo = [task for task in tasks if not Path(task[1]).exists()]
    with chain.worker_pool(
        min(int(params["workers"]), len(todo)), params["start_method"]
    ) as mapper:
        written = sum(mapper(chain.model_input_task, todo, chunksize=8))
    stats = {"written": int(written), "reused": len(tasks) - int(written)}
    logger.info("Model inputs: %d written, %d reused, in %s", *stats.values(), folder)
    index = roi_table.assign(path=paths)
    columns = list(MODEL_INPUT_COLUMNS) + list(MODEL_INPUT_EXTRA_COLUMNS)
    return index[columns].reset_index(drop=True), stats


def preprocess_metrics(
    roi_table: pd.DataFrame, model_input_stats: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Counts, fallback rate and reuse as MLflow metrics (``MlflowMetricsHistoryDataset``).

    Args:
        roi_table: Output of :func:`crop_lung_roi`.
        model_input_stats: Second output of :func:`write_model_inputs`.

    Returns:
        ``{name: {"value": v, "step": 0}}``.
    """
    n_images = len(roi_table)
    metrics: dict[str, float] = {
        "images": float(n_images),
        "masks_predicted": float(roi_table["unet_predicted"].sum()),
        "masks_postprocessed": float(roi_table["mask_computed"].sum()),
        "rois_computed": float(roi_table["roi_computed"].sum()),
        "model_inputs_written": float(model_input_stats["written"]),
        "model_inputs_reused": float(model_input_stats["reused"]),
        "roi_fallbacks": float(roi_table["roi_fallback"].sum()),
        "roi_fallback_rate": float(roi_table["roi_fallback"].mean()) if n_images else 0.0,
        "mask_area_mean": float(roi_table["mask_area"].mean()) if n_images else 0.0,
    }
    for split, count in roi_table["split"].value_counts().items():
        metrics[f"images.{split}"] = float(count)
    return {name: {"value": value, "step": 0} for name, value in metrics.items()}


def record_lineage(
    model_input_index: pd.DataFrame, histogram_reference: dict[str, Any]
) -> dict[str, str | int]:
    """Which U-Net, reference histogram and index this run produced, as MLflow params and tags.

    The index digest is :func:`covid_cxnet_pipeline.digests.table_digest` of the table as
    saved, the same digest a training run computes from what it reads, so an MLflow search
    (``tags.model_input_index_sha256 = '...'``) finds the preprocess run behind a model. Nothing
    is logged without an active run (a unit test or a notebook).

    Args:
        model_input_index: The index as saved (read back from the catalog).
        histogram_reference: Output of :func:`build_histogram_reference`.

    Returns:
        ``{unet_sha256, histogram_reference_digest, histogram_reference_images,
        model_input_index_sha256, model_input_index_rows, chain_version}``.
    """
    from covid_cxnet_pipeline.curation.lineage import log_lineage

    lineage: dict[str, str | int] = {
        "unet_sha256": str(histogram_reference["unet_sha256"]),
        "histogram_reference_digest": str(histogram_reference["digest"]),
        "histogram_reference_images": int(histogram_reference["n_images"]),
        "model_input_index_sha256": table_digest(model_input_index),
        "model_input_index_rows": len(model_input_index),
        "chain_version": int(chain.CHAIN_VERSION),
    }
    # Params (prefixed) for run comparison, tags for search.
    log_lineage(lineage, stage="preprocess", param_prefix="preprocess.")
    return lineage


def roi_fallback_report(roi_table: pd.DataFrame) -> pd.DataFrame:
    """The images whose lung ROI fell back to the full image, with the reason.

    Args:
        roi_table: Output of :func:`crop_lung_roi`.

    Returns:
        Columns ``image_id``, ``source_id``, ``split``, ``mask_area``, ``fallback_reason``.
    """
    columns = ["image_id", "source_id", "split", "mask_area", "fallback_reason"]
    return roi_table.loc[roi_table["roi_fallback"], columns].reset_index(drop=True)


def contact_sheet(model_input_index: pd.DataFrame, params: dict[str, Any]) -> Figure:
    """A few model-ready images, one row each: every channel, and the lung mask over channel 0.

    Args:
        model_input_index: Output of :func:`write_model_inputs`.
        params: ``preprocess`` parameters (``contact_sheet.images``, ``contact_sheet.seed``,
            ``channels``).

    Returns:
        A matplotlib figure.
    """
    settings = params["contact_sheet"]
    count = min(int(settings["images"]), len(model_input_index))
    sample = model_input_index.sample(n=count, random_state=int(settings["seed"]))
    names = list(params["channels"])
    figure = Figure(figsize=(2.2 * (len(names) + 1), 2.3 * max(count, 1)))
    axes = figure.subplots(max(count, 1), len(names) + 1, squeeze=False)
    for row_axes, row in zip(axes, sample.itertuples(), strict=False):
        stacked = chain.read_png(row.path)
        for column, name in enumerate(names):
            row_axes[column].imshow(stacked[..., column], cmap="gray", vmin=0, vmax=255)
            row_axes[column].set_title(name, fontsize=8)
        row_axes[-1].imshow(stacked[..., 0], cmap="gray", vmin=0, vmax=255)
        row_axes[-1].contour(chain.read_png(row.lung_mask_path) > 0, levels=[0.5], colors="lime")
        row_axes[-1].set_title("lung mask", fontsize=8)
        row_axes[0].set_ylabel(
            f"{row.label} / {row.split}" + ("\nfull image" if row.roi_fallback else ""),
            fontsize=8,
        )
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"Model-ready images ({count} of {len(model_input_index)})", fontsize=10)
    figure.tight_layout()
    return figure
