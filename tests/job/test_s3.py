"""``jobs/classify.py`` on a real S3 server (SeaweedFS on 127.0.0.1): ``s3://`` in and out.

The job is configured only through ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_REGION`` (plus ``AWS_EC2_METADATA_DISABLED=true``), as a user
would configure it. Object stores cannot rename, so the commit copies the staged objects and
writes ``_SUCCESS`` last; readers (and artsy's incremental index) trust only partitions with a
``_SUCCESS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset
import pyarrow.fs
import pytest
from s3_server import READER

from artsy.testing import write_photos

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "jobs" / "classify.py"
JOB_TIMEOUT = 240
N_PHOTOS = 6
PHOTOS = "s3://photos/set"

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_instance_metadata(monkeypatch):
    """Every test: the AWS SDK never reaches the instance-metadata address."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def photos(s3_server, tmp_path_factory) -> list[str]:
    """``N_PHOTOS`` real photos uploaded to ``s3://photos/set/``; returns their URIs."""
    local = tmp_path_factory.mktemp("s3_photos")
    paths = write_photos(local, N_PHOTOS, seed=21, max_side=300)
    for bucket in ("photos", "labels"):
        s3_server.create_bucket(bucket)
    return s3_server.upload(paths, PHOTOS.removeprefix("s3://"))


def _classify(server, *args: str, cwd: Path, access_key: str | None = None,
              secret_key: str | None = None) -> subprocess.CompletedProcess:
    """Run the job as a user would, configured by the standard AWS variables only."""
    keys = {"access_key": access_key, "secret_key": secret_key}
    env = server.env(dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0",
                          RAY_ADDRESS="local"),
                     **{name: value for name, value in keys.items() if value is not None})
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=JOB_TIMEOUT)


def committed_table(filesystem: pyarrow.fs.FileSystem, root: str):
    """Read only the committed partitions (those with ``_SUCCESS``), as the README says."""
    folders = [info.path for info in filesystem.get_file_info(pyarrow.fs.FileSelector(root))
               if info.type == pyarrow.fs.FileType.Directory]
    markers = filesystem.get_file_info([f"{folder}/_SUCCESS" for folder in folders])
    done = [folder for folder, marker in zip(folders, markers, strict=True)
            if marker.type == pyarrow.fs.FileType.File]
    files = [info.path for folder in done
             for info in filesystem.get_file_info(pyarrow.fs.FileSelector(folder))
             if info.base_name.endswith(".parquet") and not info.base_name.startswith(("_", "."))]
    return pyarrow.dataset.dataset(files, filesystem=filesystem, partitioning="hive",
                                   partition_base_dir=root).to_table()


def _names(filesystem: pyarrow.fs.FileSystem, folder: str) -> list[str]:
    selector = pyarrow.fs.FileSelector(folder, allow_not_found=True, recursive=True)
    return sorted(info.path[len(folder) + 1:] for info in filesystem.get_file_info(selector)
                  if info.type == pyarrow.fs.FileType.File)


