"""Summarise an end-to-end mirror run (bench/mirror_end_to_end.sh) from its MLflow records.

Prints the figures the README quotes: images per source against ../shared/data/manifest.csv,
bytes transferred by the first and second ingest, curation counts, U-Net validation Dice,
preprocessing work done by the first and second run, and the classifiers' test metrics with
their bootstrap CIs and lung-localisation scores.

Usage: python bench/mirror_summary.py [--shared ../shared/data] [--logs DIR] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import mlflow
import pandas as pd

# The source whose covid_source column carries the paper's nine-category attribution.
ARMIRO = "armiro_covidcxnet"


def _runs(tracking_uri: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True, order_by=["start_time ASC"])
    return runs[runs["status"] == "FINISHED"]


def _named(runs: pd.DataFrame, name: str) -> pd.DataFrame:
    return runs[runs["tags.mlflow.runName"] == name]


def _metric(run: pd.Series, key: str) -> float:
    return float(run.get(f"metrics.{key}", float("nan")))


def _last(runs: pd.DataFrame, name: str) -> pd.Series | None:
    """The latest finished run named ``name``, or None."""
    named = _named(runs, name)
    return None if named.empty else named.iloc[-1]


def _metrics_under(run: pd.Series, prefix: str) -> dict[str, float]:
    """Logged metrics whose key starts with ``prefix``, keyed by the rest of the key."""
    full = f"metrics.{prefix}"
    return {
        column.removeprefix(full): float(run[column])
        for column in run.index
        if column.startswith(full) and pd.notna(run[column])
    }


def _with_ci(run: pd.Series, key: str) -> str:
    estimate, low, high = (_metric(run, key + s) for s in ("", ".ci_lower", ".ci_upper"))
    return f"{estimate:.3f} [{low:.3f}, {high:.3f}]"


def summarise_ingest(runs: pd.DataFrame, manifest: pd.DataFrame) -> None:
    ingests = _named(runs, "ingest")
    last = _last(runs, "ingest")
    if last is None:
        print("ingest: no finished run")
        return
    expected = manifest[manifest["kind"] == "image"].groupby("source_id").size()
    print("\n## ingest: images per source (raw_index vs manifest.csv kind=image)")
    for source, count in expected.items():
        got = _metric(last, f"ingest.images.source.{source}")
        print(f"  {source:26s} {got:6.0f} / {count:4d}  {'ok' if got == count else 'MISMATCH'}")
    print(f"  total {_metric(last, 'ingest.images'):.0f} / {expected.sum()}")
    print(
        f"  masks {_metric(last, 'ingest.masks'):.0f}, failures {_metric(last, 'ingest.failures'):.0f}"
    )
    for i, (_, run) in enumerate(ingests.tail(2).iterrows(), start=1):
        print(f"  run {i}: {_metric(run, 'ingest.bytes_transferred'):,.0f} bytes transferred")
    # The paper's nine-category attribution of the armiro images, then over all images.
    for title, prefix in (
        (ARMIRO, f"ingest.images.source.{ARMIRO}.covid_source."),
        ("all sources", "ingest.images.covid_source."),
    ):
        counts = _metrics_under(last, prefix)
        if not counts:
            print(f"  covid_source ({title}): not logged by this ingest run")
            continue
        parts = [f"{name}={value:.0f}" for name, value in sorted(counts.items()) if value]
        print(f"  covid_source ({title}): " + ", ".join(parts))


def summarise_curate(runs: pd.DataFrame) -> None:
    run = _last(runs, "curate")
    if run is None:
        return
    print("\n## curate")
    for prefix in ("curate.kept", "curate.excluded"):
        # One level below the prefix (kept.<split>, excluded.<reason>), not kept.<split>.<label>.
        counts = _metrics_under(run, prefix + ".")
        parts = [f"{key}={value:.0f}" for key, value in sorted(counts.items()) if "." not in key]
        print(f"  {prefix} {_metric(run, prefix):.0f}: " + ", ".join(parts))


def summarise_segmentation(runs: pd.DataFrame) -> None:
    run = _last(runs, "train_segmentation")
    if run is None:
        return
    print("\n## train_segmentation")
    print(
        f"  validation Dice {_metric(run, 'segmentation.validation_dice'):.3f}, "
        f"IoU {_metric(run, 'segmentation.validation_iou'):.3f} "
        f"({_metric(run, 'segmentation.n_train'):.0f} train / "
        f"{_metric(run, 'segmentation.n_validation'):.0f} validation pairs)"
    )


def summarise_preprocess(runs: pd.DataFrame) -> None:
    pres = _named(runs, "preprocess").tail(2)
    print("\n## preprocess (first, then second run)")
    for _, run in pres.iterrows():
        print(
            f"  images {_metric(run, 'preprocess.images'):.0f}: masks predicted "
            f"{_metric(run, 'preprocess.masks_predicted'):.0f}, ROIs computed "
            f"{_metric(run, 'preprocess.rois_computed'):.0f}, model inputs written "
            f"{_metric(run, 'preprocess.model_inputs_written'):.0f}, ROI fallbacks "
            f"{_metric(run, 'preprocess.roi_fallbacks'):.0f}"
        )


def summarise_classifier(runs: pd.DataFrame, name: str) -> None:
    run = _last(runs, name)
    if run is None:
        return
    print(f"\n## {name} (test split, 95% bootstrap CIs)")
    for key in ("accuracy", "macro_f1", "macro_auc", "sensitivity", "specificity"):
        if f"metrics.{name}.test.{key}" in run.index and pd.notna(
            run[f"metrics.{name}.test.{key}"]
        ):
            print(f"  {key:12s} {_with_ci(run, f'{name}.test.{key}')}")
    loc = f"{name}.localisation.all"
    print(
        f"  Grad-CAM mass inside the lungs {_metric(run, loc + '.mean'):.3f} "
        f"(mean lung area {_metric(run, loc + '.mean_mask_area'):.3f}"
        + (
            f", lift {_metric(run, loc + '.mean_lift'):.3f})"
            if f"metrics.{loc}.mean_lift" in run.index
            else ")"
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared/data", type=Path)
    parser.add_argument("--logs", default="data/08_reporting/end_to_end", type=Path)
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    args = parser.parse_args()
    runs = _runs(args.tracking_uri)
    manifest = pd.read_csv(args.shared / "manifest.csv")
    timings = args.logs / "timings.txt"
    if timings.is_file():
        print("## wall time per kedro run (s)")
        print(
            "  "
            + ", ".join(line.replace(" ", "=") for line in timings.read_text().split("\n") if line)
        )
    summarise_ingest(runs, manifest)
    summarise_curate(runs)
    summarise_segmentation(runs)
    summarise_preprocess(runs)
    for name in ("train_binary", "train_multiclass"):
        summarise_classifier(runs, name)


if __name__ == "__main__":
    main()
