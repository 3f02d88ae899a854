"""The job on a simulated multi-node cluster (``ray.cluster_utils.Cluster``: real raylets on this
machine): where the work runs, and what a lost worker, GPU or head node costs.

The job joins through ``RAY_ADDRESS``, as under ``ray job submit``. Nodes: a head (1 CPU), a CPU
worker (1 CPU) and a worker advertising one GPU (1 CPU; the CNN actor needs the GPU resource and
falls back to CPU TensorFlow, as there is no real GPU).
"""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset
import pyarrow.fs
import pytest

from artsy.testing import write_photos

pytestmark = pytest.mark.slow
cluster_utils = pytest.importorskip("ray.cluster_utils")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "jobs" / "classify.py"
JOB_TIMEOUT = 240
#: How long a driver whose head node died waits for it before exiting (Ray's default: 60 s).
GCS_RECONNECT_S = "10"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_cluster(*, gpu_node: bool = True, dashboard: bool = False):
    """Head + CPU worker (+ GPU worker); the dashboard serves the state API when asked for."""
    head = {"num_cpus": 1, "include_dashboard": dashboard}
    if dashboard:
        head["dashboard_port"] = _free_port()
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args=head)
    nodes = {"cpu": cluster.add_node(num_cpus=1)}
    if gpu_node:
        nodes["gpu"] = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    return cluster, nodes


@pytest.fixture(scope="module")
def cluster():
    cluster, nodes = _start_cluster(dashboard=True)
    cluster.nodes_by_role = nodes
    yield cluster
    cluster.shutdown()


def _env(address: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), RAY_ADDRESS=address,
                RAY_USAGE_STATS_ENABLED="0", TF_CPP_MIN_LOG_LEVEL="3",
                RAY_gcs_rpc_server_reconnect_timeout_s=GCS_RECONNECT_S)


