"""The label table's schema: one definition, per-model columns, reader-friendly types."""

from __future__ import annotations

import pyarrow as pa
import pytest

from artsy.job.schema import OUTPUT_SCHEMA, model_column, output_schema, schema_models

CATEGORIES = ["p_amusement", "p_awe", "p_contentment", "p_excitement", "p_anger", "p_disgust",
              "p_fear", "p_sadness"]
REQUIRED = ["run_id", "path", "content_sha256", "file_size", "file_modified", "width", "height",
            "status", "error", "label", "p_positive", "emotion", *CATEGORIES, "model_version",
            "feature_set", "inferred_at", "node_id", "cnn_node_id"]


def test_schema_has_exactly_the_required_columns_in_order():
    assert OUTPUT_SCHEMA.names == REQUIRED
    assert "run_date" not in OUTPUT_SCHEMA.names  # the partition key lives in the folder name


def test_schema_inserts_one_probability_column_per_model_after_p_positive():
    schema = output_schema(["knn", "rf", "cnn"])
    position = schema.names.index("p_positive")
    assert schema.names[position + 1:position + 4] == [
        "p_positive_knn", "p_positive_rf", "p_positive_cnn"]
    assert [name for name in schema.names if not name.startswith("p_positive_")] == REQUIRED
    assert schema_models(schema) == ("knn", "rf", "cnn")
    assert model_column("svm") == "p_positive_svm"


def test_schema_types_are_reader_friendly():
    schema = output_schema(["knn"])
    assert schema.field("inferred_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("file_modified").type == pa.timestamp("us", tz="UTC")
    assert schema.field("node_id").type == pa.string()
    assert schema.field("path").type == pa.string()  # not large_string
    assert schema.field("p_positive_knn").type == pa.float64()
    assert schema.field("file_size").type == pa.int64()
    assert schema.field("width").type == pa.int32()
    assert schema.field("emotion").type == pa.string()
    assert all(schema.field(name).type == pa.float64() for name in CATEGORIES)
    nullable_on_error = ["content_sha256", "file_size", "width", "height", "error", "label",
                         "p_positive", "p_positive_knn", "emotion", *CATEGORIES]
    assert all(schema.field(name).nullable for name in nullable_on_error)
    assert not schema.field("status").nullable and not schema.field("path").nullable


@pytest.mark.parametrize("models", [["knn", "knn"], ["bad-name"], [""]])
def test_schema_refuses_bad_model_names(models):
    with pytest.raises(ValueError, match="model name|unique"):
        output_schema(models)
