"""A Markdown evaluation report: metric tables, confidence intervals, figures and heatmap grids.

Images are referenced by paths relative to the report, so the report and its figures can be
moved or logged to MLflow together.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath, PureWindowsPath

import pandas as pd

logger = logging.getLogger(__name__)


def _format_cell(value: object, float_digits: int) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{float_digits}f}"
    # Pipes would split the Markdown cell.
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, float_digits: int = 3, index: bool = False) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table.

    Args:
        frame: the table.
        float_digits: digits after the decimal point for floats; NaN is written ``n/a``.
        index: include the index as the first column.

    Returns:
        The Markdown table (no trailing newline); ``_(empty)_`` for an empty frame.
    """
    table = frame.reset_index() if index else frame
    if table.empty:
        return "_(empty)_"
    header = [str(column) for column in table.columns]
    numeric = [pd.api.types.is_numeric_dtype(table[column]) for column in table.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---:" if num else "---" for num in numeric) + " |",
    ]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_format_cell(v, float_digits) for v in row) + " |")
    return "\n".join(lines)


def _level_text(confidence: float) -> str:
    """0.95 -> "95%", 0.975 -> "97.5%"."""
    return f"{round(float(confidence) * 100.0, 6):g}%"


def _table_confidence(ci_table: pd.DataFrame, confidence: float | None) -> float | None:
    """The one confidence level of the table (its ``confidence`` column, else the argument)."""
    if "confidence" not in ci_table.columns:
        if confidence is None:
            logger.warning(
                "The CI table has no confidence column and no confidence was given: the report "
                "says 'CI' without a level; pass bootstrap_ci's table or confidence="
            )
        return confidence
    levels = sorted({float(value) for value in ci_table["confidence"].dropna()})
    if len(levels) != 1:
        return None  # mixed or missing levels: shown per row instead
    if confidence is not None and not math.isclose(levels[0], float(confidence)):
        raise ValueError(
            f"confidence={confidence} contradicts the CI table, computed at {levels[0]}; "
            "drop the argument or rebuild the table at that level"
        )
    return levels[0]


def _ci_with_intervals(
    ci_table: pd.DataFrame, float_digits: int, confidence: float | None = None
) -> pd.DataFrame:
    """Add a readable ``estimate [lower, upper]`` column to a bootstrap CI table."""
    if not {"estimate", "ci_lower", "ci_upper"} <= set(ci_table.columns):
        return ci_table

    def fmt(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.{float_digits}f}"

    readable = [
        f"{fmt(e)} [{fmt(lo)}, {fmt(hi)}]"
        for e, lo, hi in zip(
            ci_table["estimate"], ci_table["ci_lower"], ci_table["ci_upper"], strict=True
        )
    ]
    level = _table_confidence(ci_table, confidence)
    columns = ["metric"] if "metric" in ci_table.columns else []
    out = ci_table[columns].copy()
    out["estimate [CI]" if level is None else f"estimate [{_level_text(level)} CI]"] = readable
    extras = ["n_valid", "n_resamples"]
    if level is None and "confidence" in ci_table.columns:
        extras.append("confidence")
    for extra in extras:
        if extra in ci_table.columns:
            out[extra] = ci_table[extra]
    return out


def _ci_description(ci_table: pd.DataFrame) -> list[str]:
    """One sentence on how the intervals were resampled, when the table records it."""
    if "stratified" not in ci_table.columns or ci_table["stratified"].dropna().empty:
        return []
    kinds = {bool(value) for value in ci_table["stratified"].dropna()}
    if kinds == {True}:
        how = "resampled within each true class (class counts fixed)"
    elif kinds == {False}:
        how = "resampled over all samples (class counts vary)"
    else:
        how = "some rows resampled within each true class, others over all samples"
    return [f"Percentile bootstrap intervals, {how}.", ""]


def _check_relative(name: str, path: str) -> str:
    text = str(path)
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute():
        raise ValueError(
            f"report image {name!r} has an absolute path {text!r}: pass a path relative to the "
            "report's folder so the report stays valid when moved or logged to MLflow"
        )
    return text.replace("\\", "/").replace(" ", "%20")


def _image_section(heading: str, images: Mapping[str, str]) -> list[str]:
    lines = [f"## {heading}", ""]
    for name, path in images.items():
        lines += [f"### {name}", "", f"![{name}]({_check_relative(name, path)})", ""]
    return lines


def build_markdown_report(
    title: str,
    metrics_table: pd.DataFrame,
    ci_table: pd.DataFrame | None = None,
    figures: Mapping[str, str] | None = None,
    heatmap_grids: Mapping[str, str] | None = None,
    *,
    notes: str | Sequence[str] | None = None,
    tables: Mapping[str, pd.DataFrame] | None = None,
    float_digits: int = 3,
    confidence: float | None = None,
) -> str:
    """Put an evaluation run together as one Markdown document.

    Args:
        title: the report's title (e.g. model, run id and split).
        metrics_table: the main metrics (e.g. one row per metric, one column per split).
        ci_table: bootstrap CIs (``bootstrap.bootstrap_ci``); rendered as
            ``estimate [lower, upper]`` under a header naming the level from its
            ``confidence`` column (e.g. ``estimate [90% CI]``).
        figures: figure name -> image path relative to the report (confusion matrix, ROC...).
        heatmap_grids: grid name -> image path relative to the report (Grad-CAM, LIME).
        notes: free text or a list of bullet points (data version, threshold rule, caveats).
        tables: further named tables (threshold report, localisation per class, seeds summary).
        float_digits: digits after the decimal point in tables.
        confidence: the CI level, only for a ``ci_table`` without a ``confidence`` column;
            with neither, the header says ``CI`` without a level.

    Returns:
        The Markdown text, ending with a newline.

    Raises:
        ValueError: if an image path is absolute, or ``confidence`` contradicts the table.
    """
    lines = [f"# {title}", ""]
    if notes:
        lines += ["## Notes", ""]
        if isinstance(notes, str):
            lines += [notes.strip(), ""]
        else:
            lines += [f"- {note}" for note in notes] + [""]
    lines += ["## Metrics", "", markdown_table(metrics_table, float_digits), ""]
    if ci_table is not None:
        readable = _ci_with_intervals(ci_table, float_digits, confidence)
        lines += ["## Confidence intervals", "", *_ci_description(ci_table)]
        lines += [markdown_table(readable, float_digits), ""]
    for name, table in (tables or {}).items():
        lines += [f"## {name}", "", markdown_table(table, float_digits), ""]
    if figures:
        lines += _image_section("Figures", figures)
    if heatmap_grids:
        lines += _image_section("Explanations", heatmap_grids)
    text = "\n".join(lines).rstrip("\n") + "\n"
    logger.info(
        "Report %r: %d figures, %d heatmap grids",
        title,
        len(figures or {}),
        len(heatmap_grids or {}),
    )
    return text
