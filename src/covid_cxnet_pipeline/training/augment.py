"""On-the-fly augmentation plausible for chest radiographs, built on stateless (seeded) TF ops.

Only mild geometric and photometric changes are allowed: small rotations, zoom and shifts,
brightness and contrast, and optionally left-right flips. Vertical flips and large rotations
produce images no radiograph looks like, so the configuration rejects them.

Every random draw is a ``tf.random.stateless_*`` op keyed by a per-image seed, which keeps the
``tf.data`` map parallel under op determinism and makes the output a pure function of
(image, seed, config).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

logger = logging.getLogger(__name__)

# Safety limits, not tuning knobs: beyond these an augmented image stops looking like a
# frontal chest radiograph (the patient is never imaged at 30 degrees on a PA/AP film).
MAX_ROTATION_DEGREES = 20.0
MAX_ZOOM = 0.3
MAX_SHIFT = 0.3
FILL_MODES = ("constant", "nearest", "reflect")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Validated augmentation settings (``augment`` block of ``parameters_train*.yml``).

    Attributes:
        enabled: Apply augmentation at all.
        rotation_degrees: Rotation drawn uniformly in [-r, r] degrees (at most 20).
        zoom: Scale factor drawn uniformly in [1 - zoom, 1 + zoom] (at most 0.3).
        shift: Translation drawn uniformly in [-shift, shift] times the image height/width.
        brightness: Additive brightness delta in [-b, b] as a fraction of the full intensity
            range (0.1 = 10% of 255 for 8-bit pixels).
        contrast: Contrast factor drawn uniformly in [1 - c, 1 + c].
        horizontal_flip: Random left-right flips. Off by default: a flipped film shows the
            heart on the right, which real PA/AP films almost never do.
        fill_mode: How pixels moved in from outside the image are filled: ``constant``
            (black), ``nearest`` or ``reflect``.
    """

    enabled: bool = False
    rotation_degrees: float = 0.0
    zoom: float = 0.0
    shift: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    horizontal_flip: bool = False
    fill_mode: str = "constant"

    @property
    def is_identity(self) -> bool:
        """True when the configuration cannot change any image."""
        return not self.enabled or not any(
            (
                self.rotation_degrees,
                self.zoom,
                self.shift,
                self.brightness,
                self.contrast,
                self.horizontal_flip,
            )
        )


def validate_augment_config(config: Mapping[str, Any] | AugmentConfig | None) -> AugmentConfig:
    """Check an augmentation configuration and turn it into an :class:`AugmentConfig`.

    Args:
        config: The ``augment`` parameter block (a mapping), an :class:`AugmentConfig`, or
            None for no augmentation. The key ``vertical_flip`` is accepted only as false.

    Returns:
        The validated configuration.

    Raises:
        ValueError: For unknown keys, a vertical flip, a rotation above 20 degrees, or any
            magnitude outside its range; the message names the key and the allowed range.
    """
    if config is None:
        return AugmentConfig()
    values = dataclasses.asdict(config) if isinstance(config, AugmentConfig) else dict(config)
    if values.pop("vertical_flip", False):
        raise ValueError(
            "augment.vertical_flip is not allowed: an upside-down chest radiograph is not a "
            "plausible input. Remove the key or set it to false."
        )
    known = {field.name for field in dataclasses.fields(AugmentConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"Unknown augment key(s) {unknown}; allowed keys: {sorted(known | {'vertical_flip'})}"
        )
    cfg = AugmentConfig(**values)
    rotation = float(cfg.rotation_degrees)
    if not 0.0 <= rotation <= MAX_ROTATION_DEGREES:
        raise ValueError(
            f"augment.rotation_degrees={cfg.rotation_degrees} is outside [0, "
            f"{MAX_ROTATION_DEGREES:g}]: large rotations do not occur in frontal chest "
            "radiographs; use a small value such as 10."
        )
    for key, upper in (("zoom", MAX_ZOOM), ("shift", MAX_SHIFT), ("brightness", 1.0)):
        value = float(getattr(cfg, key))
        if not 0.0 <= value <= upper:
            raise ValueError(f"augment.{key}={value} is outside [0, {upper:g}]")
    if not 0.0 <= float(cfg.contrast) < 1.0:
        raise ValueError(f"augment.contrast={cfg.contrast} is outside [0, 1)")
    if cfg.fill_mode not in FILL_MODES:
        raise ValueError(f"augment.fill_mode={cfg.fill_mode!r} is not one of {FILL_MODES}")
    return cfg


def affine_transform(
    image: tf.Tensor,
    angle_rad: tf.Tensor | float,
    scale: tf.Tensor | float,
    shift_xy: tuple[tf.Tensor | float, tf.Tensor | float],
    fill_mode: str = "constant",
) -> tf.Tensor:
    """Rotate about the centre, scale about the centre and translate one image.

    Args:
        image: Float tensor ``(height, width, channels)``.
        angle_rad: Rotation angle in radians.
        scale: Zoom factor; above 1 magnifies (zooms in).
        shift_xy: Translation ``(dx, dy)`` in pixels; positive moves content right/down.
        fill_mode: ``constant`` (zeros), ``nearest`` or ``reflect``.

    Returns:
        The transformed image, same shape and dtype, bilinear interpolation.
    """
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    centre_x = (width - 1.0) / 2.0
    centre_y = (height - 1.0) / 2.0
    angle = tf.cast(angle_rad, tf.float32)
    inv_scale = 1.0 / tf.cast(scale, tf.float32)
    dx = tf.cast(shift_xy[0], tf.float32)
    dy = tf.cast(shift_xy[1], tf.float32)
    # The op maps each OUTPUT pixel to the INPUT location it samples:
    # input = centre + R(angle) / scale * (output - centre - shift).
    a0 = tf.cos(angle) * inv_scale
    a1 = -tf.sin(angle) * inv_scale
    b0 = tf.sin(angle) * inv_scale
    b1 = tf.cos(angle) * inv_scale
    a2 = centre_x - a0 * (centre_x + dx) - a1 * (centre_y + dy)
    b2 = centre_y - b0 * (centre_x + dx) - b1 * (centre_y + dy)
    transform = tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])[tf.newaxis, :]
    transformed = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=transform,
        output_shape=shape[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode.upper(),
    )
    return transformed[0]


