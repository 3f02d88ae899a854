"""The peer: the Ray Data docs pattern a user would write, with the notebook's features.

``python -m benchmarks.peer --input DIR --output OUT`` (run from the repository root)::

    ray.init()
    ray.data.read_images(DIR, size=(100, 100), mode="RGB")
        .map_batches(notebook_features)
        .write_parquet(OUT)

Timed from outside, as a whole process, by :func:`benchmarks.baselines.peer`.
"""

from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> int:
    """Parse ``--input`` / ``--output`` and run the pattern; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of images")
    parser.add_argument("--output", required=True, help="Parquet output folder")
    arguments = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from benchmarks.notebook import peer_batch

    # address="local": a fresh Ray, as the job gets with --ray-address local.
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = ray.data.read_images(arguments.input, size=(100, 100), mode="RGB")
    dataset.map_batches(peer_batch).write_parquet(arguments.output)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
