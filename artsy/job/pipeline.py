"""The batch job: discover → decode + features (tasks) → classical → CNN (actor pool) → Parquet.

Planning (:func:`validate_job`, :func:`prepare_run`, the CNN's resources) is in
:mod:`artsy.job.plan` and re-exported here. :func:`run_job` streams the files through Ray Data
into a staging folder, counts the staged rows,
refuses to commit when the error rate is over the limit (:class:`RunFailed`) and otherwise commits
the partition atomically (see :mod:`artsy.job.output`). Nothing collects the rows on the driver.

``ray.init`` is not called here: the caller (``jobs/classify.py`` or a test) owns the Ray session
and starts it only when :attr:`Prepared.needs_ray`.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
import uuid
import warnings
from typing import Any

from artsy.config import JobConfig
from artsy.job.plan import (
    SMALL_CLUSTER_CPUS,
    JobPlan,
    Prepared,
    check_cluster,
    cnn_resources,
    cnn_threads,
    prepare_run,
    resolve_run_date,
    validate_job,
)
from artsy.job.summary import RunSummary, describe_nodes

logger = logging.getLogger(__name__)

#: Retries of a decode task whose worker died; restarts / task retries of a predictor actor.
TASK_RETRIES = 3
ACTOR_RESTARTS = 3
#: Rows per Parquet file at most (a run writes fewer, larger files).
ROWS_PER_FILE = 100_000

__all__ = ["JobPlan", "Prepared", "RunFailed", "RunSummary", "build_dataset", "check_cluster",
           "cnn_resources", "cnn_threads", "new_run_id", "prepare_run", "resolve_run_date",
           "run_job", "validate_job"]


class RunFailed(RuntimeError):
    """A run finished but was not committed (for example, too many files failed)."""


def build_dataset(config: JobConfig, plan: JobPlan, files: list, run_id: str,
                  cluster: dict[str, float], skip_hashes: set[str] | None = None):
    """Return the lazy Ray dataset of output tables (nothing runs until it is written).

    ``cluster`` is ``ray.cluster_resources()`` of the connected cluster, read once per run;
    files whose content hash is in ``skip_hashes`` get no row (the tasks hash, then drop them).
    """
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing max_retries / max_restarts / max_task_retries as extra
        # keywords but offers no other way to make them finite (its defaults retry forever, so
        # a file that crashes its worker would hang the run); revisit before Ray 2.64.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return _build_dataset(config, plan, files, run_id, cluster, skip_hashes)


def _build_dataset(config: JobConfig, plan: JobPlan, files: list, run_id: str,
                   cluster: dict[str, float], skip_hashes: set[str] | None):
    import ray

    from artsy.job import incremental, predict

    batch_size = config.artsy.batch_size
    items = [{"path": item.path, "location": item.location,
              "mtime_ns": -1 if item.mtime_ns is None else item.mtime_ns} for item in files]
    skip = [ray.put(incremental.HashSet(skip_hashes))] if skip_hashes else None
    # One block per batch (at most batch_size rows) and one block per CPU task (batch_size=None):
    # many small tasks stream and balance better than a few large ones.
    blocks = max(1, min(len(items), math.ceil(len(items) / batch_size)))
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    cpus = cluster.get("CPU", 0.0)
    concurrency = None
    if cpus < SMALL_CLUSTER_CPUS:
        # Ray Data reserves part of a small cluster for each downstream operator (the 0-CPU CNN
        # actor, the writer), which left one decode task running on 2 CPUs. This dataset's own
        # context (a copy) turns that off; the concurrency cap keeps in-flight tasks (and their
        # outputs) to one per CPU. Bigger clusters keep Ray Data's defaults.
        dataset.context.op_resource_reservation_enabled = False
        concurrency = max(1, min(int(cpus), blocks))  # no cap above the blocks Ray Data sees
    finish = {"run_id": run_id, "models": plan.models, "model_version": plan.model_version,
              "feature_set": plan.feature_set}
    dataset = dataset.map_batches(
        predict.featurize_and_score, batch_size=None, num_cpus=1, max_retries=TASK_RETRIES,
        compute=ray.data.TaskPoolStrategy(size=concurrency) if concurrency else None,
        fn_kwargs={"bundle_path": config.model, "image_size": plan.image_size,
                   "feature_set": plan.feature_set, "n_features": plan.n_features,
                   "output": None if plan.cnn else finish, "skip": skip})
    if not plan.cnn:
        return dataset
    actors, gpus_per_actor, actor_cpus = cnn_resources(config, cluster)
    logger.info("CNN: %d actor(s), %.2f GPU and %.2f CPU each", actors, gpus_per_actor,
                actor_cpus)
    return dataset.map_batches(
        predict.CnnPredictor, batch_size=batch_size,  # Ray asks for one when GPUs are requested
        fn_constructor_args=(config.model,),
        fn_constructor_kwargs={"batch_size": batch_size,
                               "threads": cnn_threads(actor_cpus, cpus),
                               "output": finish},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus_per_actor or None, num_cpus=actor_cpus,
        max_restarts=ACTOR_RESTARTS, max_task_retries=TASK_RETRIES)


def new_run_id() -> str:
    """Return a sortable unique run id: ``YYYYmmddTHHMMSSZ-<8 hex>``."""
    now = datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _stage_carried(location, staging: str, rows, schema) -> None:
    """Write the rows carried forward into the staging partition, in :data:`ROWS_PER_FILE` files.

    A column the prior partition lacks (it was written by an artsy without it, e.g. the emotion
    columns) is added as nulls.
    """
    import pyarrow as pa
    import pyarrow.parquet

    for field in schema:
        if field.name not in rows.column_names:
            rows = rows.append_column(field.name, pa.nulls(rows.num_rows, field.type))
    rows = rows.select(schema.names).cast(schema)
    for part, start in enumerate(range(0, rows.num_rows, ROWS_PER_FILE)):
        with location.filesystem.open_output_stream(
                f"{staging}/carried-{part:05d}.parquet") as stream:
            pyarrow.parquet.write_table(rows.slice(start, ROWS_PER_FILE), stream)


def run_job(config: JobConfig, plan: JobPlan | None = None,
            prepared: Prepared | None = None) -> RunSummary:
    """Label every image under ``config.inputs`` and commit one partition of the label table.

    Parameters
    ----------
    config : JobConfig
    plan : JobPlan or None, default=None
        From :func:`validate_job`; validated here when ``None``.
    prepared : Prepared or None, default=None
        From :func:`prepare_run`; prepared here when ``None``. Ray must be initialised when
        ``prepared.needs_ray``.

    Returns
    -------
    RunSummary
        Of the committed run.

    Raises
    ------
    ValueError
        If the job is invalid or asks for more GPUs than the cluster has (nothing was done).
    RunFailed
        If the run was not committed: error rate over ``config.max_error_rate``, or Ray could
        not finish it (a lost node that took the CNN actor or a task past its retries).
    """
    from artsy.job import output
    from artsy.job.schema import output_schema

    plan = plan or validate_job(config)
    prepared = prepared or prepare_run(config, plan)
    started = time.perf_counter()
    work = prepared.work
    cluster: dict[str, float] = {}
    if prepared.needs_ray:
        import ray

        cluster = ray.cluster_resources()
        cnn_resources(config, cluster)  # too many GPUs asked for: ValueError before any work
    run_id = new_run_id()
    location = plan.location
    schema = output_schema(plan.models)
    staging = output.new_staging(location, plan.run_date, run_id)
    logger.info("run %s: %d files, %d to process -> %s", run_id, prepared.images_seen,
                len(work.todo), staging)
    try:
        if work.carried_rows is not None:
            _stage_carried(location, staging, work.carried_rows, schema)
        if work.todo:
            dataset = build_dataset(config, plan, work.todo, run_id, cluster, work.skip_hashes)
            dataset.write_parquet(staging, filesystem=location.filesystem,
                                  max_rows_per_file=ROWS_PER_FILE)
        output.ensure_file(location, staging, schema)
        counts = output.staged_counts(location, staging, run_id)
    except BaseException as error:
        output.discard_staging(location, staging)
        if _is_ray_error(error):  # a lost node, an actor that could not come back
            raise RunFailed(f"not committed: {_ray_failure(error)}") from error
        raise
    seconds = prepared.seconds + time.perf_counter() - started
    summary = RunSummary(
        run_id=run_id, run_date=plan.run_date, output=location.display,
        partition=location.partition_display(plan.run_date), model_version=plan.model_version,
        feature_set=plan.feature_set, images_seen=prepared.images_seen, processed=counts["new"],
        skipped=prepared.images_seen - counts["new"], carried_forward=counts["carried_forward"],
        labelled=dict(sorted(counts["labels"].items())),
        emotions=dict(sorted(counts["emotions"].items(), key=lambda item: -item[1])),
        emotion_valence_agreement=(round(counts["emotion_valence_agrees"]
                                         / sum(counts["emotions"].values()), 4)
                                   if counts["emotions"] else None),
        errors=counts["errors"],
        errors_by_reason=dict(sorted(counts["errors_by_reason"].items())),
        seconds=round(seconds, 3),
        images_per_second=round(counts["new"] / seconds, 2) if seconds > 0 else 0.0,
        committed=True, cpus=cluster.get("CPU", 0.0), gpus=cluster.get("GPU", 0.0),
        nodes=describe_nodes(counts["nodes"]) if prepared.needs_ray else {})
    error_rate = counts["errors"] / counts["new"] if counts["new"] else 0.0
    if error_rate > config.max_error_rate:
        output.discard_staging(location, staging)
        raise RunFailed(f"not committed: {counts['errors']} of {counts['new']} files failed "
                        f"({error_rate:.1%} > --max-error-rate {config.max_error_rate:.1%}); "
                        f"errors by reason: {summary.errors_by_reason}")
    _write_report(location, staging, summary.to_dict())
    output.commit(location, staging, plan.run_date, summary.to_dict())
    return summary


def _is_ray_error(error: BaseException) -> bool:
    import sys

    ray_exceptions = sys.modules.get("ray.exceptions")
    return ray_exceptions is not None and isinstance(error, ray_exceptions.RayError)


def _ray_failure(error: BaseException) -> str:
    """One line for a run that Ray could not finish: what failed and what to do."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[0] if lines else ""
    if len(reason) > 300:
        reason = reason[:297] + "..."
    return (f"Ray could not finish the run ({type(error).__name__}: {reason}); a node was "
            "probably lost. Nothing of this run was committed; run the job again (files "
            "already committed are not redone)")


def _write_report(location, staging: str, summary: dict[str, Any]) -> None:
    """Add ``_REPORT.html`` to the staged partition; a report that fails costs a warning only."""
    from artsy.job import run_report

    try:
        run_report.write_report(location, staging, summary)
    except Exception as error:  # the labels matter more than their report
        logger.warning("run report not written: %s: %s", type(error).__name__, error)
