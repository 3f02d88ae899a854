"""Label the emotion (positive / negative) of every image under one or more folders, on Ray.

Writes one Parquet row per image file into ``OUTPUT/run_date=YYYY-MM-DD/`` (hive partitioning),
commits the partition atomically with ``_SUCCESS`` and ``_SUMMARY.json``, and prints a summary.

Incremental: files whose content already has an ``ok`` row of this model version are skipped
(hashed on the driver first); when nothing is new the partition is committed without starting Ray.

Ray: with ``RAY_ADDRESS`` set (``ray job submit``) or a cluster started with ``ray start`` on this
machine (``ray submit`` runs the script on the head node) the job joins that cluster; otherwise it
starts a local Ray. ``--ray-address local`` always starts a local one.

Exit codes: 0 committed (per-file errors included); 1 ran but not committed (``--max-error-rate``
exceeded, or the run crashed); 2 invalid arguments, nothing done (missing input, unreadable model
bundle, output not writable, bad date).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

#: Exit codes for schedulers.
EXIT_COMMITTED, EXIT_NOT_COMMITTED, EXIT_INVALID = 0, 1, 2


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of the job."""
    parser = _OneLineParser(prog="classify.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", action="append", required=True, metavar="PATH",
                        help="image file or folder (local path or s3:// / gs:// URI); repeatable")
    parser.add_argument("--output", required=True, metavar="PATH",
                        help="root of the Parquet label table (local path or URI)")
    parser.add_argument("--model", metavar="BUNDLE_DIR",
                        help="model bundle folder (default: the bundle shipped with artsy)")
    parser.add_argument("--run-date", metavar="YYYY-MM-DD",
                        help="partition to write (default: today, UTC); replaces an existing one")
    parser.add_argument("--cnn-actors", type=int, metavar="N",
                        help="CNN actors (default: one per GPU, or 1 without GPUs)")
    parser.add_argument("--gpus-per-actor", type=float, metavar="G",
                        help="GPUs per CNN actor (default: 1 when the cluster has GPUs, else 0)")
    parser.add_argument("--batch-size", type=int, metavar="B",
                        help="images per batch (default: 64)")
    parser.add_argument("--full", action="store_true",
                        help="reprocess every file, even those already labelled by this model")
    parser.add_argument("--max-error-rate", type=float, default=1.0, metavar="R",
                        help="do not commit when more than this fraction of files fail "
                             "(default: 1.0, never fail)")
    parser.add_argument("--ray-address", metavar="ADDRESS",
                        help="Ray cluster to join (default: $RAY_ADDRESS or the `ray start` "
                             "cluster on this machine, else a new local Ray; 'local' forces one)")
    parser.add_argument("--dashboard", action="store_true",
                        help="start the Ray dashboard when the job starts its own local Ray "
                             "(off by default: it adds seconds and dies with the job)")
    chatter = parser.add_mutually_exclusive_group()
    chatter.add_argument("--verbose", action="store_true",
                         help="log progress at INFO level and show Ray's and TensorFlow's logs")
    chatter.add_argument("--quiet", action="store_true",
                         help="print only the summary and errors (no progress)")
    return parser


def make_config(args: argparse.Namespace):
    """Turn parsed arguments into the job's :class:`artsy.config.JobConfig`."""
    from artsy.config import ArtsyConfig, JobConfig

    artsy_config = ArtsyConfig()
    if args.batch_size is not None:
        artsy_config = artsy_config.replace(batch_size=args.batch_size)
    return JobConfig(inputs=tuple(args.input), output=args.output, model=args.model,
                     run_date=args.run_date, cnn_actors=args.cnn_actors,
                     gpus_per_actor=args.gpus_per_actor, full=args.full,
                     max_error_rate=args.max_error_rate, artsy=artsy_config)


