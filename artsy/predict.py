"""The batch job's stages, each a ``map_batches`` step over ``Dict[str, np.ndarray]`` batches.

1. :func:`decode_and_featurize` (Ray tasks, CPU): read each file's bytes, hash them, decode and
   extract features. A file that cannot be read or decoded becomes an error row with its reason.
2. :class:`ClassicalPredictor` (actors): every classical model's positive-class probability.
3. :class:`CnnPredictor` (actor pool, one GPU per actor when the cluster has GPUs): the CNN.
4. :func:`to_output_table`: ensemble probability, label and the Parquet columns of
   :func:`artsy.schema.output_schema`.

Error rows (``status != "ok"``) pass through every predictor untouched. Which files a run
processes at all (incremental runs) is decided before, on the driver (:mod:`artsy.incremental`).
Sentinels inside the stream (``-1`` sizes, ``NaN`` probabilities, empty strings) become nulls in
:func:`to_output_table`.
"""

from __future__ import annotations

import datetime
import hashlib
import logging

import numpy as np
import pyarrow as pa

from artsy.config import EMOTIONS
from artsy.schema import model_column, output_schema

logger = logging.getLogger(__name__)

#: ``p_positive`` at or above this is labelled ``positive``.
DECISION_THRESHOLD = 0.5
Batch = dict[str, np.ndarray]


def decode_and_featurize(batch: Batch, *, image_size: int, feature_set: str,
                         n_features: int | None = None) -> Batch:
    """Read, hash, decode and featurize a batch of discovered files (a Ray task).

    Parameters
    ----------
    batch : dict with ``path`` (str) and ``location`` (bytes) arrays of length n
        Discovered files (see :class:`artsy.discover.DiscoveredFile`).
    image_size : int
        Side of the decoded square image.
    feature_set : str
        Feature set of the bundle's classical models.
    n_features : int or None, default=None
        Length of that feature set (``None``: look it up). Given, a batch without a decodable
        image never imports the feature code (scikit-image, SciPy).

    Returns
    -------
    dict of ndarray, n rows
        ``path``, ``content_sha256``, ``file_size`` (-1 if unknown), ``width``, ``height`` (0 on
        error), ``status``, ``error`` ("" when ok), ``pixels`` ``(n, size, size, 3)`` uint8 and
        ``features`` ``(n, d)`` float32 (zeros on error rows).
    """
    from artsy.io import ImageDecodeError, decode_image, read_file

    rows = []
    for path, location in zip(batch["path"], batch["location"], strict=True):
        path = str(path)
        row = {"path": path, "sha": "", "size": -1, "width": 0, "height": 0, "status": "error",
               "error": "", "pixels": None}
        try:
            data = read_file(bytes(location))
        except OSError as error:
            row["error"] = str(error)
            rows.append(row)
            continue
        row["sha"] = hashlib.sha256(data).hexdigest()
        row["size"] = len(data)
        try:
            decoded = decode_image(data, size=image_size)
        except ImageDecodeError as error:
            row["error"] = str(error)
        except Exception as error:  # a decoder bug must cost one row, not the run
            logger.warning("unexpected decode failure for %s: %r", path, error)
            row["error"] = f"decode failed: {type(error).__name__}: {error}"
        else:
            row.update(status="ok", width=decoded.width, height=decoded.height,
                       pixels=decoded.pixels)
        rows.append(row)

    count = len(rows)
    pixels = np.zeros((count, image_size, image_size, 3), dtype=np.uint8)
    fresh = np.array([row["status"] == "ok" for row in rows], dtype=bool)
    for index, row in enumerate(rows):
        if row["pixels"] is not None:
            pixels[index] = row["pixels"]
    if n_features is None:
        from artsy.features import feature_names

        n_features = len(feature_names(feature_set))
    features = np.zeros((count, n_features), dtype=np.float32)
    if fresh.any():
        from artsy.features import extract_features

        features[fresh] = extract_features(pixels[fresh], feature_set)
    return {
        "path": np.array([row["path"] for row in rows], dtype=object),
        "content_sha256": np.array([row["sha"] for row in rows], dtype=object),
        "file_size": np.array([row["size"] for row in rows], dtype=np.int64),
        "width": np.array([row["width"] for row in rows], dtype=np.int32),
        "height": np.array([row["height"] for row in rows], dtype=np.int32),
        "status": np.array([row["status"] for row in rows], dtype=object),
        "error": np.array([row["error"] for row in rows], dtype=object),
        "pixels": pixels,
        "features": features,
    }


def _fresh_ok(batch: Batch) -> np.ndarray:
    return batch["status"] == "ok"


def _combine_and_label(bundle, batch: Batch, mask: np.ndarray) -> None:
    """Add ``p_positive`` (NaN where ``mask`` is False) from the members' columns."""
    p_positive = np.full(len(mask), np.nan, dtype=np.float64)
    if mask.any():
        probs = {name: batch[model_column(name)][mask] for name in bundle.members}
        p_positive[mask] = bundle.combine(probs)
    batch["p_positive"] = p_positive


