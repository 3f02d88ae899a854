"""The last step of the job's pipeline: a predicted batch becomes rows of the label table.

Sentinels inside the stream (``-1`` sizes and mtimes, ``NaN`` probabilities, empty strings)
become nulls here; the label is ``positive`` when ``p_positive >= DECISION_THRESHOLD``.
"""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa

from artsy.config import EMOTION_CATEGORIES, EMOTIONS
from artsy.job.schema import (
    EMOTION_COLUMN,
    EMOTION_PROBABILITY_COLUMNS,
    model_column,
    output_schema,
)

#: ``p_positive`` at or above this is labelled ``positive``.
DECISION_THRESHOLD = 0.5
Batch = dict[str, np.ndarray]


def _nullable(values: np.ndarray, valid: np.ndarray, type_: pa.DataType) -> pa.Array:
    return pa.array(values, type=type_, mask=~valid)


def to_output_table(batch: Batch, *, run_id: str, models: tuple[str, ...], model_version: str,
                    feature_set: str) -> pa.Table:
    """Turn a predicted batch into a table with exactly :func:`artsy.job.schema.output_schema`.

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
