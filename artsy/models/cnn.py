"""Convolutional networks for image affect: the notebook's seed net and an efficient default.

Both models take ``(n, 100, 100, 3)`` RGB pixels in ``[0, 255]`` (uint8 or float) and end in a
softmax over :data:`artsy.config.EMOTIONS` (index 1 is "positive"). Preprocessing (``Rescaling``)
and, in the default net, augmentation live inside the model, so training and inference cannot
diverge, and both save as ``.keras`` files that load with ``safe_mode=True`` (no ``Lambda``).

Training (early stopping, class balance) is :mod:`artsy.models.cnn_training`. TensorFlow and
Keras are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from artsy.config import EMOTIONS
from artsy.models.inference import configure_tensorflow, predict_batched

__all__ = ["build_cnn", "build_seed_cnn", "check_images", "configure_tensorflow",
           "feature_maps", "predict_positive"]

logger = logging.getLogger(__name__)

#: Learning rate and batch size of the notebook's second architecture.
SEED_LEARNING_RATE = 5e-4
SEED_BATCH_SIZE = 32
#: BatchNormalization momentum: Keras' 0.99 leaves the moving statistics far from converged
#: after the ~20 steps per epoch of a few hundred images, and inference then drifts.
_BN_MOMENTUM = 0.9
#: Layer types whose activations :func:`feature_maps` returns.
_CONV_LAYER_TYPES = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")


def build_seed_cnn(input_shape: Sequence[int] = (100, 100, 3), num_classes: int = 2, *,
                   seed: int | None = None) -> Any:
    """The notebook's second architecture (569 954 parameters for 100x100x3 and 2 classes).

    The notebook itself is lost; this is a reconstruction with exactly its parameter count, its
    optimiser (Adam, learning rate 5e-4) and a cost per image close to the measured ~142 s per
    epoch of 644 images on one core. Layers::

        Rescaling(1/255)
        Conv2D(128, 3x3, same, relu)   3 584     100x100x128
        MaxPooling2D(2)                           50x50x128
        Conv2D(128, 3x3, same, relu)   147 584    50x50x128
        MaxPooling2D(4)                           12x12x128
        Conv2D(128, 3x3, same, relu)   147 584    12x12x128
        MaxPooling2D(4)                           3x3x128
        Flatten                                   1 152
        Dense(200, relu)               230 600
        Dropout(0.5)
        Dense(200, relu)               40 200
        Dropout(0.5)
        Dense(2, softmax)              402
                                       569 954

    Parameters
    ----------
    input_shape : tuple of int, default=(100, 100, 3)
        ``(height, width, channels)`` of the images.
    num_classes : int, default=2
        Softmax outputs.
    seed : int or None, default=None
        Seeds Keras, NumPy and Python before the weights are initialised.

    Returns
    -------
    keras.Model
        Compiled with Adam(5e-4) and sparse categorical cross-entropy; train with batch size 32.
    """
    keras = _keras_seeded(seed)
    layers = keras.layers
    inputs, x = _input_block(keras, input_shape, num_classes)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(4, name="pool2")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.MaxPooling2D(4, name="pool3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(200, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.5, name="dropout1")(x)
    x = layers.Dense(200, activation="relu", name="dense2")(x)
    x = layers.Dropout(0.5, name="dropout2")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="seed_cnn")
    model.compile(optimizer=keras.optimizers.Adam(SEED_LEARNING_RATE),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_cnn(input_shape: Sequence[int] = (100, 100, 3), num_classes: int = 2, *,
              widths: Sequence[int] = (24, 48, 96, 128), downsample: int = 4,
              dropout: float = 0.3, weight_decay: float = 1e-2, learning_rate: float = 1e-3,
              augment: bool = True, seed: int | None = None) -> Any:
    """The efficient default: a small separable-convolution net with multi-scale pooling.

    Layers::

        Rescaling(1/255) -> AveragePooling2D(downsample)            25x25x3 at the defaults
        [training only] RandomFlip(horizontal), RandomTranslation(0.1),
                        RandomBrightness(0.1), RandomContrast(0.15)   no hue change
        Conv2D(w0, 3x3) BN ReLU                 -> GAP ─┐
        MaxPool, SeparableConv2D(w1) BN ReLU    -> GAP ─┤
        MaxPool, SeparableConv2D(w2) BN ReLU    -> GAP ─┼─ concat -> Dropout -> Dense(softmax)
        MaxPool, SeparableConv2D(w3) BN ReLU    -> GAP ─┘

    Pooling every stage (not only the last) hands the classifier global colour and texture
    statistics, which carry much of an image's affect, next to the deeper shape features.

    Parameters
    ----------
    input_shape : tuple of int, default=(100, 100, 3)
    num_classes : int, default=2
    widths : sequence of int, default=(24, 48, 96, 128)
        Channels of each stage.
    downsample : int, default=4
        Average-pooling factor applied to the input (1 keeps full resolution). At 25x25 the
        net sees colour, light and layout, which carry affect, and costs 16x less than at 100x100.
    dropout : float, default=0.3
        Dropout before the classifier.
    weight_decay, learning_rate : float, default=1e-2, 1e-3
        AdamW settings.
    augment : bool, default=True
        Include the augmentation layers (active in training only).
    seed : int or None, default=None
        Seeds Keras, NumPy and Python before the weights are initialised.

    Returns
    -------
    keras.Model
        Compiled with AdamW and sparse categorical cross-entropy.

    Raises
    ------
    ValueError
        If ``widths`` is empty, ``downsample < 1`` or ``dropout`` is outside ``[0, 1)``.
    """
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}")
    if downsample < 1:
        raise ValueError(f"downsample must be >= 1, got {downsample}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    keras = _keras_seeded(seed)
    layers = keras.layers
    inputs, x = _input_block(keras, input_shape, num_classes)
    if downsample > 1:
        x = layers.AveragePooling2D(downsample, name="downsample")(x)
    if augment:
        x = layers.RandomFlip("horizontal", name="flip")(x)
        x = layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", name="translate")(x)
        x = layers.RandomBrightness(0.1, value_range=(0.0, 1.0), name="brightness")(x)
        x = layers.RandomContrast(0.15, name="contrast")(x)
    pooled = []
    for stage, width in enumerate(widths):
        if stage == 0:
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv0")(x)
        else:
            x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
            x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False,
                                       name=f"sepconv{stage}")(x)
        x = layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"bn{stage}")(x)
        x = layers.ReLU(name=f"relu{stage}")(x)
        pooled.append(layers.GlobalAveragePooling2D(name=f"gap{stage}")(x))
    x = layers.Concatenate(name="multiscale")(pooled) if len(pooled) > 1 else pooled[0]
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="artsy_cnn")
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def predict_positive(model: Any, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Probability of "positive" for each image, in fixed-shape batches.

    The last batch is padded to ``batch_size`` so one traced ``tf.function`` (cached per model,
    batch size and dtype) serves every call: no retracing, no per-call ``predict`` set-up.

    Parameters
    ----------
    model : keras.Model
        Softmax over :data:`artsy.config.EMOTIONS`.
    images : (n, H, W, 3) uint8 or float ndarray
        Pixels in ``[0, 255]``; ``n`` may be 0.
    batch_size : int, default=64

    Returns
    -------
    (n,) float32 ndarray
        ``p(positive)`` in ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``batch_size < 1`` or the images do not match the model's input.
    """
    images = check_images(model, images, "images")
    return predict_batched(model, images, batch_size=batch_size)[:, EMOTIONS.index("positive")]


