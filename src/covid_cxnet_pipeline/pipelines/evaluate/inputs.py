"""Model inputs shared by training, evaluation and prediction: task rows, pixel scale, model cards.

The training library streams model-ready PNGs as raw float32 pixels in [0, 255] and every
classifier built by ``models/`` scales them itself, so training, evaluation, Grad-CAM, LIME and
``predict`` all feed a model the same tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from covid_cxnet_pipeline.schema import CLASS_LABELS

logger = logging.getLogger(__name__)

# Version of the model card layout; predict refuses cards it does not know.
MODEL_CARD_VERSION = 1
# Classifiers take raw pixel values in [0, PIXEL_MAX] (see models/base_cnn.py).
PIXEL_MAX = 255.0


def task_labels(task: str, classes: Sequence[str]) -> list[str]:
    """The ``model_input_index`` labels a task can train and evaluate on.

    Args:
        task: ``binary`` or ``multiclass``.
        classes: the configured classes (binary: the last one is the positive class).

    Returns:
        Multiclass: the classes. Binary: every classifier label (``schema.CLASS_LABELS``) plus the
        configured class names, so ``normal`` and ``cap`` both count as "not covid".
    """
    if task == "binary":
        return sorted(set(CLASS_LABELS) | {str(name) for name in classes})
    return [str(name) for name in classes]


def task_rows(index: pd.DataFrame, task: str, classes: Sequence[str]) -> pd.DataFrame:
    """Keep the rows whose label the task encodes (e.g. drops ``other`` images).

    Args:
        index: ``model_input_index``.
        task: ``binary`` or ``multiclass``.
        classes: the configured classes.

    Returns:
        The kept rows, index reset.

    Raises:
        ValueError: when no row is left.
    """
    allowed = task_labels(task, classes)
    keep = index["label"].astype(str).isin(allowed)
    dropped = index.loc[~keep, "label"].astype(str).value_counts().to_dict()
    if dropped:
        logger.info(
            "Task %s: leaving out %d rows with labels %s", task, int((~keep).sum()), dropped
        )
    rows = index.loc[keep].reset_index(drop=True)
    if rows.empty:
        raise ValueError(
            f"model_input_index has no row with a label in {allowed} for task {task!r}; "
            "check the preprocess output and the task's classes parameter"
        )
    return rows


def available_splits(index: pd.DataFrame, wanted: Sequence[str]) -> list[str]:
    """The wanted splits that have rows in the index, in the wanted order.

    Args:
        index: a table with a ``split`` column.
        wanted: split names.

    Returns:
        The present ones; absent splits are logged and skipped.
    """
    present = set(index["split"].astype(str))
    missing = [split for split in wanted if split not in present]
    if missing:
        logger.info("Splits %s have no rows; they are skipped", missing)
    return [split for split in wanted if split in present]


def model_dataset(
    index: pd.DataFrame,
    split: str,
    card: Mapping[str, Any],
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    augment_cfg: Mapping[str, Any] | None = None,
    cache: bool = False,
):
    """A ``(pixels in [0, 255], labels)`` dataset of one split, as the classifiers take it.

    Args:
        index: rows of ``model_input_index`` (``path``, ``label``, ``split``).
        split: the split to stream.
        card: the model card (``task``, ``classes``, ``input_size``, ``channels``).
        batch_size: images per batch.
        shuffle: shuffle (training only).
        seed: seed of shuffling and augmentation.
        augment_cfg: the ``augment`` block, or None.
        cache: keep decoded images in RAM after the first epoch (small data only).

    Returns:
        A batched ``tf.data.Dataset``.
    """
    from covid_cxnet_pipeline.training.dataset import make_dataset

    return make_dataset(
        index,
        split,
        card["task"],
        card["classes"],
        tuple(card["input_size"]),
        batch_size=int(batch_size),
        shuffle=shuffle,
        seed=int(seed),
        augment_cfg=augment_cfg,
        cache=cache,
        channels=int(card["channels"]),
    )


def load_model_images(
    index: pd.DataFrame, split: str, card: Mapping[str, Any], batch_size: int = 16
) -> np.ndarray:
    """The model-ready pixels of a (small) set of rows, exactly as the model sees them.

    Args:
        index: the rows to load (all of one split).
        split: their split.
        card: the model card.
        batch_size: images per read.

    Returns:
        float32 array ``(n, height, width, channels)`` in [0, 255], in row order.
    """
    batches = [
        np.asarray(images) for images, _ in model_dataset(index, split, card, batch_size=batch_size)
    ]
    return np.concatenate(batches).astype(np.float32)


def probability_columns(class_names: Sequence[str]) -> list[str]:
    """The ``prob_<class>`` column names, in output order."""
    return [f"prob_{name}" for name in class_names]


def probability_matrix(model_outputs: np.ndarray, n_classes: int) -> np.ndarray:
    """Model outputs as an N x C probability matrix (binary: ``[1 - p, p]``).

    Args:
        model_outputs: ``(n,)``/``(n, 1)`` sigmoid outputs or ``(n, C)`` softmax outputs.
        n_classes: C.

    Returns:
        float64 ``(n, C)`` array.
    """
    outputs = np.asarray(model_outputs, dtype=np.float64)
    if n_classes == 2:
        positive = outputs.reshape(-1)
        return np.column_stack([1.0 - positive, positive])
    return outputs.reshape(-1, n_classes)


def split_arrays(
    predictions: pd.DataFrame, split: str, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_prob)`` of one split of a predictions table.

    Args:
        predictions: output of ``predict_splits`` (``split``, ``y_true``, ``prob_<class>``).
        split: the split.
        class_names: output class names.

    Returns:
        int class indices ``(n,)`` and probabilities ``(n, C)``.
    """
    rows = predictions.loc[predictions["split"] == split]
    y_true = rows["y_true"].to_numpy(dtype=np.int64)
    y_prob = rows[probability_columns(class_names)].to_numpy(dtype=np.float64)
    return y_true, y_prob


