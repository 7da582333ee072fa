"""Validation of the curated index: a pandera schema plus the leakage invariants between splits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import pandera.pandas as pa

from covid_cxnet_pipeline.schema import (
    CLASS_LABELS,
    COVID_SOURCES,
    CURATED_EXTRA_COLUMNS,
    RAW_INDEX_COLUMNS,
    RAW_LABELS,
    SPLITS,
    VIEWS,
)

# How many offending groups an error message names before it says "and N more".
_NAMED_IN_MESSAGE = 10


class CurationValidationError(ValueError):
    """The curated index breaks its schema or lets a patient / duplicate group leak."""


def curated_schema(
    allowed_labels: Sequence[str], allowed_views: Sequence[str]
) -> pa.DataFrameSchema:
    """The pandera schema of ``curated_index``.

    Args:
        allowed_labels: labels that may remain (the class labels when unknown ones are filtered).
        allowed_views: harmonised views that may remain (no "lateral" when laterals are filtered).

    Returns:
        A lazy-validatable ``DataFrameSchema`` (extra columns allowed).
    """
    text = {"nullable": False}
    return pa.DataFrameSchema(
        {
            "image_id": pa.Column(None, unique=True, **text),
            "source_id": pa.Column(None, pa.Check.str_length(min_value=1), **text),
            "covid_source": pa.Column(None, pa.Check.isin(COVID_SOURCES), **text),
            "label": pa.Column(None, pa.Check.isin(allowed_labels), **text),
            "view_harmonised": pa.Column(None, pa.Check.isin(allowed_views), **text),
            "age_years": pa.Column(None, pa.Check.in_range(0, 150), nullable=True),
            "patient_id": pa.Column(None, pa.Check.str_length(min_value=1), **text),
            "patient_group": pa.Column(None, pa.Check.str_length(min_value=1), **text),
            "duplicate_group": pa.Column(None, pa.Check.str_length(min_value=1), **text),
            "duplicate_count": pa.Column(None, pa.Check.ge(1), **text),
            "split": pa.Column(None, pa.Check.isin(SPLITS), **text),
            # Exact duplicates must have been merged by de-duplication: a tripwire if it regresses.
            "sha256": pa.Column(None, pa.Check.str_matches(r"^[0-9a-f]{64}$"), unique=True, **text),
            "path": pa.Column(None, pa.Check.str_length(min_value=1), **text),
        },
        strict=False,
        name="curated_index",
    )


# Why a failed uniqueness check matters, added to the schema message.
_UNIQUENESS_HINTS = {
    "image_id": "an image is listed twice",
    "sha256": "one file is kept twice: exact de-duplication regressed",
}


def describe_schema_failures(failure_cases: pd.DataFrame) -> str:
    """One readable line per failed column check, naming a few failing values and rows.

    Args:
        failure_cases: ``SchemaErrors.failure_cases`` (columns ``column``, ``check``,
            ``failure_case``, ``index``).

    Returns:
        The lines, joined by newlines.
    """
    lines = []
    for (column, check), cases in failure_cases.groupby(
        ["column", "check"], dropna=False, sort=True
    ):
        values = sorted({str(v) for v in cases["failure_case"]})
        rows = cases["index"].dropna().tolist()
        where = f"column {column!r}" if pd.notna(column) else "the table"
        line = f"{where} fails {check} in {len(cases)} case(s)"
        line += f" (rows {_name_groups(rows)})" if rows else ""
        line += f": {_name_groups(values)}"
        if check == "field_uniqueness" and column in _UNIQUENESS_HINTS:
            line += f" ({_UNIQUENESS_HINTS[column]})"
        lines.append(line)
    return "\n".join(lines)


def _name_groups(groups: Sequence[str]) -> str:
    named = ", ".join(repr(g) for g in list(groups)[:_NAMED_IN_MESSAGE])
    extra = len(groups) - _NAMED_IN_MESSAGE
    return named + (f" and {extra} more" if extra > 0 else "")


def groups_in_several_splits(frame: pd.DataFrame, column: str) -> list[str]:
    """Values of ``column`` whose rows fall into more than one split.

    Args:
        frame: rows with ``column`` and ``split``.
        column: a grouping column such as ``patient_group``.

    Returns:
        The offending group values, sorted.
    """
    splits_per_group = frame.groupby(column)["split"].nunique()
    return sorted(str(g) for g in splits_per_group[splits_per_group > 1].index)


def validate_curated_index(frame: pd.DataFrame, filters: Mapping) -> pd.DataFrame:
    """Check the curated index; return it unchanged or raise ``CurationValidationError``.

    Args:
        frame: the curated index.
        filters: ``curate.filters`` (what must no longer be present: laterals, children,
            unknown labels).

    Returns:
        ``frame`` itself.
    """
    required = list(RAW_INDEX_COLUMNS) + list(CURATED_EXTRA_COLUMNS)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CurationValidationError(f"curated_index lacks the columns {missing}")
    labels = CLASS_LABELS if filters["exclude_unknown_labels"] else RAW_LABELS
    views = [v for v in VIEWS if v != "lateral"] if filters["exclude_lateral"] else VIEWS
    try:
        curated_schema(labels, views).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as error:
        raise CurationValidationError(
            "curated_index breaks its schema; check the curate pipeline and its parameters:\n- "
            + describe_schema_failures(error.failure_cases).replace("\n", "\n- ")
        ) from error
    problems = []
    for column in ("patient_group", "duplicate_group"):
        leaking = groups_in_several_splits(frame, column)
        if leaking:
            problems.append(
                f"{len(leaking)} {column} value(s) appear in two splits: {_name_groups(leaking)}"
            )
    pediatric = filters["pediatric"]
    if pediatric["enabled"]:
        young = frame[
            pd.to_numeric(frame["age_years"], errors="coerce") < pediatric["min_age_years"]
        ]
        if len(young):
            problems.append(
                f"{len(young)} image(s) under {pediatric['min_age_years']} years remain: "
                f"{_name_groups(young['image_id'].tolist())}"
            )
        flagged = frame[frame["is_pediatric_flag"].fillna(False).astype(bool)]
        if pediatric["use_source_flag"] and len(flagged):
            problems.append(
                f"{len(flagged)} source-flagged pediatric image(s) remain: "
                f"{_name_groups(flagged['image_id'].tolist())}"
            )
    if problems:
        raise CurationValidationError(
            "curated_index is invalid (patients or pictures would leak between splits, or "
            "filtered images remain); check the curate pipeline and its parameters:\n- "
            + "\n- ".join(problems)
        )
    return frame
