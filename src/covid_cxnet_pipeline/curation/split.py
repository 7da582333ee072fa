"""Patient-group split, stratified by label, with whole sources optionally held out as external.

A deterministic greedy assignment: patient groups are visited largest first (ties in a seeded
random order) and each goes to the split whose label counts lag furthest behind their targets.
Unlike a K-fold splitter it honours any three ratios exactly up to one group's size, and it never
separates a patient group.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

INTERNAL_SPLITS = ("train", "validation", "test")


def _check_ratios(ratios: Mapping[str, float]) -> np.ndarray:
    missing = [s for s in INTERNAL_SPLITS if s not in ratios]
    if missing:
        raise ValueError(
            f"curate.split.ratios lacks {missing}; give train, validation and test ratios"
        )
    values = np.array([float(ratios[s]) for s in INTERNAL_SPLITS])
    if (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"curate.split.ratios must be non-negative and not all 0, got {ratios}")
    return values / values.sum()


def assign_splits(
    frame: pd.DataFrame,
    ratios: Mapping[str, float],
    seed: int,
    external_sources: Sequence[str] = (),
    *,
    group_column: str = "patient_group",
    label_column: str = "label",
) -> pd.Series:
    """Split of every row; all rows of one group get the same split.

    Args:
        frame: rows with ``source_id``, ``group_column`` and ``label_column``.
        ratios: ``{"train": .., "validation": .., "test": ..}`` (normalised to sum 1).
        seed: orders groups of equal size, so the split is repeatable.
        external_sources: rows of these sources go to "external"; a patient group with any
            such row goes there whole, so that no patient straddles external and internal.
        group_column: the grouping column.
        label_column: the stratification column.

    Returns:
        A Series of split names aligned with ``frame``.
    """
    targets = _check_ratios(ratios)
    groups = frame[group_column].astype(str)
    external_groups = set(groups[frame["source_id"].isin(set(external_sources))])
    split = pd.Series("external", index=frame.index, dtype=object)
    internal = ~groups.isin(external_groups)
    moved = int((~internal & ~frame["source_id"].isin(set(external_sources))).sum())
    if moved:
        logger.info("%d rows of internal sources follow their patient group into external", moved)
    counts = pd.crosstab(groups[internal], frame.loc[internal, label_column].astype(str))
    if counts.empty:
        return split
    rng = np.random.default_rng(seed)
    order = pd.DataFrame(
        {"size": counts.sum(axis=1).to_numpy(), "tie": rng.permutation(len(counts))},
        index=counts.index,
    ).sort_values(["size", "tie"], ascending=[False, True])
    label_totals = counts.sum(axis=0).to_numpy(dtype=float)
    assigned = np.zeros((len(INTERNAL_SPLITS), counts.shape[1]))
    group_counts = counts.loc[order.index].to_numpy(dtype=float)
    choice: dict[str, str] = {}
    for name, vector in zip(order.index, group_counts, strict=True):
        # Per label, how far each split is below its target, as a fraction of the label total;
        # weighted by this group's labels. Ties go to the split with the larger ratio.
        deficit = (targets[:, None] * label_totals[None, :] - assigned) / label_totals[None, :]
        need = deficit @ vector
        best = int(np.lexsort((-targets, -need))[0])
        assigned[best] += vector
        choice[name] = INTERNAL_SPLITS[best]
    split[internal] = groups[internal].map(choice)
    logger.info("Split sizes: %s", split.value_counts().to_dict())
    return split
