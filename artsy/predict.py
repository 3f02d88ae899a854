"""The batch job's stages, each a ``map_batches`` step over ``Dict[str, np.ndarray]`` batches.

1. :func:`featurize_and_score` (Ray tasks, CPU): :func:`decode_and_featurize` reads each file's
   bytes, hashes, decodes and featurizes them (a file that cannot be read or decoded becomes an
   error row with its reason), then :func:`add_classical` adds every classical model's
   positive-class probability (the bundle is loaded once per worker process).
2. :class:`CnnPredictor` (actor pool, one GPU per actor when the cluster has GPUs): the
   pretrained backbone's embedding of each centre crop and the models over it (and the
   from-scratch CNN of older bundles), then the ensemble.
3. :func:`to_output_table`: ensemble probability, label and the Parquet columns of
   :func:`artsy.schema.output_schema`, made by the last stage (the actor, or the task when the
   bundle has no CNN), so rows leave the pipeline as small Arrow tables.

Error rows (``status != "ok"``) pass through every predictor untouched. Which files a run
processes at all (incremental runs) is decided before, on the driver (:mod:`artsy.incremental`).
Sentinels inside the stream (``-1`` sizes, ``NaN`` probabilities, empty strings) become nulls in
:func:`to_output_table`.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Container, Mapping

import numpy as np
import pyarrow as pa

from artsy.config import EMOTION_CATEGORIES, EMOTIONS
from artsy.schema import EMOTION_COLUMN, EMOTION_PROBABILITY_COLUMNS, model_column, output_schema

logger = logging.getLogger(__name__)

#: ``p_positive`` at or above this is labelled ``positive``.
DECISION_THRESHOLD = 0.5
Batch = dict[str, np.ndarray]


def decode_and_featurize(batch: Batch, *, image_size: int, feature_set: str,
                         n_features: int | None = None, crop_size: int | None = None,
                         skip: Container[str] = ()) -> Batch:
    """Read, hash, decode and featurize a batch of discovered files (a Ray task).

    Parameters
    ----------
    batch : dict with ``path`` (str) and ``location`` (bytes) arrays of length n
        Discovered files (see :class:`artsy.discover.DiscoveredFile`); an optional ``mtime_ns``
        array (-1 unknown) is the listed modification time, written as ``file_modified``.
    image_size : int
        Side of the decoded square image.
    feature_set : str
        Feature set of the bundle's classical models.
    n_features : int or None, default=None
        Length of that feature set (``None``: look it up). Given, a batch without a decodable
        image never imports the feature code (scikit-image, SciPy).
    crop_size : int or None, default=None
        Also keep the backbone's centre crop of this side, from the same decode.
    skip : container of str, default=()
        Content hashes already labelled elsewhere in the table: such a file is hashed, not
        decoded, and gets no row (the batch shrinks).

    Returns
    -------
    dict of ndarray, at most n rows
        ``path``, ``content_sha256``, ``file_size`` (-1 if unknown), ``file_modified``
        (microseconds, -1 if unknown), ``width``, ``height`` (0 on
        error), ``status``, ``error`` ("" when ok), ``pixels`` ``(n, size, size, 3)`` uint8 and
        ``features`` ``(n, d)`` float32 (zeros on error rows); with ``crop_size``, ``crops``
        ``(n, crop, crop, 3)`` uint8.
    """
    from artsy.io import ImageDecodeError, decode_image, read_file

    rows = []
    listed = batch.get("mtime_ns", np.full(len(batch["path"]), -1, dtype=np.int64))
    for path, location, mtime_ns in zip(batch["path"], batch["location"], listed, strict=True):
        path = str(path)
        row = {"path": path, "sha": "", "size": -1, "width": 0, "height": 0, "status": "error",
               "error": "", "pixels": None, "crop": None,
               "modified": int(mtime_ns) // 1000 if mtime_ns >= 0 else -1}
        try:
            data = read_file(bytes(location))
        except OSError as error:
            row["error"] = str(error)
            rows.append(row)
            continue
        row["sha"] = hashlib.sha256(data).hexdigest()
        if row["sha"] in skip:
            continue
        row["size"] = len(data)
        try:
            decoded = decode_image(data, size=image_size, crop=crop_size)
        except ImageDecodeError as error:
            row["error"] = str(error)
        except Exception as error:  # a decoder bug must cost one row, not the run
            logger.warning("unexpected decode failure for %s: %r", path, error)
            row["error"] = f"decode failed: {type(error).__name__}: {error}"
        else:
            row.update(status="ok", width=decoded.width, height=decoded.height,
                       pixels=decoded.pixels, crop=decoded.crop)
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
    out = {
        "path": np.array([row["path"] for row in rows], dtype=object),
        "content_sha256": np.array([row["sha"] for row in rows], dtype=object),
        "file_size": np.array([row["size"] for row in rows], dtype=np.int64),
        "file_modified": np.array([row["modified"] for row in rows], dtype=np.int64),
        "width": np.array([row["width"] for row in rows], dtype=np.int32),
        "height": np.array([row["height"] for row in rows], dtype=np.int32),
        "status": np.array([row["status"] for row in rows], dtype=object),
        "error": np.array([row["error"] for row in rows], dtype=object),
        "pixels": pixels,
        "features": features,
    }
    if crop_size is not None:
        out["crops"] = np.zeros((count, crop_size, crop_size, 3), dtype=np.uint8)
        for index, row in enumerate(rows):
            if row["crop"] is not None:
                out["crops"][index] = row["crop"]
    return out


def _ok_rows(batch: Batch) -> np.ndarray:
    return batch["status"] == "ok"


def _combine_and_label(bundle, batch: Batch, mask: np.ndarray) -> None:
    """Add ``p_positive`` (NaN where ``mask`` is False) from the members' columns."""
    p_positive = np.full(len(mask), np.nan, dtype=np.float64)
    if mask.any():
        probs = {name: batch[model_column(name)][mask] for name in bundle.members}
        p_positive[mask] = bundle.combine(probs)
    batch["p_positive"] = p_positive


