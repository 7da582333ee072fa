"""Image + lung-mask training pairs for the U-Net, written once at the U-Net size into a cache.

No TensorFlow here: worker processes import this module. Each pair is read from the image store,
its mask assembled from the source's mask files (GeneralBlockchain per-lung crops at offsets,
Shenzhen masks resized to the image, Montgomery left + right), both resized to the U-Net size
and written as two PNGs named by a hash of the image and mask files. The folder is named by a
hash of the parameters that shape the pixels, so other sizes or decoders get their own folder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from covid_cxnet_pipeline.curation.harmonise import namespaced_patient_id
from covid_cxnet_pipeline.imaging import (
    ImageDecodeError,
    assemble_lung_mask,
    load_grayscale,
    resize,
)
from covid_cxnet_pipeline.pipelines.preprocess.chain import digest, write_png_atomic

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ("image_id", "source_id", "sha256", "patient_group", "image_path", "mask_path")

# (path, offset_top, offset_left, scale_to_image) as imaging.assemble_lung_mask takes them.
MaskFileRow = tuple[str, int, int, bool]


def pair_task(
    task: tuple[str, Sequence[MaskFileRow], str, str, tuple[int, int], Mapping[str, Any], int],
) -> tuple[str, bool, str]:
    """Write one resized image + mask pair unless both files exist (worker task).

    Args:
        task: ``(image path, mask files, image PNG, mask PNG, (height, width), decode
            options, mask foreground threshold)``.

    Returns:
        ``(image PNG, computed, error)``; ``error`` is empty on success and names the file and
        reason when the image or a mask cannot be used (the pair is then left out).
    """
    image_path, mask_files, image_png, mask_png, size, decode_options, threshold = task
    if Path(image_png).exists() and Path(mask_png).exists():
        return image_png, False, ""
    try:
        image = load_grayscale(image_path, **decode_options)
        lung_mask = assemble_lung_mask(image.shape, mask_files, foreground_threshold=threshold)
    except (ImageDecodeError, ValueError) as error:
        return image_png, False, str(error)
    # Area averaging then a 50 % threshold keeps thin lung borders better than nearest-neighbour.
    small_mask = resize(lung_mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
    write_png_atomic(resize(image, size), image_png)
    write_png_atomic(((small_mask >= 128) * 255).astype(np.uint8), mask_png)
    return image_png, True, ""


def _existing_unique(frame: pd.DataFrame, keys: list[str], what: str) -> pd.DataFrame:
    """Rows whose stored file exists, one per key (an index may list a file twice)."""
    exists = frame["path"].map(lambda path: Path(str(path)).is_file()).astype(bool)
    if (~exists).any():
        logger.warning("%s: %d rows point at missing files; left out", what, int((~exists).sum()))
    unique = frame[exists].drop_duplicates(keys)
    if len(unique) < int(exists.sum()):
        logger.warning("%s: %d duplicate rows dropped", what, int(exists.sum()) - len(unique))
    return unique


def pair_plan(
    raw_index: pd.DataFrame,
    raw_mask_index: pd.DataFrame,
    *,
    cache_dir: str | Path,
    size: tuple[int, int],
    decode_options: Mapping[str, Any],
    foreground_threshold: int,
    namespaces: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One entry per image with masks: its rows' metadata and where its pair PNGs go.

    Args:
        raw_index: Ingest's image index.
        raw_mask_index: Ingest's mask index (``schema.RAW_MASK_INDEX_COLUMNS``).
        cache_dir: Root folder of the pair caches.
        size: U-Net ``(height, width)``.
        decode_options: ``load_grayscale`` keyword arguments.
        foreground_threshold: ``load_mask`` foreground threshold.
        namespaces: ``source_id -> patient namespace`` for sources that reuse another
            collection's patient ids (``curate.patients.namespaces``): Montgomery's own copy
            and the segmentation mirror's copy of one patient are then one patient group.

    Returns:
        Dicts with the ``PAIR_COLUMNS`` and ``image_source``, ``mask_files``.
    """
    masks = _existing_unique(
        raw_mask_index, ["image_id", "sha256", "offset_top", "offset_left"], "raw_mask_index"
    )
    images = _existing_unique(raw_index, ["image_id"], "raw_index").set_index("image_id")
    folder_key = digest(
        {"size": size, "decode": decode_options, "foreground_threshold": foreground_threshold}
    )
    folder = Path(cache_dir) / f"{size[0]}x{size[1]}_{folder_key[:12]}"
    orphans = sorted(set(masks["image_id"]) - set(images.index))
    if orphans:
        logger.warning(
            "%d masks belong to no image in raw_index, e.g. %s", len(orphans), orphans[0]
        )
    plan = []
    for image_id, group in masks[masks["image_id"].isin(images.index)].groupby(
        "image_id", sort=True
    ):
        image = images.loc[image_id]
        mask_files = sorted(
            (str(row.path), int(row.offset_top), int(row.offset_left), bool(row.scale_to_image))
            for row in group.itertuples()
        )
        # Named by content: the image's and masks' sha256 and placement, not their paths.
        mask_content = sorted(
            (str(row.sha256), int(row.offset_top), int(row.offset_left), bool(row.scale_to_image))
            for row in group.itertuples()
        )
        key = digest({"image": str(image["sha256"]), "masks": mask_content})
        plan.append(
            {
                "image_id": image_id,
                "source_id": str(image["source_id"]),
                "sha256": str(image["sha256"]),
                # Patients namespaced as curate does (shared namespaces for sources that copy
                # one collection); an image without a patient id is its own group.
                "patient_group": namespaced_patient_id(
                    str(image["source_id"]), image["patient_id"], str(image_id), namespaces or {}
                ),
                "image_source": str(image["path"]),
                "mask_files": mask_files,
                "image_path": str(folder / f"{key}_image.png"),
                "mask_path": str(folder / f"{key}_mask.png"),
            }
        )
    return plan


