"""Counts of the curated dataset per source x label x split: a table, a figure and MLflow metrics."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # curation runs headless (CI, servers)

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from covid_cxnet_pipeline.schema import CLASS_LABELS, SPLITS

SUMMARY_COLUMNS = ("source_id", "label", "split", "count")


def split_summary(curated: pd.DataFrame) -> pd.DataFrame:
    """Image counts per source, label and split (only non-zero combinations).

    Args:
        curated: the curated index.

    Returns:
        A long table with ``SUMMARY_COLUMNS``, sorted.
    """
    if curated.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SUMMARY_COLUMNS})
    counts = (
        curated.groupby(["source_id", "label", "split"], observed=True)
        .size()
        .reset_index(name="count")
        .sort_values(["source_id", "label", "split"])
    )
    return counts.reset_index(drop=True)[list(SUMMARY_COLUMNS)]


def split_summary_figure(summary: pd.DataFrame) -> Figure:
    """One panel per split: stacked bars of images per source, coloured by label.

    Args:
        summary: the table from :func:`split_summary`.

    Returns:
        A matplotlib figure (closed from pyplot, so it does not leak memory across runs).
    """
    splits = [s for s in SPLITS if s in set(summary["split"])] or ["train"]
    sources = sorted(set(summary["source_id"]))
    labels = [lab for lab in CLASS_LABELS if lab in set(summary["label"])]
    labels += sorted(set(summary["label"]) - set(labels))
    figure, axes = plt.subplots(
        1, len(splits), figsize=(4 + 3 * len(splits), 4.5), sharey=True, squeeze=False
    )
    for axis, split in zip(axes[0], splits, strict=True):
        table = (
            summary[summary["split"] == split]
            .pivot_table(index="source_id", columns="label", values="count", aggfunc="sum")
            .reindex(index=sources, columns=labels)
            .fillna(0)
        )
        bottom = pd.Series(0.0, index=sources)
        for label in labels:
            axis.bar(sources, table[label], bottom=bottom, label=label)
            bottom += table[label]
        axis.set_title(f"{split} ({int(table.to_numpy().sum())} images)")
        axis.tick_params(axis="x", labelrotation=60, labelsize=7)
    axes[0][0].set_ylabel("images")
    axes[0][-1].legend(title="label")
    figure.suptitle("Curated images per source, label and split")
    figure.tight_layout()
    plt.close(figure)
    return figure


def curation_metrics(summary: pd.DataFrame, exclusions: pd.DataFrame) -> dict[str, dict]:
    """Counts as MLflow metrics in the ``MlflowMetricsHistoryDataset`` format.

    Args:
        summary: the table from :func:`split_summary`.
        exclusions: the exclusion report (``reason`` column).

    Returns:
        ``{name: {"value": count, "step": 0}}`` for kept images per split and per split x
        label, and excluded images in total and per reason.
    """
    metrics: dict[str, float] = {"kept": float(summary["count"].sum())}
    for split, count in summary.groupby("split")["count"].sum().items():
        metrics[f"kept.{split}"] = float(count)
    for (split, label), count in summary.groupby(["split", "label"])["count"].sum().items():
        metrics[f"kept.{split}.{label}"] = float(count)
    metrics["excluded"] = float(len(exclusions))
    for reason, count in exclusions["reason"].value_counts().items():
        metrics[f"excluded.{reason}"] = float(count)
    return {name: {"value": value, "step": 0} for name, value in metrics.items()}
