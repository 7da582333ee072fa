"""Run a trained classifier on new images or DICOM files, replaying the training preprocessing.

The model's card (saved beside the ``.keras`` file by the training pipeline, or stored as MLflow
model metadata) carries the class names and the preprocessing: the ``preprocess`` parameters,
the training split's reference histogram and the U-Net's digest. The U-Net travels too (saved
beside the model, or logged in the same MLflow run), so no project configuration is needed.
Each file goes through ``preprocess.chain.model_ready_image``, the function the preprocess
pipeline itself uses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covid_cxnet_pipeline.pipelines.evaluate.inputs import (
    MODEL_CARD_VERSION,
    probability_columns,
    probability_matrix,
)

logger = logging.getLogger(__name__)

CARD_FILE = "model_card.json"
UNET_FILE = "unet.keras"
OPERATING_THRESHOLD_FILE = "operating_threshold.json"
OVERLAY_FOLDER = "overlays"
PREDICTIONS_FILE = "predictions.csv"
_URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/", "s3://", "gs://", "file://")


@dataclasses.dataclass
class ClassifierBundle:
    """A classifier with what it needs to predict on raw files.

    Attributes:
        model: the Keras classifier (takes [0, 255] pixels).
        card: its model card.
        unet: the lung-segmentation U-Net, or None when the preprocessing does not crop.
        source: where the model came from (path or URI), for messages.
        operating_threshold: binary models: the threshold chosen on validation by the
            training run's evaluation (``operating_threshold.json``), or None when not found.
    """

    model: Any
    card: dict[str, Any]
    unet: Any
    source: str
    operating_threshold: float | None = None


def is_model_uri(reference: str) -> bool:
    """Whether a ``--model`` value is an MLflow model URI rather than a local path."""
    return str(reference).startswith(_URI_SCHEMES)


def resolve_model_file(path: str | Path) -> Path:
    """The ``.keras`` file behind a path, choosing the latest version of a Kedro versioned folder.

    In a versioned folder only versions with their ``model_card.json`` count: a failed training
    run can leave a model without a card, and predict must not replay another run's card.

    Args:
        path: a ``.keras`` file, or a Kedro versioned dataset folder
            (``.../model.keras/<version>/model.keras``).

    Returns:
        The file.

    Raises:
        FileNotFoundError: nothing usable at ``path``.
    """
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        versions = sorted(
            version / candidate.name
            for version in candidate.iterdir()
            if (version / candidate.name).is_file()
        )
        # A version without its card comes from a run that failed after saving the model.
        carded = [version for version in versions if _has_card(version)]
        for version in versions:
            if version not in carded and (not carded or version > carded[-1]):
                logger.warning("Skipping %s: no model_card.json beside it", version.parent.name)
        if carded:
            logger.info("Using the latest version of %s: %s", candidate, carded[-1].parent.name)
            return carded[-1]
        if versions:
            raise FileNotFoundError(
                f"no version of {candidate} has its model_card.json (versions "
                f"{[v.parent.name for v in versions]}): re-run the training pipeline"
            )
    raise FileNotFoundError(
        f"no model at {candidate}: pass a .keras file, a Kedro versioned model folder "
        "(data/06_models/<pipeline>/model.keras) or an MLflow URI (runs:/... or models:/...)"
    )


def mlflow_model_info(uri: str) -> Any:
    """The MLflow ``ModelInfo`` behind a model URI, or an error that says which URIs would work.

    A run's classifier is logged under its instance name, so ``runs:/<run id>/model`` finds
    nothing; MLflow's own error ("Failed to download artifacts from path 'MLmodel'") does not say
    so. For a ``runs:/`` URI the error lists the models that run logged, each with its URI.

    Args:
        uri: ``runs:/<run id>/<name>``, ``models:/<model id>``, ``models:/<name>/<version>``...

    Returns:
        ``mlflow.models.get_model_info(uri)``.

    Raises:
        FileNotFoundError: no MLflow model at ``uri`` in the current tracking store.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.models.get_model_info(uri)
    except MlflowException as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FileNotFoundError(
            f"no MLflow model at {uri} in tracking store {mlflow.get_tracking_uri()} ({reason}). "
            + _mlflow_uri_hint(uri)
        ) from error