def classifier_holdout(
    pairs: pd.DataFrame, curated_index: pd.DataFrame, duplicate_groups: pd.DataFrame
) -> pd.Series:
    """Which pairs show an image the classifiers hold out (curated validation, test, external).

    A pair is held out when its image's sha256 or image id is that of a held-out curated image,
    or when its image is a member of a held-out image's duplicate group (curate keeps one
    canonical copy per group, so a near-duplicate copy from a mask source is matched through
    ``curation_duplicate_groups``).

    Args:
        pairs: Rows with ``image_id`` and ``sha256``.
        curated_index: Curate's output (``image_id``, ``sha256``, ``duplicate_group``, ``split``).
        duplicate_groups: ``curation_duplicate_groups`` (``duplicate_group``,
            ``member_image_ids`` joined with ";").

    Returns:
        Boolean Series aligned with ``pairs``: True for pairs to leave out of U-Net training.
    """
    missing = [
        column
        for column in ("image_id", "sha256", "duplicate_group", "split")
        if column not in curated_index.columns
    ]
    if missing:
        raise ValueError(f"curated_index lacks the columns {missing}; re-run the curate pipeline")
    held = curated_index[curated_index["split"].astype(str) != "train"]
    image_ids = set(held["image_id"].astype(str))
    hashes = set(held["sha256"].astype(str))
    groups = set(held["duplicate_group"].dropna().astype(str))
    if len(duplicate_groups) and groups:
        members = duplicate_groups.loc[
            duplicate_groups["duplicate_group"].astype(str).isin(groups), "member_image_ids"
        ]
        for joined in members.dropna().astype(str):
            image_ids.update(member for member in joined.split(";") if member)
    return pairs["image_id"].astype(str).isin(image_ids) | pairs["sha256"].astype(str).isin(hashes)


def assign_validation(pairs: pd.DataFrame, validation_fraction: float, seed: int) -> pd.DataFrame:
    """Split pairs into train / validation by patient group (no patient in both).

    Args:
        pairs: Rows with ``patient_group``.
        validation_fraction: Share of patient groups held out (0 < f < 1).
        seed: Random state of ``GroupShuffleSplit``.

    Returns:
        The pairs with a ``split`` column (``train`` / ``validation``).
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"train_segmentation.split.validation_fraction must be in (0, 1), got "
            f"{validation_fraction}"
        )
    groups = pairs["patient_group"].astype(str).to_numpy()
    if len(set(groups)) < 2:
        raise ValueError(
            f"the segmentation pairs hold {len(set(groups))} patient group(s); at least 2 are "
            "needed for a patient-level train/validation split: enable more mask sources"
        )
    splitter = GroupShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=seed)
    _, validation_rows = next(splitter.split(np.zeros(len(pairs)), groups=groups))
    split = np.full(len(pairs), "train", dtype=object)
    split[validation_rows] = "validation"
    return pairs.assign(split=split)