class ClassicalPredictor:
    """Adds ``p_positive_<model>`` for every classical model of a bundle (a Ray Data actor).

    Parameters
    ----------
    bundle_path : str or None
        Model bundle directory; ``None`` is the shipped default. Loaded (and verified) once.
    combine : bool, default=False
        Also compute the ensemble ``p_positive`` (when no CNN stage follows).
    """

    def __init__(self, bundle_path: str | None, *, combine: bool = False) -> None:
        from artsy.bundle import load_bundle

        self.bundle = load_bundle(bundle_path)
        self.combine = combine

    def __call__(self, batch: Batch) -> Batch:
        """Map a batch from :func:`decode_and_featurize`; drops ``features``."""
        mask = _fresh_ok(batch)
        features = batch.pop("features")
        for name in sorted(self.bundle.classical):
            batch[model_column(name)] = np.full(len(mask), np.nan, dtype=np.float64)
        if mask.any():
            for name, probs in self.bundle.predict_classical(features[mask]).items():
                batch[model_column(name)][mask] = probs
        if self.combine:
            _combine_and_label(self.bundle, batch, mask)
            batch.pop("pixels")
        return batch


class CnnPredictor:
    """Adds ``p_positive_cnn`` and the ensemble ``p_positive`` (a Ray Data actor, GPU if given).

    Parameters
    ----------
    bundle_path : str or None
        Model bundle directory; ``None`` is the shipped default.
    batch_size : int
        Images per forward pass; the last pass is padded so the model always sees this shape.
    threads : int or None, default=None
        TensorFlow intra-op threads (the CPUs the actor reserved); ``None`` is TensorFlow's default.

    Notes
    -----
    The bundle is loaded and verified in ``__init__``; TensorFlow and the Keras model load on the
    first batch that holds a new image. An incremental run whose files are all already labelled
    then never pays TensorFlow's start-up (seconds per actor).
    """

    def __init__(self, bundle_path: str | None, *, batch_size: int,
                 threads: int | None = None) -> None:
        from artsy.bundle import load_bundle

        self.bundle = load_bundle(bundle_path)
        self.batch_size = batch_size
        self.threads = threads
        self.model = None

    def _load_model(self):
        if self.model is None:
            from artsy import cnn

            cnn.configure_tensorflow(intra_op_threads=self.threads, gpu_memory_growth=True)
            self.model = self.bundle.load_cnn()
        return self.model

    def __call__(self, batch: Batch) -> Batch:
        """Map a batch from :class:`ClassicalPredictor`; drops ``pixels``."""
        from artsy import cnn

        mask = _fresh_ok(batch)
        pixels = batch.pop("pixels")
        column = np.full(len(mask), np.nan, dtype=np.float64)
        if mask.any():
            column[mask] = cnn.predict_positive(self._load_model(), pixels[mask],
                                                batch_size=self.batch_size)
        batch[model_column("cnn")] = column
        _combine_and_label(self.bundle, batch, mask)
        return batch


def _nullable(values: np.ndarray, valid: np.ndarray, type_: pa.DataType) -> pa.Array:
    return pa.array(values, type=type_, mask=~valid)


def to_output_table(batch: Batch, *, run_id: str, models: tuple[str, ...], model_version: str,
                    feature_set: str) -> pa.Table:
    """Turn a predicted batch into a table with exactly :func:`artsy.schema.output_schema`.

    Parameters
    ----------
    batch : dict of ndarray
        Output of the last predictor.
    run_id, model_version, feature_set : str
        Written to every new row.
    models : tuple of str
        The per-model probability columns, in schema order.

    Returns
    -------
    pyarrow.Table
    """
    schema = output_schema(models)
    count = len(batch["path"])
    ok = batch["status"] == "ok"
    probability_names = ["p_positive"] + [model_column(name) for name in models]
    probabilities = {name: np.asarray(batch.get(name, np.full(count, np.nan)), dtype=np.float64)
                     for name in probability_names}
    labels = np.where(probabilities["p_positive"] >= DECISION_THRESHOLD, EMOTIONS[1], EMOTIONS[0])
    now = datetime.datetime.now(datetime.UTC)
    columns = {
        "run_id": pa.array([run_id] * count, pa.string()),
        "path": pa.array(list(batch["path"]), pa.string()),
        "content_sha256": _nullable(batch["content_sha256"], batch["content_sha256"] != "",
                                    pa.string()),
        "file_size": _nullable(batch["file_size"], batch["file_size"] >= 0, pa.int64()),
        "width": _nullable(batch["width"], ok, pa.int32()),
        "height": _nullable(batch["height"], ok, pa.int32()),
        "status": pa.array(list(batch["status"]), pa.string()),
        "error": _nullable(batch["error"], ~ok, pa.string()),
        "label": _nullable(labels, ok & ~np.isnan(probabilities["p_positive"]), pa.string()),
        **{name: _nullable(values, ~np.isnan(values), pa.float64())
           for name, values in probabilities.items()},
        "model_version": pa.array([model_version] * count, pa.string()),
        "feature_set": pa.array([feature_set] * count, pa.string()),
        "inferred_at": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
    }
    return pa.table([columns[name] for name in schema.names], schema=schema)
