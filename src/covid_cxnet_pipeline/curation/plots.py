"""Counts of the curated dataset per source x label x split: a table, a figure and MLflow metrics."""

from __future__ import annotations

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
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


# One fixed colour per label, so that every figure of the project reads the same way.
_LABEL_COLOURS = {"normal": "#4c72b0", "cap": "#dd8452", "covid": "#c44e52", "other": "#8c8c8c"}
# A segment narrower than this fraction of its panel gets no count printed inside it.
_MIN_LABELLED_FRACTION = 0.07


def split_summary_figure(summary: pd.DataFrame) -> Figure:
    """One panel per split: a horizontal stacked bar per source, coloured by label, with counts.

    Sources are rows (their names stay readable however many there are), in the same order in
    every panel. Each panel has its own scale, since the point is the composition of each split;
    the counts are printed (inside wide enough segments, and the total at each bar's end), and the
    panel title gives the split's total and its count per label.

    Args:
        summary: the table from :func:`split_summary`.

    Returns:
        A matplotlib figure on an Agg canvas, never registered with pyplot (so it does not
        leak memory across runs and sets no process-wide backend).
    """
    splits = [s for s in SPLITS if s in set(summary["split"])] or ["train"]
    sources = sorted(set(summary["source_id"]))
    labels = [lab for lab in CLASS_LABELS if lab in set(summary["label"])]
    labels += sorted(set(summary["label"]) - set(labels))
    figure = Figure(
        figsize=(2.2 + 3.4 * len(splits), 1.6 + 0.42 * max(1, len(sources))),
        layout="constrained",  # makes room for the legend below the panels
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(splits), sharey=True, squeeze=False)
    rows = list(range(len(sources)))
    for axis, split in zip(axes[0], splits, strict=True):
        table = (
            summary[summary["split"] == split]
            .pivot_table(index="source_id", columns="label", values="count", aggfunc="sum")
            .reindex(index=sources, columns=labels)
            .fillna(0)
            .astype(int)
        )
        totals = table.sum(axis=1)
        width = max(1, int(totals.max()))
        left = pd.Series(0, index=sources)
        for label in labels:
            counts = table[label]
            colour = _LABEL_COLOURS.get(label)
            axis.barh(rows, counts, left=left, color=colour, label=label, height=0.7)
            for row, (count, start) in enumerate(zip(counts, left, strict=True)):
                if count and count / width >= _MIN_LABELLED_FRACTION:
                    axis.text(start + count / 2, row, str(count), ha="center", va="center",
                              color="white", fontsize=7)  # fmt: skip
            left += counts
        for row, total in enumerate(totals):
            axis.text(total + width * 0.02, row, str(total), va="center", fontsize=8)
        axis.set_xlim(0, width * 1.15)
        per_label = " · ".join(f"{label} {int(table[label].sum())}" for label in labels)
        axis.set_title(f"{split}: {int(totals.sum())} images\n{per_label}", fontsize=9)
        axis.set_xlabel("images")
        axis.grid(axis="x", alpha=0.3)
        axis.set_axisbelow(True)
    axes[0][0].set_yticks(rows, sources)
    axes[0][0].invert_yaxis()  # first source on top
    handles, names = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, names, title="label", loc="outside lower center", ncol=len(labels))
    figure.suptitle("Curated images per source, label and split")
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
