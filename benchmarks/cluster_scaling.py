"""The job on a simulated cluster with 1, 2 and 3 worker nodes: rows per node and throughput.

``ray.cluster_utils.Cluster`` starts real raylets on this machine: a head with no CPU for tasks
(the driver runs there, as under ``ray job submit``) and N workers of ``--cpus-per-node`` CPUs
each. ``jobs/classify.py`` joins through ``RAY_ADDRESS`` and labels the same photos (a new output
each time, so nothing is skipped). On a 2-core machine the raylets share the same two cores, so
throughput cannot grow with N here; what the run shows is placement (rows decoded per node, the
node of the CNN actor, from the rows' ``node_id`` / ``cnn_node_id``) and that every
configuration writes exactly one row per photo. ``vs_first`` is each N's images/s over the
first (fewest-worker) run of the same invocation.

Run: ``python -m benchmarks.cluster_scaling [--photos 300] [--workers 1 2 3]``; prints JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "jobs" / "classify.py"


def run_on_cluster(workers: int, cpus_per_node: int, photos: Path, out: Path,
                   batch_size: int) -> dict:
    """Start a head + ``workers`` nodes, run the job once, return its figures."""
    import pyarrow.dataset
    import ray.cluster_utils

    started = time.perf_counter()
    cluster = ray.cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False})
    try:
        nodes = [cluster.add_node(num_cpus=cpus_per_node) for _ in range(workers)]
        cluster.wait_for_nodes()
        cluster_s = time.perf_counter() - started
        env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_ADDRESS=cluster.address,
                   RAY_USAGE_STATS_ENABLED="0", TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, str(SCRIPT), "--input", str(photos), "--output", str(out),
                   "--run-date", "2026-08-01", "--batch-size", str(batch_size), "--quiet"]
        job_started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
        job_s = time.perf_counter() - job_started
        if result.returncode != 0:
            return {"workers": workers, "failed": result.stderr.strip().splitlines()[-1:]}
        table = pyarrow.dataset.dataset(out, partitioning="hive").to_table(
            columns=["path", "node_id", "cnn_node_id"])
        names = {node.node_id: f"worker{index + 1}" for index, node in enumerate(nodes)}
        names[cluster.head_node.node_id] = "head"
        decoded = collections.Counter(names.get(node, node)
                                      for node in table.column("node_id").to_pylist())
        scored = collections.Counter(names.get(node, node)
                                     for node in table.column("cnn_node_id").to_pylist())
        summary = json.loads((out / "run_date=2026-08-01" / "_SUMMARY.json").read_text())
        return {"workers": workers, "cpus": summary["cpus"], "rows": table.num_rows,
                "distinct_paths": len(set(table.column("path").to_pylist())),
                "rows_decoded_per_node": dict(sorted(decoded.items())),
                "rows_scored_per_cnn_node": dict(sorted(scored.items())),
                "cluster_start_s": round(cluster_s, 1), "job_s": round(job_s, 1),
                "run_s": summary["seconds"],
                "images_per_s": round(table.num_rows / job_s, 2)}
    finally:
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    from artsy.testing import write_photos

    work = Path(tempfile.mkdtemp(prefix="artsy-scaling-"))
    try:
        write_photos(work / "photos", args.photos, seed=5, max_side=640)
        runs = [run_on_cluster(count, args.cpus_per_node, work / "photos",
                               work / f"labels-{count}", args.batch_size)
                for count in args.workers]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = next((run for run in runs if "images_per_s" in run), None)
    for run in runs:
        if base is not None and "images_per_s" in run:
            run["vs_first"] = round(run["images_per_s"] / base["images_per_s"], 3)
    print(json.dumps({"machine": common.machine_info(), "photos": args.photos,
                      "cpus_per_node": args.cpus_per_node, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
