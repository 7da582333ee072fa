"""The ieee8023 ``metadata.csv`` schema, shared by the live ieee8023 repository and its copies.

Cohen et al.'s COVID-19 image data collection (github.com/ieee8023/covid-chestxray-dataset) keeps
one row per image: ``patientid, offset, sex, age, finding, ..., view, modality, date, location,
folder, filename, doi, url, license, clinical_notes, other_notes`` plus a nameless trailing column
(the header ends with a comma). ``clinical_notes`` cells are quoted and span several lines. The
GeneralBlockchain copies freeze the Aug 2020 version (29 columns, flat findings such as
"COVID-19, ARDS"); the live repository writes hierarchical findings ("Pneumonia/Viral/COVID-19")
and adds columns. Only the columns below are read, so both versions work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from covid_cxnet_pipeline.sources.attribution import attribute_url
from covid_cxnet_pipeline.sources.candidates import (
    candidate_frame,
    candidate_row,
    image_files,
    read_metadata_csv,
    require_columns,
    safe_relpath,
)
from covid_cxnet_pipeline.sources.labels import clean_id, finding_label, normalise_sex, parse_age
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("patientid", "finding", "view", "filename")
COHEN = "cohen_ieee8023"


def read_ieee8023_metadata(path: Path, source_id: str) -> pd.DataFrame:
    """Read an ieee8023-style ``metadata.csv`` as strings (multi-line notes, trailing column).

    Args:
        path: the cached ``metadata.csv``.
        source_id: for the error message.

    Returns:
        One row per metadata record, every cell a ``str`` ("" when blank).

    Raises:
        ValueError: a required column is missing (not an ieee8023-style file).
    """
    metadata = read_metadata_csv(path)
    require_columns(
        metadata,
        REQUIRED_COLUMNS,
        where=f"{source_id}: {path}",
        kind="ieee8023",
        hint=f"is metadata_path in ingest.sources.{source_id} pointing at an ieee8023-style "
        "metadata.csv?",
    )
    return metadata


def ieee8023_fields(
    record: Mapping[str, str],
    *,
    default_license: str,
    covid_source_from_url: bool = False,
    where: str = "",
) -> dict[str, object]:
    """The common-schema fields of one ieee8023 metadata record.

    Args:
        record: one metadata row (column name -> cell text).
        default_license: used when the row's ``license`` cell is blank.
        covid_source_from_url: attribute by the row's ``url`` (Radiopaedia, SIRM...) instead of
            the collection; URLs no rule knows (or that cannot be parsed) fall back to
            ``cohen_ieee8023``.
        where: the source and row, named in the warning about a malformed ``url`` cell.

    Returns:
        ``patient_id, age, sex, view, label, finding, license, covid_source`` as keyword
        arguments for ``candidates.candidate_row``.
    """
    finding = record.get("finding", "").strip()
    covid_source = COHEN
    if covid_source_from_url:
        by_url = attribute_url(record.get("url", ""), where=where)
        covid_source = by_url if by_url != "unknown" else COHEN
    return {
        "patient_id": clean_id(record.get("patientid", "")),
        "age": parse_age(record.get("age", "")),
        "sex": normalise_sex(record.get("sex", "")),
        "view": record.get("view", "").strip(),
        "label": finding_label(finding),
        "finding": finding,
        "license": record.get("license", "").strip() or default_license,
        "covid_source": covid_source,
    }


def ieee8023_candidates(
    metadata: pd.DataFrame,
    files: Sequence[str] | None,
    client: SourceClient,
    *,
    source_id: str,
    default_license: str,
    images_dir: str = "images/",
    modalities: Sequence[str] | None = ("X-ray",),
    covid_source_from_url: bool = False,
) -> pd.DataFrame:
    """Candidate rows for an ieee8023-style layout: metadata rows joined with the file listing.

    Each metadata row points at ``<folder>/<filename>`` (``images_dir`` when ``folder`` is
    blank or absent). With a listing, rows whose file is absent are skipped (logged) and image
    files under ``images_dir`` that no row names become rows with label ``other`` and a blank
    finding (GeneralBlockchain ships one such file, ``4-x-day8.jpg``).

    Args:
        metadata: from ``read_ieee8023_metadata``.
        files: ``client.list_files(...)`` output, or None to trust the metadata alone.
        client: gives the download URLs.
        source_id: the ``ingest.sources`` key.
        default_license: for rows without a ``license`` cell (and files without a row).
        images_dir: the image folder, with a trailing "/".
        modalities: keep rows whose ``modality`` is one of these (case-insensitive); None keeps
            all. CT volumes and slices of the live repository are not chest X-rays.
        covid_source_from_url: see ``ieee8023_fields``.

    Returns:
        A table with exactly ``CANDIDATE_COLUMNS``.
    """
    images_dir = images_dir.rstrip("/") + "/"
    listed = image_files(files, source_id) if files is not None else None
    listed_set = set(listed or ())
    listed_by_lower = {path.lower(): path for path in listed_set}
    wanted = {m.lower() for m in modalities} if modalities is not None else None
    rows, named, skipped_modality, missing = [], set(), 0, []
    for row_number, record in enumerate(metadata.to_dict(orient="records"), start=1):
        folder = record.get("folder", "").strip().strip("/")
        filename = record["filename"].strip()
        relpath = safe_relpath(f"{folder}/{filename}" if folder else images_dir + filename)
        if relpath is None:
            logger.warning("%s: refusing unsafe filename %r", source_id, record["filename"])
            continue
        if listed is not None:
            relpath = listed_by_lower.get(relpath.lower(), relpath)
        named.add(relpath)
        modality = record.get("modality", "").strip().lower()
        if wanted is not None and "modality" in record and modality not in wanted:
            skipped_modality += 1
            continue
        if listed is not None and relpath not in listed_set:
            missing.append(relpath)
            continue
        fields = ieee8023_fields(
            record,
            default_license=default_license,
            covid_source_from_url=covid_source_from_url,
            where=f"{source_id}: metadata row {row_number} ({relpath})",
        )
        rows.append(candidate_row(source_id, relpath, client, **fields))
    if skipped_modality:
        logger.info("%s: %d metadata rows of other modalities skipped", source_id, skipped_modality)
    if missing:
        logger.warning(
            "%s: %d metadata rows name files absent upstream, e.g. %s",
            source_id,
            len(missing),
            missing[:3],
        )
    for relpath in listed or ():
        if relpath.startswith(images_dir) and relpath not in named:
            rows.append(
                candidate_row(
                    source_id,
                    relpath,
                    client,
                    covid_source=COHEN,
                    label="other",
                    license=default_license,
                )
            )
    frame = candidate_frame(_first_per_path(rows, source_id))
    logger.info("%s: %d candidate images", source_id, len(frame))
    return frame


def _first_per_path(rows: list[dict[str, object]], source_id: str) -> list[dict[str, object]]:
    """Keep the first row per image: upstream metadata occasionally lists a file twice."""
    seen: dict[object, dict[str, object]] = {}
    for row in rows:
        if row["image_id"] in seen:
            logger.warning(
                "%s: %s listed twice in metadata; first row kept", source_id, row["image_id"]
            )
            continue
        seen[row["image_id"]] = row
    return list(seen.values())
