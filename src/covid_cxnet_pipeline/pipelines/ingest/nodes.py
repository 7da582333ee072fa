"""Ingest nodes: list every enabled source, download/verify/store its files, index them.

Per-file failures (404, timeout, truncated body, undecodable image) go into the ingest report and
the run goes on. A source that fails entirely (its metadata or listing is unavailable, or none of
its images could be stored) becomes a report row (stage ``source``) too; once the report is saved
(and logged to MLflow), ``check_sources`` stops the run with an error naming every such source,
its base URL and the reason, unless ``download.fail_on_source_error`` is false: then the other
sources' indexes are written.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from covid_cxnet_pipeline.download import (
    FetchRequest,
    ImageStore,
    UrlLedger,
    fetch_many,
    session_from_params,
    timeout_from_params,
)
from covid_cxnet_pipeline.schema import (
    COVID_SOURCES,
    RAW_INDEX_COLUMNS,
    RAW_LABELS,
    RAW_MASK_INDEX_COLUMNS,
)
from covid_cxnet_pipeline.sources.base import (
    CANDIDATE_COLUMNS,
    MASK_CANDIDATE_COLUMNS,
    SourceAdapter,
    empty_frame,
    get_adapter,
)
from covid_cxnet_pipeline.sources.http_client import HttpSourceClient
from covid_cxnet_pipeline.sources.protocol import SourceUnavailable

logger = logging.getLogger(__name__)

REPORT_COLUMNS = ("source_id", "image_id", "url", "reason", "stage")
SUMMARY_COLUMNS = (
    "source_id",
    "base_url",
    "status",
    "reason",
    "candidates",
    "mask_candidates",
    "metadata_bytes",
)
_STORED_COLUMNS = ("sha256", "width", "height", "path", "bytes_transferred", "reason", "stage")
LEDGER_NAME = "url_ledger.jsonl"


class SourceFailedError(RuntimeError):
    """A whole source could not be ingested (and ``download.fail_on_source_error`` is true)."""


def list_candidates(
    ingest_params: dict[str, Any], download_params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Ask each enabled source's adapter for its candidate images and lung masks.

    Args:
        ingest_params: ``params:ingest``; ``sources.<id>`` blocks with ``enabled`` and
            ``base_url`` plus adapter keys; ``metadata_only: true`` marks a source that yields
            no image (a label file), which is otherwise an error.
        download_params: ``params:download``.

    Returns:
        Image candidates (``CANDIDATE_COLUMNS``), mask candidates (``MASK_CANDIDATE_COLUMNS``),
        one summary row per enabled source (``SUMMARY_COLUMNS``) and the parts of sources
        that failed without failing them, e.g. one archive of several (``REPORT_COLUMNS``).

    A source whose metadata or listing is unavailable, or that lists no image, gets status
    "failed" in the summary (``check_sources`` raises for it once the report is saved).

    Raises:
        ValueError: no source is enabled.
    """
    sources = _enabled_sources(ingest_params)
    session = session_from_params(download_params)
    images, masks, summary, partial_failures = [], [], [], []
    for source_id, config in sources.items():
        adapter = get_adapter(source_id, config)
        client = HttpSourceClient.from_config(source_id, config, download_params, session)
        status, reason = "ok", ""
        try:
            source_images = adapter.list_images(client)
            source_masks = adapter.list_masks(client, source_images)
        except SourceUnavailable as error:
            source_images = source_masks = None
            status, reason = "failed", str(error)
        except Exception as error:
            error.add_note(f"while listing source {source_id} ({client.base_url})")
            raise
        partial_failures += [
            {"source_id": source_id, "image_id": ""} | failure for failure in adapter.failures
        ]
        if status == "ok" and source_images.empty and not _metadata_only(adapter, config):
            status, reason = "failed", "the adapter found no image in the upstream layout"
        if status == "failed":
            logger.error("source %s (%s) failed entirely: %s", source_id, client.base_url, reason)
        else:
            images.append(source_images.loc[:, list(CANDIDATE_COLUMNS)])
            masks.append(source_masks.loc[:, list(MASK_CANDIDATE_COLUMNS)])
        n_images = 0 if source_images is None else len(source_images)
        n_masks = 0 if source_masks is None else len(source_masks)
        logger.info(
            "%s: %s, %d image and %d mask candidates",
            source_id,
            status if status == "ok" else f"FAILED ({reason})",
            n_images,
            n_masks,
        )
        summary.append(
            {
                "source_id": source_id,
                "base_url": client.base_url,
                "status": status,
                "reason": reason,
                "candidates": n_images,
                "mask_candidates": n_masks,
                "metadata_bytes": client.bytes_transferred,
            }
        )
    image_candidates = _concat(images, CANDIDATE_COLUMNS)
    _check_unique(image_candidates)
    return (
        image_candidates,
        _concat(masks, MASK_CANDIDATE_COLUMNS),
        pd.DataFrame(summary, columns=list(SUMMARY_COLUMNS)),
        pd.DataFrame(partial_failures, columns=list(REPORT_COLUMNS)).astype(str),
    )


