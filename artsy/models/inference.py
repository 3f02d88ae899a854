"""TensorFlow set-up and fixed-shape batched inference, shared by every Keras model in artsy.

:func:`predict_batched` pads the last batch so one traced ``tf.function`` per model, batch size
and dtype serves every call (no retracing, no per-call ``predict`` set-up): the CNN actor calls it
for every block of the job. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: model -> {(batch_size, dtype): tf.function}; weak, so a dropped model frees its functions.
_FORWARD_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def configure_tensorflow(*, intra_op_threads: int | None = None,
                         inter_op_threads: int | None = None,
                         gpu_memory_growth: bool = True) -> list[str]:
    """Set TensorFlow's thread pools and GPU memory growth; safe to call more than once.

    Parameters
    ----------
    intra_op_threads : int or None, default=None
        Threads inside one op (``None`` keeps TensorFlow's default: all cores).
    inter_op_threads : int or None, default=None
        Ops run in parallel (``None`` keeps the default).
    gpu_memory_growth : bool, default=True
        Allocate GPU memory on demand instead of all at start, so several actors share a GPU.

    Returns
    -------
    list of str
        Names of the visible GPUs (empty on a CPU-only machine).

    Raises
    ------
    ValueError
        If a thread count is smaller than 1.

    Notes
    -----
    TensorFlow fixes these when it first runs an op; a later change is logged, not raised.
    """
    for name, value in (("intra_op_threads", intra_op_threads),
                        ("inter_op_threads", inter_op_threads)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None (TensorFlow's default), got {value}")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, gpu_memory_growth)
        except RuntimeError as error:  # TensorFlow already initialised the device
            logger.info("GPU memory growth of %s left as is: %s", gpu.name, error)
    setters = ((intra_op_threads, tf.config.threading.set_intra_op_parallelism_threads),
               (inter_op_threads, tf.config.threading.set_inter_op_parallelism_threads))
    for value, setter in setters:
        if value is None:
            continue
        try:
            setter(value)
        except RuntimeError as error:
            logger.info("TensorFlow thread setting %s=%d left as is: %s",
                        setter.__name__, value, error)
    return [gpu.name for gpu in gpus]


def predict_batched(model: Any, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Run ``model`` (inference mode) over ``images`` in fixed-shape batches of ``batch_size``.

    Parameters
    ----------
    model : keras.Model
        One input, one output.
    images : (n, ...) ndarray
        Matching the model's input shape; uint8 is cast to float32 inside the traced function.
    batch_size : int, default=64

    Returns
    -------
    (n, ...) float32 ndarray
        The model's output per image (``n`` may be 0).

    Raises
    ------
    ValueError
        If ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images = np.asarray(images)
    out = np.empty((len(images), *model.output_shape[1:]), dtype=np.float32)
    if len(images) == 0:
        return out
    forward = _forward_function(model, batch_size, images.dtype)
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        count = len(batch)
        if count < batch_size:
            padding = np.zeros((batch_size - count, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, padding])
        out[start:start + count] = forward(batch).numpy()[:count]
    return out


def _forward_function(model: Any, batch_size: int, dtype: np.dtype) -> Any:
    import tensorflow as tf

    functions = _FORWARD_CACHE.setdefault(model, {})
    key = (batch_size, np.dtype(dtype).name)
    if key not in functions:
        spec = tf.TensorSpec((batch_size, *model.input_shape[1:]), tf.as_dtype(dtype))
        model_ref = weakref.ref(model)  # the cache must not keep its own key alive

        @tf.function(input_signature=[spec])
        def forward(batch: tf.Tensor) -> tf.Tensor:
            return tf.cast(model_ref()(tf.cast(batch, tf.float32), training=False), tf.float32)

        functions[key] = forward
    return functions[key]
