"""Which index tables a curate run read and wrote: content digests and row counts, for MLflow.

The digests pin the exact tables behind a run, so two curate runs (or a curate run and the
training run that read its output) can be compared by content, whatever their file versions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import mlflow
import pandas as pd

from covid_cxnet_pipeline.digests import table_digest

logger = logging.getLogger(__name__)


def index_lineage(tables: Mapping[str, pd.DataFrame]) -> dict[str, str | int]:
    """Digest and row count of each named table.

    Args:
        tables: name -> table, e.g. ``{"raw_index": ..., "curated_index": ...}``.

    Returns:
        ``{"<name>_sha256": digest, "<name>_rows": rows}`` for every table, in order.
    """
    lineage: dict[str, str | int] = {}
    for name, frame in tables.items():
        lineage[f"{name}_sha256"] = table_digest(frame)
        lineage[f"{name}_rows"] = len(frame)
    return lineage


def log_lineage(
    lineage: Mapping[str, str | int], stage: str = "curate", param_prefix: str = ""
) -> bool:
    """Record a lineage in the active MLflow run: each entry as a param and as a tag.

    Params make the digests show in MLflow's run comparison; tags make them searchable
    (``tags.curated_index_sha256 = '...'``). Nothing is logged without an active run (a plain
    unit test or notebook): MLflow's fluent API would otherwise open a stray run.

    Args:
        lineage: the output of :func:`index_lineage` (or any name -> value mapping).
        stage: the pipeline named in the log messages, e.g. ``"preprocess"``.
        param_prefix: prepended to each param name (tags keep the bare names), e.g.
            ``"preprocess."``.

    Returns:
        True when logged, False without an active run.
    """
    if mlflow.active_run() is None:
        logger.warning("No active MLflow run: %s lineage %s not logged", stage, dict(lineage))
        return False
    values = {name: str(value) for name, value in lineage.items()}
    mlflow.log_params({f"{param_prefix}{name}": value for name, value in values.items()})
    mlflow.set_tags(values)
    logger.info("Logged %s lineage to MLflow: %s", stage, values)
    return True
