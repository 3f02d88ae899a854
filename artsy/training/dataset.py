"""Labelled image folders for training: labels from ``labels.csv`` or class sub-folders.

A labelled folder is either

- a folder with ``labels.csv`` (columns ``path,label[,agree_min]``; ``path`` relative to the
  folder, ``label`` a class name from ``EMOTIONS`` or its index ``0`` / ``1``; other columns are
  ignored), or
- a folder with one sub-folder per class, named ``negative/`` and ``positive/`` (nested folders
  allowed; hidden files and non-image files are skipped).

Images are decoded with :func:`artsy.io.decode_image`, the decoder the batch job uses, so training
and labelling see the same pixels. Unreadable images are listed, never fatal.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from artsy.config import EMOTION_CATEGORIES, EMOTIONS
from artsy.io import ImageDecodeError, decode_image, sha256_file
from artsy.training.evaluate import media_groups

logger = logging.getLogger(__name__)

#: Name of the optional label file at the root of a labelled folder.
LABELS_FILE = "labels.csv"
#: Optional ``labels.csv`` column with the Mikels emotion category of each image.
EMOTION_COLUMN = "emotion"
#: File suffixes treated as images in class sub-folders.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp",
                            ".ppm", ".pgm", ".pbm"})
_SHOWN = 5


@dataclass(frozen=True)
class LabelledImages:
    """Images of a labelled folder and their labels.

    Attributes
    ----------
    root : Path
        The labelled folder.
    paths : tuple of str
        Absolute file paths, sorted by their path relative to ``root``.
    labels : (n,) int ndarray
        Index into ``EMOTIONS``: 1 = positive, 0 = negative.
    groups : (n,) object ndarray
        Cross-validation group (media id, see :func:`artsy.training.evaluate.media_groups`).
    agree : (n,) int ndarray or None
        Rater agreement (``agree_min`` column), ``None`` when the folder has none (0 marks
        images without one in a multi-source set).
    source : (n,) object ndarray or None
        Name of the labelled folder each image came from
        (:func:`artsy.training.sources.load_sources`);
        ``None`` for one folder.
    emotion : (n,) object ndarray or None
        Mikels category (``emotion`` column, one of ``EMOTION_CATEGORIES``; ``""`` where a row or
        a source has none), ``None`` when no folder has the column.
    """

    root: Path
    paths: tuple[str, ...]
    labels: np.ndarray
    groups: np.ndarray
    agree: np.ndarray | None
    source: np.ndarray | None = None
    emotion: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def relative_paths(self) -> tuple[str, ...]:
        """Paths relative to ``root``, with ``/`` separators."""
        return tuple(Path(path).relative_to(self.root).as_posix() for path in self.paths)

    def subset(self, mask: np.ndarray) -> LabelledImages:
        """Return the images where the boolean ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        paths = tuple(path for path, keep in zip(self.paths, mask, strict=True) if keep)
        return LabelledImages(
            root=self.root, paths=paths,
            labels=self.labels[mask], groups=self.groups[mask],
            agree=None if self.agree is None else self.agree[mask],
            source=None if self.source is None else self.source[mask],
            emotion=None if self.emotion is None else self.emotion[mask])


def _label_index(value: str, where: str) -> int:
    text = value.strip().lower()
    if text in EMOTIONS:
        return EMOTIONS.index(text)
    if text in ("0", "1"):
        return int(text)
    raise ValueError(f"{where}: unknown label {value!r}; use one of {', '.join(EMOTIONS)} "
                     f"(or 0 / 1)")


