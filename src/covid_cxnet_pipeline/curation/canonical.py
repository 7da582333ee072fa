"""One canonical image per duplicate group, merged metadata, and patients linked through duplicates."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from covid_cxnet_pipeline.curation.dedup import UnionFind
from covid_cxnet_pipeline.schema import CLASS_LABELS

logger = logging.getLogger(__name__)

# Values that mean "the source did not say" for the metadata merge.
_EMPTY_STRINGS = {"", "nan", "none", "<na>", "unknown"}


def is_empty(value: object) -> bool:
    """True for missing metadata: None, NaN, "", "unknown" (any case)."""
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    try:
        if pd.isna(value):
            return True
    except (TypeError, ValueError):
        pass
    return str(value).strip().lower() in _EMPTY_STRINGS


def richness(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Number of non-empty metadata fields per row (prefers the better documented copy)."""
    return frame[list(columns)].apply(lambda row: sum(not is_empty(v) for v in row), axis=1)


def _pixel_count(frame: pd.DataFrame) -> pd.Series:
    """Width x height per row; a missing or non-numeric size counts as 0."""
    width = pd.to_numeric(frame["width"], errors="coerce").fillna(0)
    return width * pd.to_numeric(frame["height"], errors="coerce").fillna(0)


def choose_canonical(frame: pd.DataFrame, metadata_columns: Sequence[str]) -> pd.Series:
    """Mark one canonical row per ``duplicate_group``.

    Preference: decodable, then more pixels (width x height), then more non-empty metadata
    fields, then the smallest ``image_id`` so that the choice is deterministic.

    Args:
        frame: rows with ``duplicate_group``, ``image_id``, ``width``, ``height``,
            ``decode_error`` and ``metadata_columns``.
        metadata_columns: fields counted for richness.

    Returns:
        A boolean Series aligned with ``frame``.
    """
    order = pd.DataFrame(
        {
            "group": frame["duplicate_group"].astype(str),
            "decodable": (frame["decode_error"].astype(str) == "").astype(int),
            "pixels": _pixel_count(frame),
            "richness": richness(frame, metadata_columns),
            "image_id": frame["image_id"].astype(str),
        },
        index=frame.index,
    )
    order = order.sort_values(
        ["group", "decodable", "pixels", "richness", "image_id"],
        ascending=[True, False, False, False, True],
    )
    first = ~order["group"].duplicated(keep="first")
    return first.reindex(frame.index)


def merge_group_metadata(frame: pd.DataFrame, fill_columns: Sequence[str]) -> pd.DataFrame:
    """Fill empty fields of each canonical row from the other members of its group.

    Group-wide facts are also gathered so that filters see the whole group: ``label`` is the
    members' common class label (an unknown label is filled from a known one; two different
    class labels set ``label_conflict``), ``group_min_age`` is the youngest recorded age,
    ``group_is_pediatric_flag`` ORs the source flags and ``group_flags`` joins all flags.

    Args:
        frame: rows with ``duplicate_group``, ``is_canonical`` and the columns named.
        fill_columns: columns filled from other members, first non-empty value in preference
            order (canonical first, then larger images, then image_id).

    Returns:
        A copy of ``frame`` with merged canonical rows and the ``group_*`` and
        ``label_conflict`` columns on every row.
    """
    merged = frame.copy()
    pixels = _pixel_count(merged)
    ranked = merged.assign(_canon=merged["is_canonical"].astype(bool), _pixels=pixels).sort_values(
        ["duplicate_group", "_canon", "_pixels", "image_id"], ascending=[True, False, False, True]
    )
    merged["label_conflict"] = False  # groups of one keep it
    multi = ranked["duplicate_group"].duplicated(keep=False)
    for _, members in ranked[multi].groupby("duplicate_group", sort=False):
        canonical = members.index[0]
        for column in fill_columns:
            if is_empty(merged.at[canonical, column]):
                for other in members.index[1:]:
                    if not is_empty(merged.at[other, column]):
                        merged.at[canonical, column] = merged.at[other, column]
                        break
        labels = {str(v) for v in members["label"] if str(v) in CLASS_LABELS}
        if len(labels) == 1:
            merged.at[canonical, "label"] = labels.pop()
        merged.loc[members.index, "label_conflict"] = len(labels) > 1
    ages = pd.to_numeric(merged["age_years"], errors="coerce")
    group = merged["duplicate_group"]
    merged["group_min_age"] = ages.groupby(group).transform("min")
    flags = merged["is_pediatric_flag"].fillna(False).astype(bool)
    merged["group_is_pediatric_flag"] = flags.groupby(group).transform("max").astype(bool)
    merged["group_flags"] = (
        merged["flags"]
        .fillna("")
        .astype(str)
        .groupby(group)
        .transform(lambda v: ";".join(sorted({f for s in v for f in s.split(";") if f})))
    )
    return merged


def patient_groups(frame: pd.DataFrame) -> pd.Series:
    """Link patients that share any duplicate group (across or within sources).

    Args:
        frame: rows with namespaced ``patient_id`` and ``duplicate_group``.

    Returns:
        A Series aligned with ``frame``: the smallest namespaced patient id of the linked set.
    """
    sets = UnionFind()
    for patient in frame["patient_id"].astype(str):
        sets.add(patient)
    for _, patients in frame.groupby("duplicate_group")["patient_id"]:
        values = patients.astype(str).unique().tolist()
        for other in values[1:]:
            sets.union(values[0], other)
    root = frame["patient_id"].astype(str).map(sets.find)
    group = frame["patient_id"].astype(str).groupby(root.to_numpy()).transform("min")
    linked = int((group != frame["patient_id"].astype(str)).sum())
    logger.info("Patient linking through duplicates: %d rows joined another patient", linked)
    return pd.Series(group.to_numpy(), index=frame.index, name="patient_group")


def duplicate_group_report(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group with two or more images: its canonical image and its members.

    Args:
        frame: rows with ``duplicate_group``, ``is_canonical``, ``image_id``, ``source_id``,
            ``sha256`` and ``patient_group``.

    Returns:
        Columns ``duplicate_group, canonical_image_id, duplicate_count, exact_copies,
        source_ids, patient_group, member_image_ids`` (lists joined with ";").
    """
    columns = [
        "duplicate_group",
        "canonical_image_id",
        "duplicate_count",
        "exact_copies",
        "source_ids",
        "patient_group",
        "member_image_ids",
    ]
    multi = frame[frame["duplicate_group"].duplicated(keep=False)]
    rows = []
    for group, members in multi.groupby("duplicate_group", sort=True):
        canonical = members[members["is_canonical"].astype(bool)]
        rows.append(
            {
                "duplicate_group": group,
                "canonical_image_id": canonical["image_id"].iloc[0] if len(canonical) else "",
                "duplicate_count": len(members),
                "exact_copies": int(members["sha256"].duplicated().sum()),
                "source_ids": ";".join(sorted(members["source_id"].astype(str).unique())),
                "patient_group": members["patient_group"].astype(str).iloc[0],
                "member_image_ids": ";".join(sorted(members["image_id"].astype(str))),
            }
        )
    return pd.DataFrame(rows, columns=columns)
