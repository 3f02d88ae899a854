"""Commit protocol: staging outside the table, atomic replace, markers readers ignore, index."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset
import pyarrow.parquet
import pytest

from artsy.job import output
from artsy.job.schema import output_schema

SCHEMA = output_schema(["knn"])


def _rows(paths: list[str], *, run_id: str = "r1", status: str = "ok",
          version: str = "v1") -> pa.Table:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    rows = [{"run_id": run_id, "path": path, "content_sha256": f"sha-{Path(path).stem}",
             "file_size": 3, "width": 4, "height": 5, "status": status,
             "error": None if status == "ok" else "empty file",
             "label": "positive" if status == "ok" else None,
             "p_positive": 0.7 if status == "ok" else None,
             "p_positive_knn": 0.7 if status == "ok" else None, "model_version": version,
             "feature_set": "affect", "inferred_at": now} for path in paths]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _stage_and_commit(location, run_date: str, run_id: str, table: pa.Table) -> str:
    staging = output.new_staging(location, run_date, run_id)
    pyarrow.parquet.write_table(table, f"{staging}/{run_id}.parquet")
    return output.commit(location, staging, run_date, {"run_id": run_id})


def test_staging_is_a_hidden_sibling_of_the_output(tmp_path):
    location = output.locate(str(tmp_path / "labels"))
    assert location.staging == str(tmp_path / ".labels.artsy-staging")
    output.check_writable(location)
    assert (tmp_path / "labels").is_dir() and list((tmp_path / "labels").iterdir()) == []


def test_locate_handles_top_level_folders_and_refuses_bucket_roots():
    assert output.locate("/labels").staging == "/.labels.artsy-staging"
    with pytest.raises(ValueError, match="below a parent"):
        output.locate("file:///")


def test_check_writable_refuses_an_output_below_a_file(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ValueError, match="output not writable"):
        output.check_writable(output.locate(str(tmp_path / "file" / "labels")))


def test_commit_replaces_the_partition_and_readers_see_only_committed_rows(tmp_path):
    location = output.locate(str(tmp_path / "labels"))
    output.check_writable(location)
    _stage_and_commit(location, "2026-01-01", "r1", _rows(["a.jpg", "b.jpg"], run_id="r1"))
    _stage_and_commit(location, "2026-01-02", "r2", _rows(["c.jpg"], run_id="r2"))
    target = _stage_and_commit(location, "2026-01-01", "r3", _rows(["a.jpg"], run_id="r3"))
    # a killed run leaves a staged Parquet file behind; no reader may see it
    leftover = output.new_staging(location, "2026-01-03", "dead")
    pyarrow.parquet.write_table(_rows(["zombie.jpg"], run_id="dead"), f"{leftover}/x.parquet")

    names = sorted(p.name for p in Path(target).iterdir())
    assert names == ["_SUCCESS", "_SUMMARY.json", "r3.parquet"]
    assert json.loads((Path(target) / "_SUMMARY.json").read_text()) == {"run_id": "r3"}
    root = tmp_path / "labels"
    got = duckdb.execute(
        f"select run_id, path, cast(run_date as varchar) from read_parquet('{root}/**/*.parquet',"
        " hive_partitioning=true) order by path").fetchall()
    assert got == [("r3", "a.jpg", "2026-01-01"), ("r2", "c.jpg", "2026-01-02")]
    table = pyarrow.dataset.dataset(root, partitioning="hive").to_table()
    assert sorted(table.column("path").to_pylist()) == ["a.jpg", "c.jpg"]
    assert table.schema.remove(table.schema.get_field_index("run_date")).equals(SCHEMA)
    frame = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True).collect()
    assert frame.height == 2
    # every staging folder of a replaced date is gone after its commit
    staging = tmp_path / ".labels.artsy-staging"
    assert [p.name for p in staging.iterdir()] == ["2026-01-03-dead"]


def test_staged_counts_and_empty_runs(tmp_path):
    location = output.locate(str(tmp_path / "labels"))
    output.check_writable(location)
    staging = output.new_staging(location, "2026-01-01", "r9")
    output.ensure_file(location, staging, SCHEMA)
    assert output.staged_counts(location, staging, "r9")["rows"] == 0
    assert pyarrow.parquet.read_schema(f"{staging}/part-empty.parquet").equals(SCHEMA)
    table = pa.concat_tables([_rows(["a.jpg", "b.jpg"], run_id="r9"),
                              _rows(["c.jpg"], run_id="r9", status="error"),
                              _rows(["d.jpg"], run_id="r1")])
    pyarrow.parquet.write_table(table, f"{staging}/rows.parquet")
    counts = output.staged_counts(location, staging, "r9")
    assert counts["rows"] == 4 and counts["new"] == 3 and counts["carried_forward"] == 1
    assert counts["labels"] == {"positive": 3} and counts["errors_by_reason"] == {"empty file": 1}
    output.discard_staging(location, staging)
    assert not Path(staging).exists()


def test_error_kind_is_the_reason_before_the_colon():
    assert output.error_kind("corrupt image data: truncated") == "corrupt image data"
    assert output.error_kind(None) == "unknown"
