"""Per-image steps of the preprocess pipeline, as plain functions that worker processes can run.

Nothing here imports TensorFlow: worker processes import this module, and the U-Net predicts in
the Kedro process. Every derived file is named by a hash of what produced it (the source
image's sha256, the parameters of each step, the U-Net's weight digest, the reference
histogram's digest) and ``CHAIN_VERSION``, written atomically, and skipped when it already
exists, so a re-run recomputes nothing. The ``predict`` pipeline can call
:func:`model_ready_image` to prepare a new image exactly as the training images were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from covid_cxnet_pipeline.imaging import (
    crop_roi,
    load_grayscale,
    match_histogram,
    postprocess_mask,
    resize,
    stack_channels,
)

logger = logging.getLogger(__name__)

KEY_LENGTH = 32  # hex characters of sha256 kept in file names (128 bits)

# Version of the image maths behind every derived file (decoding, resizing, mask assembly and
# post-processing, ROI crop, histogram matching, CLAHE / BEASF / HE channels). It enters every
# key that :func:`digest` makes, so the parameters alone do not decide reuse: bump it in the same
# commit as any change to those functions that alters their output pixels, and every mask, ROI,
# segmentation pair and model input is recomputed on the next run instead of silently reused.
# History: 1 = first release.
CHAIN_VERSION = 1


def digest(payload: Any) -> str:
    """A stable hex key for a JSON-serialisable payload (dict keys sorted) and ``CHAIN_VERSION``.

    Args:
        payload: Parameters and upstream keys, e.g. ``{"image": sha256, "roi": {...}}``.

    Returns:
        The first ``KEY_LENGTH`` hex characters of the sha256 of the canonical JSON of
        ``{"chain_version": CHAIN_VERSION, "payload": payload}``.
    """
    versioned = {"chain_version": CHAIN_VERSION, "payload": payload}
    text = json.dumps(versioned, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | tuple):
        return list(value)
    raise TypeError(f"cannot hash a {type(value).__name__} parameter value: {value!r}")


def size_pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    """``(height, width)`` from an int or a 2-item list, naming the parameter when wrong.

    Args:
        size: The configured size.
        name: Parameter name for the error message.

    Returns:
        ``(height, width)``.
    """
    if isinstance(size, int):
        return size, size
    values = [int(value) for value in size]
    if len(values) != 2 or min(values) < 1:
        raise ValueError(f"{name} must be an int or [height, width] of positive ints, got {size}")
    return values[0], values[1]


def write_png_atomic(pixels: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a uint8 gray (H x W) or RGB (H x W x 3) PNG with Pillow, atomically.

    Pillow keeps channel 0 first on disk (``cv2.imwrite`` would assume BGR). The file is written
    under a temporary name and renamed, so a crash never leaves a partial PNG that a re-run
    would take for finished work.

    Args:
        pixels: uint8 array.
        path: Destination ``.png``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    Image.fromarray(np.ascontiguousarray(pixels)).save(temporary, format="PNG")
    os.replace(temporary, target)


def write_json_atomic(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a small JSON sidecar atomically (see :func:`write_png_atomic`).

    Args:
        payload: JSON-serialisable mapping.
        path: Destination ``.json``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload, sort_keys=True))
    os.replace(temporary, target)


def read_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PNG this module wrote, as stored (uint8, gray or RGB).

    Args:
        path: The PNG.

    Returns:
        uint8 array.
    """
    with Image.open(path) as image:
        return np.asarray(image).copy()


@contextmanager
def worker_pool(workers: int, start_method: str = "spawn") -> Iterator[Callable[..., Iterator]]:
    """A ``map`` over worker processes, or the built-in ``map`` for one worker.

    Workers start with ``spawn`` by default: the Kedro process holds TensorFlow's threads,
    and forking a process with running threads can deadlock the child.

    Args:
        workers: Number of processes; 1 or less runs everything in this process.
        start_method: ``spawn``, ``forkserver`` or ``fork``.

    Yields:
        A function ``mapper(function, tasks, chunksize=...)`` returning results in task order.
    """
    if workers <= 1:
        yield lambda function, tasks, chunksize=1: map(function, tasks)
        return
    context = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield lambda function, tasks, chunksize=1: pool.map(function, tasks, chunksize=chunksize)