def augment_geometry(image: tf.Tensor, seeds: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """The geometric part of an augmentation: rotation, zoom, shift, then horizontal flip.

    Apply it to an image and its mask stacked as channels so both move together.

    Args:
        image: Float32 tensor ``(height, width, channels)``.
        seeds: Int64 ``(4, 2)`` stateless seeds from ``stateless_split`` (rows 0 and 3 used).
        config: A validated :class:`AugmentConfig`.

    Returns:
        The transformed tensor, same shape.
    """
    if config.rotation_degrees or config.zoom or config.shift:
        draws = tf.random.stateless_uniform([4], seed=seeds[0], minval=-1.0, maxval=1.0)
        shape = tf.cast(tf.shape(image), tf.float32)
        image = affine_transform(
            image,
            angle_rad=draws[0] * math.radians(float(config.rotation_degrees)),
            scale=1.0 + draws[1] * float(config.zoom),
            shift_xy=(
                draws[2] * float(config.shift) * shape[1],
                draws[3] * float(config.shift) * shape[0],
            ),
            fill_mode=config.fill_mode,
        )
    if config.horizontal_flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[3])
    return image


def augment_intensity(
    image: tf.Tensor, seeds: tf.Tensor, config: AugmentConfig, max_value: float = 255.0
) -> tf.Tensor:
    """The photometric part of an augmentation: brightness then contrast (images only).

    Args:
        image: Float32 tensor ``(height, width, channels)`` with values in [0, max_value].
        seeds: Int64 ``(4, 2)`` stateless seeds from ``stateless_split`` (rows 1 and 2 used).
        config: A validated :class:`AugmentConfig`.
        max_value: The intensity range's top (255 for the pipeline's raw pixels).

    Returns:
        The adjusted image, not clipped.
    """
    if config.brightness:
        image = tf.image.stateless_random_brightness(
            image, float(config.brightness) * max_value, seeds[1]
        )
    if config.contrast:
        image = tf.image.stateless_random_contrast(
            image, 1.0 - float(config.contrast), 1.0 + float(config.contrast), seeds[2]
        )
    return image


def augment_image(
    image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig, max_value: float = 255.0
) -> tf.Tensor:
    """Apply one random, seeded augmentation to one image.

    Args:
        image: Float32 tensor ``(height, width, channels)`` with values in [0, max_value].
        seed: Integer tensor of shape ``(2,)``; the same seed gives the same output.
        config: A validated :class:`AugmentConfig`.
        max_value: The intensity range's top (255 for the pipeline's raw pixels).

    Returns:
        The augmented image, same shape and dtype, clipped to [0, max_value].
    """
    if config.is_identity:
        return image
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    # Brightness and contrast act on the whole image, so they commute with the flip.
    image = augment_geometry(image, seeds, config)
    image = augment_intensity(image, seeds, config, max_value)
    return tf.clip_by_value(image, 0.0, max_value)
