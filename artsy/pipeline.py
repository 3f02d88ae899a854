"""The batch job: discover → decode + features (tasks) → classical → CNN (actor pool) → Parquet.

:func:`validate_job` checks everything that can be checked before work starts (inputs exist, the
bundle loads and verifies, the output is writable, the date parses) and raises ``ValueError``;
:func:`prepare_run` discovers the files and decides, on the driver, which of them are new
(:mod:`artsy.incremental`), so a run with nothing new needs no Ray at all; :func:`run_job`
streams the files through Ray Data into a staging folder, counts the staged rows,
refuses to commit when the error rate is over the limit (:class:`RunFailed`) and otherwise commits
the partition atomically (see :mod:`artsy.output`). Nothing collects the rows on the driver.

``ray.init`` is not called here: the caller (``jobs/classify.py`` or a test) owns the Ray session
and starts it only when :attr:`Prepared.needs_ray`.
"""

from __future__ import annotations

import datetime
import logging
import math
import re
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from typing import Any

from artsy.config import JobConfig

logger = logging.getLogger(__name__)

#: CPUs reserved by a CNN actor on a cluster with fewer than ``SMALL_CLUSTER_CPUS`` CPUs: none,
#: so every core runs a decode task. After its start-up the CNN needs about a tenth of the CPU
#: time of decoding + features per image (1 100 vs 106 images/s per core), and it runs one
#: TensorFlow thread, so it shares a core instead of idling on a reserved one.
SMALL_CLUSTER_CNN_CPUS = 0.0
SMALL_CLUSTER_CPUS = 4
#: Retries of a decode task whose worker died; restarts / task retries of a predictor actor.
TASK_RETRIES = 3
ACTOR_RESTARTS = 3
#: Rows per Parquet file at most (a run writes fewer, larger files).
ROWS_PER_FILE = 100_000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RunFailed(RuntimeError):
    """A run finished but was not committed (for example, too many files failed)."""


@dataclass(frozen=True)
class JobPlan:
    """What :func:`validate_job` resolved: the bundle facts and the output location."""

    run_date: str
    model_version: str
    feature_set: str
    models: tuple[str, ...]
    cnn: bool
    image_size: int
    n_features: int
    location: Any


@dataclass(frozen=True)
class Prepared:
    """Discovery and the incremental decision, made on the driver before any Ray work.

    Attributes
    ----------
    images_seen : int
        Files discovered under the inputs.
    work : artsy.incremental.Work
        Files to process, rows to carry forward, files skipped.
    seconds : float
        Wall time of discovery and the incremental decision.
    """

    images_seen: int
    work: Any
    seconds: float

    @property
    def needs_ray(self) -> bool:
        """Whether any file must be read, decoded and labelled."""
        return bool(self.work.todo)


