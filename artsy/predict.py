"""The batch job's stages, each a ``map_batches`` step over ``Dict[str, np.ndarray]`` batches.

1. :func:`decode_and_featurize` (Ray tasks, CPU): read each file's bytes, hash them, decode and
   extract features. A file that cannot be read or decoded becomes an error row with its reason.
2. :class:`ClassicalPredictor` (actors): every classical model's positive-class probability.
3. :class:`CnnPredictor` (actor pool, one GPU per actor when the cluster has GPUs): the CNN.
4. :func:`to_output_table`: ensemble probability, label and the Parquet columns of
   :func:`artsy.schema.output_schema`.

Error rows (``status != "ok"``) and rows carried forward from an earlier run pass through every
predictor untouched. Sentinels inside the stream (``-1`` sizes, ``NaN`` probabilities, empty
strings) become nulls in :func:`to_output_table`.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import stat
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from artsy.config import EMOTIONS
from artsy.schema import model_column, output_schema

logger = logging.getLogger(__name__)

#: ``p_positive`` at or above this is labelled ``positive``.
DECISION_THRESHOLD = 0.5
#: Row kinds inside the stream.
NEW, CARRIED = "new", "carried"
_READ_CHUNK = 1 << 20
Batch = dict[str, np.ndarray]


def _read_local(location: bytes) -> bytes:
    """Read a local file without ever blocking on a FIFO or device; raise OSError with a reason."""
    try:
        descriptor = os.open(location, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        if os.path.islink(location):
            raise OSError("dangling symlink: target does not exist") from None
        raise OSError("file not found: deleted after discovery") from None
    except PermissionError:
        raise OSError("unreadable: permission denied") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError("not a regular file")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(descriptor)


def _read_uri(uri: str) -> bytes:
    import pyarrow.fs

    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise OSError("file not found: deleted after discovery") from None
    except (OSError, pa.ArrowException) as error:
        raise OSError(f"unreadable: {error}") from None


def read_file(location: bytes) -> bytes:
    """Return the bytes of a discovered file (local OS path bytes or a UTF-8 URI).

    Raises
    ------
    OSError
        With the reason written to the table (dangling symlink, deleted, permission denied, ...).
    """
    from artsy.discover import is_uri

    text = location.decode("utf-8", errors="surrogateescape")
    if is_uri(text):
        return _read_uri(text)
    try:
        return _read_local(location)
    except OSError as error:
        if error.errno is None:  # one of our reasons above
            raise
        raise OSError(f"unreadable: {error.strerror}") from None


def decode_and_featurize(batch: Batch, *, image_size: int, feature_set: str,
                         n_features: int | None = None,
                         skip_hashes: frozenset[str] = frozenset(),
                         carry_keys: frozenset[tuple[str, str]] = frozenset()) -> Batch:
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
        Length of that feature set (``None``: look it up). Given, a batch with nothing new to
        featurize never imports the feature code (scikit-image, SciPy).
    skip_hashes : frozenset of str, default=frozenset()
        Content hashes already labelled by this model version: such files get no row.
    carry_keys : frozenset of (path, sha256), default=frozenset()
        Files whose earlier row (in the partition being replaced) is kept as it is.

    Returns
    -------
    dict of ndarray, m <= n rows
        ``path``, ``content_sha256``, ``file_size`` (-1 if unknown), ``width``, ``height`` (0 on
        error), ``status``, ``error`` ("" when ok), ``kind`` (``new`` / ``carried``), ``pixels``
        ``(m, size, size, 3)`` uint8 and ``features`` ``(m, d)`` float32 (zeros unless new and ok).
    """
    from artsy.io import ImageDecodeError, decode_image

    rows = []
    for path, location in zip(batch["path"], batch["location"], strict=True):
        path = str(path)
        row = {"path": path, "sha": "", "size": -1, "width": 0, "height": 0, "status": "error",
               "error": "", "kind": NEW, "pixels": None}
        try:
            data = read_file(bytes(location))
        except OSError as error:
            row["error"] = str(error)
            rows.append(row)
            continue
        row["sha"] = hashlib.sha256(data).hexdigest()
        row["size"] = len(data)
        if row["sha"] in skip_hashes:
            continue
        if (path, row["sha"]) in carry_keys:
            row.update(status="ok", kind=CARRIED)
            rows.append(row)
            continue
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
    fresh = np.array([row["status"] == "ok" and row["kind"] == NEW for row in rows], dtype=bool)
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
        "kind": np.array([row["kind"] for row in rows], dtype=object),
        "pixels": pixels,
        "features": features,
    }


def _fresh_ok(batch: Batch) -> np.ndarray:
    return (batch["status"] == "ok") & (batch["kind"] == NEW)


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
                    feature_set: str,
                    carried: Mapping[tuple[str, str], Mapping[str, object]] | None = None
                    ) -> pa.Table:
    """Turn a predicted batch into a table with exactly :func:`artsy.schema.output_schema`.

    Parameters
    ----------
    batch : dict of ndarray
        Output of the last predictor.
    run_id, model_version, feature_set : str
        Written to every new row.
    models : tuple of str
        The per-model probability columns, in schema order.
    carried : mapping of (path, sha256) to row dict, optional
        Earlier rows, written unchanged for rows of kind ``carried``.

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
    table = pa.table([columns[name] for name in schema.names], schema=schema)
    kinds = batch["kind"]
    if carried and (kinds == CARRIED).any():
        table = _apply_carried(table, batch, carried)
    return table


def _apply_carried(table: pa.Table, batch: Batch,
                   carried: Mapping[tuple[str, str], Mapping[str, object]]) -> pa.Table:
    """Replace the rows of kind ``carried`` with the earlier rows they stand for."""
    rows = table.to_pylist()
    for index, kind in enumerate(batch["kind"]):
        if kind == CARRIED:
            key = (str(batch["path"][index]), str(batch["content_sha256"][index]))
            rows[index] = {name: carried[key].get(name) for name in table.schema.names}
    return pa.Table.from_pylist(rows, schema=table.schema)
