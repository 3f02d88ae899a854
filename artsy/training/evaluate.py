"""One evaluation protocol for every model: stratified grouped k-fold, repeated over seeds.

Every model (classical or CNN) is evaluated by :func:`cross_validate` through a
``fit_predict(train_idx, test_idx) -> p_positive`` callable, so the folds, metrics and
out-of-fold probabilities are computed the same way for all of them. Groups keep duplicates of one
Twitter media id on one side of every split (see :func:`media_groups`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np
from sklearn import metrics
from sklearn.model_selection import StratifiedGroupKFold

logger = logging.getLogger(__name__)

#: Metric names, in the order of every table.
METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1", "brier")
#: Probability at or above which an image is labelled positive.
THRESHOLD = 0.5

FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]


def media_groups(paths: Sequence[str | PurePath]) -> np.ndarray:
    """CV group of each image: the Twitter media id, or the file stem for other names.

    Twitter I files are named ``<user>_<tweet>_<media>.jpg``; duplicates re-tweeted by different
    users share the media id, so ``name.split('_', 2)[2]`` without the extension is the group.

    Parameters
    ----------
    paths : sequence of str or PurePath

    Returns
    -------
    (n,) object ndarray of str
    """
    groups = []
    for path in paths:
        stem = PurePath(path).stem
        parts = stem.split("_", 2)
        twitter = len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() and parts[2]
        groups.append(parts[2] if twitter else stem)
    return np.asarray(groups, dtype=object)


def score(y_true: np.ndarray, p_positive: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1 and Brier score of positive-class probabilities.

    Parameters
    ----------
    y_true : (n,) int ndarray of 0 / 1
    p_positive : (n,) float ndarray in [0, 1]

    Returns
    -------
    dict
        One float per name in ``METRICS``.
    """
    y_true = np.asarray(y_true)
    p_positive = np.asarray(p_positive, dtype=np.float64)
    predicted = (p_positive >= THRESHOLD).astype(int)
    return {
        "accuracy": float(metrics.accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, predicted)),
        "macro_f1": float(metrics.f1_score(y_true, predicted, average="macro", zero_division=0)),
        "brier": float(np.mean((p_positive - y_true) ** 2)),
    }


@dataclass
class CVResult:
    """Outcome of :func:`cross_validate`.

    Attributes
    ----------
    name : str
        Model name for tables.
    n_splits : int
    seeds : tuple of int
        One repetition of the outer CV per seed.
    folds : list of dict
        One row per (seed, fold): ``seed``, ``fold``, ``n_test`` and every metric of ``METRICS``.
    oof : dict of int to (n,) float ndarray
        Out-of-fold positive-class probability of every image, per seed.
    labels : (n,) int ndarray
        The true labels the probabilities are scored against.
    """

    name: str
    n_splits: int
    seeds: tuple[int, ...]
    folds: list[dict[str, float]] = field(default_factory=list)
    oof: dict[int, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def mean(self) -> dict[str, float]:
        """Mean of each metric over all (seed, fold) rows."""
        return {m: float(np.mean([row[m] for row in self.folds])) for m in METRICS}

    def std(self) -> dict[str, float]:
        """Standard deviation (ddof=0) of each metric over all (seed, fold) rows."""
        return {m: float(np.std([row[m] for row in self.folds])) for m in METRICS}

    def summary(self) -> str:
        """One line ``name: accuracy 0.712±0.031, balanced_accuracy ...``."""
        mean, std = self.mean(), self.std()
        return f"{self.name}: " + ", ".join(f"{m} {mean[m]:.3f}±{std[m]:.3f}" for m in METRICS)

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form (plain lists and floats) for manifests and model cards."""
        return {
            "name": self.name,
            "protocol": f"StratifiedGroupKFold(n_splits={self.n_splits}, shuffle=True) x seeds "
                        f"{list(self.seeds)}, threshold {THRESHOLD}",
            "n_splits": self.n_splits,
            "seeds": list(self.seeds),
            "n_samples": int(self.labels.size),
            "mean": self.mean(),
            "std": self.std(),
            "folds": [dict(row) for row in self.folds],
            "oof": {str(seed): [float(p) for p in probs] for seed, probs in self.oof.items()},
        }


def _check_inputs(y: np.ndarray, groups: np.ndarray, n_splits: int) -> None:
    if y.ndim != 1 or groups.shape != y.shape:
        raise ValueError(f"y and groups must be 1-D of the same length, got {y.shape} and "
                         f"{groups.shape}")
    classes = np.unique(y)
    if not np.array_equal(classes, [0, 1]):
        raise ValueError(f"y must hold both classes 0 and 1, got classes {classes.tolist()}")
    if n_splits < 2 or len(np.unique(groups)) < n_splits:
        raise ValueError(f"n_splits must be between 2 and the number of groups "
                         f"({len(np.unique(groups))}), got {n_splits}")
    if np.bincount(y).min() < n_splits:
        raise ValueError(f"each class needs at least n_splits={n_splits} images, got "
                         f"{np.bincount(y).tolist()}; lower n_splits or add images")


def outer_splits(y: np.ndarray, groups: np.ndarray, *, n_splits: int = 5,
                 seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The outer ``(train_idx, test_idx)`` splits used by :func:`cross_validate` for one seed."""
    y, groups = np.asarray(y), np.asarray(groups)
    _check_inputs(y, groups, n_splits)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(y.size), y, groups))


