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


def _ci_with_intervals(ci_table: pd.DataFrame, float_digits: int) -> pd.DataFrame:
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
    columns = ["metric"] if "metric" in ci_table.columns else []
    out = ci_table[columns].copy()
    out["estimate [95% CI]"] = readable
    for extra in ("n_valid", "n_resamples"):
        if extra in ci_table.columns:
            out[extra] = ci_table[extra]
    return out


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
) -> str:
    """Put an evaluation run together as one Markdown document.

    Args:
        title: the report's title (e.g. model, run id and split).
        metrics_table: the main metrics (e.g. ``metrics.metrics_table`` or ``per_class_table``).
        ci_table: bootstrap CIs (``bootstrap.bootstrap_ci``); rendered as
            ``estimate [lower, upper]``.
        figures: figure name -> image path relative to the report (confusion matrix, ROC...).
        heatmap_grids: grid name -> image path relative to the report (Grad-CAM, LIME).
        notes: free text or a list of bullet points (data version, threshold rule, caveats).
        tables: further named tables (threshold report, localisation per class, seeds summary).
        float_digits: digits after the decimal point in tables.

    Returns:
        The Markdown text, ending with a newline.

    Raises:
        ValueError: if an image path is absolute.
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
        lines += [
            "## Confidence intervals",
            "",
            markdown_table(_ci_with_intervals(ci_table, float_digits), float_digits),
            "",
        ]
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
