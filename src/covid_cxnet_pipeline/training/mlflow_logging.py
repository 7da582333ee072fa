"""MLflow helpers for the training pipelines: per-epoch metrics, the Keras model, input digests.

Every helper logs into the ACTIVE run (the one kedro-mlflow opens around a ``kedro run``) and
never starts one itself: MLflow's fluent API would otherwise open a stray run as a side effect.
Without an active run each helper logs a warning through ``logging``, logs nothing and returns
None, so the same node code works in plain unit tests and notebooks.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import matplotlib.figure
import mlflow
import mlflow.keras
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from covid_cxnet_pipeline.digests import table_digest as dataframe_digest

logger = logging.getLogger(__name__)


def _active_run_or_warn(what: str) -> bool:
    if mlflow.active_run() is None:
        logger.warning("No active MLflow run: %s not logged (start one, e.g. via kedro run)", what)
        return False
    return True


def log_history(history: Mapping[str, Sequence[float]], prefix: str = "") -> int | None:
    """Log per-epoch metrics with ``step`` = epoch number (from 1, as Keras prints them).

    Args:
        history: ``{metric: [value per epoch]}`` as returned by ``train_model``.
        prefix: Prepended to each metric name, e.g. ``"binary_"`` -> ``binary_val_auc``.

    Returns:
        The number of values logged, or None without an active run.
    """
    if not _active_run_or_warn("training history"):
        return None
    n_epochs = max((len(values) for values in history.values()), default=0)
    logged = 0
    for epoch in range(n_epochs):
        metrics = {
            f"{prefix}{name}": float(values[epoch])
            for name, values in history.items()
            if epoch < len(values) and np.isfinite(values[epoch])
        }
        if metrics:
            mlflow.log_metrics(metrics, step=epoch + 1)
            logged += len(metrics)
    return logged


class MlflowEpochLogger(keras.callbacks.Callback):
    """Keras callback logging each epoch's metrics as it ends (step = epoch number from 1).

    For long runs, so the MLflow UI shows the curves while training. Pass it in
    ``train_model(..., callbacks_extra=[MlflowEpochLogger("binary_")])`` and then do not call
    :func:`log_history` with the same prefix (the values would be logged twice). Without an
    active run it warns once and logs nothing.
    """

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix
        self._warned = False

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if mlflow.active_run() is None:
            if not self._warned:
                _active_run_or_warn("per-epoch metrics")
                self._warned = True
            return
        metrics = {
            f"{self.prefix}{name}": float(value)
            for name, value in (logs or {}).items()
            if np.isfinite(float(value))
        }
        if metrics:
            mlflow.log_metrics(metrics, step=epoch + 1)


def _pip_requirements() -> list[str]:
    # Pinning the requirements ourselves skips MLflow's inference, which re-imports the model
    # in a subprocess (tens of seconds with TensorFlow) and warns when it cannot.
    requirements = [f"mlflow=={mlflow.__version__}", f"keras=={keras.__version__}"]
    for distribution in ("tensorflow", "tensorflow-cpu"):
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        # Serving hosts install plain ``tensorflow``; the CPU wheel provides the same package.
        requirements.append(f"tensorflow=={version}")
        break
    return requirements


def log_keras_model(
    model: keras.Model,
    name: str,
    input_example: np.ndarray,
    save_example: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> str | None:
    """Log a Keras 3 model as an MLflow model (``mlflow.keras`` flavour) with its signature.

    The signature is inferred from ``input_example`` and the model's prediction on it. The
    example itself is stored only on request, because a batch of 320x320x3 images is megabytes
    of JSON.

    Args:
        model: The trained model.
        name: Model name inside the run (MLflow 3 ``name=``), e.g. ``"covid_cxnet_binary"``.
        input_example: A small float32 batch ``(n, h, w, c)`` shaped like the model's input.
        save_example: Also store ``input_example`` with the model.
        metadata: Stored in the MLmodel file (``mlflow.keras.log_model(metadata=...)``), e.g.
            ``{"model_card": card}`` so a loader of the URI finds the model card.

    Returns:
        The logged model's URI (``models:/<model id>``), or None without an active run.
    """
    if not _active_run_or_warn(f"model {name!r}"):
        return None
    example = np.asarray(input_example, dtype=np.float32)
    prediction = np.asarray(model.predict_on_batch(example))
    signature = infer_signature(example, prediction)
    info = mlflow.keras.log_model(
        model,
        name=name,
        signature=signature,
        input_example=example if save_example else None,
        metadata=dict(metadata) if metadata is not None else None,
        pip_requirements=_pip_requirements(),
    )
    logger.info("Logged model %s as %s", name, info.model_uri)
    return info.model_uri


def log_dataset_digest(df: pd.DataFrame, name: str, context: str = "training") -> str | None:
    """Record which index table a run used: its digest as a param and tag, and an MLflow input.

    Logs the param ``<name>_sha256`` (full digest), the tag ``<name>_rows`` and, through
    ``mlflow.data.from_pandas`` + ``mlflow.log_input``, a dataset entry named ``name`` whose
    digest is the first 16 hex characters (shown in the UI's Datasets column).

    Args:
        df: The index table (only its rows' metadata; no image is read).
        name: Dataset name, e.g. ``"model_input_index"``.
        context: MLflow input context, e.g. ``"training"``.

    Returns:
        The full sha256 digest, or None without an active run.
    """
    if not _active_run_or_warn(f"dataset digest {name!r}"):
        return None
    digest = dataframe_digest(df)
    mlflow.log_param(f"{name}_sha256", digest)
    mlflow.set_tag(f"{name}_rows", str(len(df)))
    dataset = mlflow.data.from_pandas(df, name=name, digest=digest[:16])
    mlflow.log_input(dataset, context=context)
    return digest


def learning_curve_figure(
    history: Mapping[str, Sequence[float]], title: str = ""
) -> matplotlib.figure.Figure:
    """One panel per metric with its training and validation curves over epochs.

    Args:
        history: ``{metric: [value per epoch]}``; ``val_<metric>`` is drawn beside ``<metric>``.
        title: Figure title.

    Returns:
        A matplotlib figure (log it with ``mlflow.log_figure`` or a MatplotlibDataset).
    """
    base_names = [name for name in history if not name.startswith("val_")]
    base_names += [
        name[4:] for name in history if name.startswith("val_") and name[4:] not in history
    ]
    figure = matplotlib.figure.Figure(figsize=(4.0 * max(1, len(base_names)), 3.2))
    axes = figure.subplots(1, max(1, len(base_names)), squeeze=False)[0]
    for axis, base in zip(axes, base_names, strict=False):
        for key, label in ((base, "train"), (f"val_{base}", "validation")):
            if key in history:
                values = list(history[key])
                axis.plot(range(1, len(values) + 1), values, marker="o", label=label)
        axis.set_title(base)
        axis.set_xlabel("epoch")
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
