"""Grad-CAM (Selvaraju et al. 2017) for the classifiers, nested backbones included, and overlays.

Canonical recipe: gradient of the class score (the pre-activation logit when the output layer
is a Dense with sigmoid/softmax) with respect to the last convolutional feature maps, averaged
over space into one weight per channel, weighted sum of the maps, ReLU, upsampled to the input
size and scaled to [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import keras
import numpy as np

logger = logging.getLogger(__name__)

_LOGIT_ACTIVATIONS = ("sigmoid", "softmax", "linear")
_NOT_A_CHAIN = (
    "model {name!r} is not a simple chain of layers around its nested backbone; build it flat "
    "(backbone.output feeding the head) or pass layer_path naming a top-level layer"
)


class GradCamError(ValueError):
    """The model's structure does not allow Grad-CAM as asked."""


def find_last_conv_layer(model: keras.Model) -> tuple[str, ...]:
    """The last layer producing spatial feature maps (rank-4 output), searching nested models.

    Args:
        model: a functional or sequential Keras model.

    Returns:
        The path of layer names to it, e.g. ``("relu",)`` for a flat DenseNet classifier or
        ``("densenet121", "relu")`` when the backbone is a nested model.

    Raises:
        GradCamError: no layer has a rank-4 output.
    """
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            try:
                return (layer.name, *find_last_conv_layer(layer))
            except GradCamError:
                continue
        if _output_rank(layer) == 4:
            return (layer.name,)
    raise GradCamError(f"model {model.name!r} has no layer with 4-D (spatial) output")


def _output_rank(layer: keras.layers.Layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # never called, or shared between several graphs
        return None


def grad_cam(
    model: keras.Model,
    images: np.ndarray,
    class_index: int | Sequence[int] | None = None,
    layer_path: Sequence[str] | None = None,
) -> np.ndarray:
    """Grad-CAM heatmaps for a batch of images.

    Args:
        model: a single-input classifier; its inputs are what ``images`` holds (for this
            project's classifiers: raw [0, 255] pixels).
        images: ``(H, W, C)`` or ``(N, H, W, C)``.
        class_index: class to explain, one for all images or one per image; None explains the
            predicted class. With a single sigmoid output, 1 is the positive class (score =
            logit) and 0 the negative class (score = -logit).
        layer_path: feature layer (path of names, see ``find_last_conv_layer``); found
            automatically when None.

    Returns:
        ``(N, H, W)`` float32 heatmaps in [0, 1] (``(H, W)`` for a single image); all zeros
        where no feature map speaks for the class.
    """
    import tensorflow as tf

    batch = np.asarray(images, dtype=np.float32)
    single = batch.ndim == 3
    if single:
        batch = batch[None]
    if batch.ndim != 4:
        raise GradCamError(f"images must be (H, W, C) or (N, H, W, C), got shape {batch.shape}")
    if len(model.inputs) != 1:
        raise GradCamError(f"Grad-CAM needs a single-input model; {model.name!r} has more")
    path = tuple(layer_path) if layer_path else find_last_conv_layer(model)
    head = model.layers[-1]
    use_logits = _is_dense_head(model, head)
    tensor = tf.convert_to_tensor(batch)
    with tf.GradientTape() as tape:
        features, head_input = _features_and_head_input(model, path, use_logits, tensor)
        # The logit, not the saturating probability, is the canonical class score.
        scores_source = tf.matmul(head_input, head.kernel) + head.bias if use_logits else head_input
        classes = _classes(scores_source, class_index, len(batch), use_logits)
        score = tf.reduce_sum(_class_scores(scores_source, classes, use_logits))
    gradients = tape.gradient(score, features)
    if gradients is None:
        raise GradCamError(f"the class score does not depend on layer {'/'.join(path)}")
    if len(path) > 1:
        _check_chain(model, tensor, scores_source, head, use_logits)
    channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(channel_weights * features, axis=-1)).numpy()
    heatmaps = np.stack([_normalise_and_resize(cam, batch.shape[1:3]) for cam in cams])
    return heatmaps[0] if single else heatmaps


