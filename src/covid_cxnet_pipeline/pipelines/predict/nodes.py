"""Node of the ``predict`` pipeline: a thin wrapper over ``predict.inference``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from covid_cxnet_pipeline.pipelines.predict.inference import load_bundle, predict_directory

logger = logging.getLogger(__name__)


def predict_folder(params: dict[str, Any]) -> pd.DataFrame:
    """Predict every file of ``params.input_dir`` with ``params.model``.

    Writes ``predictions.csv`` and one Grad-CAM overlay per image into ``params.output_dir``
    (the same files as ``covid-cxnet predict``).

    Args:
        params: ``predict`` parameters: ``model`` (``.keras`` file, Kedro versioned model folder
            or MLflow URI), ``unet`` (override or null), ``input_dir``, ``output_dir``,
            ``threshold``, ``batch_size``, ``overlay_alpha``.

    Returns:
        The predictions table (also saved as a catalog dataset).
    """
    bundle = load_bundle(str(params["model"]), params.get("unet"))
    return predict_directory(
        bundle,
        params["input_dir"],
        params["output_dir"],
        threshold=params.get("threshold"),
        batch_size=int(params["batch_size"]),
        overlay_alpha=float(params["overlay_alpha"]),
    )
