"""The incremental index: what a run skips, carries forward and processes, read from the table."""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet

from artsy.job import incremental, output
from artsy.job.discover import discover
from artsy.job.schema import output_schema
from artsy.testing import count_opens, write_photos

SCHEMA = output_schema(["knn"])
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _rows(items: list[tuple[str, str]], *, run_id: str = "r1", status: str = "ok",
          version: str = "v1", listed: bool = True) -> pa.Table:
    """Rows for (path, sha) pairs; ``listed``: with the real size and mtime of existing files."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    rows = [{"run_id": run_id, "path": path, "content_sha256": sha,
             "file_size": os.stat(path).st_size if listed and os.path.exists(path) else 3,
             "file_modified": (EPOCH + datetime.timedelta(
                 microseconds=os.stat(path).st_mtime_ns // 1000)
                               if listed and os.path.exists(path) else None),
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
    # night 1 labelled photo 0, photo 1 (listed) and a copy of photo 4 at another path; the day
    # being redone labelled 2 and 3
    _commit(location, "2026-01-01", "r1", _rows([
        (str(photos / names[0]), _sha(photos / names[0])),
        (str(photos / names[1]), _sha(photos / names[1])),
        ("/elsewhere/copy.jpg", _sha(photos / names[4]))]))
    _commit(location, "2026-01-02", "r2", _rows([
        (str(photos / names[2]), _sha(photos / names[2])),
        (str(photos / names[3]), _sha(photos / names[3]))], run_id="r2"))
    (photos / names[3]).write_bytes((photos / names[3]).read_bytes() + b"\0")  # changed since
    os.symlink("gone.jpg", photos / "dangling.jpg")

    prior = incremental.read_prior(location, "v1", "2026-01-02")
    with count_opens(photos) as opened:
        work = incremental.plan_work(discover([str(photos)]), prior)
    assert opened == []  # the decision reads no file: sizes and mtimes come from the listing
    assert work.skipped == 2  # photos 0 and 1: their content is labelled on another day
    assert work.carried_forward == 1
    assert work.carried_rows.column("path").to_pylist() == [str(photos / names[2])]
    assert work.carried_rows.column("run_id").to_pylist() == ["r2"]
    # changed content, a file never listed at its path (its bytes may be known: the tasks hash it
    # and drop it) and an unreadable link are left to the decode tasks
    assert sorted(Path(item.path).name for item in work.todo) == sorted(
        [names[3], names[4], "dangling.jpg"])
    assert _sha(photos / names[4]) in work.skip_hashes


def test_a_touched_file_is_hashed_again_and_an_old_row_without_mtime_is_not_trusted(tmp_path):
    write_photos(tmp_path / "photos", 3, seed=5, max_side=100)
    paths = sorted((tmp_path / "photos").iterdir())
    location = output.locate(str(tmp_path / "labels"))
    output.check_writable(location)
    _commit(location, "2026-01-01", "r1", pa.concat_tables([
        _rows([(str(paths[0]), _sha(paths[0])), (str(paths[1]), _sha(paths[1]))]),
        _rows([(str(paths[2]), _sha(paths[2]))], listed=False)]))
    os.utime(paths[1], ns=(0, os.stat(paths[1]).st_mtime_ns + 1000))  # same bytes, new mtime
    work = incremental.plan_work(discover([str(tmp_path / "photos")]),
                                 incremental.read_prior(location, "v1", "2026-01-02"))
    assert work.skipped == 1
    assert [Path(item.path) for item in work.todo] == [paths[1], paths[2]]
    assert work.skip_hashes == {_sha(path) for path in paths}


def test_without_a_prior_every_file_is_to_do(tmp_path):
    write_photos(tmp_path, 2, seed=4, max_side=100)
    os.symlink("gone.jpg", tmp_path / "dangling.jpg")
    files = discover([str(tmp_path)])
    work = incremental.plan_work(files, incremental.PriorRows())
    assert work.todo == files and work.skipped == 0 and work.carried_rows is None
    assert not work.skip_hashes
    listed = {Path(item.path).name: (item.size, item.mtime_ns) for item in files}
    assert listed["dangling.jpg"] == (None, None)
    assert all(size > 0 and mtime > 0 for name, (size, mtime) in listed.items()
               if name != "dangling.jpg")


def test_hash_set_holds_exactly_its_digests():
    digests = [hashlib.sha256(bytes([index])).hexdigest() for index in range(50)]
    hashes = incremental.HashSet(digests[:25] + digests[:5])
    assert len(hashes) == 25
    assert all(digest in hashes for digest in digests[:25])
    assert not any(digest in hashes for digest in digests[25:])
    assert "not-a-digest" not in hashes and None not in incremental.HashSet([])
