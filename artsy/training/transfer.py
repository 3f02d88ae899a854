"""How a trained recipe holds beyond its training data: cross-domain scores for the model card.

Two checks, each scoring every model and the stacked ensemble on a whole labelled set it never saw:

1. *First source alone*: with several training sources (``--data A B``), the ensemble's recipe
   (its members, each tuned on inner grouped folds, and a combiner fitted on their out-of-fold
   probabilities) is refitted on source ``A`` only and scores ``B`` and every ``--eval-data``
   folder.
2. *Everything*: the final models of the bundle score every ``--eval-data`` folder.

Each row reports accuracy, balanced accuracy, ROC AUC and the share of images predicted positive
next to the true share: a model that calls 80 % of a set positive where a fifth are is visible.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from artsy.models.classical import make_classifier
from artsy.training.dataset import decode_labelled, load_labelled_folder
from artsy.training.evaluate import THRESHOLD, outer_splits

if TYPE_CHECKING:
    from artsy.training.members import TrainingRun

logger = logging.getLogger(__name__)

#: Folds of the inner cross-validation that gives the refitted combiner its inputs.
COMBINER_SPLITS = 3


def set_scores(labels: np.ndarray, p_positive: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, ROC AUC and predicted-positive share at the threshold."""
    predicted = p_positive >= THRESHOLD
    auc = roc_auc_score(labels, p_positive) if len(np.unique(labels)) == 2 else float("nan")
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
            "roc_auc": float(auc), "predicted_positive": float(predicted.mean())}


def _probabilities(models: Mapping[str, Any], combiner: Any, members: tuple[str, ...],
                   inputs_of: Any) -> dict[str, np.ndarray]:
    from artsy.models.bundle import stacking_inputs
    from artsy.training.members import STACKING_TRANSFORM

    probs = {name: model.predict_proba(inputs_of(name))[:, 1] for name, model in models.items()}
    columns = np.column_stack([probs[name] for name in members])
    probs["ensemble"] = combiner.predict_proba(stacking_inputs(columns, STACKING_TRANSFORM))[:, 1]
    return probs


def _row(trained_on: list[str], scored: str, labels: np.ndarray,
         probs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    row = {"trained_on": trained_on, "scored": scored, "n": int(labels.size),
           "true_positive": float(labels.mean()),
           "models": {name: set_scores(labels, p) for name, p in probs.items()}}
    ensemble = row["models"]["ensemble"]
    logger.info("transfer %s -> %s: balanced accuracy %.3f, predicted positive %.2f (true %.2f)",
                "+".join(trained_on), scored, ensemble["balanced_accuracy"],
                ensemble["predicted_positive"], row["true_positive"])
    return row


def refit_recipe(run: TrainingRun, mask: np.ndarray) -> tuple[dict[str, Any], Any]:
    """The ensemble's members and combiner, refitted on the images where ``mask`` is true."""
    from artsy.training.members import fit_combiner, learner

    labels, groups = run.data.labels[mask], run.data.groups[mask]
    seed = run.config.artsy.seed
    columns = np.zeros((labels.size, len(run.members)))
    models = {}
    for column, name in enumerate(run.members):
        inputs = run.model_inputs(name)[mask]
        for train_idx, test_idx in outer_splits(labels, groups, n_splits=COMBINER_SPLITS,
                                                seed=seed):
            model = make_classifier(learner(name), random_state=seed)
            model.fit(inputs[train_idx], labels[train_idx], groups=groups[train_idx])
            columns[test_idx, column] = model.predict_proba(inputs[test_idx])[:, 1]
        models[name] = make_classifier(learner(name), random_state=seed).fit(
            inputs, labels, groups=groups)
    return models, fit_combiner(columns, labels)


def load_eval_set(folder: str | Path, run: TrainingRun, backbone: Any) -> dict[str, Any]:
    """A scored-only labelled folder: its labels and the same inputs the models read."""
    from artsy.training.members import compute_inputs

    data = load_labelled_folder(folder)
    crop = None if backbone is None else int(backbone.input_shape[1])
    decoded = decode_labelled(data.paths, size=run.config.artsy.image_size, crop=crop)
    ok = decoded.ok_mask
    crops = None if decoded.crops is None else decoded.crops[ok]
    inputs = compute_inputs(decoded.images[ok], crops, run.config, backbone)
    return {"name": Path(folder).resolve().name, "labels": data.labels[ok], "inputs": inputs}


def evaluate(run: TrainingRun, fitted: Mapping[str, Any], combiner: Any, *,
             backbone: Any = None) -> list[dict[str, Any]]:
    """Both transfer checks (see the module docstring); ``[]`` when there is nothing to score.

    Parameters
    ----------
    run : artsy.training.members.TrainingRun
        After cross-validation and member choice.
    fitted : dict of str to estimator
        The final models over features and embedding (the CNN is not refitted here).
    combiner : estimator
        The final stacking combiner over ``run.members``.
    backbone : keras.Model or None
        The loaded backbone, to embed the ``eval_data`` folders.
    """
    from artsy.training.members import EMBEDDING_MODELS

    if "cnn" in run.members:
        logger.info("transfer checks skipped: the CNN is an ensemble member")
        return []
    eval_sets = [load_eval_set(folder, run, backbone) for folder in run.config.eval_data]
    sources = list(dict.fromkeys(run.data.source.tolist()))
    rows = []

    def kind(name: str) -> str:
        return "embedding" if name in EMBEDDING_MODELS else "features"

    if len(sources) > 1:
        first = run.data.source == sources[0]
        models, first_combiner = refit_recipe(run, first)
        for other in sources[1:]:
            mask = run.data.source == other
            probs = _probabilities(models, first_combiner, run.members,
                                   lambda name, mask=mask: run.model_inputs(name)[mask])
            rows.append(_row(sources[:1], other, run.data.labels[mask], probs))
        for scored in eval_sets:
            probs = _probabilities(models, first_combiner, run.members,
                                   lambda name, scored=scored: scored["inputs"][kind(name)])
            rows.append(_row(sources[:1], scored["name"], scored["labels"], probs))
    for scored in eval_sets:
        probs = _probabilities(fitted, combiner, run.members,
                               lambda name, scored=scored: scored["inputs"][kind(name)])
        rows.append(_row(sources, scored["name"], scored["labels"], probs))
    return rows