def _is_dense_head(model: keras.Model, head: keras.layers.Layer) -> bool:
    """Whether the output is a Dense whose pre-activation logit can be recomputed."""
    if not isinstance(head, keras.layers.Dense) or len(model.outputs) != 1:
        return False
    activation = getattr(head.activation, "__name__", "")
    return activation in _LOGIT_ACTIVATIONS and head.output is model.outputs[0]


def _features_and_head_input(model, path, use_logits, tensor):
    if len(path) == 1:
        target = model.layers[-1].input if use_logits else model.outputs[0]
        probe = keras.Model(model.inputs[0], [model.get_layer(path[0]).output, target])
        features, head_input = probe(tensor, training=False)
        return features, head_input
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    try:
        return _run_chain(layers[:-1] if use_logits else layers, path, tensor)
    except GradCamError:
        raise
    except Exception as error:  # a layer fed the wrong tensor: the graph is not a chain
        raise GradCamError(_NOT_A_CHAIN.format(name=model.name)) from error


def _run_chain(layers, path, tensor):
    # A nested backbone's inner tensors are not connected to the outer inputs, so the outer
    # model is re-run layer by layer; _check_chain verifies afterwards that this reproduced it.
    features, current = None, tensor
    for layer in layers:
        if layer.name != path[0]:
            current = layer(current, training=False)
        elif len(path) == 2:
            probe = keras.Model(layer.inputs[0], [layer.get_layer(path[1]).output, layer.output])
            features, current = probe(current, training=False)
        elif len(path) == 1:
            current = layer(current, training=False)
            features = current
        else:
            inner = [item for item in layer.layers if not isinstance(item, keras.layers.InputLayer)]
            features, current = _run_chain(inner, path[1:], current)
    if features is None:
        raise GradCamError(f"layer {path[0]!r} not found")
    return features, current


def _check_chain(model, tensor, scores_source, head, use_logits) -> None:
    reproduced = head.activation(scores_source) if use_logits else scores_source
    expected = model(tensor, training=False)
    if not np.allclose(np.asarray(reproduced), np.asarray(expected), atol=1e-4):
        raise GradCamError(_NOT_A_CHAIN.format(name=model.name))


def _classes(scores, class_index, count: int, use_logits: bool) -> np.ndarray:
    if class_index is not None:
        classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (count,))
        return classes.copy()
    values = np.asarray(scores)
    if values.shape[-1] == 1:
        threshold = 0.0 if use_logits else 0.5
        return (values[:, 0] >= threshold).astype(np.int64)
    return values.argmax(axis=-1)


def _class_scores(scores, classes: np.ndarray, use_logits: bool):
    import tensorflow as tf

    if scores.shape[-1] == 1:
        positive = scores[:, 0]
        negative = -positive if use_logits else 1.0 - positive
        return tf.where(tf.constant(classes == 1), positive, negative)
    return tf.gather(scores, tf.constant(classes), axis=1, batch_dims=1)


def _normalise_and_resize(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Upsample first, then scale, so every non-empty heatmap peaks at exactly 1.
    resized = cv2.resize(cam.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    resized = np.maximum(resized, 0.0)
    peak = float(resized.max())
    return resized / peak if peak > 0 else np.zeros_like(resized)


def overlay_heatmap(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend a heatmap (jet colour map) over an image.

    Args:
        image_uint8: ``(H, W)``, ``(H, W, 1)`` grayscale or ``(H, W, 3)`` RGB, uint8.
        heatmap: ``(h, w)`` values in [0, 1]; resized to the image when sizes differ.
        alpha: heatmap opacity in [0, 1].

    Returns:
        ``(H, W, 3)`` RGB uint8.
    """
    image = np.asarray(image_uint8)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    if heat.shape != rgb.shape[:2]:
        heat = cv2.resize(heat, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
