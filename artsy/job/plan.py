"""Planning a run, before any Ray work: checks, the bundle's facts, the CNN's resources, and
which files are new.

:func:`validate_job` checks everything that can be checked before work starts (inputs exist, the
bundle loads and verifies, the output is writable, the date parses) and raises ``ValueError``;
:func:`prepare_run` discovers the files and decides, on the driver, which of them are new
(:mod:`artsy.job.incremental`), so a run with nothing new needs no Ray at all;
:func:`cnn_resources` sizes the CNN actor pool from the cluster's CPUs and GPUs.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from artsy.config import JobConfig

#: CPUs reserved by a CNN actor on a cluster with fewer than ``SMALL_CLUSTER_CPUS`` CPUs: none,
#: so every core runs a decode task. After its start-up the CNN needs about a tenth of the CPU
#: time of decoding + features per image, so it shares the cores instead of idling on a
#: reserved one; it runs ``SMALL_CLUSTER_CNN_THREADS`` TensorFlow threads (:func:`cnn_threads`).
SMALL_CLUSTER_CNN_CPUS = 0.0
SMALL_CLUSTER_CNN_THREADS = 2
SMALL_CLUSTER_CPUS = 4
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
    work : artsy.job.incremental.Work
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
    from artsy.features import feature_names
    from artsy.job import discover, output
    from artsy.models.bundle import load_bundle

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


def cnn_resources(config: JobConfig, cluster: dict[str, float]) -> tuple[int, float, float]:
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


def cnn_threads(actor_cpus: float, cluster_cpus: float = 1.0) -> int:
    """TensorFlow intra-op threads of a CNN actor.

    An actor that reserves CPUs runs one thread per reserved CPU. One that reserves none (small
    CPU-only clusters, see :data:`SMALL_CLUSTER_CNN_CPUS`) runs ``SMALL_CLUSTER_CNN_THREADS``,
    never more than the cluster's CPUs. With the from-scratch CNN a second thread made the job
    slower (it competed with decoding: 1 000 photos, 24.7 s against 23.3 s); with the backbone
    at 288 px the actor is the long pole once decoding ends, and on 2 cores a second thread made
    the whole job faster (1 500 photos, three interleaved runs each: 44.1-47.9 s against
    52.8-59.1 s with one thread; two actors of one thread were slower still, 58.0-62.1 s).
    """
    if actor_cpus > 0:
        return max(1, math.ceil(actor_cpus))
    return max(1, min(SMALL_CLUSTER_CNN_THREADS, math.floor(cluster_cpus)))


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

    return cnn_resources(config, ray.cluster_resources())


def prepare_run(config: JobConfig, plan: JobPlan) -> Prepared:
    """Discover the inputs and decide which files this run must process (no Ray needed).

    With ``config.full`` every file is processed; otherwise files whose content already has an
    ``ok`` row of this model version are skipped or carried forward (:mod:`artsy.job.incremental`).
    """
    from artsy.job import discover, incremental

    started = time.perf_counter()
    files = discover.discover(config.inputs)
    prior = incremental.PriorRows() if config.full else incremental.read_prior(
        plan.location, plan.model_version, plan.run_date)
    work = incremental.plan_work(files, prior)
    return Prepared(images_seen=len(files), work=work, seconds=time.perf_counter() - started)
