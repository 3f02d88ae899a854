"""Which emotion: the eight Mikels categories, from the backbone embedding and the valence answer.

The head is a standardised multinomial logistic regression over the bundle's backbone embedding
(:data:`HEAD_C`), trained on the images that carry an ``emotion`` label (the FI subset). At
prediction its probabilities are tilted towards the valence the binary ensemble found — a model
trained on more images (every source) than the emotion labels cover::

    p(category) ∝ p_head(category) · v(category)^VALENCE_WEIGHT,
    v = p_positive for amusement, awe, contentment, excitement; 1 - p_positive for the others

which also keeps ``emotion`` and ``label`` consistent (an image called ``fear`` is rarely called
``positive``). :func:`cross_validate_emotion` scores it with stratified 5-fold x seeds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from artsy.config import EMOTION_CATEGORIES, POSITIVE_CATEGORIES

logger = logging.getLogger(__name__)

#: Inverse regularisation of the head (the best of 0.001 / 0.002 / 0.003 / 0.005 / 0.01 in CV).
HEAD_C = 0.003
#: Exponent of the valence tilt (0 turns it off; 0.5 was best of 0 / 0.5 / 1 / 2 in CV).
VALENCE_WEIGHT = 0.5
_POSITIVE = np.array([name in POSITIVE_CATEGORIES for name in EMOTION_CATEGORIES])


def make_head() -> Pipeline:
    """The unfitted head: standard scaling + multinomial logistic regression."""
    return Pipeline([("scale", StandardScaler()),
                     ("logreg", LogisticRegression(C=HEAD_C, max_iter=3000))])


def fit_head(embeddings: np.ndarray, emotions: np.ndarray) -> Pipeline:
    """Fit the head on ``(n, d)`` embeddings and their category names.

    Raises
    ------
    ValueError
        If a category of :data:`artsy.config.EMOTION_CATEGORIES` has no image, or a name is
        not one of them.
    """
    emotions = np.asarray(emotions, dtype=object)
    unknown = sorted(set(emotions) - set(EMOTION_CATEGORIES))
    missing = [name for name in EMOTION_CATEGORIES if name not in set(emotions)]
    if unknown or missing:
        raise ValueError(f"emotion labels must cover {EMOTION_CATEGORIES}; unknown {unknown}, "
                         f"missing {missing}")
    return make_head().fit(embeddings, emotions)


def category_probabilities(head: Any, embeddings: np.ndarray, p_positive: np.ndarray, *,
                           valence_weight: float = VALENCE_WEIGHT) -> np.ndarray:
    """``(n, 8)`` probabilities in :data:`EMOTION_CATEGORIES` order, tilted by valence."""
    order = [list(head.classes_).index(name) for name in EMOTION_CATEGORIES]
    probs = head.predict_proba(embeddings)[:, order]
    if valence_weight:
        p = np.clip(np.asarray(p_positive, dtype=np.float64), 1e-6, 1 - 1e-6)[:, None]
        probs = probs * np.where(_POSITIVE[None, :], p, 1 - p) ** valence_weight
    return probs / probs.sum(axis=1, keepdims=True)


def summarise(emotions: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, per-category precision / recall / F1 and the confusion matrix."""
    precision, recall, f1, support = precision_recall_fscore_support(
        emotions, predicted, labels=list(EMOTION_CATEGORIES), zero_division=0)
    return {"accuracy": float(accuracy_score(emotions, predicted)),
            "macro_f1": float(f1_score(emotions, predicted, labels=list(EMOTION_CATEGORIES),
                                       average="macro", zero_division=0)),
            "per_category": {name: {"precision": float(p), "recall": float(r), "f1": float(f),
                                    "n": int(n)} for name, p, r, f, n
                             in zip(EMOTION_CATEGORIES, precision, recall, f1, support,
                                    strict=True)},
            "confusion": confusion_matrix(emotions, predicted,
                                          labels=list(EMOTION_CATEGORIES)).tolist()}


def valence_agreement(categories: np.ndarray, p_positive: np.ndarray) -> float:
    """Share of images whose category's valence matches ``label`` (``p_positive >= 0.5``)."""
    positive_category = np.isin(np.asarray(categories, dtype=object), list(POSITIVE_CATEGORIES))
    return float(np.mean(positive_category == (np.asarray(p_positive) >= 0.5)))