def _job(address: str, photos: Path | str, out: Path | str, bundle: Path, *,
         env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    command = [sys.executable, str(SCRIPT), "--input", str(photos), "--output", str(out),
               "--model", str(bundle), "--run-date", "2026-07-01", "--batch-size", "4"]
    return subprocess.Popen(command, env=env or _env(address), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd or Path(out).parent)


def _finish(job: subprocess.Popen) -> tuple[int, str, str]:
    try:
        stdout, stderr = job.communicate(timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired:
        job.kill()
        stdout, stderr = job.communicate()
        pytest.fail(f"the job hung after a node was lost:\n{stderr[-3000:]}")
    return job.returncode, stdout, stderr


def _wait_mid_run(job: subprocess.Popen, out: Path) -> None:
    """Return once the job has staged its first Parquet file (most batches are not done)."""
    deadline = time.monotonic() + JOB_TIMEOUT
    staging = out.parent / f".{out.name}.artsy-staging"
    while not list(staging.glob("*/run_date=*/*.parquet")):
        assert job.poll() is None, f"the job ended before a node could be removed: {job.stderr}"
        assert time.monotonic() < deadline, "the job never staged a row"
        time.sleep(0.02)


def _start_and_lose(cluster, role: str, tmp_path: Path, bundle: Path, count: int, seed: int):
    """Start the job over ``count`` new photos and remove the ``role`` node once it is mid-run."""
    photos, out = tmp_path / "photos", tmp_path / "labels"
    write_photos(photos, count, seed=seed, max_side=400)
    job = _job(cluster.address, photos, out, bundle)
    _wait_mid_run(job, out)
    lost = cluster.nodes_by_role.pop(role)
    cluster.remove_node(lost, allow_graceful=False)
    return photos, out, job, lost


def _rows(out: Path) -> list[dict]:
    return pyarrow.dataset.dataset(out, partitioning="hive").to_table(
        columns=["path", "status", "node_id", "cnn_node_id"]).to_pylist()


def _assert_one_row_per_image(out: Path, photos: Path) -> list[dict]:
    rows = _rows(out)
    paths = [row["path"] for row in rows]
    assert sorted(paths) == sorted(str(path) for path in photos.iterdir())
    assert all(row["status"] == "ok" for row in rows)
    return rows


def _cnn_actor_nodes(address: str) -> list[str]:
    """Node ids of every CNN actor the cluster ran, alive or dead, from Ray's state API."""
    script = ("import json, ray; from ray.util.state import list_actors; "
              "ray.init(address='auto', logging_level='ERROR'); "
              "print(json.dumps([a.node_id for a in list_actors(limit=1000, detail=True) "
              "if 'CnnPredictor' in a.class_name]))")
    result = subprocess.run([sys.executable, "-c", script], env=_env(address), text=True,
                            capture_output=True, timeout=120, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tasks_spread_over_nodes_and_the_cnn_runs_only_where_a_gpu_is(cluster, tmp_path,
                                                                      job_bundle):
    photos, out = tmp_path / "photos", tmp_path / "labels"
    write_photos(photos, 40, seed=31, max_side=300)
    code, stdout, stderr = _finish(_job(cluster.address, photos, out, job_bundle))
    assert code == 0, stderr[-3000:]
    rows = _assert_one_row_per_image(out, photos)
    gpu = cluster.nodes_by_role["gpu"].node_id
    decoded = collections.Counter(row["node_id"] for row in rows)
    assert len(decoded) >= 2, decoded  # CPU tasks ran on at least two nodes
    assert {row["cnn_node_id"] for row in rows} == {gpu}
    assert set(_cnn_actor_nodes(cluster.address)) == {gpu}
    # users see the same in _SUMMARY.json: rows per node, and which node's actor scored them
    summary = json.loads((out / "run_date=2026-07-01" / "_SUMMARY.json").read_text())
    assert {node: counts["rows"] for node, counts in summary["nodes"].items()
            if counts["rows"]} == dict(decoded)
    assert summary["nodes"][gpu]["cnn_rows"] == 40 and summary["nodes"][gpu]["gpus"] == 1
    assert set(summary["nodes"]) == {node.node_id for node in cluster.list_all_nodes()}
    assert stdout.count("\n  node ") >= len(decoded)  # the printed summary: a line per node


def test_a_worker_lost_mid_run_costs_no_row_and_doubles_none(cluster, tmp_path,
                                                             job_bundle_classical):
    photos, out, job, lost = _start_and_lose(cluster, "cpu", tmp_path, job_bundle_classical,
                                             80, 32)
    code, stdout, stderr = _finish(job)
    cluster.nodes_by_role["cpu"] = cluster.add_node(num_cpus=1)  # for the next test
    assert code == 0, stderr[-3000:]
    rows = _assert_one_row_per_image(out, photos)
    assert lost.node_id not in {row["node_id"] for row in rows} or json.loads(
        (out / "run_date=2026-07-01" / "_SUMMARY.json").read_text()
    )["nodes"][lost.node_id]["alive"] is False


def test_the_gpu_node_lost_fails_the_run_clearly_and_the_rerun_commits(cluster, tmp_path,
                                                                       job_bundle):
    photos, out, job, _ = _start_and_lose(cluster, "gpu", tmp_path, job_bundle, 60, 33)
    code, stdout, stderr = _finish(job)
    assert code == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("classify.py: not committed: Ray could not finish the run"), last
    assert "run the job again" in last
    assert not list(out.glob("**/*.parquet"))  # nothing of the failed run is visible

    cluster.nodes_by_role["gpu"] = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    code, stdout, stderr = _finish(_job(cluster.address, photos, out, job_bundle))
    assert code == 0, stderr[-3000:]
    rows = _assert_one_row_per_image(out, photos)
    assert {row["cnn_node_id"] for row in rows} == {cluster.nodes_by_role["gpu"].node_id}
    assert not list((tmp_path / ".labels.artsy-staging").glob("*"))  # the failed run's is gone


def test_the_head_node_lost_ends_the_driver_and_a_new_cluster_recovers(tmp_path,
                                                                       job_bundle_classical):
    photos, out = tmp_path / "photos", tmp_path / "labels"
    write_photos(photos, 80, seed=34, max_side=400)
    cluster, _ = _start_cluster(gpu_node=False)
    try:
        job = _job(cluster.address, photos, out, job_bundle_classical)
        _wait_mid_run(job, out)
        cluster.remove_node(cluster.head_node, allow_graceful=False)
        code, _, _ = _finish(job)  # the driver gives up after GCS_RECONNECT_S
    finally:
        cluster.shutdown()
    assert code != 0
    assert not list(out.glob("**/*.parquet"))  # no partition half-committed

    cluster, _ = _start_cluster(gpu_node=False)
    try:
        code, stdout, stderr = _finish(_job(cluster.address, photos, out, job_bundle_classical))
    finally:
        cluster.shutdown()
    assert code == 0, stderr[-3000:]
    _assert_one_row_per_image(out, photos)
    assert not list((tmp_path / ".labels.artsy-staging").glob("*"))


def test_s3_in_and_out_on_the_cluster_through_the_aws_variables_only(cluster, s3_server,
                                                                      tmp_path,
                                                                      job_bundle_classical):
    # The raylets were started without credentials: the workers read s3:// only because the
    # job forwards the standard AWS_* variables it was given.
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    local = write_photos(tmp_path / "photos", 12, seed=35, max_side=300)
    for bucket in ("cluster-photos", "cluster-labels"):
        s3_server.create_bucket(bucket)
    uploaded = s3_server.upload(local, "cluster-photos/set")
    env = s3_server.env(_env(cluster.address))
    for expected in (12, 0):  # a first run, then an unchanged rerun (nothing read again)
        code, stdout, stderr = _finish(_job(cluster.address, "s3://cluster-photos/set",
                                            "s3://cluster-labels/t", job_bundle_classical,
                                            env=env, cwd=tmp_path))
        assert code == 0, stderr[-3000:]
        assert f"processed        {expected}" in stdout
    filesystem = s3_server.filesystem()
    files = [info.path for info in filesystem.get_file_info(pyarrow.fs.FileSelector(
        "cluster-labels/t/run_date=2026-07-01")) if info.base_name.endswith(".parquet")]
    rows = pyarrow.dataset.dataset(files, filesystem=filesystem).to_table().to_pylist()
    assert sorted(row["path"] for row in rows) == uploaded
    assert all(row["status"] == "ok" and row["file_modified"] is not None for row in rows)
    assert len({row["node_id"] for row in rows}) >= 2
