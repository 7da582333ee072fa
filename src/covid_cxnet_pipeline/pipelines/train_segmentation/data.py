"""tf.data input for the U-Net: image + mask PNG pairs streamed from disk, augmented together."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import tensorflow as tf

from covid_cxnet_pipeline.training.augment import (
    AugmentConfig,
    augment_geometry,
    augment_intensity,
)

logger = logging.getLogger(__name__)


def augment_pair(
    image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor, config: AugmentConfig
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply one seeded augmentation to an image and the same geometry to its mask.

    Geometry (rotation, zoom, shift, optional left-right flip) moves image and mask as one
    two-channel tensor, so they stay aligned; the mask is re-binarised after the bilinear
    resampling. Brightness and contrast change the image only.

    Args:
        image: float32 ``(h, w, 1)`` in [0, 255].
        mask: float32 ``(h, w, 1)`` in {0, 1}.
        seed: int64 ``(2,)`` stateless seed.
        config: Validated augmentation settings.

    Returns:
        ``(image, mask)`` with the same shapes.
    """
    if config.is_identity:
        return image, mask
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    # Image and mask move together: transform them stacked, then re-binarise the mask.
    stacked = augment_geometry(tf.concat([image, mask * 255.0], axis=-1), seeds, config)
    image = augment_intensity(stacked[..., :1], seeds, config)
    mask = tf.cast(stacked[..., 1:] >= 127.5, tf.float32)
    return tf.clip_by_value(image, 0.0, 255.0), mask


def pair_dataset(
    image_paths: Sequence[str],
    mask_paths: Sequence[str],
    size: tuple[int, int],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    augment: AugmentConfig | None = None,
) -> tf.data.Dataset:
    """Batched ``(images, masks)`` streamed from the pair PNGs.

    Shuffling and augmentation are seeded and fresh every epoch (deterministically): the
    file list is reshuffled with ``seed`` and each element draws its augmentation seed from
    ``tf.data.Dataset.random(seed)``.

    Args:
        image_paths: Gray PNGs at ``size``.
        mask_paths: 0/255 mask PNGs at ``size``, aligned with ``image_paths``.
        size: ``(height, width)``.
        batch_size: Pairs per batch.
        shuffle: Shuffle (training only).
        seed: Seed of shuffling and augmentation.
        augment: Settings, or None for no augmentation (validation).

    Returns:
        Dataset of float32 ``(batch, h, w, 1)`` images in [0, 255] and masks in {0, 1}.
    """
    if len(image_paths) != len(mask_paths) or not image_paths:
        raise ValueError(
            f"need as many mask PNGs as image PNGs, and at least one: got {len(image_paths)} "
            f"images and {len(mask_paths)} masks"
        )
    height, width = size
    config = augment or AugmentConfig()
    dataset = tf.data.Dataset.from_tensor_slices((list(image_paths), list(mask_paths)))
    if shuffle:
        dataset = dataset.shuffle(len(image_paths), seed=seed, reshuffle_each_iteration=True)
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip((dataset, randoms))

    def load(paths: tuple[tf.Tensor, tf.Tensor], random_value: tf.Tensor):
        image_path, mask_path = paths
        image = tf.io.decode_png(tf.io.read_file(image_path), channels=1)
        mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
        image = tf.ensure_shape(tf.cast(image, tf.float32), (height, width, 1))
        mask = tf.ensure_shape(tf.cast(mask > 127, tf.float32), (height, width, 1))
        pair_seed = tf.stack([random_value, tf.constant(seed, tf.int64)])
        return augment_pair(image, mask, pair_seed, config)

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