def cross_validate_emotion(embeddings: np.ndarray, emotions: np.ndarray,
                           valence: dict[int, np.ndarray], *, seeds: Sequence[int],
                           n_splits: int = 5,
                           valence_weight: float = VALENCE_WEIGHT) -> dict[str, Any]:
    """Stratified ``n_splits``-fold x ``seeds`` CV of the head (with the valence tilt).

    Parameters
    ----------
    embeddings : (n, d) ndarray
    emotions : (n,) object ndarray of category names
    valence : dict of seed to (n,) ndarray
        Out-of-fold ``p_positive`` of the binary ensemble for the same images (a model that
        never saw them), per CV seed.
    seeds : sequence of int
    n_splits : int, default=5
    valence_weight : float, default=VALENCE_WEIGHT

    Returns
    -------
    dict
        ``mean`` / ``std`` of accuracy and macro-F1 over the folds, ``without_valence`` (the
        head alone), the pooled :func:`summarise` of the first seed, and the valence agreement.
    """
    emotions = np.asarray(emotions, dtype=object)
    rows, plain_rows, pooled = [], [], None
    for seed in seeds:
        predicted = np.empty(len(emotions), dtype=object)
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        for train_idx, test_idx in splitter.split(embeddings, emotions):
            head = fit_head(embeddings[train_idx], emotions[train_idx])
            for weight, sink in ((valence_weight, rows), (0.0, plain_rows)):
                probs = category_probabilities(head, embeddings[test_idx],
                                               valence[seed][test_idx], valence_weight=weight)
                names = np.asarray(EMOTION_CATEGORIES, dtype=object)[probs.argmax(axis=1)]
                sink.append((accuracy_score(emotions[test_idx], names),
                             f1_score(emotions[test_idx], names, average="macro")))
                if weight == valence_weight:
                    predicted[test_idx] = names
        if pooled is None:
            pooled = summarise(emotions, predicted)
            pooled["valence_agreement"] = valence_agreement(predicted, valence[seed])
    result = {
        "protocol": f"StratifiedKFold(n_splits={n_splits}, shuffle=True) x seeds {list(seeds)}",
        "n": int(len(emotions)), "valence_weight": valence_weight, "head_c": HEAD_C,
        "mean": {"accuracy": float(np.mean([r[0] for r in rows])),
                 "macro_f1": float(np.mean([r[1] for r in rows]))},
        "std": {"accuracy": float(np.std([r[0] for r in rows])),
                "macro_f1": float(np.std([r[1] for r in rows]))},
        "without_valence": {"accuracy": float(np.mean([r[0] for r in plain_rows])),
                            "macro_f1": float(np.mean([r[1] for r in plain_rows]))},
        "first_seed": pooled,
    }
    logger.info("emotion head: accuracy %.3f, macro-F1 %.3f (head alone %.3f / %.3f)",
                result["mean"]["accuracy"], result["mean"]["macro_f1"],
                result["without_valence"]["accuracy"], result["without_valence"]["macro_f1"])
    return result


def train_emotion(run: Any) -> tuple[Pipeline | None, dict[str, Any] | None]:
    """CV and final fit of the head for an :class:`artsy.training.members.TrainingRun` (after the
    ensemble).

    Returns ``(None, None)`` when no image has an emotion label or there is no embedding.
    """
    data = run.data
    if data.emotion is None or "embedding" not in run.inputs:
        return None, None
    mask = np.isin(data.emotion, list(EMOTION_CATEGORIES))
    if not mask.any():
        return None, None
    embeddings, emotions = run.inputs["embedding"][mask], data.emotion[mask]
    valence = {seed: probs[mask] for seed, probs in run.results["ensemble"].oof.items()}
    record = cross_validate_emotion(embeddings, emotions, valence, seeds=run.config.cv_seeds,
                                    n_splits=run.config.n_splits)
    sources = sorted(set(data.source[mask])) if data.source is not None else []
    record.update(categories=list(EMOTION_CATEGORIES), trained_on=sources)
    return fit_head(embeddings, emotions), record


def card_lines(record: dict[str, Any]) -> list[str]:
    """The model card's emotion section from the manifest's ``emotion`` record."""
    first = record["first_seed"]
    lines = ["## Which emotion (eight Mikels categories)", "",
             f"Head: standardised multinomial logistic regression (C = {record['head_c']}) over "
             f"the backbone embedding, trained on the {record['n']} images with an emotion "
             f"label ({', '.join(record.get('trained_on', []))}); probabilities tilted by the "
             f"ensemble's valence with weight {record['valence_weight']}. "
             f"{record['protocol']}, mean ± std over folds:", "",
             "| | accuracy | macro-F1 |", "|---|---|---|",
             f"| shipped head (with valence) | {record['mean']['accuracy']:.3f} ± "
             f"{record['std']['accuracy']:.3f} | {record['mean']['macro_f1']:.3f} ± "
             f"{record['std']['macro_f1']:.3f} |",
             f"| head alone | {record['without_valence']['accuracy']:.3f} | "
             f"{record['without_valence']['macro_f1']:.3f} |",
             f"| chance | {1 / len(EMOTION_CATEGORIES):.3f} | – |", "",
             f"Per category (first CV seed, out-of-fold); the predicted category's valence "
             f"agrees with the ensemble's label (`p_positive >= 0.5`) on "
             f"{first['valence_agreement']:.1%} of images:", "",
             "| category | precision | recall | F1 | n |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} | "
              f"{row['n']} |" for name, row in first["per_category"].items()]
    return [*lines, "", "![emotion confusion matrix](confusion_emotion.png)", ""]


def plot_confusion(record: dict[str, Any], path: Any) -> Any:
    """Row-normalised confusion matrix of the first CV seed, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(record["first_seed"]["confusion"], dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(6.4, 5.6))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(EMOTION_CATEGORIES))
    axes.set_xticks(ticks, EMOTION_CATEGORIES, rotation=45, ha="right")
    axes.set_yticks(ticks, EMOTION_CATEGORIES)
    for row in ticks:
        for column in ticks:
            axes.text(column, row, f"{int(matrix[row, column])}", ha="center", va="center",
                      color="white" if shares[row, column] > 0.5 else "black", fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("emotion head, out-of-fold (first CV seed)")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))
    return path
