"""``jobs/classify.py`` as users and schedulers run it: subprocesses, exit codes, hostile files,
a killed driver, a logical GPU."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset
import pytest

from artsy.config import EMOTION_CATEGORIES
from artsy.job.discover import discover
from artsy.job.schema import output_schema
from artsy.testing import descendant_pids, write_photos

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "jobs" / "classify.py"
EXAMPLES = ROOT / "examples" / "images"
#: Bound on any one job subprocess; a hung job fails the test instead of the CI run.
JOB_TIMEOUT = 240


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    env["RAY_ADDRESS"] = "local"  # never join another Ray running on this machine
    return env


def _classify(*args: str, cwd: Path, timeout: float = JOB_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_option(tmp_path):
    result = _classify("--help", cwd=tmp_path, timeout=60)
    assert result.returncode == 0
    for option in ("--input", "--output", "--model", "--run-date", "--cnn-actors",
                   "--gpus-per-actor", "--batch-size", "--full", "--max-error-rate"):
        assert option in result.stdout


@pytest.mark.parametrize("case, message", [
    ("missing input", "input not found"),
    ("bad date", "YYYY-MM-DD"),
    ("unreadable bundle", "not a bundle"),
    ("output not writable", "output not writable"),
    ("no output", "--output"),
    ("bad number", "--batch-size"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, job_bundle_classical, case, message):
    photos = tmp_path / "photos"
    write_photos(photos, 1, seed=1, max_side=120)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty_bundle").mkdir()
    args = {"input": str(photos), "output": str(tmp_path / "labels"),
            "model": str(job_bundle_classical)}
    extra: list[str] = []
    if case == "missing input":
        args["input"] = str(tmp_path / "nowhere")
    elif case == "bad date":
        extra = ["--run-date", "2026-13-01"]
    elif case == "unreadable bundle":
        args["model"] = str(tmp_path / "empty_bundle")
    elif case == "output not writable":
        args["output"] = str(tmp_path / "a_file" / "labels")
    elif case == "no output":
        del args["output"]
    elif case == "bad number":
        extra = ["--batch-size", "many"]
    argv = [item for key, value in args.items() for item in (f"--{key}", value)] + extra
    result = _classify(*argv, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "labels").exists() or case == "unreadable bundle"
    assert not list(tmp_path.glob(".labels.artsy-staging/*"))


def _manifest(corpus: Path) -> list[dict[str, str]]:
    with open(corpus / "MANIFEST.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


#: Words the error reason of each hostile file must contain.
REASONS = {"zero_bytes.jpg": "empty file", "truncated_60pct.jpg": "corrupt image data",
           "text_named_as.png": "not an image", "random_bytes.jpeg": "not an image",
           "corrupt_idat_data.png": "corrupt image data", "html_named_as.jpg": "not an image",
           "bomb_30000x30000.png": "decompression bomb", "bomb_65535x65535.gif":
           "decompression bomb", "bomb_100000x100000.tiff": "decompression bomb",
           "dangling.jpg": "dangling symlink"}


@pytest.mark.slow
def test_job_on_hostile_corpus_examples_and_generated_photos(tmp_path, badinputs_script,
                                                             job_bundle):
    corpus, photos, out = tmp_path / "corpus", tmp_path / "photos", tmp_path / "labels"
    subprocess.run([sys.executable, str(badinputs_script), str(corpus)], check=True,
                   capture_output=True, timeout=120)
    write_photos(photos, 6, seed=4, max_side=400)
    odd_name = os.fsencode(str(photos)) + b"/odd \xff name.jpg"
    with open(odd_name, "wb") as handle:
        handle.write((photos / "photo_000000.jpg").read_bytes())
    home = tmp_path / "home"  # like `ray submit`: run from elsewhere, only the script path
    home.mkdir()
    examples = discover([str(EXAMPLES)])
    assert len(examples) >= 12
    result = _classify("--input", str(corpus), "--input", str(photos), "--input", str(EXAMPLES),
                       "--output", str(out),
                       "--model", str(job_bundle), "--run-date", "2026-04-01",
                       "--batch-size", "16", cwd=home)
    assert result.returncode == 0, result.stderr[-3000:]

    table = pyarrow.dataset.dataset(out, partitioning="hive").to_table()
    rows = {row["path"]: row for row in table.to_pylist()}
    manifest = _manifest(corpus)
    for entry in manifest:
        path = str(corpus / entry["file"])
        if entry["expected"] == "skip":
            assert path not in rows, entry["file"]
        elif entry["expected"] == "ok":
            assert rows[path]["status"] == "ok", (entry["file"], rows[path]["error"])
            assert rows[path]["label"] in ("positive", "negative")
        else:
            assert rows[path]["status"] == "error", entry["file"]
            assert REASONS[entry["file"]] in rows[path]["error"], rows[path]["error"]
    assert f"{photos}/odd \\xff name.jpg" in rows
    assert all(rows[item.path]["status"] == "ok" for item in examples)
    expected_rows = sum(entry["expected"] != "skip" for entry in manifest) + 7 + len(examples)
    assert table.num_rows == len(rows) == expected_rows

    assert table.schema.remove(table.schema.get_field_index("run_date")).equals(
        output_schema(["knn", "rf", "effnet", "cnn"]))
    ok = [row for row in rows.values() if row["status"] == "ok"]
    assert all(0 <= row[column] <= 1 for row in ok
               for column in ("p_positive", "p_positive_knn", "p_positive_rf", "p_positive_cnn",
                              "p_positive_effnet"))
    assert (out / "run_date=2026-04-01" / "_REPORT.html").is_file()
    summary = json.loads((out / "run_date=2026-04-01" / "_SUMMARY.json").read_text())
    errors = sum(entry["expected"] == "error" for entry in manifest)
    assert (summary["images_seen"], summary["processed"]) == (expected_rows, expected_rows)
    assert summary["errors"] == errors and sum(summary["labelled"].values()) == len(ok)
    assert summary["errors_by_reason"]["decompression bomb"] == 3
    assert f"images seen      {expected_rows}" in result.stdout and str(out) in result.stdout

    glob = f"{out}/**/*.parquet"
    count, distinct = duckdb.execute(
        f"select count(*), count(distinct path) from read_parquet('{glob}', "
        "hive_partitioning=true)").fetchall()[0]
    assert count == distinct == expected_rows
    frame = pl.scan_parquet(glob, hive_partitioning=True).collect()
    assert frame.height == expected_rows and "run_date" in frame.columns


@pytest.mark.slow
def test_killed_driver_then_rerun_leaves_one_row_per_file(ray_session, tmp_path,
                                                          job_bundle_classical):
    from artsy.config import ArtsyConfig, JobConfig
    from artsy.job import pipeline

    photos, out = tmp_path / "photos", tmp_path / "labels"
    write_photos(photos, 40, seed=8, max_side=400)
    command = [sys.executable, str(SCRIPT), "--input", str(photos), "--output", str(out),
               "--model", str(job_bundle_classical), "--run-date", "2026-05-01",
               "--batch-size", "4"]
    driver = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    staging = tmp_path / ".labels.artsy-staging"
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        # mid-run: the first staged Parquet file is written, most batches are not
        while not list(staging.glob("2026-05-01-*/run_date=*/*.parquet")):
            assert driver.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job never wrote a row"
            time.sleep(0.02)
        family = descendant_pids(driver.pid)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait(timeout=30)
    for pid in family:  # the local Ray it started dies with it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert driver.returncode == -signal.SIGKILL
    assert not list(out.glob("**/*.parquet"))  # nothing half-committed is visible

    summary = pipeline.run_job(JobConfig(inputs=(str(photos),), output=str(out),
                                         model=str(job_bundle_classical), run_date="2026-05-01",
                                         artsy=ArtsyConfig(batch_size=8)))
    assert summary.processed == 40
    paths = pyarrow.dataset.dataset(out, partitioning="hive").to_table().column("path")
    assert len(paths) == len(set(paths.to_pylist())) == 40
    assert not list(staging.glob("2026-05-01-*"))  # the killed run's staging is cleaned up

    # an unchanged rerun commits without Ray: the unreachable cluster address is never dialled
    result = _classify("--input", str(photos), "--output", str(out), "--model",
                       str(job_bundle_classical), "--run-date", "2026-05-01",
                       "--ray-address", "127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "processed        0" in result.stdout
    assert "(40 rows carried forward)" in result.stdout
    summary = json.loads((out / "run_date=2026-05-01" / "_SUMMARY.json").read_text())
    assert (summary["processed"], summary["carried_forward"], summary["cpus"]) == (0, 40, 0)
    table = pyarrow.dataset.dataset(out, partitioning="hive").to_table()
    assert table.num_rows == 40 and set(table.column("run_id").to_pylist()) != {summary["run_id"]}


GPU_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import ray
    from artsy.job import pipeline
    from artsy.config import ArtsyConfig, JobConfig

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
    config = JobConfig(inputs=(sys.argv[1],), output=sys.argv[2], model=sys.argv[3],
                       artsy=ArtsyConfig(batch_size=8))
    seen, done = [], threading.Event()
    def watch():
        while not done.is_set():
            seen.append(ray.available_resources().get("GPU", 0.0))
            time.sleep(0.2)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    actors, gpus, cpus = pipeline.check_cluster(config)
    try:
        summary = pipeline.run_job(config)
    finally:
        done.set()
    watcher.join()
    print(json.dumps({"plan": [actors, gpus], "min_free_gpu": min(seen),
                      "processed": summary.processed, "gpus": summary.gpus}))
""")


