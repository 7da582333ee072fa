"""Content digest of a Keras model's weights, free of TensorFlow imports (it only reads arrays)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def weights_digest(model: Any) -> str:
    """sha256 of a Keras model's weights (values, dtypes, shapes, order): the model's identity.

    Two saves of the same weights give the same digest, and any retraining changes it, so
    masks predicted by an older U-Net are never reused, and a model card can name the exact
    weights it describes.

    Args:
        model: A Keras model (anything with ``get_weights()``).

    Returns:
        Hex digest.
    """
    hasher = hashlib.sha256()
    for weight in model.get_weights():
        array = np.ascontiguousarray(weight)
        hasher.update(str((array.dtype.str, array.shape)).encode())
        hasher.update(array.tobytes())
    return hasher.hexdigest()