def _read_labels_csv(root: Path) -> tuple[list[str], list[int], list[int] | None,
                                          list[str] | None]:
    labels_path = root / LABELS_FILE
    with open(labels_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "path" not in columns or "label" not in columns:
            raise ValueError(f"{labels_path} needs a header with columns path,label[,agree_min]; "
                             f"got {columns}")
        has_agree, has_emotion = "agree_min" in columns, EMOTION_COLUMN in columns
        relative, labels, agree, emotions = [], [], [], []
        for line, row in enumerate(reader, start=2):
            where = f"{labels_path} line {line}"
            name = (row["path"] or "").strip()
            pure = PurePosixPath(name)
            if not name or pure.is_absolute() or ".." in pure.parts:
                raise ValueError(f"{where}: path {name!r} must be relative and inside {root}")
            relative.append(name)
            labels.append(_label_index(row["label"] or "", where))
            if has_emotion:
                emotions.append(_emotion(row[EMOTION_COLUMN] or "", where))
            if has_agree:
                try:
                    agree.append(int(row["agree_min"]))
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: agree_min must be an integer, got "
                                     f"{row['agree_min']!r}") from None
    duplicates = sorted({name for name in relative if relative.count(name) > 1})
    if duplicates:
        raise ValueError(f"{labels_path} lists {len(duplicates)} paths twice, e.g. "
                         f"{duplicates[:_SHOWN]}; keep one row per file")
    missing = [name for name in relative if not (root / name).is_file()]
    if missing:
        raise ValueError(f"{labels_path} names {len(missing)} missing files, e.g. "
                         f"{', '.join(missing[:_SHOWN])}; fix the paths or remove those rows")
    return relative, labels, (agree if has_agree else None), (emotions if has_emotion else None)


def _emotion(value: str, where: str) -> str:
    text = value.strip().lower()
    if text and text not in EMOTION_CATEGORIES:
        raise ValueError(f"{where}: unknown emotion {value!r}; use one of "
                         f"{', '.join(EMOTION_CATEGORIES)} (or leave it empty)")
    return text


def _scan_class_folders(root: Path) -> tuple[list[str], list[int]]:
    folders = sorted(child for child in root.iterdir()
                     if child.is_dir() and not child.name.startswith("."))
    unknown = [folder.name for folder in folders if folder.name.lower() not in EMOTIONS]
    if unknown:
        raise ValueError(f"{root}: unknown label folders {unknown}; class sub-folders must be "
                         f"named {' and '.join(EMOTIONS)} (or add a {LABELS_FILE})")
    relative, labels = [], []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if path.is_file() and not hidden and path.suffix.lower() in IMAGE_SUFFIXES:
                relative.append(path.relative_to(root).as_posix())
                labels.append(EMOTIONS.index(folder.name.lower()))
    return relative, labels


def load_labelled_folder(path: str | Path, *, min_agree: int | None = None) -> LabelledImages:
    """List a labelled folder's images with their labels, groups and agreement.

    Parameters
    ----------
    path : str or Path
        Folder with ``labels.csv`` or ``negative/`` and ``positive/`` sub-folders.
    min_agree : int or None, default=None
        Keep only images whose ``agree_min`` is at least this (needs an ``agree_min`` column).

    Returns
    -------
    LabelledImages
        Sorted by relative path.

    Raises
    ------
    ValueError
        If the folder is missing or holds no labelled images, ``labels.csv`` is malformed or names
        missing files, a label or class folder name is unknown, ``min_agree`` cannot be applied,
        or only one class is left.
    """
    root = Path(path).resolve()
    if not root.is_dir():
        raise ValueError(f"data folder not found: {path}")
    agree_list: list[int] | None = None
    emotion_list: list[str] | None = None
    if (root / LABELS_FILE).is_file():
        relative, labels, agree_list, emotion_list = _read_labels_csv(root)
        source = LABELS_FILE
    else:
        relative, labels = _scan_class_folders(root)
        source = "class sub-folders"
    if not relative:
        raise ValueError(f"no labelled images in {path}: put images in {'/ and '.join(EMOTIONS)}/ "
                         f"sub-folders or list them in a {LABELS_FILE}")
    order = np.argsort(np.asarray(relative, dtype=object), kind="stable")
    relative = [relative[index] for index in order]
    label_array = np.asarray(labels, dtype=np.int64)[order]
    agree = None if agree_list is None else np.asarray(agree_list, dtype=np.int64)[order]
    emotion = None if emotion_list is None else np.asarray(emotion_list, dtype=object)[order]
    keep = np.ones(len(relative), dtype=bool)
    if min_agree is not None:
        if agree is None:
            raise ValueError(f"min_agree={min_agree} needs an agree_min column in "
                             f"{root / LABELS_FILE}; drop --min-agree or add the column")
        keep = agree >= min_agree
    images = LabelledImages(root=root, paths=tuple(str(root / name) for name in relative),
                            labels=label_array, groups=media_groups(relative),
                            agree=agree, emotion=emotion).subset(keep)
    counts = np.bincount(images.labels, minlength=len(EMOTIONS))
    if len(images) == 0 or counts.min() == 0:
        present = ", ".join(f"{EMOTIONS[i]} {counts[i]}" for i in range(len(EMOTIONS)))
        raise ValueError(f"need images of both classes in {path}"
                         f"{'' if min_agree is None else f' with agree_min >= {min_agree}'}, "
                         f"got {present}")
    logger.info("loaded %d labelled images from %s (%s): %s", len(images), root, source,
                dict(zip(EMOTIONS, counts.tolist(), strict=True)))
    return images


