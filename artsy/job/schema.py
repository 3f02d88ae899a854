"""The Parquet schema of the label table, defined once: the writer and the tests both use it.

Table layout: ``OUTPUT/run_date=YYYY-MM-DD/*.parquet`` (hive partitioning). ``run_date`` is the
partition key and is not stored inside the files; readers get it back from the directory name.

Columns, in order (``output_schema(models)`` inserts one ``p_positive_<model>`` column per model
after ``p_positive``; :data:`OUTPUT_SCHEMA` is the table without any per-model column):

==================  ========================  =====================================================
column              type                      meaning
==================  ========================  =====================================================
run_id              string                    the run that wrote the row
path                string                    file path or URI as discovered (see below)
content_sha256      string                    hex SHA-256 of the file bytes (null if unreadable)
file_size           int64                     bytes (null if unreadable)
file_modified       timestamp[us, tz=UTC]     modification time the listing gave when the run
                                              started (null when it gave none); with ``path``
                                              and ``file_size`` it lets a rerun trust
                                              ``content_sha256`` without reading the file
width, height       int32                     size of the upright original (null on error)
status              string                    ``ok`` or ``error``
error               string                    reason, e.g. ``corrupt image data: ...`` (null if ok)
label               string                    ``positive`` / ``negative`` (null on error)
p_positive          float64                   ensemble probability of ``positive`` (null on error)
p_positive_<model>  float64                   one per model: effnet, svm, ..., cnn (null on error)
emotion             string                    Mikels category: amusement, awe, contentment,
                                              excitement, anger, disgust, fear, sadness (null on
                                              error, or when the bundle has no emotion head)
p_<category>        float64                   one per category, in that order; they sum to 1
model_version       string                    bundle version that made the label
feature_set         string                    feature set of the classical models
inferred_at         timestamp[us, tz=UTC]     when the row was computed
node_id             string                    Ray node that read and decoded the file
cnn_node_id         string                    Ray node whose CNN actor ran the backbone (null
                                              when the bundle has no actor model)
==================  ========================  =====================================================

Paths are Unicode strings. A local file name that is not valid UTF-8 (possible on Linux) is written
with its undecodable bytes as ``\\xNN`` escapes, so every file the OS allows still gets its row.
Plain ``string`` (not ``large_string``), ``int32``/``int64``, ``float64`` and microsecond UTC
timestamps read back unchanged with pyarrow, pandas, duckdb and polars.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from artsy.config import EMOTION_CATEGORIES, EMOTIONS

#: Values of the ``status`` column.
STATUSES: tuple[str, str] = ("ok", "error")
#: Prefix of the per-model probability columns.
MODEL_COLUMN_PREFIX = "p_positive_"
#: Name of the hive partition key (a directory level, never a column inside the files).
PARTITION_KEY = "run_date"

_LEADING = (
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("content_sha256", pa.string()),
    pa.field("file_size", pa.int64()),
    pa.field("file_modified", pa.timestamp("us", tz="UTC")),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("label", pa.string()),
    pa.field("p_positive", pa.float64()),
)
#: The emotion-category columns: the answer and one probability per category.
EMOTION_COLUMN = "emotion"
EMOTION_PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in EMOTION_CATEGORIES)
_EMOTION = (pa.field(EMOTION_COLUMN, pa.string()),
            *(pa.field(name, pa.float64()) for name in EMOTION_PROBABILITY_COLUMNS))
_TRAILING = (
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("feature_set", pa.string(), nullable=False),
    pa.field("inferred_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("node_id", pa.string()),
    pa.field("cnn_node_id", pa.string()),
)

#: Label-table columns shared by every bundle (no per-model probability columns).
OUTPUT_SCHEMA: pa.Schema = pa.schema(
    _LEADING + _EMOTION + _TRAILING,
    metadata={b"artsy.labels": ",".join(EMOTIONS).encode(),
              b"artsy.partition_key": PARTITION_KEY.encode()},
)


def model_column(model: str) -> str:
    """Return the probability column of one model, e.g. ``p_positive_knn``."""
    return f"{MODEL_COLUMN_PREFIX}{model}"


def output_schema(models: Iterable[str]) -> pa.Schema:
    """Return the label-table schema for a bundle whose models are ``models``.

    Parameters
    ----------
    models : iterable of str
        Model names (``knn``, ``rf``, ``cnn``, ...), in column order.

    Returns
    -------
    pyarrow.Schema
        :data:`OUTPUT_SCHEMA` with one nullable float64 ``p_positive_<model>`` column per model,
        inserted after ``p_positive`` (before the emotion columns).

    Raises
    ------
    ValueError
        If a name is empty, repeated or not a plain identifier.
    """
    models = list(models)
    for name in models:
        if not name.isidentifier():
            raise ValueError(f"model name must be a plain identifier such as 'knn', got {name!r}")
    if len(set(models)) != len(models):
        raise ValueError(f"model names must be unique, got {models}")
    per_model = tuple(pa.field(model_column(name), pa.float64()) for name in models)
    return pa.schema(_LEADING + per_model + _EMOTION + _TRAILING, metadata=OUTPUT_SCHEMA.metadata)


def schema_models(schema: pa.Schema) -> tuple[str, ...]:
    """Return the model names of a label-table schema (its ``p_positive_<model>`` columns)."""
    return tuple(name[len(MODEL_COLUMN_PREFIX):] for name in schema.names
                 if name.startswith(MODEL_COLUMN_PREFIX))
