"""Opt-in long modes: peak memory of the job at two sizes (``--memory``); training time.

Peak memory is the largest sum, over the job process and all its descendants (Ray's GCS, raylet
and workers are started by the job's driver), of RSS and of PSS, sampled every
:data:`SAMPLE_SECONDS` with psutil. RSS counts shared pages (Ray's object store mapped into
several workers) once per process; PSS shares them out and is the fairer total.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

from benchmarks import artsy_paths, common

#: Seconds between memory samples.
SAMPLE_SECONDS = 1.0


def _tree_memory(root: object) -> tuple[int, int]:
    psutil = common.psutil_module()

    rss = pss = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for process in processes:
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


def run_sampled(command: list[str], *, cpus: int, timeout: float) -> dict:
    """Run ``command`` and sample its process tree's memory; return time and peaks in MiB."""
    psutil = common.psutil_module()

    start = time.perf_counter()
    process = subprocess.Popen(common.pinned(command, cpus), cwd=common.ROOT, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=common.child_environment(), start_new_session=True)
    root = psutil.Process(process.pid)
    peaks = {"rss": 0, "pss": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, pss = _tree_memory(root)
            peaks["rss"], peaks["pss"] = max(peaks["rss"], rss), max(peaks["pss"], pss)
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        common.kill_tree(process.pid)
        process.communicate()
        raise
    finally:
        done.set()
        sampler.join()
    result = {"seconds": round(time.perf_counter() - start, 3),
              "returncode": process.returncode,
              "peak_rss_mib": round(peaks["rss"] / 2**20, 1),
              "peak_pss_mib": round(peaks["pss"] / 2**20, 1)}
    if process.returncode != 0:
        result["stderr_tail"] = (stderr or "")[-2000:]
    return result


def memory(small: Path, large: Path, sizes: tuple[int, int], cpus: int, batch_size: int,
           scratch: Path, timeout: float, *, model: str | None = None) -> dict:
    """Peak memory of the whole job over ``small`` and ``large`` folders, and their ratio."""
    common.need_file(common.ROOT / "jobs" / "classify.py")
    common.need_bundle(model)
    result = {}
    for name, folder, count in (("small", small, sizes[0]), ("large", large, sizes[1])):
        output = scratch / f"out-memory-{name}"
        shutil.rmtree(output, ignore_errors=True)
        run = run_sampled(artsy_paths.job_command(folder, output, batch_size, model), cpus=cpus,
                          timeout=timeout)
        shutil.rmtree(output, ignore_errors=True)
        result[name] = {"images": count, **run}
    if result["small"]["returncode"] == 0 and result["large"]["returncode"] == 0:
        for kind in ("rss", "pss"):
            result[f"peak_{kind}_ratio"] = round(result["large"][f"peak_{kind}_mib"]
                                                 / result["small"][f"peak_{kind}_mib"], 3)
    return result


def train(data: Path, scratch: Path, cpus: int, timeout: float) -> dict:
    """Time ``jobs/train.py --data DATA --out BUNDLE`` (start-up included)."""
    common.need_file(common.ROOT / "jobs" / "train.py")
    if not data.is_dir():
        raise common.Skip(f"training data not found at {data}")
    output = scratch / "train-bundle"
    shutil.rmtree(output, ignore_errors=True)
    command = [common.python(), "jobs/train.py", "--data", str(data), "--out", str(output)]
    result = run_sampled(command, cpus=cpus, timeout=timeout)
    if result["returncode"] == 0:  # a failed run's time is no training time
        result["minutes"] = round(result["seconds"] / 60, 2)
    result["bundle_files"] = sorted(str(path.relative_to(output))
                                    for path in output.rglob("*") if path.is_file())[:50]
    return result
