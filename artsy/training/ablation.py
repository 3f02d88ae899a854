"""Feature-group ablation under the project's one cross-validation protocol.

Each combination of :data:`artsy.features.affect.ALL_GROUPS` is scored with each classical model by
:func:`artsy.training.evaluate.cross_validate` (stratified 5-fold grouped by media id, repeated per
seed;
the model's grid search runs on inner folds of each training fold only). Features are computed
once per group and cached as ``.npy`` keyed by the data fingerprint, so adding a combination costs
only its model fits.

Command line (one markdown table to ``--out`` and the rows as JSON next to it)::

    python -m artsy.training.ablation --data ../shared/data/twitter_i --min-agree 5 --out
    ablation.md

Combinations are written as group names joined by ``+``; ``affect`` stands for all of
:data:`artsy.features.affect.AFFECT_GROUPS` (``affect+hog`` is the 443-long ``affect_hog`` set).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artsy.config import ArtsyConfig
from artsy.features.affect import (
    AFFECT_GROUPS,
    ALL_GROUPS,
    affect_feature_names,
    affect_features_batch,
)
from artsy.models.classical import CLASSICAL_MODELS, make_classifier
from artsy.training.dataset import (
    LabelledImages,
    data_fingerprint,
    decode_labelled,
    load_labelled_folder,
)
from artsy.training.evaluate import cross_validate, majority_baseline

logger = logging.getLogger(__name__)

#: Models the ablation fits by default (fast, and the two strongest single models).
DEFAULT_MODELS: tuple[str, ...] = ("svm", "logreg")
#: Outer CV seeds and folds (the protocol of every model card).
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
DEFAULT_SPLITS = 5
DEFAULT_CACHE = Path("/tmp/ablation-cache")
IMAGE_SIZE = 100
_CHUNK = 8  # images per vectorised feature call (as artsy.features)


def parse_combination(spec: str) -> tuple[str, ...]:
    """Groups of a ``+``-joined combination name; ``affect`` expands to ``AFFECT_GROUPS``.

    Raises
    ------
    ValueError
        If a part is not a group name (the message lists the valid ones).
    """
    groups: list[str] = []
    for part in spec.split("+"):
        expanded = AFFECT_GROUPS if part == "affect" else (part,)
        if part not in ALL_GROUPS and part != "affect":
            raise ValueError(f"unknown feature group {part!r} in {spec!r}; use names from "
                             f"{', '.join(ALL_GROUPS)} or 'affect', joined by '+'")
        groups += [group for group in expanded if group not in groups]
    return tuple(groups)


def default_combinations() -> tuple[str, ...]:
    """Each group alone, cumulative additions up to ``affect``, then ``affect`` + each extra."""
    singles = tuple(ALL_GROUPS)
    cumulative = tuple("+".join(AFFECT_GROUPS[:end]) for end in range(2, len(AFFECT_GROUPS)))
    extras = tuple(f"affect+{group}" for group in ALL_GROUPS if group not in AFFECT_GROUPS)
    return singles + cumulative + ("affect",) + extras


def group_features(images: np.ndarray, group: str, *, cache: Path | None = None,
                   key: str = "") -> np.ndarray:
    """One group's features of every image, read from / written to ``cache/<key>_<group>.npy``.

    Parameters
    ----------
    images : (n, 100, 100, 3) uint8 ndarray
    group : str
        One of ``ALL_GROUPS``.
    cache : Path or None, default=None
        Folder of cached arrays; None computes without caching.
    key : str, default=""
        Identifies the images (e.g. the data fingerprint); part of the cache file name.

    Returns
    -------
    (n, d) float32 ndarray
    """
    if group not in ALL_GROUPS:
        raise ValueError(f"unknown feature group {group!r}; choose one of {', '.join(ALL_GROUPS)}")
    path = None if cache is None else cache / f"{key}_{IMAGE_SIZE}_{group}.npy"
    if path is not None and path.is_file():
        cached = np.load(path)
        if cached.shape[0] == len(images):
            return cached
    started = time.perf_counter()
    out = np.concatenate([affect_features_batch(images[start: start + _CHUNK], groups=(group,))
                          for start in range(0, len(images), _CHUNK)]).astype(np.float32)
    logger.info("group %s: %d features of %d images in %.1f s", group, out.shape[1], len(images),
                time.perf_counter() - started)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
    return out


def evaluate_features(features: np.ndarray, data: LabelledImages, model: str, *,
                      seeds: Sequence[int] = DEFAULT_SEEDS, n_splits: int = DEFAULT_SPLITS,
                      random_state: int = ArtsyConfig().seed, name: str = "") -> dict[str, Any]:
    """Cross-validate one self-tuning classical model on ``features``; return mean and std.

    Returns
    -------
    dict
        ``model``, ``length``, ``n``, ``mean`` and ``std`` (dicts of every metric).
    """
    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        search = make_classifier(model, random_state=random_state)
        search.fit(features[train_idx], data.labels[train_idx], groups=data.groups[train_idx])
        return search.predict_proba(features[test_idx])[:, 1]

    result = cross_validate(fit_predict, data.labels, data.groups, n_splits=n_splits,
                            seeds=seeds, name=f"{name} {model}".strip())
    return {"model": model, "length": int(features.shape[1]), "n": len(data),
            "mean": result.mean(), "std": result.std()}


def run_ablation(data: LabelledImages, images: np.ndarray, *,
                 combinations: Sequence[str] | None = None,
                 models: Sequence[str] = DEFAULT_MODELS, seeds: Sequence[int] = DEFAULT_SEEDS,
                 n_splits: int = DEFAULT_SPLITS, cache: Path | None = DEFAULT_CACHE,
                 random_state: int = ArtsyConfig().seed) -> list[dict[str, Any]]:
    """Score every combination with every model (plus the majority-class row).

    Parameters
    ----------
    data : LabelledImages
        Labels and media-id groups.
    images : (n, 100, 100, 3) uint8 ndarray
        Decoded images in ``data`` order.
    combinations : sequence of str or None, default=None
        ``+``-joined group names; None means :func:`default_combinations`.
    models : sequence of str, default=("svm", "logreg")
        Names from ``artsy.models.classical.CLASSICAL_MODELS``.
    seeds, n_splits
        Outer CV repetitions and folds.
    cache : Path or None
        Feature cache folder (None: no cache).
    random_state : int
        Seed of every model and inner split.

    Returns
    -------
    list of dict
        One row per (combination, model): ``features``, ``groups``, ``model``, ``length``, ``n``,
        ``mean``, ``std``; the first row is ``majority``.

    Raises
    ------
    ValueError
        On an unknown group or model, or images that do not match ``data``.
    """
    specs = tuple(combinations) if combinations else default_combinations()
    parsed = {spec: parse_combination(spec) for spec in specs}
    unknown = [model for model in models if model not in CLASSICAL_MODELS]
    if unknown or not models:
        raise ValueError(f"unknown models {unknown}; choose from {', '.join(CLASSICAL_MODELS)}")
    if len(images) != len(data):
        raise ValueError(f"{len(images)} images for {len(data)} labels; decode data.paths")
    key = data_fingerprint(data)[:16] if cache is not None else ""
    by_group = {group: group_features(images, group, cache=cache, key=key)
                for group in dict.fromkeys(g for groups in parsed.values() for g in groups)}
    majority = majority_baseline(data.labels, data.groups, n_splits=n_splits, seeds=seeds)
    rows: list[dict[str, Any]] = [{"features": "majority", "groups": [], "model": "majority",
                                   "length": 0, "n": len(data), "mean": majority.mean(),
                                   "std": majority.std()}]
    for spec, groups in parsed.items():
        features = np.concatenate([by_group[group] for group in groups], axis=1)
        for model in models:
            row = evaluate_features(features, data, model, seeds=seeds, n_splits=n_splits,
                                    random_state=random_state, name=spec)
            rows.append({"features": spec, "groups": list(groups), **row})
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The ablation rows as a markdown table: accuracy and balanced accuracy, mean ± std."""
    lines = ["| features | numbers | model | accuracy | balanced accuracy |",
             "|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{row['mean'][m]:.3f} ± {row['std'][m]:.3f}"
                 for m in ("accuracy", "balanced_accuracy")]
        lines.append(f"| {row['features']} | {row['length']} | {row['model']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_ablation(rows: Sequence[Mapping[str, Any]], out: str | Path,
                   meta: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write the markdown table to ``out`` and ``{"meta", "rows"}`` JSON beside it (``.json``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"Feature-group ablation: {meta.get('data', '?')}, min_agree "
              f"{meta.get('min_agree')}, {meta.get('n', '?')} images; "
              f"{meta.get('protocol', '')}\n\n")
    out.write_text(header + markdown_table(rows))
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps({"meta": dict(meta), "rows": list(rows)}, indent=1) + "\n")
    return out, json_path


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring. Exit 0 on success, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m artsy.training.ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="labelled folder (labels.csv)")
    parser.add_argument("--min-agree", type=int, default=None, help="keep agree_min >= N")
    parser.add_argument("--out", required=True, help="markdown file (JSON written beside it)")
    parser.add_argument("--combinations", nargs="+", default=None, metavar="GROUPS",
                        help="e.g. colour colour+hue affect+hog (default: the standard set)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="MODEL")
    parser.add_argument("--cv-seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--n-splits", type=int, default=DEFAULT_SPLITS)
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="feature cache folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        data = load_labelled_folder(args.data, min_agree=args.min_agree)
        combinations = args.combinations or default_combinations()
        for spec in combinations:
            parse_combination(spec)
        decoded = decode_labelled(data.paths, size=IMAGE_SIZE)
        images, ok, failures = decoded.images, decoded.ok_mask, decoded.failures
        data, images = data.subset(ok), images[ok]
        rows = run_ablation(data, images, combinations=combinations, models=args.models,
                            seeds=args.cv_seeds, n_splits=args.n_splits, cache=Path(args.cache))
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    meta = {"data": Path(args.data).name, "min_agree": args.min_agree, "n": len(data),
            "n_unreadable": len(failures), "models": list(args.models),
            "protocol": f"StratifiedGroupKFold({args.n_splits}) grouped by media id x seeds "
                        f"{list(args.cv_seeds)}; grid search inside the training folds",
            "affect_length": len(affect_feature_names())}
    table, json_path = write_ablation(rows, args.out, meta)
    logger.info("wrote %s and %s", table, json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