def format_summary(summary: dict) -> str:
    """Return the one-screen, human-readable run summary."""
    labelled = ", ".join(f"{name} {count}" for name, count in summary["labelled"].items())
    lines = [
        f"artsy run {summary['run_id']} ({summary['run_date']}) committed",
        f"  images seen      {summary['images_seen']}",
        f"  processed        {summary['processed']}",
        f"  skipped          {summary['skipped']} already labelled by this model "
        f"({summary['carried_forward']} rows carried forward)",
        f"  labelled         {labelled or 'none'}",
    ]
    if summary.get("emotions"):
        emotions = ", ".join(f"{name} {count}" for name, count in summary["emotions"].items())
        lines.append(f"  emotions         {emotions} (valence agrees with the label for "
                     f"{summary['emotion_valence_agreement']:.0%})")
    lines.append(f"  errors           {summary['errors']}")
    lines += [f"    {count:6d}  {reason}" for reason, count in summary["errors_by_reason"].items()]
    lines += [
        f"  throughput       {summary['images_per_second']:.1f} images/s "
        f"({summary['seconds']:.1f} s; {summary['cpus']:g} CPUs, {summary['gpus']:g} GPUs)",
        *_node_lines(summary.get("nodes") or {}),
        f"  model            {summary['model_version']} (features: {summary['feature_set']})",
        f"  output           {summary['partition']}",
    ]
    return "\n".join(lines)


def _node_lines(nodes: dict) -> list[str]:
    """One line per node that decoded or scored rows (multi-node clusters only)."""
    from artsy.job.summary import busy_nodes

    return [f"  node {node[:8]}    {counts['address']}: decoded {counts['rows']}, "
            f"CNN {counts['cnn_rows']}{'' if counts['alive'] else ' (lost)'}"
            for node, counts in busy_nodes(nodes).items()]


#: Environment of every Ray worker unless --verbose: TensorFlow's C++ start-up notices off.
QUIET_WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
#: Object-store settings the workers need to read ``s3://`` inputs: forwarded from the job's
#: environment when set there (workers on other nodes do not inherit the driver's environment).
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_EC2_METADATA_DISABLED", "AWS_PROFILE")


def worker_env(verbose: bool) -> dict[str, str]:
    """Environment variables every Ray worker of the job gets."""
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    return env if verbose else {**QUIET_WORKER_ENV, **env}


def _init_ray(address: str | None, dashboard: bool, *, verbose: bool, progress: bool) -> None:
    """Join or start Ray. Unless ``verbose``, workers' logs stay in Ray's log files (a failing
    task still fails the run with its reason) and Ray's own start-up lines are not printed."""
    import ray

    # include_dashboard only matters when this job starts its own local Ray (then the dashboard
    # dies with the job, and starting it costs seconds); a cluster keeps its own.
    env = worker_env(verbose)
    ray.init(address=address, log_to_driver=verbose, include_dashboard=dashboard,
             logging_level=logging.INFO if verbose else logging.ERROR,
             runtime_env={"env_vars": env} if env else None)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    context.print_on_execution_start = verbose
    if not verbose:  # a failed run's reason is the job's own last line; Ray Data's traceback
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # stays in Ray's log files


def main(argv: list[str] | None = None) -> int:
    """Run the job; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--verbose" in argv:
        return _main(argv)
    from artsy.job.console import filtered_stderr

    with filtered_stderr():  # drops Ray's known-benign C++ lines, passes everything else
        return _main(argv)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:  # `ray submit cluster.yaml classify.py -- --input ...`
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from artsy.job import pipeline

    try:
        config = make_config(args)
        plan = pipeline.validate_job(config)
    except ValueError as error:
        print(f"classify.py: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_INVALID
    prepared = pipeline.prepare_run(config, plan)
    if not args.quiet:
        print(f"artsy: {prepared.images_seen} images found, {len(prepared.work.todo)} to label "
              f"with model {plan.model_version}", file=sys.stderr, flush=True)
    if prepared.needs_ray:  # an unchanged folder's rerun commits without starting Ray at all
        _init_ray(args.ray_address, args.dashboard, verbose=args.verbose,
                  progress=sys.stderr.isatty() and not args.quiet)
        try:
            pipeline.check_cluster(config)
        except ValueError as error:  # e.g. fewer GPUs than --gpus-per-actor asks for
            print(f"classify.py: error: {' '.join(str(error).split())}", file=sys.stderr)
            return EXIT_INVALID
    try:
        summary = pipeline.run_job(config, plan, prepared)
    except pipeline.RunFailed as error:
        print(f"classify.py: {error}", file=sys.stderr)
        return EXIT_NOT_COMMITTED
    print(format_summary(summary.to_dict()))
    logging.getLogger(__name__).info("summary: %s", json.dumps(summary.to_dict()))
    return EXIT_COMMITTED


if __name__ == "__main__":
    sys.exit(main())