def store_images(image_candidates: pd.DataFrame, download_params: dict[str, Any]) -> pd.DataFrame:
    """Download, decode-check and store every candidate image (resuming from the URL ledger).

    Args:
        image_candidates: from ``list_candidates``.
        download_params: ``params:download``.

    Returns:
        The candidates plus ``sha256, width, height, path, bytes_transferred`` for stored files
        and ``reason, stage`` (empty when stored) for failed ones.
    """
    return _store(image_candidates, download_params, "images")


def store_masks(mask_candidates: pd.DataFrame, download_params: dict[str, Any]) -> pd.DataFrame:
    """Download, decode-check and store every candidate lung mask (see ``store_images``)."""
    return _store(mask_candidates, download_params, "masks")


def check_sources(
    ingest_report: pd.DataFrame,
    ingest_report_csv: pd.DataFrame,
    source_summary: pd.DataFrame,
    download_params: dict[str, Any],
) -> pd.DataFrame:
    """Stop the run if a source failed entirely, after the report is saved and logged.

    The report datasets are inputs only so that Kedro runs this node after saving them; the
    raw indexes depend on its output, so a failed run writes no partial index.

    Args:
        ingest_report: from ``build_ingest_report`` (rows with stage "source" are failed
            sources: ``url`` is the source's base URL).
        ingest_report_csv: the same report as logged to MLflow (unused).
        source_summary: from ``list_candidates``; passed through.
        download_params: ``params:download`` (``fail_on_source_error``).

    Returns:
        ``source_summary`` unchanged.

    Raises:
        SourceFailedError: a source failed entirely and ``download.fail_on_source_error`` is
            true; the message names every failed source, its base URL and the reason.
    """
    del ingest_report_csv
    failed = ingest_report[ingest_report["stage"] == "source"]
    if failed.empty:
        return source_summary
    lines = [f"source {row.source_id} ({row.url}): {row.reason}" for row in failed.itertuples()]
    if not download_params.get("fail_on_source_error", True):
        logger.error(
            "%d source(s) failed entirely (recorded in the ingest report): %s",
            len(lines),
            "; ".join(lines),
        )
        return source_summary
    names = ", ".join(f"ingest.sources.{source_id}.enabled=false" for source_id in failed.source_id)
    raise SourceFailedError(
        f"{len(lines)} source(s) failed entirely:\n  "
        + "\n  ".join(lines)
        + f"\nThe ingest report (ingest_report dataset) lists every failure. Fix or disable them "
        f"({names}), or set download.fail_on_source_error=false to index the other sources."
    )


def build_raw_index(stored_images: pd.DataFrame, source_summary: pd.DataFrame) -> pd.DataFrame:
    """The raw index: one row per stored image, exactly ``schema.RAW_INDEX_COLUMNS``.

    Args:
        stored_images: from ``store_images``.
        source_summary: from ``check_sources`` (an input so the index waits for that check).

    Returns:
        The raw index, sorted by ``image_id``.
    """
    del source_summary
    stored = stored_images[stored_images["reason"] == ""]
    index = stored.loc[:, list(RAW_INDEX_COLUMNS)].astype(
        {"width": "int64", "height": "int64", "age": "float64", "is_pediatric_flag": bool}
    )
    return index.sort_values("image_id").reset_index(drop=True)


def build_raw_mask_index(stored_masks: pd.DataFrame, raw_index: pd.DataFrame) -> pd.DataFrame:
    """The raw mask index: stored masks of indexed images, exactly ``RAW_MASK_INDEX_COLUMNS``.

    Args:
        stored_masks: from ``store_masks``.
        raw_index: from ``build_raw_index``.

    Returns:
        The mask index, sorted by ``image_id`` then ``structure``.
    """
    kept = stored_masks[
        (stored_masks["reason"] == "") & stored_masks["image_id"].isin(raw_index["image_id"])
    ]
    index = kept.loc[:, list(RAW_MASK_INDEX_COLUMNS)].astype(
        {"offset_top": "int64", "offset_left": "int64", "scale_to_image": bool}
    )
    return index.sort_values(["image_id", "structure", "url"]).reset_index(drop=True)


