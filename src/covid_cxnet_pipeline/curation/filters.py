"""Exclusion rules of the curated dataset, applied per duplicate group, each with its reason.

Rules run after de-duplication, on whole duplicate groups: a property seen on any copy of a
picture (a pediatric flag, a lateral view, an age under the limit, a pediatric-only source)
excludes every copy, so a re-published child's radiograph cannot slip back in through a source
that forgot to say so. Properties of the pixels (decodable, size, quality) are judged on the
canonical copy, the one that would be kept. The order of ``RULES`` is the order of ``reason``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from covid_cxnet_pipeline.curation.harmonise import _key
from covid_cxnet_pipeline.schema import CLASS_LABELS

logger = logging.getLogger(__name__)

# Every reason an image can be excluded for, in the order they are reported.
RULES = (
    "undecodable",
    "non_cxr",
    "lateral",
    "pediatric_source",
    "pediatric_flag",
    "pediatric_age",
    "normal_looking",
    "too_small",
    "low_quality",
    "unknown_label",
    "label_conflict",
    "duplicate",
)
EXCLUSION_COLUMNS = (
    "image_id",
    "source_id",
    "reason",  # the first rule of RULES that applies
    "all_reasons",  # every rule that applies, ";"-joined, in RULES order
    "duplicate_group",
    "canonical_image_id",
)


def _pixels(frame: pd.DataFrame, column: str) -> pd.Series:
    """Stored width/height, falling back on the decoded size when the index lacks it."""
    stored = pd.to_numeric(frame[column], errors="coerce")
    decoded = pd.to_numeric(frame.get(f"decoded_{column}", stored), errors="coerce")
    return stored.where(stored > 0, decoded).fillna(0)


def rule_flags(frame: pd.DataFrame, params: Mapping) -> pd.DataFrame:
    """Boolean flag per rule and row, already spread to every member of a duplicate group.

    Args:
        frame: merged rows (see ``canonical.merge_group_metadata``) with ``is_canonical``,
            ``decode_error``, ``gray_std`` and the harmonised columns.
        params: ``curate.filters``.

    Returns:
        A frame with one boolean column per name in ``RULES``, aligned with ``frame``.
    """
    group = frame["duplicate_group"]
    canonical = frame["is_canonical"].astype(bool)
    pediatric = params["pediatric"]
    quality = params["quality"]
    non_cxr_views = {_key(v) for v in params.get("non_cxr_views", []) or []}

    def any_member(mask: pd.Series) -> pd.Series:
        return mask.astype(bool).groupby(group).transform("max").astype(bool)

    def from_canonical(mask: pd.Series) -> pd.Series:
        return any_member(mask.astype(bool) & canonical)

    false = pd.Series(False, index=frame.index)
    flags = pd.DataFrame(index=frame.index)
    flags["undecodable"] = from_canonical(frame["decode_error"].astype(str) != "")
    flags["non_cxr"] = any_member(frame["view"].map(_key).isin(non_cxr_views))
    flags["lateral"] = (
        any_member(frame["view_harmonised"] == "lateral") if params["exclude_lateral"] else false
    )
    enabled = bool(pediatric["enabled"])
    sources = set(pediatric.get("sources", []) or [])
    flags["pediatric_source"] = any_member(frame["source_id"].isin(sources)) if enabled else false
    flags["pediatric_flag"] = (
        frame["group_is_pediatric_flag"].astype(bool)
        if enabled and pediatric["use_source_flag"]
        else false
    )
    min_age = float(pediatric["min_age_years"])
    flags["pediatric_age"] = (
        (pd.to_numeric(frame["group_min_age"], errors="coerce") < min_age).fillna(False)
        if enabled
        else false
    )
    flags["normal_looking"] = (
        frame["group_flags"].astype(str).str.split(";").map(lambda f: "normal_looking" in f)
        if params["exclude_normal_looking"]
        else false
    ).astype(bool)
    small = (_pixels(frame, "width") < int(quality["min_width"])) | (
        _pixels(frame, "height") < int(quality["min_height"])
    )
    flags["too_small"] = from_canonical(small)
    gray_std = pd.to_numeric(frame["gray_std"], errors="coerce")
    flags["low_quality"] = from_canonical(gray_std < float(quality["min_gray_std"]))
    flags["unknown_label"] = (
        from_canonical(~frame["label"].isin(CLASS_LABELS))
        if params["exclude_unknown_labels"]
        else false
    )
    flags["label_conflict"] = frame["label_conflict"].astype(bool)
    flags["duplicate"] = ~canonical
    return flags[list(RULES)].fillna(False).astype(bool)


def apply_filters(frame: pd.DataFrame, params: Mapping) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split merged rows into kept canonical rows and an exclusion report.

    Args:
        frame: merged rows with ``is_canonical`` and the columns ``rule_flags`` reads.
        params: ``curate.filters``.

    Returns:
        ``(kept, exclusions)``: the kept rows (one per surviving duplicate group) and one row
        per excluded image with ``EXCLUSION_COLUMNS``.
    """
    flags = rule_flags(frame, params)
    names = np.array(RULES, dtype=object)
    matrix = flags.to_numpy()
    all_reasons = [";".join(names[row]) for row in matrix]
    excluded = matrix.any(axis=1)
    canonical_of = (
        frame.loc[frame["is_canonical"].astype(bool)]
        .set_index("duplicate_group")["image_id"]
        .to_dict()
    )
    exclusions = pd.DataFrame(
        {
            "image_id": frame["image_id"].to_numpy(),
            "source_id": frame["source_id"].to_numpy(),
            "reason": [r.split(";")[0] for r in all_reasons],
            "all_reasons": all_reasons,
            "duplicate_group": frame["duplicate_group"].to_numpy(),
            "canonical_image_id": frame["duplicate_group"].map(canonical_of).to_numpy(),
        }
    )[excluded]
    kept = frame[~excluded].copy()
    counts = exclusions["reason"].value_counts().to_dict()
    logger.info(
        "Curation filters: kept %d of %d images; excluded %s", len(kept), len(frame), counts
    )
    return kept, exclusions.reset_index(drop=True)[list(EXCLUSION_COLUMNS)]