def feature_maps(model: Any, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Activations of every convolution layer for one image (inference mode).

    Parameters
    ----------
    model : keras.Model
        A functional model such as those built here.
    image : (H, W, 3) uint8 or float ndarray
        Pixels in ``[0, 255]``.

    Returns
    -------
    list of (str, (h, w, c) float32 ndarray)
        Layer name and its output, in network order.

    Raises
    ------
    ValueError
        If the image does not match the model's input or the model has no convolution layers.
    """
    import keras

    image = np.asarray(image)
    batch = check_images(model, image[None] if image.ndim == 3 else image, "image")
    if len(batch) != 1:
        raise ValueError(f"image must be one (H, W, 3) array, got shape {image.shape}")
    convs = [layer for layer in model.layers if type(layer).__name__ in _CONV_LAYER_TYPES]
    if not convs:
        raise ValueError(f"model {model.name!r} has no Conv2D / SeparableConv2D layers")
    probe = keras.Model(model.inputs[0], [layer.output for layer in convs])
    outputs = probe(batch.astype(np.float32), training=False)
    return [(layer.name, np.asarray(output)[0].astype(np.float32))
            for layer, output in zip(convs, outputs, strict=True)]


def _keras_seeded(seed: int | None) -> Any:
    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
    return keras


def _input_block(keras: Any, input_shape: Sequence[int], num_classes: int) -> tuple[Any, Any]:
    input_shape = tuple(int(side) for side in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if num_classes != len(EMOTIONS):
        logger.info("building a %d-class model; EMOTIONS has %d names", num_classes, len(EMOTIONS))
    inputs = keras.Input(shape=input_shape, name="pixels")
    return inputs, keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def check_images(model: Any, images: np.ndarray, what: str) -> np.ndarray:
    """``images`` as a model input: ``(n, *model.input_shape[1:])``, uint8 kept, else float32.

    Raises ``ValueError`` naming ``what`` when the shape does not match or the dtype is not
    numeric.
    """
    images = np.asarray(images)
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"{what} must have shape (n, {', '.join(map(str, expected))}) to match "
                         f"the model input, got {images.shape}; decode with "
                         "artsy.io.decode_image(..., size=...) first")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.number):
            raise ValueError(f"{what} must be numeric (uint8 pixels), got dtype {images.dtype}")
        images = images.astype(np.float32, copy=False)
    return images
