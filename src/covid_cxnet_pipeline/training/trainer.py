"""Fit a classifier with model selection on validation only, and predict a split.

The training entry point never receives the test split: it takes a training and a validation
dataset, keeps the checkpoint of the best validation epoch and returns the model with those
weights. The test split is predicted once, afterwards, with :func:`predict_split`.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "best.weights.h5"


def _is_binary(model: keras.Model) -> bool:
    units = model.outputs[0].shape[-1]
    return units == 1


def check_compatible(model: keras.Model, ds: tf.data.Dataset, name: str) -> None:
    """Fail early, with both shapes named, when a dataset does not fit the model.

    Args:
        model: The classifier.
        ds: ``(images, labels)`` batches.
        name: What the dataset is (``train``, ``validation``...), for the message.

    Raises:
        ValueError: If the image shape or the label width differ from the model's input/output.
    """
    image_spec, label_spec = ds.element_spec
    model_input = tuple(model.inputs[0].shape[1:])
    data_input = tuple(image_spec.shape[1:])
    if model_input != data_input:
        raise ValueError(
            f"The {name} images are {data_input} but the model expects {model_input}: set the "
            "dataset image_size/channels and the model input_size/channels to the same values."
        )
    model_output = int(model.outputs[0].shape[-1])
    label_width = label_spec.shape[-1]
    if label_width is not None and int(label_width) != model_output:
        raise ValueError(
            f"The {name} labels have {label_width} column(s) but the model has {model_output} "
            "output(s): binary tasks need a 1-unit model (n_classes 2), multiclass one unit "
            "per class."
        )


def monitor_mode(monitor: str) -> str:
    """``min`` for losses, ``max`` for every other metric (accuracy, AUC)."""
    return "min" if monitor.endswith("loss") else "max"


def compile_classifier(
    model: keras.Model, learning_rate: float, label_smoothing: float = 0.0
) -> keras.Model:
    """Compile with Adam, cross-entropy with label smoothing, accuracy and AUC.

    The loss follows the output layer: one sigmoid unit gives binary cross-entropy, ``k > 1``
    softmax units categorical cross-entropy. Multiclass AUC is the mean of the one-vs-rest AUCs.

    Args:
        model: The classifier (outputs probabilities).
        learning_rate: Adam's learning rate.
        label_smoothing: Smoothing applied to the targets inside the loss (0 for none).

    Returns:
        The same model, compiled.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if _is_binary(model):
        loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    else:
        n_classes = int(model.outputs[0].shape[-1])
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        metrics = [
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=n_classes),
        ]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=metrics
    )
    return model


class _EpochLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics through ``logging`` and checks the monitored key exists."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        if self.monitor not in logs:
            raise ValueError(
                f"monitor={self.monitor!r} is not among the epoch metrics {sorted(logs)}; "
                "set the training parameter monitor to one of the val_* names."
            )
        summary = ", ".join(f"{key}={float(value):.4f}" for key, value in sorted(logs.items()))
        logger.info("Epoch %d: %s", epoch + 1, summary)


def _input_error(error: tf.errors.InvalidArgumentError) -> ValueError:
    # TensorFlow's decode errors do not say which file failed; point at the deep check.
    return ValueError(
        f"TensorFlow rejected an input element ({error.message.splitlines()[0]}). A model-ready "
        "PNG is probably corrupt inside (its header and end looked fine): run "
        "covid_cxnet_pipeline.training.dataset.check_image_files(index['path'], deep=True) to "
        "name it, then re-run the preprocess pipeline."
    )