def cross_validate(fit_predict: FitPredict, y: np.ndarray, groups: np.ndarray, *,
                   n_splits: int = 5, seeds: Sequence[int] = (0,),
                   name: str = "model") -> CVResult:
    """Stratified grouped k-fold cross-validation of one model, repeated per seed.

    Parameters
    ----------
    fit_predict : callable
        ``fit_predict(train_idx, test_idx)`` trains a fresh model on ``train_idx`` only (including
        any hyper-parameter search) and returns the positive-class probability for ``test_idx``.
    y : (n,) int ndarray of 0 / 1
        Labels (1 = positive).
    groups : (n,) ndarray
        Group of each image (:func:`media_groups`); a group never straddles a split.
    n_splits : int, default=5
        Outer folds.
    seeds : sequence of int, default=(0,)
        ``StratifiedGroupKFold(shuffle=True, random_state=seed)`` for each seed.
    name : str, default="model"
        Name kept in the result.

    Returns
    -------
    CVResult

    Raises
    ------
    ValueError
        On mismatched lengths, a missing class, too few groups or images per class, or a
        ``fit_predict`` that returns the wrong shape or values outside [0, 1].
    """
    y, groups = np.asarray(y).astype(int), np.asarray(groups)
    result = CVResult(name=name, n_splits=n_splits, seeds=tuple(int(s) for s in seeds), labels=y)
    for seed in result.seeds:
        oof = np.full(y.size, np.nan)
        for fold, (train_idx, test_idx) in enumerate(outer_splits(y, groups, n_splits=n_splits,
                                                                  seed=seed)):
            probs = np.asarray(fit_predict(train_idx, test_idx), dtype=np.float64)
            if probs.shape != test_idx.shape or not np.all((probs >= 0) & (probs <= 1)):
                raise ValueError(f"fit_predict must return {test_idx.size} probabilities in "
                                 f"[0, 1] (positive class), got shape {probs.shape}")
            oof[test_idx] = probs
            result.folds.append({"seed": seed, "fold": fold, "n_test": int(test_idx.size),
                                 **score(y[test_idx], probs)})
            logger.debug("%s seed %d fold %d: %s", name, seed, fold, result.folds[-1])
        result.oof[seed] = oof
    logger.info("%s", result.summary())
    return result


def majority_baseline(y: np.ndarray, groups: np.ndarray, *, n_splits: int = 5,
                      seeds: Sequence[int] = (0,)) -> CVResult:
    """The majority-class row: predict each training fold's positive rate for every test image."""
    y = np.asarray(y).astype(int)

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        rate = y[train_idx].mean()
        # Tie-free majority label, with the training prior as the probability (for the Brier score).
        return np.full(test_idx.size, rate if rate != THRESHOLD else THRESHOLD + 1e-6)

    return cross_validate(fit_predict, y, groups, n_splits=n_splits, seeds=seeds, name="majority")