def check_model_matches_card(
    model: Any, model_card: Mapping[str, Any], model_input_index: pd.DataFrame
) -> None:
    """Refuse to score a model with a card that describes other weights or another index.

    The catalog loads the latest version of ``model`` and of ``model_card`` independently; a
    training run that failed between saving them would pair a new model with an old card, and
    a re-made ``model_input_index`` would score the model on rows it was not split on.

    Args:
        model: the loaded classifier.
        model_card: its card (``model_weights_sha256``, ``model_input_index_sha256``).
        model_input_index: the index evaluation reads.

    Raises:
        ValueError: naming both digests and what to do.
    """
    from covid_cxnet_pipeline.digests import table_digest
    from covid_cxnet_pipeline.models.digest import weights_digest

    name = model_card.get("name", "model")
    expected = model_card.get("model_weights_sha256")
    if not expected:
        raise ValueError(
            f"{name}: the model card has no model_weights_sha256 (written before cards recorded "
            f"the weights), so it cannot be matched to the model: re-run `kedro run "
            f"--pipeline={name}`"
        )
    actual = weights_digest(model)
    if actual != expected:
        raise ValueError(
            f"{name}: the loaded model's weights digest {actual} differs from its card's "
            f"model_weights_sha256 {expected}: the latest model.keras and model_card.json come "
            f"from different runs (a run that failed after saving the model?). Delete the model "
            f"version without a card under data/06_models/{name}/model.keras/ or re-run "
            f"`kedro run --pipeline={name}`"
        )
    index_digest = table_digest(model_input_index)
    if index_digest != model_card.get("model_input_index_sha256"):
        raise ValueError(
            f"{name}: model_input_index has digest {index_digest}, but the model was trained on "
            f"model_input_index_sha256 {model_card.get('model_input_index_sha256')} (its card): "
            "preprocess was re-run since. Evaluate with the index the model was trained on "
            f"(kedro run --pipeline=evaluate --load-versions=model_input_index:<version>) or "
            f"re-run `kedro run --pipeline={name}`"
        )