def best_epoch_from_history(history: Mapping[str, Sequence[float]], monitor: str) -> int:
    """The 1-based epoch with the best monitored value (the first one on ties, like Keras).

    Args:
        history: Per-epoch metrics, e.g. ``{"val_auc": [0.6, 0.8, 0.7]}``.
        monitor: The key to select on.

    Returns:
        The best epoch, counting from 1.
    """
    values = np.asarray(history[monitor], dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        raise ValueError(f"history has no finite value for {monitor!r}")
    if monitor_mode(monitor) == "min":
        return int(np.nanargmin(values)) + 1
    return int(np.nanargmax(values)) + 1


def train_model(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    *,
    epochs: int,
    learning_rate: float,
    class_weight: Mapping[int, float] | None = None,
    label_smoothing: float = 0.0,
    early_stopping_patience: int | None = None,
    monitor: str = "val_auc",
    checkpoint_dir: str | Path | None = None,
    callbacks_extra: Sequence[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, dict[str, list[float]], int]:
    """Train a classifier and return it with the weights of its best validation epoch.

    Model selection uses only ``val_ds``: a ``ModelCheckpoint`` keeps the best epoch's weights
    by ``monitor`` and ``EarlyStopping`` (with ``restore_best_weights``) stops after
    ``early_stopping_patience`` epochs without improvement. After fitting, the checkpoint is
    loaded back, so the returned model is the best epoch's even when training ran to the end.

    Args:
        model: An (un)compiled classifier; it is compiled here (see :func:`compile_classifier`).
        train_ds: Training batches (shuffled, augmented) from ``make_dataset``.
        val_ds: Validation batches (not shuffled, not augmented).
        epochs: Maximum number of epochs.
        learning_rate: Adam's learning rate.
        class_weight: ``{class index: weight}`` (see ``class_weights``) or None.
        label_smoothing: Label smoothing inside the loss.
        early_stopping_patience: Epochs without improvement before stopping; None or 0
            disables early stopping.
        monitor: A validation metric: ``val_loss`` (minimised), ``val_auc`` or
            ``val_accuracy`` (maximised).
        checkpoint_dir: Where the best checkpoint (``best.weights.h5``) is written; a
            temporary folder when None.
        callbacks_extra: More Keras callbacks (e.g. live MLflow logging).

    Returns:
        ``(model with the best weights, history {metric: [value per epoch]}, best epoch from 1)``.

    Raises:
        ValueError: If ``monitor`` is not a validation metric or ``epochs`` < 1.
    """
    if not monitor.startswith("val_"):
        raise ValueError(
            f"monitor={monitor!r}: model selection must use a validation metric "
            "(val_loss, val_auc or val_accuracy)."
        )
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    check_compatible(model, train_ds, "training")
    check_compatible(model, val_ds, "validation")
    compile_classifier(model, learning_rate, label_smoothing)
    mode = monitor_mode(monitor)
    with tempfile.TemporaryDirectory(prefix="cxnet-ckpt-") as scratch:
        folder = Path(checkpoint_dir) if checkpoint_dir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint_path = folder / CHECKPOINT_NAME
        if checkpoint_path.exists():
            # A stale checkpoint from an earlier run must not be mistaken for this run's best.
            checkpoint_path.unlink()
        callbacks: list[keras.callbacks.Callback] = [
            _EpochLogger(monitor),
            keras.callbacks.ModelCheckpoint(
                str(checkpoint_path),
                monitor=monitor,
                mode=mode,
                save_best_only=True,
                save_weights_only=True,
            ),
        ]
        if early_stopping_patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    mode=mode,
                    patience=int(early_stopping_patience),
                    restore_best_weights=True,
                )
            )
        callbacks.extend(callbacks_extra)
        try:
            fit = model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=int(epochs),
                class_weight=dict(class_weight) if class_weight else None,
                callbacks=callbacks,
                # The datasets shuffle themselves (seeded); Keras' own flag would only warn.
                shuffle=False,
                verbose=0,
            )
        except tf.errors.InvalidArgumentError as error:
            raise _input_error(error) from error
        history = {key: [float(value) for value in values] for key, values in fit.history.items()}
        best_epoch = best_epoch_from_history(history, monitor)
        if checkpoint_path.exists():
            model.load_weights(str(checkpoint_path))
        else:
            logger.warning(
                "No checkpoint was written (monitor %s never improved from its initial value); "
                "keeping the last epoch's weights",
                monitor,
            )
            best_epoch = len(history[monitor])
    best_value = history[monitor][best_epoch - 1]
    logger.info(
        "Best epoch %d of %d by %s=%s",
        best_epoch,
        len(history[monitor]),
        monitor,
        f"{best_value:.4f}" if math.isfinite(best_value) else best_value,
    )
    return model, history, best_epoch


def predict_split(model: keras.Model, ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Predict every batch of a dataset, keeping labels aligned with the predictions.

    Feed an unshuffled, unaugmented dataset: then row ``i`` matches row ``i`` of
    ``split_rows(index_df, split)``.

    Args:
        model: A trained classifier.
        ds: ``(images, labels)`` batches from ``make_dataset``.

    Returns:
        ``(y_true, y_prob)``: for a binary model, int class indices ``(n,)`` and the positive
        class probability ``(n,)``; for a multiclass model, indices ``(n,)`` and
        probabilities ``(n, k)``.
    """
    check_compatible(model, ds, "prediction")
    binary = _is_binary(model)
    truths: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    try:
        for images, labels in ds:
            probabilities.append(np.asarray(model.predict_on_batch(images), dtype=np.float64))
            truths.append(np.asarray(labels))
    except tf.errors.InvalidArgumentError as error:
        raise _input_error(error) from error
    if not truths:
        raise ValueError("The dataset yielded no batch to predict")
    y_true = np.concatenate(truths)
    y_prob = np.concatenate(probabilities)
    if binary:
        return np.rint(y_true[:, 0]).astype(np.int64), y_prob[:, 0]
    return np.argmax(y_true, axis=1).astype(np.int64), y_prob
