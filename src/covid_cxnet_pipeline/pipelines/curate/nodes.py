"""Nodes of the ``curate`` pipeline: thin wrappers over ``covid_cxnet_pipeline.curation``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from covid_cxnet_pipeline.curation.canonical import (
    choose_canonical,
    duplicate_group_report,
    merge_group_metadata,
    patient_groups,
)
from covid_cxnet_pipeline.curation.dedup import DedupConfig, find_duplicate_pairs, group_duplicates
from covid_cxnet_pipeline.curation.features import FeatureConfig, compute_features
from covid_cxnet_pipeline.curation.filters import apply_filters
from covid_cxnet_pipeline.curation.harmonise import harmonise_index
from covid_cxnet_pipeline.curation.lineage import index_lineage, log_lineage
from covid_cxnet_pipeline.curation.plots import (
    curation_metrics,
    split_summary,
    split_summary_figure,
)
from covid_cxnet_pipeline.curation.split import assign_splits
from covid_cxnet_pipeline.curation.validation import validate_curated_index
from covid_cxnet_pipeline.schema import CURATED_EXTRA_COLUMNS, RAW_INDEX_COLUMNS

logger = logging.getLogger(__name__)

# Features joined onto index rows (by sha256) for the filters and the canonical choice.
_ROW_FEATURES = ("decode_error", "decoded_width", "decoded_height", "gray_std")
# File name of the split plot in its Kedro-versioned copy (same as the MLflow artefact's).
SPLIT_PLOT_FILE = "curation_split_summary.png"


def _config(config_class: type, settings: dict[str, Any], key: str):
    """Build a config dataclass, naming the parameter block when a key is unknown."""
    known = set(config_class.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"curate.{key} has unknown keys {unknown} (known: {sorted(known)}); "
            "fix conf/base/parameters_curate.yml or your --params"
        )
    return config_class(**settings)


def harmonise(raw_index: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Harmonise labels, views, ages and patient ids of the raw index.

    Args:
        raw_index: the ingest output.
        params: ``curate`` parameters.

    Returns:
        The harmonised index, one row per raw row.
    """
    missing = [c for c in RAW_INDEX_COLUMNS if c not in raw_index.columns]
    if missing:
        raise ValueError(f"raw_index lacks the columns {missing}; re-run the ingest pipeline")
    return harmonise_index(raw_index.reset_index(drop=True), params)


def image_features(index: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Decode every distinct image once (cached by sha256) into quality and hash features.

    Args:
        index: rows with ``sha256`` and ``path``.
        params: ``curate`` parameters (``features``).

    Returns:
        One feature row per distinct sha256.
    """
    settings = dict(params["features"])
    cache_path = settings.pop("cache_path", None)
    workers = int(settings.pop("workers", 1))
    progress = bool(settings.pop("progress", False))
    return compute_features(
        index, _config(FeatureConfig, settings, "features"), cache_path, workers, progress
    )


def duplicate_pairs(features: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Confirmed near-duplicate pairs of distinct files.

    Args:
        features: the image features.
        params: ``curate`` parameters (``dedup``).

    Returns:
        One row per confirmed pair (sha256_a, sha256_b, hamming, correlation).
    """
    return find_duplicate_pairs(features, _config(DedupConfig, params["dedup"], "dedup"))


def group_images(
    index: pd.DataFrame, features: pd.DataFrame, pairs: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Duplicate groups, canonical copies with merged metadata, and linked patient groups.

    Args:
        index: the harmonised index.
        features: the image features.
        pairs: confirmed duplicate pairs.
        params: ``curate`` parameters (``merge``).

    Returns:
        ``(grouped, duplicate_groups)``: every row with its groups and merged metadata, and
        the duplicate-group report.
    """
    frame = index.merge(features[["sha256", *_ROW_FEATURES]], on="sha256", how="left")
    frame["decode_error"] = frame["decode_error"].fillna("not decoded").astype(str)
    frame["duplicate_group"] = group_duplicates(frame, pairs)
    frame["duplicate_count"] = frame.groupby("duplicate_group")["image_id"].transform("size")
    fill_columns = params["merge"]["fill_columns"]
    frame["is_canonical"] = choose_canonical(frame, fill_columns)
    frame = merge_group_metadata(frame, fill_columns)
    frame["patient_group"] = patient_groups(frame)
    return frame, duplicate_group_report(frame)


def filter_images(
    grouped: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the exclusion rules: kept canonical rows and the exclusion report.

    Args:
        grouped: the output of :func:`group_images`.
        params: ``curate`` parameters (``filters``).

    Returns:
        ``(kept, curation_exclusions)``.
    """
    return apply_filters(grouped, params["filters"])


def split_and_validate(kept: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Assign splits by patient group and validate the curated index.

    Args:
        kept: rows surviving the filters.
        params: ``curate`` parameters (``split``, ``filters``).

    Returns:
        The curated index: raw columns plus ``CURATED_EXTRA_COLUMNS``.
    """
    split = params["split"]
    curated = kept.copy()
    curated["split"] = assign_splits(
        curated, split["ratios"], int(split["seed"]), split.get("external_sources") or []
    )
    curated["duplicate_count"] = curated["duplicate_count"].astype("int64")
    curated = curated[list(RAW_INDEX_COLUMNS) + list(CURATED_EXTRA_COLUMNS)]
    curated = curated.sort_values("image_id").reset_index(drop=True)
    return validate_curated_index(curated, params["filters"])


def summarise(
    curated_index: pd.DataFrame, exclusions: pd.DataFrame
) -> tuple[pd.DataFrame, Figure, dict[str, dict], dict[str, Figure]]:
    """Counts per source x label x split as a table, a figure and MLflow metrics.

    Args:
        curated_index: the curated index.
        exclusions: the exclusion report.

    Returns:
        ``(split_summary, figure, metrics, versioned)``; ``versioned`` is the figure again,
        keyed by its file name, for the Kedro-versioned copy (MLflow keeps its own per run).
    """
    summary = split_summary(curated_index)
    figure = split_summary_figure(summary)
    metrics = curation_metrics(summary, exclusions)
    return summary, figure, metrics, {SPLIT_PLOT_FILE: figure}


def report_copies(
    exclusions: pd.DataFrame, duplicate_groups: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The saved reports again, for their CSV twins logged to MLflow.

    Args:
        exclusions: the exclusion report, as saved.
        duplicate_groups: the duplicate-group report, as saved.

    Returns:
        ``(exclusions, duplicate_groups)`` unchanged.
    """
    return exclusions, duplicate_groups


def record_lineage(
    raw_index: pd.DataFrame, curated_index: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, str | int]]:
    """Digests and row counts of the raw index read and the curated index written, to MLflow.

    Args:
        raw_index: the ingest output this run read.
        curated_index: the curated index as saved (read back from the catalog).

    Returns:
        ``(curated_index, lineage)``: the index again, for its MLflow artefact twin, and
        ``{raw_index_sha256, raw_index_rows, curated_index_sha256, curated_index_rows}``.
    """
    lineage = index_lineage({"raw_index": raw_index, "curated_index": curated_index})
    log_lineage(lineage)
    return curated_index, lineage