#: Bundles loaded in this worker process, by path (a Ray worker process runs many tasks).
_BUNDLES: dict[str | None, object] = {}


def cached_bundle(bundle_path: str | None):
    """Return the verified bundle at ``bundle_path``, loaded once per process.

    Lazy (:func:`artsy.bundle.load_bundle`): a CNN actor loads the combiner and the CNN, never
    the classical models; a CPU task loads the classical models on its first batch.
    """
    bundle = _BUNDLES.get(bundle_path)
    if bundle is None:
        from artsy.bundle import load_bundle

        bundle = _BUNDLES[bundle_path] = load_bundle(bundle_path, lazy=True)
    return bundle


def add_classical(bundle, batch: Batch, *, combine: bool = False) -> Batch:
    """Add ``p_positive_<model>`` for every classical model of ``bundle``; drop ``features``.

    Parameters
    ----------
    bundle : artsy.bundle.Bundle
    batch : dict of ndarray
        From :func:`decode_and_featurize`.
    combine : bool, default=False
        Also add the ensemble ``p_positive`` (possible when the CNN is not an ensemble member).
    """
    mask = _ok_rows(batch)
    features = batch.pop("features")
    for name in sorted(bundle.classical):
        batch[model_column(name)] = np.full(len(mask), np.nan, dtype=np.float64)
    if mask.any():
        for name, probs in bundle.predict_classical(features[mask]).items():
            batch[model_column(name)][mask] = probs
    if combine:
        _combine_and_label(bundle, batch, mask)
    return batch


