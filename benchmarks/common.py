"""Shared helpers of the benchmark parts: timing, machine facts, graceful skips, Ray start-up.

A part returns a plain ``dict`` (JSON-ready). When something it needs is missing it raises
:class:`Skip`, which the runner records as ``{"skipped": reason}``.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Skip(Exception):  # noqa: N818 - reads better as ``raise Skip(reason)``
    """A part cannot run yet (a module or file it needs does not exist); the message says why."""


def need(module: str, *names: str) -> object:
    """Import ``module`` and check it defines ``names``, or raise :class:`Skip`."""
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and (error.name == module or module.startswith(error.name + ".")):
            raise Skip(f"{module} does not exist yet") from None
        if error.name and error.name.split(".")[0] == "artsy":
            raise Skip(f"{module} imports {error.name}, which does not exist yet") from None
        raise
    missing = [name for name in names if not hasattr(imported, name)]
    if missing:
        raise Skip(f"{module} has no {', '.join(missing)} yet")
    return imported


def need_file(path: Path) -> Path:
    """Return ``path`` if it is a file, or raise :class:`Skip`."""
    if not path.is_file():
        raise Skip(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
                   "does not exist yet")
    return path


def rate(count: int, seconds: float) -> dict:
    """Return ``{"images": count, "seconds": s, "images_per_s": count / s}`` (rounded)."""
    return {"images": count, "seconds": round(seconds, 3),
            "images_per_s": round(count / seconds, 2) if seconds > 0 else None}


def cpu_model() -> str:
    """Return the CPU model name from ``/proc/cpuinfo`` (or :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        from importlib import metadata

        return metadata.version(module)
    except Exception:  # noqa: BLE001 - a missing package is simply not reported
        return None


def git_commit() -> str | None:
    """Return the working tree's HEAD commit, or None."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    """Return platform, CPU model and count, memory, load, library versions and the UTC time."""
    try:
        memory_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text()
                             .splitlines() if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        memory_kb = 0
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("ray", "tensorflow-cpu", "tensorflow", "keras", "pillow", "numpy",
                      "scikit-image", "pyarrow")},
        "git_commit": git_commit(),
    }


def child_environment() -> dict[str, str]:
    """Return ``os.environ`` plus the repository on ``PYTHONPATH`` and quiet Ray/TF settings."""
    environment = dict(os.environ)
    paths = [str(ROOT)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    environment.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return environment


def pinned(command: list[str], cpus: int) -> list[str]:
    """Prefix ``command`` with ``taskset`` to the first ``cpus`` cores, when fewer than all."""
    total = os.cpu_count() or cpus
    if cpus < total and Path("/usr/bin/taskset").exists():
        return ["taskset", "-c", f"0-{cpus - 1}", *command]
    return command


def start_ray(cpus: int, *, gpus: int = 0) -> object:
    """Start a fresh local Ray with ``cpus`` CPUs (quiet, no dashboard) and return the module."""
    os.environ.update(child_environment())
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # address="local": never join a cluster someone started with `ray start` on this machine.
    ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return ray


def python() -> str:
    """Return the interpreter running the benchmarks (the project venv when activated)."""
    return sys.executable


def pool_rate(function: Callable, items: list, workers: int, *, images: int | None = None,
              warmup_items: int | None = None) -> dict:
    """Time ``function`` over ``items`` on a warm ``ProcessPoolExecutor`` of ``workers`` processes.

    Workers are started and their imports done by an untimed warm-up over the first
    ``warmup_items`` items (default ``2 * workers``); results come back to the parent.
    ``images`` is the image count the items stand for (default ``len(items)``).
    """
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    warm = items[: warmup_items or 2 * workers]
    chunksize = max(1, len(items) // (workers * 8))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(function, warm))
        start = time.perf_counter()
        list(pool.map(function, items, chunksize=chunksize))
        seconds = time.perf_counter() - start
    return {**rate(images or len(items), seconds), "workers": workers}


def loop_rate(function: Callable, items: list, *, images: int | None = None,
              warmup_items: int = 2) -> dict:
    """Time ``function`` over ``items`` sequentially in this process, after a short warm-up."""
    for item in items[:warmup_items]:
        function(item)
    start = time.perf_counter()
    for item in items:
        function(item)
    return {**rate(images or len(items), time.perf_counter() - start), "workers": 1}


def need_bundle(model: str | None) -> str | None:
    """Check the model bundle the job would use exists (``None``: the shipped default).

    Raises :class:`Skip` while no default bundle is shipped and no ``--model`` was given.
    """
    if model is not None:
        if not (Path(model) / "manifest.json").is_file():
            raise Skip(f"--model {model} is not a model bundle (no manifest.json)")
        return model
    bundle = need("artsy.models.bundle", "default_bundle_path")
    path = Path(bundle.default_bundle_path())
    if not (path / "manifest.json").is_file():
        raise Skip(f"no shipped default bundle at {path} yet; pass --model BUNDLE")
    return None


def run_bounded(command: list[str], *, timeout: float, env: dict[str, str] | None = None,
                stdout: int | None = subprocess.PIPE) -> tuple[int, str, str]:
    """Run ``command`` in its own session; on timeout kill it *and all its descendants*.

    Ray's GCS, raylet and workers started by a killed driver would otherwise outlive it.
    Returns ``(returncode, stdout, stderr)``; raises :class:`subprocess.TimeoutExpired`.
    """
    process = subprocess.Popen(command, cwd=ROOT, env=env or child_environment(), text=True,
                               stdout=stdout, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process.pid)
        process.communicate()
        raise
    return process.returncode, out or "", err or ""


def kill_tree(pid: int) -> None:
    """Kill process ``pid`` and every descendant of it (those still running)."""
    psutil = psutil_module()

    try:
        root = psutil.Process(pid)
        processes = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=10)


def psutil_module() -> object:
    """Return psutil: installed, or the copy Ray ships (``ray/thirdparty_files``, on import)."""
    try:
        return importlib.import_module("psutil")
    except ModuleNotFoundError:
        importlib.import_module("ray")  # puts ray/thirdparty_files (with psutil) on sys.path
        return importlib.import_module("psutil")
