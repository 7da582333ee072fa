"""Pretrained weights files (CheXNet, ImageNet): fetch from a path or URL, verify sha256, load.

CheXNet (Rajpurkar et al. 2017, arXiv:1711.05225) is a DenseNet-121 trained on ChestX-ray14 with
a 14-class sigmoid head. Its Keras release (github.com/brucechou1983/CheXNet-Keras, MIT licence,
file ``brucechou1983_CheXNet_Keras_0.3.0_weights.h5``) is a legacy Keras 2 HDF5 weights file of
the flat model ``DenseNet121(include_top=False, pooling="avg") -> Dense(14, sigmoid)``. Keras 2
named the stem layers ``conv1/conv``, Keras 3 names them ``conv1_conv``, so the file is loaded
topologically (by layer order, as the COVID-CXNet seed does), not by name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras

from covid_cxnet_pipeline.models.densenet import (
    DENSENET121_BLOCKS,
    WeightsUnavailableError,
    build_densenet_backbone,
)

logger = logging.getLogger(__name__)

CHEXNET_CLASSES = 14
CHEXNET_FILE_NAME = "brucechou1983_CheXNet_Keras_0.3.0_weights.h5"
_LEGACY_H5_SUFFIXES = (".h5", ".hdf5")


def fetch_weights_file(
    source_cfg: Mapping, label: str, *, require_sha256: bool = True, config_key: str = ""
) -> Path:
    """Find (or download) a weights file and check its sha256.

    ``path`` is where the file is, or where it is downloaded to from ``url`` when absent.

    Args:
        source_cfg: ``{"path": ..., "url": ..., "sha256": ..., "connect_timeout_s": 10,
            "read_timeout_s": 60, "max_bytes": None}``; ``url`` and the timeouts are optional.
        label: human name for messages, e.g. ``"CheXNet"``.
        require_sha256: refuse to use a file when no sha256 is configured.
        config_key: the configuration block, for messages (e.g. ``"weights.chexnet"``).

    Returns:
        The verified local path.

    Raises:
        WeightsUnavailableError: not configured, missing without a URL, download failed, wrong
            suffix or sha256 mismatch. The message names the path/URL, the expected and actual
            sha256 and what to do. Its ``absent`` is true when no file is at ``path`` and
            none could be downloaded for a reason other than a sha256 mismatch.
    """
    key = config_key or f"weights.{label.lower()}"
    path_value = source_cfg.get("path")
    url = source_cfg.get("url") or None
    expected = (source_cfg.get("sha256") or "").strip().lower() or None
    if not path_value:
        raise WeightsUnavailableError(
            f"{label} weights: no {key}.path configured. Set {key}.path to the local weights "
            f"file (and {key}.url to download it there when absent).",
            absent=True,
        )
    path = Path(path_value)
    if path.suffix.lower() not in _LEGACY_H5_SUFFIXES:
        raise WeightsUnavailableError(
            f"{label} weights file {path} must end in .h5 or .hdf5 (Keras chooses its legacy "
            f"HDF5 reader by suffix); rename it and update {key}.path.",
            absent=not path.is_file(),
        )
    if require_sha256 and expected is None:
        present = path.is_file()
        found = (
            f" (actual sha256 {_sha256_file(path)}, configured {key}.sha256 unset)"
            if present
            else ""
        )
        hint = f" (`sha256sum {path}`)" if present else ""
        raise WeightsUnavailableError(
            f"{label} weights: {key}.sha256 is not set, so {path} cannot be verified{found}. "
            f"Put the file's sha256{hint} in {key}.sha256 once you trust the file.",
            absent=not present,
        )
    if not path.is_file():
        if url is None:
            raise WeightsUnavailableError(
                f"{label} weights file {path} does not exist and {key}.url is not set. Put the "
                f"file there (for CheXNet: {CHEXNET_FILE_NAME} from the CheXNet-Keras release) "
                f"or set {key}.url to download it.",
                absent=True,
            )
        # download_file hashed the body as it arrived: no second read of the file.
        actual = _download(
            url, path, expected=expected, source_cfg=source_cfg, label=label, key=key
        )
    else:
        actual = _sha256_file(path)
    if expected is not None and actual != expected:
        raise WeightsUnavailableError(
            f"{label} weights file {path} has sha256 {actual}, expected {expected} "
            f"({key}.sha256). Replace the file with the right one (delete it to re-download "
            f"from {key}.url), or update {key}.sha256 if you trust this file."
        )
    if expected is None:
        logger.warning("%s weights %s used unverified (sha256 %s)", label, path, actual)
    return path


def _sha256_file(path: Path) -> str:
    # Imported here: the download module pulls requests/PIL, which model building never needs.
    from covid_cxnet_pipeline.download import sha256_file

    return sha256_file(path)


def _download(
    url: str,
    path: Path,
    *,
    expected: str | None,
    source_cfg: Mapping,
    label: str,
    key: str,
) -> str:
    """Download ``url`` to ``path``, verified against ``expected`` when set; its hex sha256.

    The body goes to a staging file beside ``path`` and is renamed onto it only once its sha256
    matches, so a wrong download never sits at ``path``. The checksum is compared here rather
    than by ``download_file``, so a mismatch (a wrong file) is told apart from a failed
    download (no file) by the digests themselves.
    """
    # Imported here: the download module pulls requests/PIL, which model building never needs.
    from covid_cxnet_pipeline.download import DownloadError, download_file

    timeout = (
        float(source_cfg.get("connect_timeout_s", 10.0)),
        float(source_cfg.get("read_timeout_s", 60.0)),
    )
    max_bytes = source_cfg.get("max_bytes")
    staging = path.with_name(f".{path.name}.unverified")
    logger.info("Downloading %s weights from %s to %s", label, url, path)
    try:
        try:
            result = download_file(
                url, staging, timeout=timeout, max_bytes=int(max_bytes) if max_bytes else None
            )
        except DownloadError as error:
            raise WeightsUnavailableError(
                f"{label} weights could not be downloaded from {url} to {path}: "
                f"{error.reason}. Check {key}.url and {key}.sha256 (expected {expected}), or "
                f"put the file at {path}.",
                absent=True,
            ) from error
        if expected is not None and result.sha256 != expected:
            raise WeightsUnavailableError(
                f"{label} weights could not be downloaded from {url} to {path}: sha256 "
                f"mismatch: got {result.sha256}, expected {expected}; the file was not kept. "
                f"Check {key}.url and {key}.sha256 (expected {expected}), or put the file at "
                f"{path}."
            )
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)
    logger.info("%s weights: %d bytes, sha256 %s", label, result.size, result.sha256)
    return result.sha256


def build_chexnet_model(
    input_shape: Sequence[int],
    blocks: Sequence[int] = DENSENET121_BLOCKS,
    input_scaling: str = "none",
) -> tuple[keras.Model, keras.Model]:
    """The CheXNet-Keras architecture: DenseNet backbone, global average pooling, Dense(14).

    Args:
        input_shape: ``(height, width, 3)``; DenseNet weights do not depend on the image size.
        blocks: dense-block sizes (DenseNet-121 by default; tests use smaller ones).
        input_scaling: weightless input scaling inside the backbone.

    Returns:
        ``(chexnet, backbone)``: the 14-output model and its feature extractor (sharing layers).
    """
    backbone = build_densenet_backbone(input_shape, blocks=blocks, input_scaling=input_scaling)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    findings = keras.layers.Dense(CHEXNET_CLASSES, activation="sigmoid", name="predictions")(pooled)
    return keras.Model(backbone.inputs[0], findings, name="chexnet"), backbone


def load_chexnet_backbone(
    weights_file: str | Path,
    input_shape: Sequence[int],
    blocks: Sequence[int] = DENSENET121_BLOCKS,
    input_scaling: str = "none",
) -> keras.Model:
    """Load a CheXNet-Keras weights file and return its DenseNet feature extractor.

    Args:
        weights_file: a verified legacy HDF5 weights file (see ``fetch_weights_file``).
        input_shape: ``(height, width, 3)``.
        blocks: dense-block sizes the file was saved with.
        input_scaling: weightless input scaling inside the backbone.

    Returns:
        The backbone (no pooling, output = final ReLU feature maps) carrying CheXNet's weights.

    Raises:
        WeightsUnavailableError: the file is not a CheXNet-layout weights file.
    """
    chexnet, backbone = build_chexnet_model(input_shape, blocks, input_scaling)
    try:
        chexnet.load_weights(str(weights_file))
    except (ValueError, OSError, KeyError) as error:
        raise WeightsUnavailableError(
            f"CheXNet weights file {weights_file} does not fit a DenseNet (blocks "
            f"{list(blocks)}) with a {CHEXNET_CLASSES}-class head: {error}. Use the CheXNet-Keras "
            f"release file ({CHEXNET_FILE_NAME})."
        ) from error
    logger.info("Loaded CheXNet weights from %s", weights_file)
    return backbone
