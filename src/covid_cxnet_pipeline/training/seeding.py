"""One call that fixes every source of randomness a training run touches (Python, NumPy, TF)."""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)


def set_global_seed(seed: int, op_determinism: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow/Keras and make TensorFlow ops deterministic.

    With the same seed, two runs on the same hardware and software give identical weights and
    metrics. Op determinism is process-wide and costs speed (mostly on GPU); the input pipeline
    in :mod:`covid_cxnet_pipeline.training.dataset` uses stateless random ops only, so it stays
    parallel under determinism.

    Args:
        seed: The run's seed (the ``seed`` parameter of the training pipelines).
        op_determinism: Also call ``tf.config.experimental.enable_op_determinism()``. Pass False
            only for throughput measurements: results then vary from run to run.

    Raises:
        ValueError: If ``seed`` is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    # Sets random.seed, np.random.seed and tf.random.set_seed in one go (Keras 3 API).
    keras.utils.set_random_seed(seed)
    if op_determinism:
        tf.config.experimental.enable_op_determinism()
    logger.info("Global seed set to %d (op determinism: %s)", seed, op_determinism)
