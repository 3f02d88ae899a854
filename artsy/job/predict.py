"""The batch job's stages, each a ``map_batches`` step over ``Dict[str, np.ndarray]`` batches.

1. :func:`featurize_and_score` (Ray tasks, CPU): :func:`decode_and_featurize` reads each file's
   bytes, hashes, decodes and featurizes them (a file that cannot be read or decoded becomes an
   error row with its reason), then :func:`add_classical` adds every classical model's
   positive-class probability (the bundle is loaded once per worker process).
2. :class:`CnnPredictor` (actor pool, one GPU per actor when the cluster has GPUs): the
   pretrained backbone's embedding of each centre crop and the models over it (and the
   from-scratch CNN of older bundles), then the ensemble.
3. :func:`artsy.job.rows.to_output_table`: ensemble probability, label and the Parquet columns
   of :func:`artsy.job.schema.output_schema`, made by the last stage (the actor, or the task when
   the bundle has no CNN), so rows leave the pipeline as small Arrow tables.

Error rows (``status != "ok"``) pass through every predictor untouched. Which files a run
processes at all (incremental runs) is decided before, on the driver (:mod:`artsy.job.incremental`).
Sentinels inside the stream (``-1`` sizes, ``NaN`` probabilities, empty strings) become nulls in
:func:`to_output_table`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Container, Mapping

import numpy as np
import pyarrow as pa

from artsy.config import EMOTION_CATEGORIES
from artsy.job.rows import to_output_table
from artsy.job.schema import model_column

logger = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


def decode_and_featurize(batch: Batch, *, image_size: int, feature_set: str,
                         n_features: int | None = None, crop_size: int | None = None,
                         skip: Container[str] = ()) -> Batch:
    """Read, hash, decode and featurize a batch of discovered files (a Ray task).

    Parameters
    ----------
    batch : dict with ``path`` (str) and ``location`` (bytes) arrays of length n
        Discovered files (see :class:`artsy.job.discover.DiscoveredFile`); an optional ``mtime_ns``
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

    Lazy (:func:`artsy.models.bundle.load_bundle`): a CNN actor loads the combiner and the CNN,
    never
    the classical models; a CPU task loads the classical models on its first batch.
    """
    bundle = _BUNDLES.get(bundle_path)
    if bundle is None:
        from artsy.models.bundle import load_bundle

        bundle = _BUNDLES[bundle_path] = load_bundle(bundle_path, lazy=True)
    return bundle


def add_classical(bundle, batch: Batch, *, combine: bool = False) -> Batch:
    """Add ``p_positive_<model>`` for every classical model of ``bundle``; drop ``features``.

    Parameters
    ----------
    bundle : artsy.models.bundle.Bundle
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
        ``[ref]``: a Ray object reference to an :class:`artsy.job.incremental.HashSet` of content
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
        TensorFlow intra-op threads (:func:`artsy.job.plan.cnn_threads`); ``None``: its default.
    output : mapping or None, default=None
        Keyword arguments of :func:`to_output_table`: given, each call returns the finished table.

    Notes
    -----
    TensorFlow and the Keras models load in ``__init__``: Ray Data starts the actor pool when the
    run starts, so the import (seconds) overlaps the first decode tasks instead of following them.
    """

    def __init__(self, bundle_path: str | None, *, batch_size: int, threads: int | None = None,
                 output: Mapping[str, object] | None = None) -> None:
        from artsy.models.inference import configure_tensorflow

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
        from artsy.models.inference import predict_batched

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
            from artsy.models import cnn

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