def _mlflow_uri_hint(uri: str) -> str:
    """What to pass instead of ``uri``: the models its run logged, or the URI forms that work."""
    import mlflow
    from mlflow.exceptions import MlflowException

    forms = (
        "Use runs:/<run id>/<logged model name> (e.g. runs:/<run id>/train_binary), "
        "models:/<model id> (models:/m-...) or models:/<registered name>/<version>; "
        "set --tracking-uri / MLFLOW_TRACKING_URI to the store the training run wrote"
    )
    if not uri.startswith("runs:/"):
        return forms + "."
    run_id = uri.removeprefix("runs:/").split("/", 1)[0]
    try:
        run = mlflow.MlflowClient().get_run(run_id)
        # Without experiment_ids MLflow searches only the active experiment.
        logged = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}'",
            output_format="list",
        )
    except MlflowException:
        return f"There is no run {run_id} in this tracking store. {forms}."
    if not logged:
        return f"Run {run_id} logged no MLflow model. {forms}."
    # Only models logged with a model card are classifiers predict can use (not the U-Net).
    classifiers, others = [], []
    for model in sorted(logged, key=lambda model: model.name):
        entry = f"runs:/{run_id}/{model.name} (= {model.model_uri})"
        metadata = mlflow.models.get_model_info(model.model_uri).metadata or {}
        (classifiers if "model_card" in metadata else others).append(entry)
    hint = f"Run {run_id} logged "
    if classifiers:
        hint += f"these classifiers: {'; '.join(classifiers)}. Pass one of these URIs as --model"
    else:
        hint += "no classifier with a model card"
    return hint + (f" (other models of the run: {'; '.join(others)})." if others else ".")


def _has_card(model_file: Path) -> bool:
    try:
        beside_model(model_file, "model_card.json")
    except FileNotFoundError:
        return False
    return True


def beside_model(model_file: Path, name: str) -> Path:
    """A file saved with a model: in its folder, or in the Kedro-versioned twin folder.

    The training pipeline saves ``model.keras``, ``model_card.json`` and ``unet.keras`` as
    versioned datasets of one run, so they share a version folder name:
    ``<root>/model.keras/<v>/model.keras`` has ``<root>/<name>/<v>/<name>``. An exported model
    keeps them in one folder instead.

    Args:
        model_file: the model's ``.keras`` file.
        name: the companion's file name.

    Returns:
        The companion's path.

    Raises:
        FileNotFoundError: neither place has it (both are named).
    """
    same_folder = model_file.parent / name
    versioned = model_file.parent.parent.parent / name / model_file.parent.name / name
    for candidate in (same_folder, versioned):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{name} for model {model_file} not found at {same_folder} or {versioned}: keep the "
        f"model's {name} beside it (the training pipeline saves both in the same run)"
    )


