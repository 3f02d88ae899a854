"""The batch job on a real local Ray: rows, schema, incremental runs, replacement, error limits."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.dataset
import pytest

from artsy.config import ArtsyConfig, JobConfig
from artsy.job import pipeline
from artsy.job.schema import output_schema
from artsy.testing import count_opens, descendant_pids, write_photos


def _config(inputs, out: Path, bundle: Path, **kwargs) -> JobConfig:
    return JobConfig(inputs=tuple(str(path) for path in inputs), output=str(out),
                     model=str(bundle), artsy=ArtsyConfig(batch_size=8), **kwargs)


def _table(out: Path):
    return pyarrow.dataset.dataset(out, partitioning="hive").to_table()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_photos(folder, 10, seed=21, max_side=300)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


def test_job_writes_one_row_per_file_with_the_schema(ray_session, photos, tmp_path,
                                                     job_bundle_classical):
    out = tmp_path / "labels"
    summary = pipeline.run_job(_config([photos], out, job_bundle_classical,
                                       run_date="2026-03-01"))
    table = _table(out)
    assert table.num_rows == summary.images_seen == summary.processed == 11
    assert table.schema.remove(table.schema.get_field_index("run_date")).equals(
        output_schema(["knn", "rf"]))
    rows = {Path(row["path"]).name: row for row in table.to_pylist()}
    assert rows["broken.jpg"]["status"] == "error" and rows["broken.jpg"]["label"] is None
    ok = [row for row in rows.values() if row["status"] == "ok"]
    assert len(ok) == 10 and {row["label"] for row in ok} <= {"positive", "negative"}
    assert all(0 <= row[name] <= 1 for row in ok for name in ("p_positive", "p_positive_rf"))
    assert summary.errors == 1 and sum(summary.errors_by_reason.values()) == 1
    assert sum(summary.labelled.values()) == 10
    assert (out / "run_date=2026-03-01" / "_SUCCESS").is_file()


def test_rerun_is_incremental_replaces_its_date_and_refuses_too_many_errors(
        ray_session, photos, tmp_path, job_bundle_classical):
    out = tmp_path / "labels"
    pipeline.run_job(_config([photos], out, job_bundle_classical, run_date="2026-03-01"))
    # the next night: nothing new -> nothing processed, an empty partition
    again = pipeline.run_job(_config([photos], out, job_bundle_classical, run_date="2026-03-02"))
    assert (again.processed, again.skipped) == (1, 10)  # the broken file is retried
    write_photos(photos / "new", 2, seed=99, max_side=200)
    same_day = pipeline.run_job(_config([photos], out, job_bundle_classical,
                                        run_date="2026-03-02"))
    assert (same_day.processed, same_day.skipped, same_day.carried_forward) == (3, 10, 0)
    # the same date once more: its rows are carried forward, not lost and not duplicated
    replay = pipeline.run_job(_config([photos], out, job_bundle_classical,
                                      run_date="2026-03-02"))
    assert (replay.processed, replay.carried_forward) == (1, 2)
    counts = duckdb.execute(
        f"select cast(run_date as varchar), count(*), count(distinct path) from read_parquet("
        f"'{out}/**/*.parquet', hive_partitioning=true) group by all order by 1").fetchall()
    assert counts == [("2026-03-01", 11, 11), ("2026-03-02", 3, 3)]
    full = pipeline.run_job(_config([photos], out, job_bundle_classical, run_date="2026-03-02",
                                    full=True))
    assert (full.processed, full.skipped) == (13, 0)
    assert _table(out).num_rows == 11 + 13
    # too many failures: RunFailed, nothing committed, the partition before it intact
    for index in range(4):
        (photos / f"junk_{index}.png").write_text("not a png")
    with pytest.raises(pipeline.RunFailed, match="max-error-rate"):
        pipeline.run_job(_config([photos], out, job_bundle_classical, run_date="2026-03-02",
                                 max_error_rate=0.2))
    assert _table(out).num_rows == 11 + 13
    assert not any((tmp_path / ".labels.artsy-staging").glob("*/run_date=*"))


def test_rerun_decides_from_the_listing_and_the_tasks_drop_known_content(
        ray_session, photos, tmp_path, job_bundle_classical):
    import ray

    out = tmp_path / "labels"
    first = pipeline.run_job(_config([photos], out, job_bundle_classical, run_date="2026-03-01"))
    rows = {Path(row["path"]).name: row for row in _table(out).to_pylist()}
    some = sorted(name for name in rows if name != "broken.jpg")[0]
    stat = os.stat(photos / some)
    assert rows[some]["file_size"] == stat.st_size
    assert rows[some]["file_modified"].timestamp() == pytest.approx(stat.st_mtime_ns / 1e9,
                                                                    abs=1e-6)
    assert {row["node_id"] for row in rows.values()} == {ray.get_runtime_context().get_node_id()}
    assert all(row["cnn_node_id"] is None for row in rows.values())  # no actor in this bundle
    # an unchanged night: the driver opens no file under the inputs; only the error is retried
    config = _config([photos], out, job_bundle_classical, run_date="2026-03-02")
    plan = pipeline.validate_job(config)
    with count_opens(photos) as opened:
        prepared = pipeline.prepare_run(config, plan)
    assert opened == [] and [Path(item.path).name for item in prepared.work.todo] == ["broken.jpg"]
    # touched (same bytes, new mtime) and copied files go to the tasks, which hash and drop them
    os.utime(photos / some, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000))
    (photos / "copy").mkdir()
    (photos / "copy" / some).write_bytes((photos / some).read_bytes())
    night = pipeline.run_job(config)
    assert (night.images_seen, night.processed, night.skipped) == (first.images_seen + 1, 1, 11)
    assert [row["path"] for row in _table(out).to_pylist()
            if row["run_date"] == "2026-03-02"] == [str(photos / "broken.jpg")]


@pytest.mark.parametrize("change, match", [
    ({"run_date": "2026-02-30"}, "YYYY-MM-DD"),
    ({"max_error_rate": 1.5}, r"\[0, 1\]"),
    ({"inputs": ("/no/such/folder",)}, "input not found"),
    ({"model": "/no/such/bundle"}, "bundle"),
])
def test_validate_job_refuses_bad_settings(photos, tmp_path, job_bundle_classical, change,
                                           match):
    fields = {"inputs": (str(photos),), "output": str(tmp_path / "labels"),
              "model": str(job_bundle_classical)} | change
    with pytest.raises(ValueError, match=match):
        pipeline.validate_job(JobConfig(**fields))
    assert not (tmp_path / "labels").exists() or change.get("model")


def test_cnn_resources_follow_the_cluster():
    config = JobConfig(inputs=("x",), output="y")
    assert pipeline.cnn_resources(config, {"CPU": 16.0, "GPU": 4.0}) == (4, 1.0, 1.0)
    assert pipeline.cnn_resources(config, {"CPU": 2.0}) == (1, 0.0, 0.0)
    assert pipeline.cnn_threads(1.0, 16.0) == 1 and pipeline.cnn_threads(2.0, 16.0) == 2
    assert pipeline.cnn_threads(0.0, 2.0) == 2 and pipeline.cnn_threads(0.0, 1.0) == 1
    halves = JobConfig(inputs=("x",), output="y", gpus_per_actor=0.5)
    assert pipeline.cnn_resources(halves, {"CPU": 8.0, "GPU": 1.0})[:2] == (2, 0.5)
    with pytest.raises(ValueError, match="GPUs"):
        pipeline.cnn_resources(JobConfig(inputs=("x",), output="y", gpus_per_actor=1),
                                {"CPU": 8.0})


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below ``pid``, from /proc."""
    found = []
    for child in descendant_pids(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        found.append((child, command.decode(errors="replace")))
    return found


def test_job_survives_a_killed_ray_worker(ray_session, tmp_path, job_bundle_classical):
    photos = tmp_path / "many"
    write_photos(photos, 40, seed=5, max_side=400)
    killed: list[str] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid, command in _descendants(os.getpid()):
                if command.startswith("ray::") and "featurize_and_score" in command:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(command)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    summary = pipeline.run_job(_config([photos], tmp_path / "labels", job_bundle_classical,
                                       run_date="2026-03-01"))
    killer.join(timeout=5)
    assert killed, "no decode worker was found to kill"
    table = _table(tmp_path / "labels")
    assert summary.processed == table.num_rows == 40
    assert set(table.column("status").to_pylist()) == {"ok"}


def test_validate_job_refuses_a_bundle_trained_on_other_features(photos, tmp_path,
                                                                 job_bundle_classical):
    import json
    import shutil

    bundle = Path(shutil.copytree(job_bundle_classical, tmp_path / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["feature_set"]["names"] = manifest["feature_set"]["names"][:5]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="trained on 5 'affect' features"):
        pipeline.validate_job(_config([photos], tmp_path / "labels", bundle))
