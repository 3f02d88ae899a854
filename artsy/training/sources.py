"""Several labelled folders as one training set, with duplicates grouped across them.

Training on more than one differently collected source is what keeps a model's base rate honest
beyond its first data set (Twitter I alone makes a model call two thirds of everything positive).
:func:`load_sources` concatenates labelled folders
(:func:`artsy.training.dataset.load_labelled_folder`),
prefixes every cross-validation group with its source, and records each image's source so the
model card can score every source on its own. :func:`group_duplicates` then merges the groups of
images that are the same picture (identical bytes, or backbone embeddings with a cosine similarity
of at least :data:`DUPLICATE_COSINE`), within and across sources, so a re-posted photo never sits
on both sides of a split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from artsy.training.dataset import LabelledImages, load_labelled_folder

logger = logging.getLogger(__name__)

#: Embeddings at least this similar (cosine) are treated as the same picture. Twitter I's
#: re-tweets (same bytes) reach 0.9998+; the closest different pictures of Twitter I and the
#: FI subset reach 0.80.
DUPLICATE_COSINE = 0.95


def source_name(folder: str | Path) -> str:
    """Name of a labelled folder as a source (its folder name)."""
    return Path(folder).resolve().name


def load_sources(folders: Sequence[str | Path], *, min_agree: int | None = None) -> LabelledImages:
    """Load one or more labelled folders as one set.

    Parameters
    ----------
    folders : sequence of str or Path
        Labelled folders; their names must differ.
    min_agree : int or None, default=None
        Applied to the folders that have an ``agree_min`` column; the others are kept whole.

    Returns
    -------
    LabelledImages
        ``source`` holds each image's folder name; ``groups`` are ``"<source>:<group>"``;
        ``agree`` is 0 where a folder has no agreement column (``None`` if none has one).

    Raises
    ------
    ValueError
        If no folder is given, two share a name, ``min_agree`` fits none of them, or a folder
        fails :func:`artsy.training.dataset.load_labelled_folder`.
    """
    if not folders:
        raise ValueError("give at least one labelled --data folder")
    names = [source_name(folder) for folder in folders]
    if len(set(names)) != len(names):
        raise ValueError(f"labelled folders must have different names, got {names}")
    parts = []
    for folder in folders:
        part = load_labelled_folder(folder)
        if min_agree is not None and part.agree is not None:
            part = load_labelled_folder(folder, min_agree=min_agree)
        parts.append(part)
    if min_agree is not None and all(part.agree is None for part in parts):
        raise ValueError(f"min_agree={min_agree} needs an agree_min column in one of {names}")
    has_agree = any(part.agree is not None for part in parts)
    root = (parts[0].root if len(parts) == 1
            else Path(os.path.commonpath([str(part.root) for part in parts])))
    return LabelledImages(
        root=root,
        paths=tuple(path for part in parts for path in part.paths),
        labels=np.concatenate([part.labels for part in parts]),
        groups=np.concatenate([np.asarray([f"{name}:{group}" for group in part.groups],
                                          dtype=object) for name, part in zip(names, parts,
                                                                              strict=True)]),
        agree=(np.concatenate([part.agree if part.agree is not None
                               else np.zeros(len(part), dtype=np.int64) for part in parts])
               if has_agree else None),
        source=np.concatenate([np.full(len(part), name, dtype=object)
                               for name, part in zip(names, parts, strict=True)]),
        emotion=(np.concatenate([part.emotion if part.emotion is not None
                                 else np.full(len(part), "", dtype=object) for part in parts])
                 if any(part.emotion is not None for part in parts) else None))


def group_duplicates(groups: np.ndarray, embeddings: np.ndarray, *,
                     threshold: float = DUPLICATE_COSINE
                     ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Merge the groups of near-identical images (union-find over similar embedding pairs).

    Parameters
    ----------
    groups : (n,) object ndarray
        Cross-validation groups.
    embeddings : (n, d) float ndarray
        Backbone embeddings (zero rows, e.g. undecodable images, are never matched).
    threshold : float, default=DUPLICATE_COSINE

    Returns
    -------
    groups : (n,) object ndarray
        Every merged set shares the smallest of its group names.
    pairs : list of (int, int)
        Index pairs ``i < j`` found similar that were in different groups before.
    """
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = np.divide(embeddings, norms, out=np.zeros_like(embeddings, dtype=np.float64),
                     where=norms > 0)
    parent = {name: name for name in groups}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    pairs = []
    for start in range(0, len(unit), 1024):  # blocks keep the similarity matrix small
        similar = unit[start:start + 1024] @ unit.T
        for row, column in zip(*np.nonzero(similar >= threshold), strict=True):
            first, second = start + int(row), int(column)
            if first >= second:
                continue
            a, b = find(groups[first]), find(groups[second])
            if a != b:
                pairs.append((first, second))
                parent[max(a, b)] = min(a, b)
    merged = np.asarray([find(name) for name in groups], dtype=object)
    logger.info("grouped %d near-duplicate pairs (cosine >= %.2f) across %d images", len(pairs),
                threshold, len(groups))
    return merged, pairs
