"""tf.data input pipelines that stream the model-ready PNGs of one split from disk.

Images are never held in RAM as a whole: the dataset is built from the ``path`` column of
``model_input_index`` and every batch is read, decoded, resized when needed and augmented on the
fly. Pixel values come out as float32 in [0, 255] (the PNG's own values): every classifier from
``covid_cxnet_pipeline.models`` scales its input itself (unit or ImageNet mean/std), so training,
evaluation and inference all feed the same raw pixels.

Labels: for the ``binary`` task a float tensor of shape ``(1,)`` (1.0 for the positive class,
the last entry of ``classes``, e.g. ``covid``); for ``multiclass`` a one-hot float vector in the
order of ``classes``. Labels are always hard: label smoothing is applied by the loss
(see :func:`covid_cxnet_pipeline.training.trainer.train_model`), so class weights and metrics
see the true classes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight

from covid_cxnet_pipeline.schema import CLASS_LABELS, SPLITS
from covid_cxnet_pipeline.training.augment import (
    AugmentConfig,
    augment_image,
    validate_augment_config,
)

logger = logging.getLogger(__name__)

TASKS = ("binary", "multiclass")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Every complete PNG ends with the IEND chunk (type + CRC); a truncated write does not.
_PNG_IEND = b"IEND\xaeB`\x82"
_REQUIRED_COLUMNS = ("path", "label", "split")
_REGENERATE_HINT = (
    "Re-run the preprocess pipeline (`kedro run --pipeline=preprocess`) to regenerate the "
    "model-ready images, or remove these rows from model_input_index."
)


def _validate_task(task: str, classes: Sequence[str]) -> list[str]:
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not one of {TASKS}")
    class_list = [str(name) for name in classes]
    if len(set(class_list)) != len(class_list):
        raise ValueError(f"classes {class_list} contain duplicates")
    if task == "multiclass" and len(class_list) < 2:
        raise ValueError(f"multiclass needs at least two classes, got {class_list}")
    if task == "binary" and not class_list:
        raise ValueError("binary needs classes whose last entry is the positive class (covid)")
    return class_list


def split_rows(index_df: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split, in the order an unshuffled dataset yields them.

    Args:
        index_df: ``model_input_index`` (needs ``path``, ``label``, ``split``).
        split: One of ``train``, ``validation``, ``test``, ``external``.

    Returns:
        The split's rows with a fresh 0..n-1 index (use it to align predictions).

    Raises:
        ValueError: If columns are missing, the split name is unknown or the split is empty.
    """
    missing = [column for column in _REQUIRED_COLUMNS if column not in index_df.columns]
    if missing:
        raise ValueError(f"model_input_index lacks column(s) {missing}; it has {list(index_df)}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    rows = index_df.loc[index_df["split"] == split].reset_index(drop=True)
    if rows.empty:
        present = sorted(index_df["split"].dropna().astype(str).unique())
        raise ValueError(f"model_input_index has no rows for split {split!r} (present: {present})")
    return rows


def encode_labels(labels: Iterable[str], task: str, classes: Sequence[str]) -> np.ndarray:
    """Turn label strings into integer class indices.

    Args:
        labels: Label strings from ``model_input_index.label``.
        task: ``binary`` (index 1 for ``classes[-1]``, 0 for the others) or ``multiclass``
            (the position in ``classes``). In binary mode every schema label counts as
            negative only when the negative class is named ``not_<positive>`` (``classes`` of
            one entry, or e.g. ``[not_covid, covid]``); with a named negative such as
            ``[normal, covid]`` only the listed labels are accepted.
        classes: Class names; for binary, the last entry is the positive class.

    Returns:
        int64 array of class indices.

    Raises:
        ValueError: For a label the task cannot encode, naming it and how often it occurs.
    """
    class_list = _validate_task(task, classes)
    values = pd.Series(list(labels), dtype="object").astype(str)
    allowed = set(class_list)
    negative = output_class_names(task, class_list)[0] if task == "binary" else None
    # Only a negative class named not_<positive> truthfully covers every other label; with
    # classes like [normal, covid], CAP would silently become 0 and be reported as "normal".
    if negative == f"not_{class_list[-1]}":
        allowed |= set(CLASS_LABELS)
    unknown = values[~values.isin(allowed)]
    if not unknown.empty:
        counts = unknown.value_counts().to_dict()
        hint = (
            f" (the binary negative class {negative!r} would misname them; use classes "
            f"[not_{class_list[-1]}, {class_list[-1]}] to group every other label as negative)"
            if negative is not None and negative != f"not_{class_list[-1]}"
            else ""
        )
        raise ValueError(
            f"Labels {counts} cannot be encoded for task {task!r} with classes {class_list}"
            f"{hint}; filter them out of model_input_index or add them to the classes parameter."
        )
    if task == "binary":
        return (values == class_list[-1]).to_numpy().astype(np.int64)
    lookup = {name: position for position, name in enumerate(class_list)}
    return values.map(lookup).to_numpy().astype(np.int64)


def output_class_names(task: str, classes: Sequence[str]) -> list[str]:
    """Names of the model's output classes, in output order.

    Args:
        task: ``binary`` or ``multiclass``.
        classes: The configured classes.

    Returns:
        For multiclass the classes; for binary ``[negative, positive]`` where the negative name
        is ``classes[0]`` when two classes are given, else ``not_<positive>``.
    """
    class_list = _validate_task(task, classes)
    if task == "multiclass":
        return class_list
    if len(class_list) == 2:
        return class_list
    return [f"not_{class_list[-1]}", class_list[-1]]


def check_image_files(paths: Iterable[str], deep: bool = False) -> None:
    """Cheaply check that every PNG exists and is complete, before TensorFlow touches it.

    Reads only the 8-byte signature and the last bytes (the IEND chunk) of each file, so it
    costs two small reads per image while turning TensorFlow's anonymous decode errors into a
    message that names the files. ``deep=True`` also decodes every image fully (slow; for
    hunting a file that is damaged inside).

    Args:
        paths: PNG paths.
        deep: Decode each image completely as well.

    Raises:
        FileNotFoundError: If any file is missing (lists up to five, with the total count).
        ValueError: If any file is not a PNG or is truncated.
    """
    missing: list[str] = []
    corrupt: list[str] = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                head = handle.read(8)
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - 32))
                tail = handle.read()
        except FileNotFoundError:
            missing.append(str(path))
            continue
        complete = head == _PNG_SIGNATURE and _PNG_IEND in tail
        if not complete or (deep and not _decodes(str(path))):
            corrupt.append(str(path))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} model-ready image(s) missing, e.g. {missing[:5]}. {_REGENERATE_HINT}"
        )
    if corrupt:
        raise ValueError(
            f"{len(corrupt)} model-ready image(s) are not complete PNG files, e.g. "
            f"{corrupt[:5]}. {_REGENERATE_HINT}"
        )


