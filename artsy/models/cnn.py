"""Convolutional networks for image affect: the notebook's seed net and an efficient default.

Both models take ``(n, 100, 100, 3)`` RGB pixels in ``[0, 255]`` (uint8 or float) and end in a
softmax over :data:`artsy.config.EMOTIONS` (index 1 is "positive"). Preprocessing (``Rescaling``)
and, in the default net, augmentation live inside the model, so training and inference cannot
diverge, and both save as ``.keras`` files that load with ``safe_mode=True`` (no ``Lambda``).

TensorFlow and Keras are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artsy.config import EMOTIONS
from artsy.models.inference import configure_tensorflow, predict_batched

__all__ = ["build_cnn", "build_seed_cnn", "configure_tensorflow", "predict_positive",
           "train_cnn", "best_epoch", "feature_maps"]

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


def train_cnn(model: Any, images: np.ndarray, labels: np.ndarray, *,
              validation_data: tuple[np.ndarray, np.ndarray] | None = None, epochs: int = 40,
              batch_size: int = 32, seed: int = 1337, patience: int = 10,
              checkpoint_path: str | Path | None = None,
              class_weight: str | dict[int, float] | None = "balanced",
              deterministic: bool = True, verbose: int = 0) -> Any:
    """Train a model with early stopping on validation loss; the best weights are kept.

    Parameters
    ----------
    model : keras.Model
        From :func:`build_cnn` or :func:`build_seed_cnn`; compiled here (Adam) if it is not.
    images : (n, H, W, 3) uint8 or float ndarray
        Pixels in ``[0, 255]``, ``(H, W, 3)`` equal to the model's input shape.
    labels : (n,) int ndarray
        Class indices into :data:`artsy.config.EMOTIONS` (1 = positive).
    validation_data : tuple of (images, labels) or None, default=None
        Held-out images (e.g. a grouped inner split of the training fold, made by the caller).
        With it, training stops after ``patience`` epochs without a lower validation loss and
        the best epoch's weights are restored. Without it, exactly ``epochs`` epochs run.
    epochs, batch_size, patience : int, default=40, 32, 10
        Upper bound on epochs; images per step; early-stopping patience in epochs.
    seed : int, default=1337
        Seeds shuffling, dropout and augmentation (``keras.utils.set_random_seed``).
    checkpoint_path : str, Path or None, default=None
        Where ``ModelCheckpoint`` saves the best model (a ``.keras`` file).
    class_weight : "balanced", dict or None, default="balanced"
        "balanced" weights each class by ``n / (n_classes * count)``; validation images get the
        same weights, so early stopping watches the loss that is trained.
    deterministic : bool, default=True
        Turn on TensorFlow's op determinism (process-wide; slower on GPU).
    verbose : int, default=0

    Returns
    -------
    keras.callbacks.History
        ``history.history`` has ``loss`` and ``accuracy`` (and ``val_*`` with validation data).

    Raises
    ------
    ValueError
        On shapes that do not match the model, labels outside ``[0, n_classes)``, an unknown
        ``class_weight`` or non-positive ``epochs`` / ``batch_size`` / ``patience``.
    """
    import keras

    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    num_classes = int(model.output_shape[-1])
    images, labels = _check_labelled(model, images, labels, "images")
    if validation_data is not None:
        validation_data = _check_labelled(model, *validation_data, "validation images")
    weights = _class_weight(class_weight, labels, num_classes)
    keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if not model.compiled:
        model.compile(optimizer=keras.optimizers.Adam(SEED_LEARNING_RATE),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    monitor = "val_loss" if validation_data is not None else "loss"
    callbacks = []
    if validation_data is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, patience=patience, restore_best_weights=True))
    if checkpoint_path is not None:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            str(checkpoint_path), monitor=monitor, save_best_only=True))
    if validation_data is not None and weights is not None:
        # Score validation on the objective that is trained, or the loss drifts with the prior.
        validation_data = (*validation_data, _sample_weight(weights, validation_data[1]))
    history = model.fit(images, labels, validation_data=validation_data, epochs=epochs,
                        batch_size=batch_size, shuffle=True, class_weight=weights,
                        callbacks=callbacks, verbose=verbose)
    logger.info("trained %s for %d epochs on %d images (best epoch %d)", model.name,
                len(history.history["loss"]), len(images), best_epoch(history))
    return history


def best_epoch(history: Any) -> int:
    """1-based epoch with the lowest validation loss (training loss without validation data).

    Use it to train the final model on all data for the epoch count cross-validation chose.
    """
    record = history.history
    losses = record.get("val_loss") or record["loss"]
    return int(np.argmin(losses)) + 1


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
    images = _check_images(model, images, "images")
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
    batch = _check_images(model, image[None] if image.ndim == 3 else image, "image")
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


def _check_images(model: Any, images: np.ndarray, what: str) -> np.ndarray:
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


def _check_labelled(model: Any, images: np.ndarray, labels: np.ndarray,
                    what: str) -> tuple[np.ndarray, np.ndarray]:
    images = _check_images(model, images, what)
    labels = np.asarray(labels)
    num_classes = int(model.output_shape[-1])
    if labels.shape != (len(images),):
        raise ValueError(f"labels for the {what} must have shape ({len(images)},), "
                         f"got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.size and (
            labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be ints in [0, {num_classes}) (indices into EMOTIONS), "
                         f"got dtype {labels.dtype} with values {np.unique(labels)[:5]}")
    return images, labels.astype(np.int32)


def _class_weight(class_weight: str | dict[int, float] | None, labels: np.ndarray,
                  num_classes: int) -> dict[int, float] | None:
    """The ``class_weight`` dict for ``fit``: "balanced" is ``n / (n_classes * count)``."""
    if class_weight is None or isinstance(class_weight, dict):
        return class_weight
    if class_weight != "balanced":
        raise ValueError(f"class_weight must be 'balanced', a dict or None, got {class_weight!r}")
    counts = np.bincount(labels, minlength=num_classes)
    return {index: float(len(labels) / (num_classes * count)) if count else 0.0
            for index, count in enumerate(counts)}


def _sample_weight(class_weight: dict[int, float], labels: np.ndarray) -> np.ndarray:
    lookup = np.array([class_weight.get(index, 1.0) for index in range(int(labels.max()) + 1)])
    return lookup[labels].astype(np.float32)
