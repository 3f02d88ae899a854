"""Realistic test photos made from the public-domain sample photos that scikit-image ships.

Used by the tests and the benchmarks: any number of varied JPEGs (random crops, sizes, colour
shifts, flips), seeded, without network access and without research-only data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

#: scikit-image sample photos that are colour, real-world and bundled with the package.
SAMPLE_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "colorwheel",
)


def sample_photos() -> list[np.ndarray]:
    """Return scikit-image's bundled colour photos as ``(H, W, 3)`` uint8 arrays."""
    import skimage.data

    photos = []
    for name in SAMPLE_PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            image = np.asarray(loader())
        except Exception as error:  # a fetcher that would need the network
            logger.debug("skipping sample %s: %s", name, error)
            continue
        if image.ndim == 3 and image.shape[2] >= 3:
            photos.append(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    return photos


def make_photo(rng: np.random.Generator, photos: list[np.ndarray], *, min_side: int = 100,
               max_side: int = 2000) -> Image.Image:
    """Make one varied photo: random crop, flip, colour gain and output size."""
    source = photos[int(rng.integers(len(photos)))]
    height, width = source.shape[:2]
    crop_h = int(rng.integers(height // 3, height + 1))
    crop_w = int(rng.integers(width // 3, width + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    crop = source[top:top + crop_h, left:left + crop_w].astype(np.float32)
    crop *= rng.uniform(0.7, 1.3, size=3).astype(np.float32)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out_w = int(rng.integers(min_side, max_side + 1))
    out_h = int(np.clip(out_w * crop_h / crop_w * rng.uniform(0.8, 1.25), min_side, max_side))
    image = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
    return image.resize((out_w, out_h), Image.Resampling.BILINEAR)


def write_photos(directory: str | Path, count: int, *, seed: int = 0, min_side: int = 100,
                 max_side: int = 2000, quality: int = 88) -> list[Path]:
    """Write ``count`` seeded, varied JPEG photos into ``directory``.

    Parameters
    ----------
    directory : str or Path
        Created if missing.
    count : int
        Number of files.
    seed : int, default=0
        Same seed, same bytes.
    min_side, max_side : int, default=100, 2000
        Range of the output width in pixels.
    quality : int, default=88
        JPEG quality.

    Returns
    -------
    list of Path
        The files written, in order.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = sample_photos()
    paths = []
    for index in range(count):
        path = directory / f"photo_{index:06d}.jpg"
        make_photo(rng, photos, min_side=min_side, max_side=max_side).save(path, quality=quality)
        paths.append(path)
    return paths


def descendant_pids(pid: int) -> list[int]:
    """Return the ids of every process below ``pid`` (children, grandchildren, ...), from /proc.

    Used by the crash tests to find the Ray workers a job started. Linux only; processes that
    exit while the table is read are left out.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def sample_crops(*names: str, side: int = 224) -> np.ndarray:
    """Centre crops of scikit-image's public-domain sample photos (``"chelsea"``, ``"coffee"``,
    ...), made as the decoder makes the backbone's input: ``(n, side, side, 3)`` uint8."""
    import skimage.data

    from artsy.io import centre_crop

    return np.stack([np.asarray(centre_crop(Image.fromarray(getattr(skimage.data, name)()), side))
                     for name in names])


#: Lists that :func:`count_opens` is filling, by the folder they watch.
_WATCHERS: dict[bytes, list[bytes]] = {}
_HOOKED = False


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _WATCHERS or isinstance(args[0], int):
        return
    path = os.fsencode(os.path.abspath(args[0]))
    for root, opened in _WATCHERS.items():
        if path == root or path.startswith(root + b"/"):
            opened.append(path)


@contextlib.contextmanager
def count_opens(folder: str | Path) -> Iterator[list[bytes]]:
    """Yield a list that collects every file opened under ``folder`` in this process.

    Uses Python's audit hooks (the ``open`` event of ``builtins.open``, ``io.open`` and
    ``os.open``, which is how :func:`artsy.io.read_file` reads a local file): nothing is
    replaced or mocked. The hook stays installed (audit hooks cannot be removed) but is idle
    outside the block.
    """
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    root = os.fsencode(os.path.abspath(folder))
    opened: list[bytes] = []
    _WATCHERS[root] = opened
    try:
        yield opened
    finally:
        del _WATCHERS[root]