@dataclass(frozen=True)
class RunSummary:
    """The end-of-run summary (printed by the job and written as ``_SUMMARY.json``).

    Attributes
    ----------
    run_id, run_date, output, partition : str
        Identity of the run and where its rows are.
    model_version, feature_set : str
        The bundle that labelled them.
    images_seen : int
        Files discovered under the inputs.
    processed : int
        Files read, decoded and labelled (or failed) by this run.
    skipped : int
        Files not processed because their content already has an ``ok`` row of this model version
        (``carried_forward`` of them keep their earlier row in this partition).
    carried_forward : int
    labelled : dict of str to int
        ``ok`` rows per label in the partition.
    emotions : dict of str to int
        ``ok`` rows per emotion category (empty when the bundle has no emotion head).
    emotion_valence_agreement : float or None
        Share of those rows whose category's valence matches their label.
    errors : int
    errors_by_reason : dict of str to int
        Error rows by kind (the reason's text before ``:``).
    seconds : float
        Wall time of discovery, the incremental decision and the run up to the commit (starting
        Ray, which the caller does between the two, is not counted).
    images_per_second : float
        ``processed / seconds``.
    committed : bool
    cpus, gpus : float
        Resources of the Ray cluster (0 when nothing was new and Ray was not used).
    nodes : dict of str to dict
        Per Ray node id: ``address``, its ``cpus`` and ``gpus``, the new rows it decoded
        (``rows``) and scored in its CNN actor (``cnn_rows``); empty when Ray was not used.
    """

    run_id: str
    run_date: str
    output: str
    partition: str
    model_version: str
    feature_set: str
    images_seen: int
    processed: int
    skipped: int
    carried_forward: int
    labelled: dict[str, int]
    emotions: dict[str, int]
    emotion_valence_agreement: float | None
    errors: int
    errors_by_reason: dict[str, int]
    seconds: float
    images_per_second: float
    committed: bool
    cpus: float
    gpus: float
    nodes: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict."""
        return asdict(self)


def _check_numbers(config: JobConfig) -> None:
    if not 0.0 <= config.max_error_rate <= 1.0:
        raise ValueError(f"max_error_rate must be in [0, 1], got {config.max_error_rate}")
    if config.cnn_actors is not None and config.cnn_actors < 1:
        raise ValueError(f"cnn_actors must be >= 1, got {config.cnn_actors}")
    if config.gpus_per_actor is not None and config.gpus_per_actor < 0:
        raise ValueError(f"gpus_per_actor must be >= 0, got {config.gpus_per_actor}")
    if config.artsy.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.artsy.batch_size}")


def resolve_run_date(run_date: str | None) -> str:
    """Return ``run_date`` checked as ``YYYY-MM-DD``, or today's UTC date when ``None``."""
    if run_date is None:
        return datetime.datetime.now(datetime.UTC).date().isoformat()
    try:
        if not _DATE.match(run_date):
            raise ValueError
        datetime.date.fromisoformat(run_date)
    except ValueError:
        raise ValueError(f"run date must be a calendar date YYYY-MM-DD, got {run_date!r}") from None
    return run_date


def validate_job(config: JobConfig) -> JobPlan:
    """Check a job before any work: inputs, bundle, output, date and numbers.

    Raises
    ------
    ValueError
        One line saying what is wrong and how to fix it (``BundleError`` is a ``ValueError``).
    """
    from artsy import discover, output
    from artsy.bundle import load_bundle
    from artsy.features import feature_names

    _check_numbers(config)
    run_date = resolve_run_date(config.run_date)
    discover.check_inputs(config.inputs)
    bundle = load_bundle(config.model, lazy=True)  # verified; models load in the workers
    location = output.locate(config.output)
    output.check_writable(location)
    expected = list(bundle.manifest["feature_set"].get("names", []))
    computed = list(feature_names(bundle.feature_set))
    if expected and expected != computed:
        raise ValueError(f"model bundle {bundle.path} was trained on {len(expected)} "
                         f"'{bundle.feature_set}' features but this artsy computes "
                         f"{len(computed)} different ones; retrain it with jobs/train.py")
    models = (bundle.classical_names + bundle.embedding_names
              + (("cnn",) if bundle.has_cnn else ()))
    return JobPlan(run_date=run_date, model_version=bundle.version,
                   feature_set=bundle.feature_set, models=models, cnn=bundle.needs_actor,
                   image_size=bundle.image_size,
                   n_features=len(computed), location=location)


def _cnn_resources(config: JobConfig, cluster: dict[str, float]) -> tuple[int, float, float]:
    """Return (actors, GPUs per actor, CPUs per actor) for the CNN pool."""
    cpus, gpus = cluster.get("CPU", 1.0), cluster.get("GPU", 0.0)
    gpus_per_actor = config.gpus_per_actor
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 else 0.0
    if gpus_per_actor > gpus:
        raise ValueError(f"gpus_per_actor={gpus_per_actor} but the cluster has {gpus} GPUs; "
                         "lower --gpus-per-actor or add GPU nodes")
    actors = config.cnn_actors
    if actors is None:
        actors = max(1, math.floor(gpus / gpus_per_actor)) if gpus_per_actor > 0 else 1
    actor_cpus = 1.0 if cpus >= SMALL_CLUSTER_CPUS else SMALL_CLUSTER_CNN_CPUS
    return actors, gpus_per_actor, actor_cpus