def _decodes(path: str) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def _as_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = (int(value) for value in image_size)
    return height, width


def _label_tensor(indices: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    if task == "binary":
        return indices.astype(np.float32).reshape(-1, 1)
    return np.eye(n_classes, dtype=np.float32)[indices]


def make_dataset(
    index_df: pd.DataFrame,
    split: str,
    task: str,
    classes: Sequence[str],
    image_size: int | Sequence[int],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    augment_cfg: Mapping[str, Any] | AugmentConfig | None = None,
    cache: bool = False,
    channels: int = 3,
    check_files: bool = True,
) -> tf.data.Dataset:
    """Build a batched ``(images, labels)`` dataset streaming one split's PNGs from disk.

    Order: when ``shuffle`` is False, the rows of :func:`split_rows` in their order (use that
    for validation/test and prediction). When True, the file list is shuffled with ``seed``
    and reshuffled every epoch (deterministically: epoch k of two runs sees the same order).
    Augmentation draws one seed per image from ``tf.data.Dataset.random(seed)``, also fresh
    per epoch and reproducible.

    Args:
        index_df: ``model_input_index`` (columns ``path``, ``label``, ``split``).
        split: The split to read.
        task: ``binary`` or ``multiclass``.
        classes: Class names (see :func:`encode_labels`).
        image_size: Model input size, an int or ``(height, width)``; images of another size are
            resized (bilinear, antialiased).
        batch_size: Images per batch (the last batch may be smaller).
        shuffle: Shuffle the files (training only).
        seed: Seed for shuffling and augmentation.
        augment_cfg: The ``augment`` parameter block, or None for none (validation/test).
        cache: Keep decoded, un-augmented images in RAM after the first epoch. Only for
            small datasets: it costs ``n * height * width * channels * 4`` bytes.
        channels: Channels decoded from each PNG (3 for the model-ready stacks).
        check_files: Check up front that every PNG exists and is complete
            (:func:`check_image_files`).

    Returns:
        A ``tf.data.Dataset`` of ``(float32 [batch, h, w, channels] in [0, 255], float32
        labels)``.

    Raises:
        ValueError: For bad arguments, labels, augmentation settings or corrupt PNGs.
        FileNotFoundError: If a PNG is missing.
    """
    class_list = _validate_task(task, classes)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    height, width = _as_size(image_size)
    augment = validate_augment_config(augment_cfg)
    rows = split_rows(index_df, split)
    paths = rows["path"].astype(str).tolist()
    if check_files:
        check_image_files(paths)
    labels = _label_tensor(encode_labels(rows["label"], task, class_list), task, len(class_list))
    n_images = len(paths)
    logger.info(
        "Dataset %s/%s: %d images, %dx%dx%d, batch %d, shuffle=%s, augment=%s",
        split,
        task,
        n_images,
        height,
        width,
        channels,
        batch_size,
        shuffle,
        not augment.is_identity,
    )

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_png(tf.io.read_file(path), channels=channels, dtype=tf.uint8)
        image = tf.cast(image, tf.float32)
        same_size = tf.logical_and(tf.shape(image)[0] == height, tf.shape(image)[1] == width)
        image = tf.cond(
            same_size,
            lambda: image,
            lambda: tf.image.resize(image, (height, width), antialias=True),
        )
        return tf.ensure_shape(image, (height, width, channels)), label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    if cache:
        logger.warning(
            "Caching %d decoded images of split %s in RAM (about %.1f MB)",
            n_images,
            split,
            n_images * height * width * channels * 4 / 1e6,
        )
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.cache()
    if shuffle:
        # Shuffling the file list (not images) lets the buffer hold the whole split cheaply.
        dataset = dataset.shuffle(n_images, seed=seed, reshuffle_each_iteration=True)
    if not augment.is_identity:
        # One int64 per image from a seeded stream, fresh each epoch: each element carries its
        # own seed, so the parallel map stays deterministic without stateful random ops.
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip((dataset, randoms))

    def process(*element: Any) -> tuple[tf.Tensor, tf.Tensor]:
        if augment.is_identity:
            (path_or_image, label) = element
        else:
            (path_or_image, label), random_value = element
        image, label = (path_or_image, label) if cache else load(path_or_image, label)
        if not augment.is_identity:
            image_seed = tf.stack([random_value, tf.constant(seed, tf.int64)])
            image = augment_image(image, image_seed, augment, max_value=255.0)
        return image, label

    dataset = dataset.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def class_weights(
    index_df: pd.DataFrame, split: str, task: str, classes: Sequence[str]
) -> dict[int, float]:
    """Balanced class weights (``n / (k * count_c)``) for Keras ``class_weight``.

    Args:
        index_df: ``model_input_index``.
        split: The split the weights are computed on (``train``).
        task: ``binary`` or ``multiclass``.
        classes: Class names (see :func:`encode_labels`).

    Returns:
        ``{class index: weight}`` for every output class.

    Raises:
        ValueError: If a class has no image in the split (its weight would be infinite).
    """
    class_list = _validate_task(task, classes)
    indices = encode_labels(split_rows(index_df, split)["label"], task, class_list)
    n_outputs = 2 if task == "binary" else len(class_list)
    names = output_class_names(task, class_list)
    counts = np.bincount(indices, minlength=n_outputs)
    absent = [names[position] for position in range(n_outputs) if counts[position] == 0]
    if absent:
        raise ValueError(
            f"Split {split!r} has no image of class(es) {absent} for task {task!r}; "
            "class weights need every class present (check the split or disable class_weight)."
        )
    weights = compute_class_weight("balanced", classes=np.arange(n_outputs), y=indices)
    result = {position: float(weight) for position, weight in enumerate(weights)}
    logger.info(
        "Class weights on %s (%s): %s",
        split,
        dict(zip(names, counts.tolist(), strict=True)),
        result,
    )
    return result
