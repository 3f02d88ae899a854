"""Baselines measured beside artsy in the same run: the decode floor, the notebook, the Ray peer.

(a) ``floor``    Pillow decode + resize to 100x100 on a plain process pool over all cores, with
                 JPEG draft (DCT scaling, as :func:`artsy.io.decode_image` does) and without.
(b) ``notebook`` the notebook's style: one process, a sequential loop that loads each image and
                 computes the notebook's features (:mod:`benchmarks.notebook`).
(e) ``peer``     the Ray Data docs pattern a user would write, run as its own process
                 (:mod:`benchmarks.peer`): ``read_images(size=(224, 224), mode="RGB")`` →
                 ``map_batches`` with the notebook's features (of a 100x100 resize) → a
                 TensorFlow predictor actor hosting ``keras.applications.EfficientNetB0
                 (weights=None)`` → ``write_parquet``; start-up included.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks import common, notebook

#: Target side of every decoder here (artsy's image size).
SIZE = 100


def decode_floor(path: str, *, draft: bool = True) -> np.ndarray:
    """Read, decode and resize one image to ``(100, 100, 3)`` uint8 with plain Pillow."""
    from PIL import Image

    with Image.open(path) as image:
        if draft and image.format == "JPEG":
            image.draft("RGB", (2 * SIZE, 2 * SIZE))
        rgb = image.convert("RGB")
        return np.asarray(rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_floor_no_draft(path: str) -> np.ndarray:
    """:func:`decode_floor` without JPEG draft decoding (full-resolution DCT)."""
    return decode_floor(path, draft=False)


def decode_artsy(path: str) -> np.ndarray:
    """Read and decode one image with :func:`artsy.io.decode_image` (draft, EXIF, safety checks)."""
    from artsy.io import decode_image

    return decode_image(Path(path).read_bytes(), size=SIZE).pixels


def floor(paths: list[str], cpus: int) -> dict:
    """(a) Decode floor: plain process pool over ``cpus`` workers, draft / no draft / artsy.io."""
    result = {
        "draft": common.pool_rate(decode_floor, paths, cpus),
        "no_draft": common.pool_rate(decode_floor_no_draft, paths, cpus),
        "draft_one_process": common.loop_rate(decode_floor, paths),
    }
    try:
        common.need("artsy.io", "decode_image")
        result["artsy_io_decode"] = common.pool_rate(decode_artsy, paths, cpus)
    except common.Skip as reason:
        result["artsy_io_decode"] = {"skipped": str(reason)}
    result["draft_speedup"] = round(result["draft"]["images_per_s"]
                                    / result["no_draft"]["images_per_s"], 3)
    return result


def notebook_loop(paths: list[str]) -> dict:
    """(b) The notebook's sequential single-process loop: decode + notebook features."""
    notebook.notebook_loop(paths[:2])  # warm-up: imports, skimage/scipy caches
    start = time.perf_counter()
    features = notebook.notebook_loop(paths)
    seconds = time.perf_counter() - start
    return {**common.rate(len(paths), seconds), "workers": 1,
            "features_per_image": int(features.shape[1])}


def run_script(command: list[str], *, cpus: int, timeout: float, output: Path,
               fresh: bool = True) -> dict:
    """Run a job-like script as a subprocess and time its wall clock (start-up included).

    Returns ``{"seconds", "returncode"}`` plus ``"stderr_tail"`` when it failed.
    ``output`` is removed first unless ``fresh`` is False (an incremental rerun).
    """
    if fresh:
        shutil.rmtree(output, ignore_errors=True)
    start = time.perf_counter()
    returncode, stdout, stderr = common.run_bounded(common.pinned(command, cpus),
                                                    timeout=timeout)
    seconds = time.perf_counter() - start
    result: dict = {"seconds": round(seconds, 3), "returncode": returncode}
    if returncode != 0:
        result["stderr_tail"] = (stderr or stdout)[-2000:]
    return result


def peer_command(folder: Path, output: Path, batch_size: int) -> list[str]:
    """The command line of the Ray Data docs pattern over ``folder``."""
    return [common.python(), "-m", "benchmarks.peer", "--input", str(folder),
            "--output", str(output), "--batch-size", str(batch_size)]


def peer(folder: Path, warm_folder: Path, count: int, cpus: int, scratch: Path,
         timeout: float, batch_size: int = 64) -> dict:
    """(e) The peer: the Ray Data docs pattern as a fresh process, start-up included.

    An untimed run over ``warm_folder`` (a few images) first warms the OS file cache and
    bytecode, as for the job, so neither pays that once-per-machine cost in the timed run.
    ``batch_size`` is the predictor's rows per call (the job's ``--batch-size``).
    """
    output = scratch / "out-peer"
    run_script(peer_command(warm_folder, output, batch_size), cpus=cpus, timeout=timeout,
               output=output)
    result = run_script(peer_command(folder, output, batch_size), cpus=cpus, timeout=timeout,
                        output=output)
    if result["returncode"] == 0:
        import pyarrow.parquet

        rows = pyarrow.parquet.ParquetDataset(str(output)).read(columns=[]).num_rows
        result.update(common.rate(count, result["seconds"]), rows_written=rows,
                      batch_size=batch_size, model="keras.applications.EfficientNetB0"
                      "(weights=None), 224 px")
    shutil.rmtree(output, ignore_errors=True)
    return result
