"""Training the CNNs of :mod:`artsy.models.cnn`: early stopping, class balance, seeded runs.

:func:`train_cnn` fits a model on decoded pixels with the class-balanced loss the trainer uses
for every member, early-stops on a held-out split the caller made (grouped, so near-duplicates
stay on one side), and :func:`best_epoch` reads off the epoch count to refit with on all data.

TensorFlow and Keras are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from artsy.models.cnn import SEED_LEARNING_RATE, check_images

__all__ = ["best_epoch", "train_cnn"]

logger = logging.getLogger(__name__)


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
        From :func:`artsy.models.cnn.build_cnn` or :func:`~artsy.models.cnn.build_seed_cnn`;
        compiled here (Adam) if it is not.
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


def _check_labelled(model: Any, images: np.ndarray, labels: np.ndarray,
                    what: str) -> tuple[np.ndarray, np.ndarray]:
    images = check_images(model, images, what)
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