def chunked(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items.

    Args:
        items: A sequence.
        size: Slice length (>= 1).

    Returns:
        An iterator of slices.
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return (items[start : start + size] for start in range(0, len(items), size))


# --- Step 1: the image at the U-Net's size, its lung probabilities, the post-processed mask ----


def unet_input_task(task: tuple[str, Mapping[str, Any], tuple[int, int]]) -> np.ndarray:
    """Decode one image and resize it to the U-Net's input size (worker task).

    Args:
        task: ``(image path, decode options, (height, width))``.

    Returns:
        uint8 array of shape ``(height, width)``.
    """
    path, decode_options, unet_size = task
    return resize(load_grayscale(path, **decode_options), unet_size)


def write_probabilities(probabilities: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Store a U-Net probability map as float32 ``.npy``, atomically.

    Kept exact (not quantised to 8 bits) so that a mask post-processed from the stored map is
    the mask post-processed from a fresh prediction, pixel for pixel.

    Args:
        probabilities: 2-D probabilities.
        path: Destination ``.npy``.
    """
    write_npy_atomic(np.asarray(probabilities, dtype=np.float32), path)


def write_npy_atomic(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write an array as ``.npy`` atomically, with its dtype (see :func:`write_png_atomic`).

    Args:
        array: Any numpy array.
        path: Destination ``.npy``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name ends in .npy, otherwise np.save would append it.
    temporary = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npy")
    np.save(temporary, array)
    os.replace(temporary, target)


def lung_mask_task(task: tuple[str, str, Mapping[str, Any]]) -> float:
    """Post-process one stored probability map and write it as a 0/255 PNG (worker task).

    Args:
        task: ``(probabilities .npy, mask PNG path, lung_mask parameters)``, the parameters
            being :func:`~covid_cxnet_pipeline.imaging.postprocess_mask` arguments.

    Returns:
        The mask's area as a fraction of the image.
    """
    probability_path, mask_path, mask_params = task
    mask = postprocess_mask(np.load(probability_path), **mask_params)
    write_png_atomic(mask.astype(np.uint8) * 255, mask_path)
    write_json_atomic({"mask_area": float(mask.mean())}, Path(mask_path).with_suffix(".json"))
    return float(mask.mean())


def read_mask_area(mask_path: str | os.PathLike[str]) -> float:
    """The lung area fraction stored beside a mask PNG by :func:`lung_mask_task`.

    Args:
        mask_path: The mask PNG.

    Returns:
        The area fraction.
    """
    return float(json.loads(Path(mask_path).with_suffix(".json").read_text())["mask_area"])


# --- Step 2: lung ROI crop (or full image) resized to the classifier's input size -------------


def roi_image(
    image: np.ndarray,
    lung_mask: np.ndarray,
    *,
    use_lung_roi: bool,
    roi_params: Mapping[str, Any],
    input_size: tuple[int, int],
    keep_aspect: bool = False,
) -> tuple[np.ndarray, np.ndarray, bool, str]:
    """Crop an image to its lungs (or keep it whole) and resize image and mask to the input size.

    The mask (any resolution, usually the U-Net's) is first scaled to the image with
    nearest-neighbour, so image and mask are cropped with exactly the same box and the written
    mask lines up with the model-ready image pixel for pixel.

    Args:
        image: 2-D uint8 image at its decoded size.
        lung_mask: 2-D binary lung mask.
        use_lung_roi: Crop to the lungs; False keeps the full image (``fallback`` is then
            False and ``reason`` is ``"lung ROI disabled"``).
        roi_params: :func:`~covid_cxnet_pipeline.imaging.crop_roi` keyword arguments
            (``margin`` and the plausibility rules).
        input_size: ``(height, width)`` of the result.
        keep_aspect: Pad instead of stretching when resizing.

    Returns:
        ``(image, mask, fallback, reason)``: uint8 image and 0/255 mask of ``input_size``,
        whether the crop fell back to the full image, and why.
    """
    full_mask = cv2.resize(
        (lung_mask > 0).astype(np.uint8),
        (image.shape[1], image.shape[0]),
        interpolation=cv2.INTER_NEAREST,
    )
    if use_lung_roi:
        # One crop of image and mask stacked: the plausibility rules run once, same box for both.
        both, fallback, reason = crop_roi(np.dstack([image, full_mask]), full_mask, **roi_params)
        cropped = np.ascontiguousarray(both[..., 0])
        cropped_mask = np.ascontiguousarray(both[..., 1])
    else:
        cropped, cropped_mask, fallback, reason = image, full_mask, False, "lung ROI disabled"
    resized = resize(cropped, input_size, keep_aspect=keep_aspect)
    resized_mask = resize(
        cropped_mask, input_size, keep_aspect=keep_aspect, interpolation=cv2.INTER_NEAREST
    )
    return resized, (resized_mask > 0).astype(np.uint8) * 255, fallback, reason


def finished_roi(roi_path: str | os.PathLike[str]) -> tuple[bool, str, bool] | None:
    """The stored result of :func:`roi_task` when its three files exist, else None.

    Args:
        roi_path: The ROI image PNG.

    Returns:
        ``(fallback, reason, False)`` or None.
    """
    roi_file = Path(roi_path)
    sidecar = roi_file.with_suffix(".json")
    if not (roi_file.exists() and roi_mask_path(roi_file).exists() and sidecar.exists()):
        return None
    stored = json.loads(sidecar.read_text())
    return bool(stored["roi_fallback"]), str(stored["reason"]), False


def roi_task(task: tuple[str, str, str, Mapping[str, Any]]) -> tuple[bool, str, bool]:
    """Write the ROI image, its aligned mask and a JSON sidecar for one image (worker task).

    Skips all work when the three files exist.

    Args:
        task: ``(image path, lung mask PNG, ROI PNG path, settings)`` where settings holds
            ``decode``, ``use_lung_roi``, ``roi``, ``input_size`` and ``keep_aspect``.

    Returns:
        ``(fallback, reason, computed)``.
    """
    image_path, mask_path, roi_path, settings = task
    finished = finished_roi(roi_path)
    if finished is not None:
        return finished
    image = load_grayscale(image_path, **settings["decode"])
    resized, resized_mask, fallback, reason = roi_image(
        image,
        read_png(mask_path),
        use_lung_roi=bool(settings["use_lung_roi"]),
        roi_params=settings["roi"],
        input_size=tuple(settings["input_size"]),
        keep_aspect=bool(settings["keep_aspect"]),
    )
    roi_file = Path(roi_path)
    write_png_atomic(resized, roi_file)
    write_png_atomic(resized_mask, roi_mask_path(roi_file))
    # The sidecar comes last: its presence means the two PNGs are complete.
    write_json_atomic({"roi_fallback": fallback, "reason": reason}, roi_file.with_suffix(".json"))
    return fallback, reason, True


def roi_mask_path(roi_path: str | os.PathLike[str]) -> Path:
    """Where the mask aligned with an ROI image is written.

    Args:
        roi_path: The ROI image PNG.

    Returns:
        ``<stem>_mask.png`` beside it.
    """
    path = Path(roi_path)
    return path.with_name(f"{path.stem}_mask.png")


# --- Step 3: histogram matching and the channel stack ------------------------------------------


def enhance_roi(
    gray: np.ndarray,
    reference_histogram: np.ndarray | None,
    channels: Sequence[str],
    enhance_params: Mapping[str, Any],
) -> np.ndarray:
    """Match an ROI image to the reference histogram (if given) and stack its channels.

    Args:
        gray: 2-D uint8 image at the input size.
        reference_histogram: 256 probabilities from the training split, or None to skip
            matching.
        channels: Three names among original / clahe / beasf / he.
        enhance_params: ``clahe_clip_limit``, ``clahe_tile_grid_size``, ``beasf_gamma``.

    Returns:
        uint8 array ``(H, W, 3)``.
    """
    matched = gray if reference_histogram is None else match_histogram(gray, reference_histogram)
    return stack_channels(
        matched,
        tuple(channels),
        clahe_clip_limit=float(enhance_params["clahe_clip_limit"]),
        clahe_tile_grid_size=tuple(enhance_params["clahe_tile_grid_size"]),
        beasf_gamma=float(enhance_params["beasf_gamma"]),
    )


def model_input_task(task: tuple[str, str, np.ndarray | None, Mapping[str, Any]]) -> bool:
    """Write one model-ready 3-channel PNG from its ROI image (worker task); skip if present.

    Args:
        task: ``(ROI PNG, output PNG, reference histogram or None, settings)`` where settings
            holds ``channels`` and ``enhance``.

    Returns:
        True when the PNG was computed, False when it already existed.
    """
    roi_path, output_path, reference, settings = task
    if Path(output_path).exists():
        return False
    stacked = enhance_roi(read_png(roi_path), reference, settings["channels"], settings["enhance"])
    write_png_atomic(stacked, output_path)
    return True


def model_ready_image(
    image: np.ndarray,
    lung_probabilities: np.ndarray,
    reference_histogram: np.ndarray | None,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The whole chain for one decoded image, in memory (for ``predict`` on new images).

    Args:
        image: 2-D uint8 image as decoded by ``load_grayscale``.
        lung_probabilities: The U-Net's output for this image, 2-D at the U-Net size.
        reference_histogram: The ``histogram_reference`` dataset's ``histogram`` (256 values),
            or None when histogram matching is disabled.
        params: The ``preprocess`` parameters.

    Returns:
        ``{"image": (H, W, 3) uint8, "lung_mask": (H, W) uint8 0/255, "mask_area": float,
        "roi_fallback": bool, "reason": str}``.
    """
    mask = postprocess_mask(lung_probabilities, **params["lung_mask"])
    resized, resized_mask, fallback, reason = roi_image(
        image,
        mask,
        use_lung_roi=bool(params["use_lung_roi"]),
        roi_params=params["roi"],
        input_size=size_pair(params["resize"]["size"], "preprocess.resize.size"),
        keep_aspect=bool(params["resize"]["keep_aspect"]),
    )
    use_reference = bool(params["histogram_matching"]["enabled"])
    stacked = enhance_roi(
        resized,
        np.asarray(reference_histogram) if use_reference else None,
        params["channels"],
        params["enhance"],
    )
    return {
        "image": stacked,
        "lung_mask": resized_mask,
        "mask_area": float(mask.mean()),
        "roi_fallback": fallback,
        "reason": reason,
    }