def check_card(card: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check that a model card has what predict needs.

    Args:
        card: the card.
        source: the model path or URI, for the message.

    Returns:
        The card as a dict.

    Raises:
        ValueError: an unknown card version or missing keys.
    """
    if card.get("card_version") != MODEL_CARD_VERSION:
        raise ValueError(
            f"model card of {source} has version {card.get('card_version')!r}; this predict "
            f"reads version {MODEL_CARD_VERSION}: retrain the model with this version"
        )
    missing = [
        key
        for key in ("task", "class_names", "input_size", "channels", "preprocessing")
        if key not in card
    ]
    if missing:
        raise ValueError(f"model card of {source} lacks {missing}")
    return dict(card)


def _uses_roi(card: Mapping[str, Any]) -> bool:
    return bool(card["preprocessing"]["params"].get("use_lung_roi", True))


def _load_keras(path: str | Path) -> Any:
    import keras

    return keras.models.load_model(str(path), compile=False)


def load_bundle(model: str, unet: str | None = None) -> ClassifierBundle:
    """Load a classifier, its card and its U-Net from a path or an MLflow model URI.

    Args:
        model: a ``.keras`` file, a Kedro versioned model folder (latest version), or an MLflow
            model URI (``runs:/<run id>/<name>``, ``models:/<id or name/version>``).
        unet: a U-Net ``.keras`` path or MLflow URI overriding the one saved with the model.

    Returns:
        The bundle.

    Raises:
        FileNotFoundError: the model, its card or its U-Net cannot be found.
        ValueError: the card is unusable, or its U-Net digest does not match the U-Net found.
    """
    from_mlflow = is_model_uri(model)
    if from_mlflow:
        import mlflow
        import mlflow.keras

        info = mlflow_model_info(model)
        metadata = info.metadata or {}
        if "model_card" not in metadata:
            raise ValueError(
                f"MLflow model {model} has no model_card metadata: log it with the training "
                "pipeline of this project"
            )
        card = check_card(metadata["model_card"], model)
        classifier = mlflow.keras.load_model(model)
        unet_source = unet or card.get("unet_model_uri")
    else:
        model_file = resolve_model_file(model)
        card = check_card(json.loads(beside_model(model_file, CARD_FILE).read_text()), model)
        classifier = _load_keras(model_file)
        unet_source = unet or (
            str(beside_model(model_file, UNET_FILE)) if _uses_roi(card) else None
        )
    segmenter = None
    if _uses_roi(card):
        if not unet_source:
            raise FileNotFoundError(
                f"model {model} was trained on lung ROI crops but no U-Net came with it: pass "
                "the U-Net (--unet / predict.unet)"
            )
        segmenter = _load_unet(unet_source)
        _check_unet_digest(segmenter, card, unet_source)
    if from_mlflow:
        operating = _mlflow_operating_threshold(model, info.run_id, card)
    else:
        operating = _file_operating_threshold(model_file)
    threshold = _checked_threshold(operating, card, model)
    logger.info("Loaded %s (%s, classes %s)", model, card["task"], card["class_names"])
    return ClassifierBundle(classifier, card, segmenter, str(model), threshold)


def _file_operating_threshold(model_file: Path) -> dict[str, Any] | None:
    try:
        return json.loads(beside_model(model_file, OPERATING_THRESHOLD_FILE).read_text())
    except FileNotFoundError:
        return None


def _mlflow_operating_threshold(
    model: str, run_id: str | None, card: Mapping[str, Any]
) -> dict[str, Any] | None:
    import mlflow

    if not run_id:
        return None
    try:
        return mlflow.artifacts.load_dict(
            f"runs:/{run_id}/{card.get('name', 'model')}/{OPERATING_THRESHOLD_FILE}"
        )
    except Exception as error:  # noqa: BLE001 - MLflow raises several types for a missing file
        logger.info("No operating threshold logged with %s: %s", model, error)
        return None


def _checked_threshold(
    operating: Mapping[str, Any] | None, card: Mapping[str, Any], source: str
) -> float | None:
    if not operating or operating.get("threshold") is None or len(card["class_names"]) != 2:
        return None
    recorded, expected = operating.get("model_weights_sha256"), card.get("model_weights_sha256")
    if recorded and expected and recorded != expected:
        raise ValueError(
            f"{OPERATING_THRESHOLD_FILE} of {source} was chosen for weights {recorded}, but the "
            f"model card describes weights {expected}: re-run evaluation, or pass --threshold"
        )
    return float(operating["threshold"])


def _load_unet(source: str) -> Any:
    if is_model_uri(source):
        import mlflow.keras

        mlflow_model_info(source)  # a clear error for a wrong URI before MLflow's own
        return mlflow.keras.load_model(source)
    return _load_keras(resolve_model_file(source))


def _check_unet_digest(unet: Any, card: Mapping[str, Any], source: str) -> None:
    from covid_cxnet_pipeline.models.digest import weights_digest

    expected = card["preprocessing"].get("unet_weights_sha256")
    actual = weights_digest(unet)
    if expected and actual != expected:
        raise ValueError(
            f"U-Net {source} has weights digest {actual}, but the model was trained on masks of "
            f"the U-Net with digest {expected}: pass the U-Net saved with the model"
        )


def list_input_files(input_dir: str | Path) -> list[Path]:
    """Every file under a folder (recursively, sorted), hidden files excepted.

    Args:
        input_dir: the folder.

    Returns:
        The files; each becomes one row of ``predictions.csv``.

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist")
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def prepare_image(path: Path, bundle: ClassifierBundle) -> np.ndarray:
    """Decode one file and apply exactly the training preprocessing.

    Decode, U-Net lung mask at the U-Net's size (when the model used the lung ROI), ROI crop,
    resize, histogram matching to the training reference and the channel stack
    (``preprocess.chain.model_ready_image``), then the same resize to the model's input as the
    training input pipeline when the two sizes differ.

    Args:
        path: the image or DICOM file.
        bundle: the loaded classifier bundle.

    Returns:
        float32 ``(height, width, channels)`` raw pixels in [0, 255].

    Raises:
        ImageDecodeError: the file cannot be decoded (or anything the chain raises).
    """
    from covid_cxnet_pipeline.imaging import load_grayscale, resize
    from covid_cxnet_pipeline.pipelines.preprocess.chain import model_ready_image

    replay = bundle.card["preprocessing"]
    params = replay["params"]
    gray = load_grayscale(path, **dict(params.get("decode") or {}))
    if bundle.unet is not None:
        height, width = bundle.unet.input_shape[1:3]
        unet_input = resize(gray, (int(height), int(width))).astype(np.float32)
        probabilities = np.asarray(bundle.unet.predict_on_batch(unet_input[None, ..., None]))
        probabilities = probabilities[0, ..., 0]
    else:
        # No crop: the mask only feeds mask_area, which predict does not report.
        probabilities = np.ones(gray.shape, dtype=np.float32)
    reference = (replay.get("histogram_reference") or {}).get("histogram")
    ready = model_ready_image(gray, probabilities, reference, params)["image"]
    return _to_model_input(ready, bundle.card)


def _to_model_input(image: np.ndarray, card: Mapping[str, Any]) -> np.ndarray:
    import tensorflow as tf

    height, width = (int(v) for v in card["input_size"])
    channels = int(card["channels"])
    pixels = image if image.ndim == 3 else image[..., None]
    if pixels.shape[-1] != channels:
        raise ValueError(
            f"preprocessing gives {pixels.shape[-1]} channels but the model takes {channels}"
        )
    pixels = tf.cast(pixels, tf.float32)
    if tuple(pixels.shape[:2]) != (height, width):
        # The same op as training.dataset.make_dataset when a PNG is not at the input size.
        pixels = tf.image.resize(pixels, (height, width), antialias=True)
    return np.asarray(pixels, dtype=np.float32)


def overlay_path(output_dir: Path, input_dir: Path, path: Path) -> Path:
    """Where the Grad-CAM overlay of an input file is written.

    Args:
        output_dir: the output folder.
        input_dir: the input folder.
        path: the input file.

    Returns:
        ``<output>/overlays/<path relative to input>.png`` (sub-folders kept).
    """
    relative = path.relative_to(input_dir)
    return output_dir / OVERLAY_FOLDER / relative.parent / f"{relative.name}.png"


def decision_threshold(bundle: ClassifierBundle, threshold: float | None) -> float | None:
    """The binary decision threshold predict uses: ``threshold``, else the model's operating one.

    Args:
        bundle: from ``load_bundle``.
        threshold: an explicit threshold (``--threshold`` / ``predict.threshold``) or None.

    Returns:
        ``threshold`` when given; else the operating threshold chosen on validation and saved
        with the model; else 0.5. None for multiclass models (argmax).
    """
    if len(bundle.card["class_names"]) != 2:
        return None
    if threshold is not None:
        return float(threshold)
    if bundle.operating_threshold is not None:
        return float(bundle.operating_threshold)
    logger.warning(
        "%s has no operating threshold saved with it: deciding at 0.5 (pass --threshold)",
        bundle.source,
    )
    return 0.5


def _decisions(prob: np.ndarray, threshold: float | None) -> np.ndarray:
    """Predicted class indices: binary at ``threshold`` (0.5 when None), else the argmax."""
    if prob.shape[1] == 2:
        cut = 0.5 if threshold is None else float(threshold)
        return (prob[:, 1] >= cut).astype(np.int64)
    return prob.argmax(axis=1).astype(np.int64)


def _write_overlays(bundle, images, classes: np.ndarray, targets, alpha: float) -> None:
    from PIL import Image

    from covid_cxnet_pipeline.models.gradcam import grad_cam, overlay_heatmap

    # Grad-CAM explains the class reported in predictions.csv (threshold included).
    heatmaps = grad_cam(bundle.model, np.stack(images), class_index=classes)
    for image, heatmap, target in zip(images, heatmaps, targets, strict=True):
        # Channel 0 is the matched original (see preprocess.channels); the overlay sits on it.
        base = np.clip(np.rint(image[..., 0]), 0, 255).astype(np.uint8)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(overlay_heatmap(base, heatmap, alpha=alpha)).save(target)


def predict_directory(
    bundle: ClassifierBundle,
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    threshold: float | None = None,
    batch_size: int = 16,
    overlay_alpha: float = 0.4,
) -> pd.DataFrame:
    """Predict every file under ``input_dir``; write ``predictions.csv`` and Grad-CAM overlays.

    A file that cannot be decoded or preprocessed gets a row with its ``error`` and empty
    probabilities; the run goes on.

    Args:
        bundle: from ``load_bundle``.
        input_dir: folder of images and DICOM files (searched recursively).
        output_dir: where ``predictions.csv`` and ``overlays/`` are written.
        threshold: binary only: positive when p(positive) >= threshold; None = the operating
            threshold chosen on validation and saved with the model (0.5 when there is none).
        batch_size: images per model call.
        overlay_alpha: heatmap opacity in the overlays.

    Returns:
        The predictions table: ``path``, one ``prob_<class>`` per class, ``prediction``,
        ``error`` (empty when the file was predicted).
    """
    source, target = Path(input_dir), Path(output_dir)
    threshold = decision_threshold(bundle, threshold)
    if threshold is not None:
        logger.info("Binary decision: %s when p >= %.4f", bundle.card["class_names"][1], threshold)
    files = [path for path in list_input_files(source) if target not in path.parents]
    names = [str(name) for name in bundle.card["class_names"]]
    columns = ["path", *probability_columns(names), "prediction", "error"]
    rows: list[dict[str, Any]] = []
    pending: list[tuple[Path, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        images = [image for _, image in pending]
        outputs = np.asarray(bundle.model.predict_on_batch(np.stack(images)))
        prob = probability_matrix(outputs, len(names))
        classes = _decisions(prob, threshold)
        overlays = [overlay_path(target, source, p) for p, _ in pending]
        _write_overlays(bundle, images, classes, overlays, overlay_alpha)
        for (path, _), values, decision in zip(pending, prob, classes, strict=True):
            row = {"path": str(path), "prediction": names[int(decision)], "error": ""}
            row.update(zip(probability_columns(names), values.tolist(), strict=True))
            rows.append(row)
        pending.clear()

    for path in files:
        try:
            pending.append((path, prepare_image(path, bundle)))
        except Exception as error:  # noqa: BLE001 - any unreadable file becomes an error row
            logger.warning("Skipping %s: %s", path, error)
            rows.append(
                {"path": str(path), "prediction": "", "error": f"{type(error).__name__}: {error}"}
            )
        if len(pending) >= batch_size:
            flush()
    flush()
    table = pd.DataFrame(rows, columns=columns)
    order = {str(path): position for position, path in enumerate(files)}
    table = table.sort_values("path", key=lambda s: s.map(order)).reset_index(drop=True)
    target.mkdir(parents=True, exist_ok=True)
    table.to_csv(target / PREDICTIONS_FILE, index=False)
    n_errors = int((table["error"] != "").sum())
    logger.info(
        "Predicted %d of %d files under %s with %s (%d errors); wrote %s",
        len(table) - n_errors,
        len(table),
        source,
        bundle.source,
        n_errors,
        target / PREDICTIONS_FILE,
    )
    return table
