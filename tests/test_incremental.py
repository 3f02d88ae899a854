"""The incremental index: what a run skips, carries forward and processes, read from the table."""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet

from artsy import incremental, output
from artsy.discover import discover
from artsy.schema import output_schema
from artsy.testing import write_photos

SCHEMA = output_schema(["knn"])


def _rows(items: list[tuple[str, str]], *, run_id: str = "r1", status: str = "ok",
          version: str = "v1") -> pa.Table:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    rows = [{"run_id": run_id, "path": path, "content_sha256": sha, "file_size": 3,
             "width": 4, "height": 5, "status": status,
             "error": None if status == "ok" else "empty file",
             "label": "positive" if status == "ok" else None,
             "p_positive": 0.7 if status == "ok" else None,
             "p_positive_knn": 0.7 if status == "ok" else None, "model_version": version,
             "feature_set": "affect", "inferred_at": now} for path, sha in items]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _commit(location, run_date: str, run_id: str, table: pa.Table) -> None:
    staging = output.new_staging(location, run_date, run_id)
    pyarrow.parquet.write_table(table, f"{staging}/{run_id}.parquet")
    output.commit(location, staging, run_date, {"run_id": run_id})


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_prior_skips_other_partitions_and_carries_the_replaced_one(tmp_path):
    location = output.locate(str(tmp_path / "labels"))
    output.check_writable(location)
    _commit(location, "2026-01-01", "r1", pa.concat_tables([
        _rows([("a.jpg", "sha-a")]), _rows([("bad.jpg", "sha-bad")], status="error"),
        _rows([("old.jpg", "sha-old")], version="v0")]))
    _commit(location, "2026-01-02", "r2", _rows([("b.jpg", "sha-b")], run_id="r2"))
    prior = incremental.read_prior(location, "v1", "2026-01-02")
    assert prior.skip_hashes == {"sha-a"}
    assert list(prior.carried) == [("b.jpg", "sha-b")]
    assert prior.carried_rows.take([prior.carried[("b.jpg", "sha-b")]])["run_id"][0].as_py() == "r2"
    assert incremental.read_prior(location, "v2", "2026-01-02").empty


def test_plan_work_skips_carries_and_processes_by_content(tmp_path):
    photos = tmp_path / "photos"
    write_photos(photos, 5, seed=3, max_side=120)
    names = sorted(path.name for path in photos.iterdir())
    location = output.locate(str(tmp_path / "labels"))
    output.check_writable(location)
    # night 1 labelled photo 0 and a copy of photo 1's bytes; the day being redone labelled 2 and 3
    _commit(location, "2026-01-01", "r1", _rows([
        (str(photos / names[0]), _sha(photos / names[0])),
        ("/elsewhere/copy.jpg", _sha(photos / names[1]))]))
    _commit(location, "2026-01-02", "r2", _rows([
        (str(photos / names[2]), _sha(photos / names[2])),
        (str(photos / names[3]), _sha(photos / names[3]))], run_id="r2"))
    (photos / names[3]).write_bytes((photos / names[3]).read_bytes() + b"\0")  # changed since
    os.symlink("gone.jpg", photos / "dangling.jpg")

    prior = incremental.read_prior(location, "v1", "2026-01-02")
    work = incremental.plan_work(discover([str(photos)]), prior, threads=2)
    assert work.skipped == 2  # photos 0 and 1: their content is labelled on another day
    assert work.carried_forward == 1
    assert work.carried_rows.column("path").to_pylist() == [str(photos / names[2])]
    assert work.carried_rows.column("run_id").to_pylist() == ["r2"]
    # changed content, a new file and an unreadable link are left to the decode tasks
    assert sorted(Path(item.path).name for item in work.todo) == sorted(
        [names[3], names[4], "dangling.jpg"])


def test_without_a_prior_every_file_is_to_do_and_hashes_match_the_bytes(tmp_path):
    write_photos(tmp_path, 2, seed=4, max_side=100)
    os.symlink("gone.jpg", tmp_path / "dangling.jpg")
    files = discover([str(tmp_path)])
    work = incremental.plan_work(files, incremental.PriorRows())
    assert work.todo == files and work.skipped == 0 and work.carried_rows is None
    expected = [None if Path(item.path).is_symlink() else _sha(Path(item.path)) for item in files]
    assert incremental.hash_files(files, threads=3) == expected and None in expected
