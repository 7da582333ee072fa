"""Harmonise raw index rows: labels, views, ages in years and source-namespaced patient ids."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import pandas as pd

from covid_cxnet_pipeline.schema import CLASS_LABELS, VIEWS

# Unit suffixes of DICOM-style ages ("045Y", "6M", "3W", "10D") in years.
_AGE_UNITS = {"y": 1.0, "m": 1.0 / 12.0, "w": 7.0 / 365.25, "d": 1.0 / 365.25}
_AGE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([ymwd]?)[a-z]*\s*$", re.IGNORECASE)


def _key(value: object) -> str:
    """Lower-case, trimmed, with runs of spaces, '_' and '-' turned into one space."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return re.sub(r"[\s_\-]+", " ", str(value)).strip().lower()


def harmonise_view(raw_view: object, view_map: Mapping[str, str]) -> str:
    """Map an upstream view string to one of ``schema.VIEWS``.

    Args:
        raw_view: the upstream string ("PA", "AP Supine", "L", "Lateral", "AP erect"...).
        view_map: lower-case upstream spelling -> harmonised view (``curate.views.map``);
            keys are compared after lower-casing and collapsing spaces, '_' and '-'.

    Returns:
        The harmonised view, "unknown" when the spelling is not in the map.
    """
    key = _key(raw_view)
    mapped = {_key(k): v for k, v in view_map.items()}.get(key)
    if mapped is not None and mapped not in VIEWS:
        raise ValueError(
            f"curate.views.map maps {raw_view!r} to {mapped!r}, which is not one of {VIEWS}; "
            "fix conf/base/parameters_curate.yml"
        )
    return mapped or "unknown"


def harmonise_label(raw_label: object) -> str:
    """A raw index label as a class label, or "other" when it is none of them.

    The source adapters already map each upstream's findings to ``schema.RAW_LABELS`` (normal /
    cap / covid / other), so no spelling table is needed here: "other" and anything outside the
    vocabulary become "other", which ``filters.exclude_unknown_labels`` removes.

    Args:
        raw_label: the raw index label.

    Returns:
        One of ``schema.CLASS_LABELS`` or "other".
    """
    key = _key(raw_label)
    return key if key in CLASS_LABELS else "other"


def age_in_years(raw_age: object, max_age: float) -> float:
    """Parse an age to years: numbers are years, strings may carry a Y/M/W/D unit suffix.

    Args:
        raw_age: float years, or a string such as "45", "045Y", "6M", "3 weeks".
        max_age: larger values are recording errors (NIH has a few ages over 400): NaN.

    Returns:
        The age in years, NaN when unknown or implausible.
    """
    if raw_age is None:
        return float("nan")
    if isinstance(raw_age, int | float):
        years = float(raw_age)
    else:
        match = _AGE_PATTERN.match(str(raw_age))
        if not match:
            return float("nan")
        years = float(match.group(1)) * _AGE_UNITS[(match.group(2) or "y").lower()]
    if math.isnan(years) or years < 0 or years > max_age:
        return float("nan")
    return years


def namespaced_patient_id(
    source_id: str, patient_id: object, image_id: str, namespaces: Mapping[str, str]
) -> str:
    """A patient id unique across sources: ``<namespace>:<upstream id>``.

    Args:
        source_id: the row's source.
        patient_id: the upstream id ("" / NaN when unknown).
        image_id: used as a patient of its own when the upstream gives no id.
        namespaces: source_id -> namespace for sources that copy one upstream's patient ids
            (the GeneralBlockchain copies of ieee8023 share ``ieee8023`` ids); default: source_id.

    Returns:
        The namespaced id.
    """
    text = "" if patient_id is None else str(patient_id).strip()
    if text.lower() in ("", "nan", "none", "<na>"):
        return image_id
    return f"{namespaces.get(source_id, source_id)}:{text}"


def harmonise_index(raw_index: pd.DataFrame, params: Mapping) -> pd.DataFrame:
    """Harmonised copy of the raw index (same rows, same order).

    ``label`` becomes a class label or "other" (the raw string stays in ``finding``),
    ``view_harmonised`` and ``age_years`` are added, and ``patient_id`` is namespaced.

    Args:
        raw_index: rows with ``schema.RAW_INDEX_COLUMNS``.
        params: the ``curate`` parameters (``views``, ``ages``, ``patients``).

    Returns:
        The harmonised frame.
    """
    view_map = params["views"]["map"]
    max_age = float(params["ages"]["max_plausible_years"])
    namespaces = params["patients"].get("namespaces", {}) or {}
    frame = raw_index.copy()
    frame["label"] = [harmonise_label(v) for v in frame["label"]]
    frame["view_harmonised"] = [harmonise_view(v, view_map) for v in frame["view"]]
    frame["age_years"] = pd.Series(
        [age_in_years(v, max_age) for v in frame["age"]], index=frame.index, dtype="float64"
    )
    frame["patient_id"] = [
        namespaced_patient_id(s, p, i, namespaces)
        for s, p, i in zip(frame["source_id"], frame["patient_id"], frame["image_id"], strict=True)
    ]
    return frame