def featurize_and_score(batch: Batch, *, bundle_path: str | None, image_size: int,
                        feature_set: str, n_features: int | None = None,
                        output: Mapping[str, object] | None = None,
                        skip: list | None = None) -> Batch | pa.Table:
    """The job's CPU task: :func:`decode_and_featurize`, the classical models, the ensemble.

    The ensemble ``p_positive`` is added here unless the CNN is one of its members (then the CNN
    actor adds it), so an actor whose CNN only fills its own column never loads scikit-learn.

    Parameters
    ----------
    batch : dict with ``path`` and ``location`` arrays
        Discovered files.
    bundle_path : str or None
        Model bundle (``None``: the shipped default), loaded once per worker process.
    image_size, feature_set, n_features
        As for :func:`decode_and_featurize` (the backbone's crop size comes from the bundle).
    output : mapping or None, default=None
        Keyword arguments of :func:`to_output_table`. Given (a bundle without a CNN), the task
        also combines the ensemble and returns the finished table.
    skip : list or None, default=None
        ``[ref]``: a Ray object reference to an :class:`artsy.incremental.HashSet` of content
        already labelled (fetched once per worker process); such files get no row.

    Returns
    -------
    dict of ndarray or pyarrow.Table
        The batch with the classical columns and what :class:`CnnPredictor` reads (``pixels``
        for a from-scratch CNN, ``crops`` for the backbone; the other is not shipped); or the
        output table.
    """
    bundle = cached_bundle(bundle_path)
    batch = decode_and_featurize(batch, image_size=image_size, feature_set=feature_set,
                                 n_features=n_features, crop_size=bundle.crop_size,
                                 skip=_skip_set(skip))
    batch["node_id"] = np.full(len(batch["path"]), node_id(), dtype=object)
    batch = add_classical(bundle, batch, combine=not bundle.actor_member)
    if output is not None or not bundle.has_cnn:
        batch.pop("pixels")  # only a from-scratch CNN reads the squares after this task
    if output is None:
        return batch
    batch.pop("crops", None)
    return to_output_table(batch, **output)


#: Skip sets fetched in this worker process, by object reference.
_SKIPS: dict[str, Container[str]] = {}


def _skip_set(skip: list | None) -> Container[str]:
    if not skip:
        return ()
    key = skip[0].hex()
    if key not in _SKIPS:
        import ray

        _SKIPS.clear()  # one run's set at a time
        _SKIPS[key] = ray.get(skip[0])
    return _SKIPS[key]