def cnn_threads(actor_cpus: float) -> int:
    """TensorFlow intra-op threads of a CNN actor: its reserved CPUs, at least one.

    An actor that reserves no CPU (small CPU-only clusters) gets one thread, not every core:
    measured on 2 cores, two threads made the isolated actor faster but the whole job slower
    (more CPU spent, 24.7 s against 23.3 s for 1 000 photos), competing with the decode tasks.
    With the EfficientNet-Lite0 backbone the two are even (1 500 photos: 47.9 s with one thread,
    47.5 s with two; the isolated actor 71 against 96 images/s), so one thread stays.
    """
    return max(1, math.ceil(actor_cpus))


def check_cluster(config: JobConfig) -> tuple[int, float, float]:
    """Check the CNN resources against the connected Ray cluster.

    Returns
    -------
    tuple
        (CNN actors, GPUs per actor, CPUs per actor).

    Raises
    ------
    ValueError
        If more GPUs per actor are asked for than the cluster has.
    """
    import ray

    return _cnn_resources(config, ray.cluster_resources())


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

    from artsy import incremental, predict

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
    actors, gpus_per_actor, actor_cpus = _cnn_resources(config, cluster)
    logger.info("CNN: %d actor(s), %.2f GPU and %.2f CPU each", actors, gpus_per_actor,
                actor_cpus)
    return dataset.map_batches(
        predict.CnnPredictor, batch_size=batch_size,  # Ray asks for one when GPUs are requested
        fn_constructor_args=(config.model,),
        fn_constructor_kwargs={"batch_size": batch_size,
                               "threads": cnn_threads(actor_cpus), "output": finish},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus_per_actor or None, num_cpus=actor_cpus,
        max_restarts=ACTOR_RESTARTS, max_task_retries=TASK_RETRIES)


def new_run_id() -> str:
    """Return a sortable unique run id: ``YYYYmmddTHHMMSSZ-<8 hex>``."""
    now = datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def prepare_run(config: JobConfig, plan: JobPlan) -> Prepared:
    """Discover the inputs and decide which files this run must process (no Ray needed).

    With ``config.full`` every file is processed; otherwise files whose content already has an
    ``ok`` row of this model version are skipped or carried forward (:mod:`artsy.incremental`).
    """
    from artsy import discover, incremental

    started = time.perf_counter()
    files = discover.discover(config.inputs)
    prior = incremental.PriorRows() if config.full else incremental.read_prior(
        plan.location, plan.model_version, plan.run_date)
    work = incremental.plan_work(files, prior)
    return Prepared(images_seen=len(files), work=work, seconds=time.perf_counter() - started)


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
    from artsy import output
    from artsy.schema import output_schema

    plan = plan or validate_job(config)
    prepared = prepared or prepare_run(config, plan)
    started = time.perf_counter()
    work = prepared.work
    cluster: dict[str, float] = {}
    if prepared.needs_ray:
        import ray

        cluster = ray.cluster_resources()
        _cnn_resources(config, cluster)  # too many GPUs asked for: ValueError before any work
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
        nodes=_describe_nodes(counts["nodes"]) if prepared.needs_ray else {})
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


def _describe_nodes(rows_by_node: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Add each node's address and resources (from ``ray.nodes()``) to its row counts."""
    import ray

    nodes = {}
    for node in ray.nodes():
        counts = rows_by_node.get(node["NodeID"], {"rows": 0, "cnn_rows": 0})
        if node["Alive"] or counts["rows"] or counts["cnn_rows"]:
            nodes[node["NodeID"]] = {
                "address": node.get("NodeManagerAddress", ""), "alive": node["Alive"],
                "cpus": node["Resources"].get("CPU", 0.0),
                "gpus": node["Resources"].get("GPU", 0.0), **counts}
    return dict(sorted(nodes.items(), key=lambda item: -item[1]["rows"]))


def _write_report(location, staging: str, summary: dict[str, Any]) -> None:
    """Add ``_REPORT.html`` to the staged partition; a report that fails costs a warning only."""
    from artsy import run_report

    try:
        run_report.write_report(location, staging, summary)
    except Exception as error:  # the labels matter more than their report
        logger.warning("run report not written: %s: %s", type(error).__name__, error)