def test_s3_run_rerun_and_repair_of_a_half_copied_partition(s3_server, photos, tmp_path,
                                                            job_bundle_classical, monkeypatch):
    filesystem = s3_server.filesystem()
    root, partition = "labels/t1", "labels/t1/run_date=2026-06-01"

    def run() -> subprocess.CompletedProcess:
        result = _classify(s3_server, "--input", PHOTOS, "--output", "s3://labels/t1",
                           "--model", str(job_bundle_classical), "--run-date", "2026-06-01",
                           "--batch-size", "4", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    # (a) first run: s3:// in, s3:// out, committed with _SUCCESS written after the rest
    first = run()
    assert "output           s3://labels/t1/run_date=2026-06-01" in first.stdout
    names = _names(filesystem, partition)
    assert {"_SUCCESS", "_SUMMARY.json", "_REPORT.html"} <= set(names), names
    table = committed_table(filesystem, root)
    assert sorted(table.column("path").to_pylist()) == photos
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert set(table.column("run_date").to_pylist()) == {"2026-06-01"}
    naive = pyarrow.dataset.dataset(root, filesystem=filesystem, partitioning="hive").to_table()
    assert naive.num_rows == N_PHOTOS
    with filesystem.open_input_stream(f"{partition}/_SUMMARY.json") as stream:
        summary = json.loads(stream.read())
    assert (summary["processed"], summary["images_seen"]) == (N_PHOTOS, N_PHOTOS)
    assert _names(filesystem, "labels/.t1.artsy-staging") == []  # staging cleaned up

    # (b) unchanged rerun: nothing reprocessed, no duplicates
    again = run()
    assert "processed        0" in again.stdout
    assert f"({N_PHOTOS} rows carried forward)" in again.stdout
    table = committed_table(filesystem, root)
    assert sorted(table.column("path").to_pylist()) == photos

    # (c) a commit killed half-way: the final keys exist, some data and no _SUCCESS
    data = [name for name in _names(filesystem, partition) if name.endswith(".parquet")]
    filesystem.delete_file(f"{partition}/_SUCCESS")
    half = "run_date=2026-06-02"  # and another date left half-copied from the same rows
    for name in data:
        filesystem.copy_file(f"{partition}/{name}", f"{root}/{half}/{name}")
    assert committed_table(filesystem, root).num_rows == 0  # a _SUCCESS reader sees nothing
    from artsy.job import output  # the job's own index ignores both too

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    assert output.committed_partitions(output.locate("s3://labels/t1")) == {}
    repaired = run()  # the next run of 2026-06-01 rewrites it (nothing to carry)
    assert f"processed        {N_PHOTOS}" in repaired.stdout
    assert "run_date=2026-06-02" in repaired.stderr  # the other one is named in a warning
    table = committed_table(filesystem, root)
    assert sorted(table.column("path").to_pylist()) == photos
    assert "_SUCCESS" in _names(filesystem, partition)


@pytest.mark.parametrize("case, message", [
    ("no such bucket", "output not writable"),
    ("read-only bucket", "output not writable"),
    ("wrong secret", "cannot read input"),
    ("unknown access key", "cannot read input"),
])
def test_s3_errors_are_one_line_and_exit_2(s3_server, photos, tmp_path, job_bundle_classical,
                                          case, message):
    output_uri = "s3://no-such-bucket/labels" if case == "no such bucket" else "s3://labels/t2"
    keys = {"read-only bucket": READER, "wrong secret": ("artsy-admin", "wrong"),
            "unknown access key": ("nobody", "wrong")}.get(case, (None, None))
    result = _classify(s3_server, "--input", PHOTOS, "--output", output_uri, "--model",
                       str(job_bundle_classical), cwd=tmp_path, access_key=keys[0],
                       secret_key=keys[1])
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert _names(s3_server.filesystem(), "labels/t2") == []


def test_s3_commit_copies_replaces_and_cleans_up(s3_server, photos, monkeypatch):
    """The commit protocol itself, on the real server: a replaced partition keeps no old object,
    a partition without ``_SUCCESS`` is not committed, staging is removed."""
    import pyarrow as pa
    import pyarrow.parquet

    from artsy.job import output

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    location = output.locate("s3://labels/t3")
    output.check_writable(location)
    assert not output.renames_atomically(location.filesystem)
    filesystem = location.filesystem

    def stage_and_commit(run_id: str, rows: int) -> str:
        staging = output.new_staging(location, "2026-07-01", run_id)
        with filesystem.open_output_stream(f"{staging}/{run_id}.parquet") as stream:
            pyarrow.parquet.write_table(pa.table({"path": [f"p{i}" for i in range(rows)]}),
                                        stream)
        return output.commit(location, staging, "2026-07-01", {"run_id": run_id})

    target = stage_and_commit("r1", 3)
    assert _names(filesystem, target) == ["_SUCCESS", "_SUMMARY.json", "r1.parquet"]
    assert list(output.committed_partitions(location)) == ["run_date=2026-07-01"]
    stage_and_commit("r2", 2)
    assert _names(filesystem, target) == ["_SUCCESS", "_SUMMARY.json", "r2.parquet"]
    assert committed_table(filesystem, location.root).num_rows == 2
    assert _names(filesystem, location.staging) == []

    # the README's polars reader: one glob per partition with a _SUCCESS, hive columns
    import polars as pl

    half = f"{location.root}/run_date=2026-07-02"
    filesystem.copy_file(f"{target}/r2.parquet", f"{half}/r2.parquet")  # no _SUCCESS
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")  # polars (object_store): a plain-http endpoint
    globs = [f"s3://{folder}/*.parquet"
             for folder in output.committed_partitions(location).values()]
    frame = pl.scan_parquet(globs, hive_partitioning=True).collect()
    assert frame.height == 2 and frame["run_date"].cast(pl.String).to_list() == ["2026-07-01"] * 2

    filesystem.delete_file(f"{target}/_SUCCESS")
    assert output.committed_partitions(location) == {}