def node_id() -> str:
    """Return the Ray node id of this process ("" outside a Ray worker or driver)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


class CnnPredictor:
    """Adds the actor's columns: ``p_positive_<model>`` of every model over the backbone embedding
    (and ``p_positive_cnn`` for a bundle with a from-scratch CNN), then ``p_positive`` when one of
    them is an ensemble member.

    A Ray Data actor, on a GPU when the cluster has one.

    Parameters
    ----------
    bundle_path : str or None
        Model bundle directory; ``None`` is the shipped default.
    batch_size : int
        Images per forward pass; the last pass is padded so the model always sees this shape.
    threads : int or None, default=None
        TensorFlow intra-op threads (the CPUs the actor reserved); ``None`` is TensorFlow's default.
    output : mapping or None, default=None
        Keyword arguments of :func:`to_output_table`: given, each call returns the finished table.

    Notes
    -----
    TensorFlow and the Keras models load in ``__init__``: Ray Data starts the actor pool when the
    run starts, so the import (seconds) overlaps the first decode tasks instead of following them.
    """

    def __init__(self, bundle_path: str | None, *, batch_size: int, threads: int | None = None,
                 output: Mapping[str, object] | None = None) -> None:
        from artsy.inference import configure_tensorflow

        self.bundle = cached_bundle(bundle_path)
        self.batch_size = batch_size
        self.output = output
        configure_tensorflow(intra_op_threads=threads, gpu_memory_growth=True)
        self.node_id = node_id()
        self.backbone = self.bundle.load_backbone() if self.bundle.backbone else None
        self.model = self.bundle.load_cnn() if self.bundle.has_cnn else None
        if self.backbone is not None:
            _ = self.bundle.embedding_models  # load the heads now, not on the first batch

    def __call__(self, batch: Batch) -> Batch | pa.Table:
        """Map a batch from :func:`featurize_and_score`; drops ``pixels`` and ``crops``."""
        from artsy.inference import predict_batched

        mask = _ok_rows(batch)
        pixels, crops = batch.pop("pixels", None), batch.pop("crops", None)
        if self.backbone is not None:
            for name in self.bundle.embedding_names:
                batch[model_column(name)] = np.full(len(mask), np.nan, dtype=np.float64)
            embeddings = None
            if mask.any():
                embeddings = predict_batched(self.backbone, crops[mask],
                                             batch_size=self.batch_size)
                for name, probs in self.bundle.predict_embedding(embeddings).items():
                    batch[model_column(name)][mask] = probs
        if self.model is not None:
            from artsy import cnn

            column = np.full(len(mask), np.nan, dtype=np.float64)
            if mask.any():
                column[mask] = cnn.predict_positive(self.model, pixels[mask],
                                                    batch_size=self.batch_size)
            batch[model_column("cnn")] = column
        if self.bundle.actor_member:
            _combine_and_label(self.bundle, batch, mask)
        if self.backbone is not None and self.bundle.has_emotion:
            batch["emotion_probs"] = np.full((len(mask), len(EMOTION_CATEGORIES)), np.nan)
            if mask.any():
                batch["emotion_probs"][mask] = self.bundle.predict_emotion(
                    embeddings, batch["p_positive"][mask])
        batch["cnn_node_id"] = np.full(len(mask), self.node_id, dtype=object)
        return batch if self.output is None else to_output_table(batch, **self.output)


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
    categories = np.asarray(batch.get("emotion_probs", np.full((count, len(EMOTION_CATEGORIES)),
                                                                 np.nan)), dtype=np.float64)
    has_category = ok & ~np.isnan(categories).any(axis=1)
    category_names = np.asarray(EMOTION_CATEGORIES, dtype=object)[
        np.nan_to_num(categories, nan=-1.0).argmax(axis=1)]
    now = datetime.datetime.now(datetime.UTC)
    columns = {
        "run_id": pa.array([run_id] * count, pa.string()),
        "path": pa.array(list(batch["path"]), pa.string()),
        "content_sha256": _nullable(batch["content_sha256"], batch["content_sha256"] != "",
                                    pa.string()),
        "file_size": _nullable(batch["file_size"], batch["file_size"] >= 0, pa.int64()),
        "file_modified": _nullable(batch["file_modified"], batch["file_modified"] >= 0,
                                   pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "width": _nullable(batch["width"], ok, pa.int32()),
        "height": _nullable(batch["height"], ok, pa.int32()),
        "status": pa.array(list(batch["status"]), pa.string()),
        "error": _nullable(batch["error"], ~ok, pa.string()),
        "label": _nullable(labels, ok & ~np.isnan(probabilities["p_positive"]), pa.string()),
        **{name: _nullable(values, ~np.isnan(values), pa.float64())
           for name, values in probabilities.items()},
        EMOTION_COLUMN: _nullable(category_names, has_category, pa.string()),
        **{name: _nullable(categories[:, index], has_category, pa.float64())
           for index, name in enumerate(EMOTION_PROBABILITY_COLUMNS)},
        "model_version": pa.array([model_version] * count, pa.string()),
        "feature_set": pa.array([feature_set] * count, pa.string()),
        "inferred_at": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
        **{name: _nullable(values, values != "", pa.string())
           for name in ("node_id", "cnn_node_id")
           for values in [np.asarray(batch.get(name, np.full(count, "", dtype=object)))]},
    }
    return pa.table([columns[name] for name in schema.names], schema=schema)