def build_ingest_report(
    source_summary: pd.DataFrame,
    stored_images: pd.DataFrame,
    stored_masks: pd.DataFrame,
    listing_failures: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per failure: whole sources, archives, images and masks (``REPORT_COLUMNS``).

    It needs nothing the source check can stop, so it is saved even when a source failed.

    Args:
        source_summary: from ``list_candidates``.
        stored_images: from ``store_images``.
        stored_masks: from ``store_masks``.
        listing_failures: from ``list_candidates`` (stage "archive" rows and the like).

    Returns:
        The report twice: for the versioned Parquet and for the CSV logged to MLflow.
    """
    rows = [
        {"source_id": row.source_id, "image_id": "", "url": row.base_url}
        | {"reason": row.reason, "stage": "source"}
        for row in source_summary.itertuples()
        if row.status != "ok"
    ]
    rows += [
        {"source_id": source_id, "image_id": "", "url": base_url}
        | {"reason": reason, "stage": "source"}
        for source_id, base_url, reason in _empty_sources(stored_images, source_summary)
    ]
    for frame, kind in ((stored_images, "image"), (stored_masks, "mask")):
        failed = frame[frame["reason"] != ""]
        rows += [
            {
                "source_id": row.source_id,
                "image_id": row.image_id,
                "url": row.url or row.local_path,
                "reason": row.reason,
                "stage": f"{kind} {row.stage}",
            }
            for row in failed.itertuples()
        ]
    indexed = stored_images.loc[stored_images["reason"] == "", "image_id"]
    orphans = stored_masks[(stored_masks["reason"] == "") & ~stored_masks["image_id"].isin(indexed)]
    rows += [
        {"source_id": row.source_id, "image_id": row.image_id, "url": row.url or row.local_path}
        | {"reason": "its image was not ingested", "stage": "mask index"}
        for row in orphans.itertuples()
    ]
    rows += listing_failures.loc[:, list(REPORT_COLUMNS)].to_dict(orient="records")
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS)).astype(str)
    report = report.sort_values(["source_id", "stage", "image_id", "url"]).reset_index(drop=True)
    if not report.empty:
        logger.warning("ingest: %d failure(s), see the ingest_report dataset", len(report))
    return report, report.copy()


def ingest_metrics(
    *,
    raw_index: pd.DataFrame,
    raw_mask_index: pd.DataFrame,
    ingest_report: pd.DataFrame,
    source_summary: pd.DataFrame,
    stored_images: pd.DataFrame,
    stored_masks: pd.DataFrame,
) -> dict[str, dict[str, float]]:
    """MLflow metrics: counts per source, label and COVID source, masks, bytes, failures.

    The COVID-source counts (``images.covid_source.<category>`` over all images, and
    ``images.source.<source_id>.covid_source.<category>`` per source) carry the paper's
    nine-category attribution of the armiro collection (``schema.COVID_SOURCES``).

    Returns:
        ``{name: {"value": v, "step": 0}}`` for ``MlflowMetricsHistoryDataset``.
    """
    values: dict[str, float] = {
        "images": len(raw_index),
        "masks": len(raw_mask_index),
        "failures": len(ingest_report),
        "bytes_transferred": int(source_summary["metadata_bytes"].sum())
        + int(stored_images["bytes_transferred"].sum())
        + int(stored_masks["bytes_transferred"].sum()),
    }
    for label in RAW_LABELS:
        values[f"images.label.{label}"] = int((raw_index["label"] == label).sum())
    for category in COVID_SOURCES:
        values[f"images.covid_source.{category}"] = int(
            (raw_index["covid_source"] == category).sum()
        )
    for source_id in source_summary["source_id"]:
        in_source = raw_index[raw_index["source_id"] == source_id]
        values[f"images.source.{source_id}"] = len(in_source)
        for label, count in in_source["label"].value_counts().items():
            values[f"images.source.{source_id}.{label}"] = int(count)
        for category, count in in_source["covid_source"].value_counts().items():
            values[f"images.source.{source_id}.covid_source.{category}"] = int(count)
        values[f"masks.source.{source_id}"] = int((raw_mask_index["source_id"] == source_id).sum())
        values[f"failures.source.{source_id}"] = int(
            (ingest_report["source_id"] == source_id).sum()
        )
    logger.info(
        "ingest: %d images, %d masks, %d failures, %d bytes transferred",
        values["images"],
        values["masks"],
        values["failures"],
        values["bytes_transferred"],
    )
    return {name: {"value": float(value), "step": 0} for name, value in values.items()}


def image_store_manifest(raw_index: pd.DataFrame, raw_mask_index: pd.DataFrame) -> pd.DataFrame:
    """The stored files this run's indexes point at (the image store dataset's manifest).

    Returns:
        One row per stored file: ``sha256, path, kind`` ("image" or "mask").
    """
    frames = [
        raw_index.loc[:, ["sha256", "path"]].assign(kind="image"),
        raw_mask_index.loc[:, ["sha256", "path"]].assign(kind="mask"),
    ]
    manifest = pd.concat(frames, ignore_index=True).drop_duplicates("path")
    return manifest.sort_values("path").reset_index(drop=True)


def _enabled_sources(ingest_params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sources = (ingest_params or {}).get("sources") or {}
    enabled = {
        source_id: dict(config or {})
        for source_id, config in sources.items()
        if (config or {}).get("enabled", False)
    }
    if not enabled:
        raise ValueError(
            "no source is enabled under ingest.sources in parameters_ingest.yml; enable one with "
            '--params "ingest.sources.<id>.enabled=true"'
        )
    return enabled


def _metadata_only(adapter: SourceAdapter, config: dict[str, Any]) -> bool:
    """Sources that publish only metadata (a label file other sources join) yield no image."""
    return bool(config.get("metadata_only", adapter.metadata_only))


def _empty_sources(
    stored_images: pd.DataFrame, source_summary: pd.DataFrame
) -> list[tuple[str, str, str]]:
    """Sources that listed images but stored none: (source_id, base_url, reason)."""
    empty = []
    for row in source_summary[source_summary["status"] == "ok"].itertuples():
        rows = stored_images[stored_images["source_id"] == row.source_id]
        if not rows.empty and (rows["reason"] != "").all():
            top = rows["reason"].value_counts().index[0]
            empty.append(
                (row.source_id, row.base_url, f"none of {len(rows)} images stored (e.g. {top})")
            )
    return empty


def _store(candidates: pd.DataFrame, download_params: dict[str, Any], what: str) -> pd.DataFrame:
    store = ImageStore(download_params.get("store_root", "data/01_raw/image_store"))
    ledger = UrlLedger(store.root / LEDGER_NAME)
    max_bytes = download_params.get("max_image_bytes")
    requests_ = [
        FetchRequest(
            key=str(index),
            url=row.url,
            name=row.local_path or row.upstream_path_or_url,
            local_path=row.local_path,
        )
        for index, row in zip(
            candidates.index, _with_name(candidates).itertuples(index=False), strict=True
        )
    ]
    batch = fetch_many(
        requests_,
        store,
        ledger,
        session=session_from_params(download_params),
        timeout=timeout_from_params(download_params),
        workers=int(download_params.get("workers", 8)),
        max_bytes=int(max_bytes) if max_bytes else None,
        progress=bool(download_params.get("progress", True)),
        description=f"ingest {what}",
    )
    failures = {failure.key: failure for failure in batch.failures}
    columns: dict[str, list] = {name: [] for name in _STORED_COLUMNS}
    for index in candidates.index:
        stored = batch.stored.get(str(index))
        failure = failures.get(str(index))
        columns["sha256"].append(stored.sha256 if stored else "")
        columns["width"].append(stored.width if stored else 0)
        columns["height"].append(stored.height if stored else 0)
        columns["path"].append(str(stored.path) if stored else "")
        received = (
            stored.bytes_transferred if stored else failure.bytes_transferred if failure else 0
        )
        columns["bytes_transferred"].append(received)
        columns["reason"].append(failure.reason if failure else "")
        columns["stage"].append(failure.stage if failure else "")
    result = candidates.copy()
    for name, values in columns.items():
        result[name] = pd.Series(values, index=candidates.index)
    return result.astype({"width": "int64", "height": "int64", "bytes_transferred": "int64"})


def _with_name(candidates: pd.DataFrame) -> pd.DataFrame:
    """Add the name the stored extension comes from (upstream path, else the URL)."""
    name = candidates["upstream_path"] if "upstream_path" in candidates else candidates["url"]
    return candidates.assign(upstream_path_or_url=name.where(name != "", candidates["url"]))


def _concat(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return empty_frame(columns)
    return pd.concat(frames, ignore_index=True)


def _check_unique(candidates: pd.DataFrame) -> None:
    """Refuse duplicated image ids, naming them and the sources (adapters) that listed them."""
    repeated = candidates[candidates["image_id"].duplicated(keep=False)]
    if repeated.empty:
        return
    by_id = repeated.groupby("image_id", sort=True)["source_id"].agg(lambda ids: sorted(set(ids)))
    examples = "; ".join(
        f"{image_id} (from {', '.join(ids)})" for image_id, ids in by_id[:5].items()
    )
    sources = sorted(set(repeated["source_id"]))
    raise ValueError(
        f"image ids must be unique across sources; {len(by_id)} duplicated, e.g. {examples}. "
        f"Check the adapters of {', '.join(sources)} (ingest.sources.<id>)."
    )