@pytest.mark.slow
def test_cnn_actor_takes_the_gpu_when_the_cluster_has_one(tmp_path, job_bundle):
    photos = tmp_path / "photos"
    write_photos(photos, 8, seed=2, max_side=300)
    result = subprocess.run([sys.executable, "-c", GPU_SCRIPT, str(photos), str(tmp_path / "out"),
                             str(job_bundle)], cwd=tmp_path, env=_env(), capture_output=True,
                            text=True, timeout=JOB_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["plan"] == [1, 1.0] and report["gpus"] == 1.0
    assert report["min_free_gpu"] == 0.0  # the CNN actor held the logical GPU
    assert report["processed"] == 8


#: Lines a user reads as failures, or framework chatter, that a healthy run must not print.
NOISE = re.compile(r"\bERROR\b|\sE\s|\bE\d{4}\b|\bW\d{4}\b|\bI\d{4}\b|Traceback|[Dd]eprecat|"
                   r"UserWarning|oneDNN|cuInit|cuda|core_worker|absl|WARNING")


@pytest.mark.slow
def test_quick_start_run_is_quiet_and_commits_a_report_with_every_thumbnail(tmp_path):
    """The README's first command with the shipped bundle, as a new user runs it."""
    import pyarrow.parquet

    out = tmp_path / "labels"
    result = _classify("--input", str(EXAMPLES), "--output", str(out), "--run-date",
                       "2026-12-01", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    noisy = [line for line in (result.stdout + result.stderr).splitlines() if NOISE.search(line)]
    assert noisy == []
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("artsy: ")]
    assert result.stdout.strip().splitlines()[-1].startswith("  output ")
    assert "emotions " in result.stdout
    partition = out / "run_date=2026-12-01"
    table = pyarrow.parquet.read_table(partition).to_pylist()
    assert len(table) == 12 and all(row["status"] == "ok" for row in table)
    assert all(row["emotion"] is not None and abs(sum(
        row[f"p_{name}"] for name in EMOTION_CATEGORIES) - 1) < 1e-6 for row in table)
    page = (partition / "_REPORT.html").read_text()
    for row in table:
        name = Path(row["path"]).name
        assert re.search(rf'<img src="data:image/jpeg;base64,[^"]+" alt="{re.escape(name)}"',
                         page), name
    assert "<td>positive</td>" in page or "<td>negative</td>" in page

    quiet = _classify("--input", str(EXAMPLES), "--output", str(out), "--run-date",
                      "2026-12-02", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "skipped          12" in quiet.stdout  # nothing new: no Ray, same summary
