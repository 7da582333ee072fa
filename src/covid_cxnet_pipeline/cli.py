"""The ``covid-cxnet`` console script: ``covid-cxnet predict --model M --input DIR --output DIR``.

Kedro also reads this module (``<package>.cli``) for project commands: its ``cli`` group adds
the same ``predict`` command to ``kedro`` (``kedro predict ...``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import click


@click.group(name="covid-cxnet")
def cli() -> None:
    """COVID-CXNet: classify chest X-rays with a trained model."""


@cli.command()
@click.option(
    "--model",
    required=True,
    help="A .keras model saved by the training pipeline (its model_card.json and unet.keras "
    "beside it), a Kedro versioned model folder (its latest version), or an MLflow model URI "
    "(runs:/<run id>/<name>, models:/<id>).",
)
@click.option(
    "--input",
    "input_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of images / DICOM files (searched recursively).",
)
@click.option(
    "--output",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for predictions.csv and overlays/.",
)
@click.option("--unet", default=None, help="U-Net path or URI (default: the model's own).")
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Binary models: positive when p >= threshold (default: the operating threshold chosen "
    "on validation and saved with the model; 0.5 when there is none).",
)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--overlay-alpha", type=float, default=0.4, show_default=True)
@click.option(
    "--tracking-uri",
    default=None,
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI for runs:/ and models:/ URIs (default: $MLFLOW_TRACKING_URI).",
)
def predict(
    *,
    model: str,
    input_dir: str,
    output_dir: str,
    unet: str | None,
    threshold: float | None,
    batch_size: int,
    overlay_alpha: float,
    tracking_uri: str | None,
) -> None:
    """Predict every image or DICOM file under --input.

    Applies the model's training preprocessing (decode, U-Net lung ROI, resize, histogram
    matching, channel stack) and writes predictions.csv (path, prob_<class>..., prediction,
    error) and one Grad-CAM overlay per image into --output. Unreadable files get an error row
    and the run goes on; the exit code is 1 when any file failed.
    """
    from covid_cxnet_pipeline.pipelines.predict.inference import (
        PREDICTIONS_FILE,
        load_bundle,
        predict_directory,
    )

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
    try:
        bundle = load_bundle(model, unet)
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    table = predict_directory(
        bundle,
        input_dir,
        output_dir,
        threshold=threshold,
        batch_size=batch_size,
        overlay_alpha=overlay_alpha,
    )
    failed = int((table["error"] != "").sum())
    click.echo(
        f"{len(table) - failed} of {len(table)} files predicted; "
        f"{os.path.join(output_dir, PREDICTIONS_FILE)}"
    )
    if failed:
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``covid-cxnet`` console script.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    cli.main(args=list(argv) if argv is not None else None, prog_name="covid-cxnet")


if __name__ == "__main__":
    main()
