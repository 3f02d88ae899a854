"""Benchmark photo sets: N seeded, varied JPEGs (or N files of a real folder) in one flat folder.

Generated photos come from :func:`artsy.testing.write_photos` (scikit-image's bundled public-domain
photos, random crops, colour gains and sizes between ``min_side`` and ``max_side``). They are made
in chunks of :data:`CHUNK` files, in parallel, and cached under the scratch directory, so the
1 000-image set is a prefix of the 10 000-image set and a second run costs nothing.

Every benchmark part gets a *flat* folder holding exactly N files (hard links to the cache, or
copies when a link is impossible), because the job and ``ray.data.read_images`` take a folder.
A real folder (``--data``) is materialised the same way, under the scratch directory only: research
images never enter the repository.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import shutil
from pathlib import Path

#: Photos per generation chunk (one chunk = one seed = one process-pool task).
CHUNK = 250

#: File extensions taken from a real folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _write_chunk(directory: str, count: int, seed: int, min_side: int, max_side: int) -> str:
    from artsy.testing import write_photos

    target = Path(directory)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_photos(partial, count, seed=seed, min_side=min_side, max_side=max_side)
    partial.rename(target)
    return directory


def generated_files(scratch: Path, count: int, *, seed: int = 0, min_side: int = 100,
                    max_side: int = 2000, workers: int | None = None) -> list[Path]:
    """Return ``count`` cached generated JPEGs, making the missing chunks in parallel.

    Parameters
    ----------
    scratch : Path
        Scratch root; the cache is ``scratch/photo-cache/s{seed}-{min_side}-{max_side}/``.
    count : int
        Number of photos wanted.
    seed : int, default=0
        Base seed; chunk ``k`` uses ``seed * 100_003 + k``.
    min_side, max_side : int, default=100, 2000
        Output width range in pixels.
    workers : int or None, default=None
        Generation processes (``None``: all cores).

    Returns
    -------
    list of Path
        ``count`` files, in a fixed order.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    cache = scratch / "photo-cache" / f"s{seed}-{min_side}-{max_side}"
    cache.mkdir(parents=True, exist_ok=True)
    chunks = [(cache / f"chunk_{k:05d}", min(CHUNK, count - k * CHUNK), seed * 100_003 + k)
              for k in range(-(-count // CHUNK))]
    # A short last chunk is fine to reuse only if it is long enough; otherwise remake it.
    missing = []
    for directory, size, chunk_seed in chunks:
        have = len(list(directory.glob("*.jpg"))) if directory.is_dir() else 0
        if have < size:
            shutil.rmtree(directory, ignore_errors=True)
            missing.append((str(directory), CHUNK, chunk_seed, min_side, max_side))
    if missing:
        with concurrent.futures.ProcessPoolExecutor(workers or os.cpu_count()) as pool:
            list(pool.map(_write_chunk, *zip(*missing, strict=True)))
    files: list[Path] = []
    for directory, size, _ in chunks:
        files.extend(sorted(directory.glob("*.jpg"))[:size])
    return files


def folder_files(folder: Path, count: int) -> list[Path]:
    """Return the first ``count`` image files under ``folder`` (recursive, sorted by path).

    Raises
    ------
    ValueError
        If the folder holds fewer than ``count`` images (pass a smaller ``--n``).
    """
    files = sorted(path for path in folder.rglob("*")
                   if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
                   and not path.name.startswith("."))
    if not files:
        raise ValueError(f"{folder} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
    if len(files) < count:
        raise ValueError(f"{folder} holds {len(files)} images, fewer than --n {count}; "
                         f"pass --n {len(files)} or less")
    return files[:count]


def flat_set(scratch: Path, files: list[Path], label: str) -> Path:
    """Materialise ``files`` as one flat folder ``scratch/sets/{label}-{n}-{hash}/`` and return it.

    Names are ``img_{index:06d}{suffix}``; files are hard-linked, or copied across file systems.
    """
    digest = hashlib.sha256("\n".join(str(path) for path in files).encode()).hexdigest()[:10]
    target = scratch / "sets" / f"{label}-{len(files)}-{digest}"
    if target.is_dir() and len(list(target.iterdir())) == len(files):
        return target
    shutil.rmtree(target, ignore_errors=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for index, source in enumerate(files):
        destination = partial / f"img_{index:06d}{source.suffix.lower()}"
        try:
            os.link(source, destination)
        except OSError:
            shutil.copyfile(source, destination)
    partial.rename(target)
    return target


def photo_set(scratch: Path, count: int, *, data: Path | None = None, seed: int = 0) -> Path:
    """Return a flat folder of ``count`` images: generated (``data=None``) or from ``data``."""
    if data is None:
        return flat_set(scratch, generated_files(scratch, count, seed=seed), f"photos-s{seed}")
    return flat_set(scratch, folder_files(Path(data), count), Path(data).name or "data")


def list_set(folder: Path) -> list[str]:
    """Return the files of a flat set, sorted, as strings."""
    return sorted(str(path) for path in Path(folder).iterdir() if path.is_file())
