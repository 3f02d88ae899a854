"""artsy's own paths, measured beside the baselines.

(c) ``features`` decode + the default (``affect``) features: in one process (the per-image cost),
                 on a plain process pool, and the way the job does it — Ray Data ``map_batches``
                 function tasks over a dataset of paths — with 1 CPU and with all CPUs.
(d) ``job``      the whole job, ``jobs/classify.py`` as a fresh process, start-up included; then
                 the same command again over the unchanged folder (an incremental rerun).
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import baselines, common

#: The default feature set (used when no model bundle names one).
FEATURE_SET = "affect"
#: Side of the decoded square image.
IMAGE_SIZE = 100


def featurize_local(batch: dict[str, np.ndarray], *, image_size: int = IMAGE_SIZE,
                    feature_set: str = FEATURE_SET) -> dict[str, np.ndarray]:
    """Stand-in stage while ``artsy.job.predict.decode_and_featurize`` does not exist.

    ``{"path", "location"}`` in; ``{"path", "pixels", "features"}`` out, decoded with
    :func:`artsy.io.decode_image` and featurized with :func:`artsy.features.extract_features`.
    """
    from artsy.features import extract_features
    from artsy.io import decode_image

    pixels = np.stack([decode_image(Path(bytes(location).decode()).read_bytes(),
                                    size=image_size).pixels for location in batch["location"]])
    return {"path": batch["path"], "pixels": pixels,
            "features": extract_features(pixels, feature_set)}


def stage(feature_set: str = FEATURE_SET) -> tuple[Callable, str]:
    """Return the job's decode + features stage function and its name.

    ``artsy.job.predict.decode_and_featurize`` (what the job runs) when it exists, else
    :func:`featurize_local` (the same per-image work without hashing and error rows).
    """
    common.need("artsy.io", "decode_image")
    module = common.need("artsy.features", "extract_features", "FEATURE_SETS", "feature_names")
    if feature_set not in module.FEATURE_SETS:
        raise common.Skip(f"artsy.features has no {feature_set!r} feature set yet")
    try:
        predict = common.need("artsy.job.predict", "decode_and_featurize")
    except common.Skip:
        return featurize_local, "benchmarks.artsy_paths.featurize_local"
    return predict.decode_and_featurize, "artsy.job.predict.decode_and_featurize"


def _batch(paths: list[str]) -> dict[str, np.ndarray]:
    return {"path": np.array(paths, dtype=object),
            "location": np.array([path.encode() for path in paths], dtype=object)}


def run_stage(paths: list[str], feature_set: str = FEATURE_SET) -> int:
    """Run the stage over one batch of ``paths`` in this process; return the rows made."""
    function, _ = stage(feature_set)
    return len(function(_batch(paths), image_size=IMAGE_SIZE, feature_set=feature_set)["path"])


def _ray_features(ray: object, paths: list[str], batch_size: int, feature_set: str) -> int:
    """Run the stage over ``paths`` as Ray Data function tasks; return the row count."""
    function, _ = stage(feature_set)
    items = [{"path": path, "location": path.encode()} for path in paths]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, -(-len(paths) // batch_size)))
    # One block of batch_size paths per task (batch_size=None), as the job runs its CPU tasks.
    dataset = dataset.map_batches(function, batch_size=None, batch_format="numpy",
                                  num_cpus=1, fn_kwargs={"image_size": IMAGE_SIZE,
                                             "feature_set": feature_set})
    return sum(len(batch["path"]) for batch in
               dataset.iter_batches(batch_size=None, batch_format="numpy"))


def _ray_rate(paths: list[str], cpus: int, batch_size: int, feature_set: str) -> dict:
    ray = common.start_ray(cpus)
    try:
        # Warm-up: workers started, imports done.
        _ray_features(ray, paths[: cpus * batch_size], batch_size, feature_set)
        start = time.perf_counter()
        rows = _ray_features(ray, paths, batch_size, feature_set)
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    if rows != len(paths):
        raise RuntimeError(f"Ray features path returned {rows} rows for {len(paths)} paths")
    return {**common.rate(len(paths), seconds), "cpus": cpus}


def bundle_feature_set(model: str | None) -> str:
    """Return the feature set of bundle ``model`` (``None``: the shipped one), else the default."""
    try:
        return common.need("artsy.models.bundle", "load_bundle").load_bundle(model).feature_set
    except Exception:  # noqa: BLE001 - no bundle yet: measure the default set
        return FEATURE_SET


def features(paths: list[str], cpus: int, batch_size: int, *, model: str | None = None) -> dict:
    """(c) artsy's features-only path: one process, process pool, Ray with 1 and ``cpus`` CPUs.

    The feature set is the one of the bundle the job would use (``model``), else ``affect``.
    """
    feature_set = bundle_feature_set(model)
    _, stage_name = stage(feature_set)
    from artsy.features import feature_names

    work = functools.partial(run_stage, feature_set=feature_set)
    batches = [paths[start:start + batch_size] for start in range(0, len(paths), batch_size)]
    result = {
        "feature_set": feature_set,
        "features_per_image": len(feature_names(feature_set)),
        "stage": stage_name,
        "batch_size": batch_size,
        "one_process": common.loop_rate(work, batches, images=len(paths), warmup_items=1),
        "pool_all_cpus": common.pool_rate(work, batches, cpus, images=len(paths),
                                          warmup_items=cpus),
        "ray_all_cpus": _ray_rate(paths, cpus, batch_size, feature_set),
    }
    if cpus > 1:
        result["pool_1_cpu"] = common.pool_rate(work, batches, 1, images=len(paths),
                                                warmup_items=1)
        result["ray_1_cpu"] = _ray_rate(paths, 1, batch_size, feature_set)
    return result


def job_command(folder: Path, output: Path, batch_size: int, model: str | None = None
                ) -> list[str]:
    """The command line of the whole job over ``folder`` (``model=None``: shipped bundle)."""
    command = [common.python(), "jobs/classify.py", "--input", str(folder), "--output",
               str(output), "--batch-size", str(batch_size), "--ray-address", "local"]
    return command + (["--model", str(model)] if model else [])


def job(folder: Path, warm_folder: Path, count: int, cpus: int, batch_size: int, scratch: Path,
        timeout: float, *, model: str | None = None) -> dict:
    """(d) The whole job as a fresh process (start-up included), after an untimed warm-up run."""
    common.need_file(common.ROOT / "jobs" / "classify.py")
    common.need_bundle(model)
    output = scratch / "out-job"
    baselines.run_script(job_command(warm_folder, output, batch_size, model), cpus=cpus,
                         timeout=timeout, output=output)
    result = baselines.run_script(job_command(folder, output, batch_size, model), cpus=cpus,
                                  timeout=timeout, output=output)
    if result["returncode"] == 0:
        result.update(common.rate(count, result["seconds"]))
        result["summary"] = _summary(output)
        # the next night over the unchanged folder: nothing to process
        rerun = baselines.run_script(job_command(folder, output, batch_size, model), cpus=cpus,
                                     timeout=timeout, output=output, fresh=False)
        if rerun["returncode"] == 0:
            rerun["processed"] = _summary(output).get("processed")
        result["rerun"] = rerun
    shutil.rmtree(output, ignore_errors=True)
    return result


def _summary(output: Path) -> dict:
    summaries = sorted(output.rglob("_SUMMARY.json"))
    return json.loads(summaries[0].read_text()) if summaries else {}