def data_fingerprint(images: LabelledImages) -> str:
    """SHA-256 over the sorted ``(relative path, file SHA-256, label)`` of every image."""
    digest = hashlib.sha256()
    rows = sorted(zip(images.relative_paths, images.paths, images.labels.tolist(), strict=True))
    for relative, absolute, label in rows:
        digest.update(f"{relative}\t{sha256_file(absolute)}\t{EMOTIONS[label]}\n".encode())
    return digest.hexdigest()


def _decode_one(path: str, size: int,
                crop: int | None) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return None, None, f"unreadable file: {error.strerror or error}"
    try:
        decoded = decode_image(data, size=size, crop=crop)
    except ImageDecodeError as error:
        return None, None, str(error)
    return decoded.pixels, decoded.crop, None


@dataclass(frozen=True)
class DecodedSet:
    """Pixels of a labelled folder, as :func:`decode_labelled` returns them.

    Attributes
    ----------
    images : (n, size, size, 3) uint8 ndarray
        The squares the classical features read; zeros where decoding failed.
    crops : (n, crop, crop, 3) uint8 ndarray or None
        The backbone's centre crops from the same decode (``None`` unless asked for).
    ok_mask : (n,) bool ndarray
        True where the image decoded.
    failures : list of (str, str)
        ``(path, reason)`` of every image that failed, in input order.
    """

    images: np.ndarray
    crops: np.ndarray | None
    ok_mask: np.ndarray
    failures: list[tuple[str, str]]


def decode_labelled(paths: tuple[str, ...] | list[str], *, size: int = 100,
                    crop: int | None = None) -> DecodedSet:
    """Decode image files to ``(size, size, 3)`` uint8 arrays, listing the ones that fail.

    Parameters
    ----------
    paths : sequence of str
        Image files.
    size : int, default=100
        Side of the square output.
    crop : int or None, default=None
        Also keep the backbone's ``crop x crop`` centre square of each image.

    Returns
    -------
    DecodedSet

    Notes
    -----
    Decoding runs in the calling process: draft-mode JPEG decoding takes about 4 ms per image here
    (1269 Twitter images in about 5 s), less than starting a process pool.
    """
    paths = list(paths)
    images = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    crops = None if crop is None else np.zeros((len(paths), crop, crop, 3), dtype=np.uint8)
    ok_mask = np.zeros(len(paths), dtype=bool)
    failures = []
    for index, path in enumerate(paths):
        pixels, square, reason = _decode_one(path, size, crop)
        if pixels is None:
            failures.append((path, reason or "unknown error"))
            logger.warning("cannot decode %s: %s", path, reason)
            continue
        images[index] = pixels
        if crops is not None:
            crops[index] = square
        ok_mask[index] = True
    logger.info("decoded %d of %d images (%d failed)", ok_mask.sum(), len(paths), len(failures))
    return DecodedSet(images=images, crops=crops, ok_mask=ok_mask, failures=failures)
