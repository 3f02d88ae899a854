"""What one training run fits and scores: the models it knows, grouped cross-validation of each
member (classical learners over the features or the backbone embedding, the CNN), the stacked
ensemble on the members' out-of-fold probabilities, and the final fits on all images.

:class:`TrainingRun` carries everything a run learns; :mod:`artsy.training.train` drives it,
:mod:`artsy.training.transfer` and :mod:`artsy.training.model_card` read it.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from artsy.config import TrainConfig
from artsy.features import extract_features
from artsy.models import backbone as backbone_module
from artsy.models.bundle import stacking_inputs
from artsy.models.classical import CLASSICAL_MODELS, make_classifier
from artsy.training.dataset import LabelledImages
from artsy.training.evaluate import CVResult, cross_validate

logger = logging.getLogger(__name__)

#: Models over the pretrained backbone's embedding: name -> learner of
# :mod:`artsy.models.classical`.
EMBEDDING_MODELS: dict[str, str] = {"effnet": "svm", "effnet_logreg": "logreg"}
#: Models :func:`train` knows: over the embedding, over the feature set, and the CNN.
TRAINABLE_MODELS: tuple[str, ...] = (*EMBEDDING_MODELS, *CLASSICAL_MODELS, "cnn")
#: Most members the stacked ensemble keeps (ranked by out-of-fold ROC AUC).
ENSEMBLE_MAX_MEMBERS = 3
#: Inverse regularisation of the stacking combiner (logistic regression on member log-odds).
COMBINER_C = 1.0
#: The CNN's early-stopping split: one of this many grouped folds of a training fold.
CNN_VALIDATION_SPLITS = 5
#: Transform applied to member probabilities before the combiner.
STACKING_TRANSFORM = "logit"


@dataclass
class TrainingRun:
    """Everything the report needs from one :func:`train` call."""

    config: TrainConfig
    data: LabelledImages
    failures: list[tuple[str, str]]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    duplicate_pairs: list[tuple[int, int]] = field(default_factory=list)
    results: dict[str, CVResult] = field(default_factory=dict)
    transfer: list[dict[str, Any]] = field(default_factory=list)
    emotion: dict[str, Any] | None = None
    cnn_histories: list[dict[str, list[float]]] = field(default_factory=list)
    cnn_final_epochs: int | None = None
    members: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)

    def model_inputs(self, name: str) -> np.ndarray:
        """What model ``name`` reads: the backbone embedding or the feature vectors."""
        return self.inputs["embedding" if name in EMBEDDING_MODELS else "features"]


def learner(name: str) -> str:
    """The :mod:`artsy.models.classical` learner behind a trainable model name."""
    return EMBEDDING_MODELS.get(name, name)


def classical_cv(name: str, features: np.ndarray, data: LabelledImages,
                  config: TrainConfig) -> CVResult:
    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        model = make_classifier(learner(name), random_state=config.artsy.seed)
        model.fit(features[train_idx], data.labels[train_idx], groups=data.groups[train_idx])
        return model.predict_proba(features[test_idx])[:, 1]

    return cross_validate(fit_predict, data.labels, data.groups, n_splits=config.n_splits,
                          seeds=config.cv_seeds, name=name)


def validation_split(labels: np.ndarray, groups: np.ndarray,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    splitter = StratifiedGroupKFold(n_splits=CNN_VALIDATION_SPLITS, shuffle=True, random_state=seed)
    return next(splitter.split(np.zeros(labels.size), labels, groups))


def cnn_cv(images: np.ndarray, data: LabelledImages, run: TrainingRun) -> CVResult:
    from artsy.models import cnn, cnn_training

    config = run.config
    best_epochs = []

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        fit_idx, val_idx = (train_idx[part] for part in validation_split(
            data.labels[train_idx], data.groups[train_idx], config.artsy.seed))
        model = cnn.build_cnn(images.shape[1:], 2, seed=config.artsy.seed)
        history = cnn_training.train_cnn(
            model, images[fit_idx], data.labels[fit_idx],
            validation_data=(images[val_idx], data.labels[val_idx]),
            epochs=config.cnn_epochs, seed=config.artsy.seed)
        run.cnn_histories.append({key: [float(v) for v in values]
                                  for key, values in history.history.items()})
        best_epochs.append(cnn_training.best_epoch(history))
        logger.info("cnn fold %d: best epoch %d", len(best_epochs), best_epochs[-1])
        return cnn.predict_positive(model, images[test_idx], batch_size=config.artsy.batch_size)

    result = cross_validate(fit_predict, data.labels, data.groups, n_splits=config.n_splits,
                            seeds=config.cv_seeds, name="cnn")
    run.cnn_final_epochs = max(1, int(round(statistics.median(best_epochs))))
    return result


def rank_members(columns: np.ndarray, labels: np.ndarray,
                 names: tuple[str, ...]) -> tuple[str, ...]:
    """The ``ENSEMBLE_MAX_MEMBERS`` best models by ROC AUC of their probabilities, best first."""
    aucs = [roc_auc_score(labels, columns[:, index]) for index in range(len(names))]
    order = sorted(range(len(names)), key=lambda index: (-aucs[index], names[index]))
    return tuple(names[index] for index in order[:ENSEMBLE_MAX_MEMBERS])


def fit_combiner(columns: np.ndarray, labels: np.ndarray) -> LogisticRegression:
    """Fit the stacking combiner on member probabilities ``(n, n_members)``.

    Class-balanced: its probabilities are calibrated for equal class priors, so the 0.5
    threshold maximises balanced accuracy instead of trading it for the training set's base
    rate (which a collection elsewhere does not share).
    """
    combiner = LogisticRegression(C=COMBINER_C, class_weight="balanced")
    return combiner.fit(stacking_inputs(columns, STACKING_TRANSFORM), labels)


def ensemble_cv(run: TrainingRun, candidates: tuple[str, ...]) -> CVResult:
    """Cross-validate member choice + combiner on the members' out-of-fold probabilities.

    Each outer fold ranks the candidates and fits the combiner on the other folds' out-of-fold
    probabilities only, so the test fold plays no part in choosing or weighting members.
    """
    config, labels, groups = run.config, run.data.labels, run.data.groups
    merged = CVResult(name="ensemble", n_splits=config.n_splits, seeds=tuple(config.cv_seeds),
                      labels=labels)
    for seed in config.cv_seeds:
        columns = np.column_stack([run.results[name].oof[seed] for name in candidates])

        def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray,
                        columns: np.ndarray = columns) -> np.ndarray:
            chosen = rank_members(columns[train_idx], labels[train_idx], candidates)
            picks = [candidates.index(name) for name in chosen]
            combiner = fit_combiner(columns[np.ix_(train_idx, picks)], labels[train_idx])
            inputs = stacking_inputs(columns[np.ix_(test_idx, picks)], STACKING_TRANSFORM)
            return combiner.predict_proba(inputs)[:, 1]

        single = cross_validate(fit_predict, labels, groups, n_splits=config.n_splits,
                                seeds=(seed,), name="ensemble")
        merged.folds += single.folds
        merged.oof.update(single.oof)
    logger.info("%s", merged.summary())
    return merged


def final_classical(name: str, features: np.ndarray, data: LabelledImages,
                     seed: int) -> tuple[Any, dict[str, Any]]:
    search = make_classifier(learner(name), random_state=seed)
    search.fit(features, data.labels, groups=data.groups)
    params = {key: value for key, value in search.best_params_.items()}
    logger.info("final %s: %s", name, params)
    return search.best_estimator_, params


def final_cnn(images: np.ndarray, data: LabelledImages, run: TrainingRun) -> Any:
    from artsy.models import cnn, cnn_training

    config = run.config
    model = cnn.build_cnn(images.shape[1:], 2, seed=config.artsy.seed)
    history = cnn_training.train_cnn(model, images, data.labels,
                                     epochs=run.cnn_final_epochs or 1, seed=config.artsy.seed)
    logger.info("final cnn: %d epochs on %d images, final loss %.4f", run.cnn_final_epochs,
                len(images), history.history["loss"][-1])
    return model


def compute_inputs(images: np.ndarray, crops: np.ndarray | None, config: TrainConfig,
                   backbone: Any = None) -> dict[str, np.ndarray]:
    """``{"features": (n, d), "embedding": (n, e)}`` (embedding only with crops).

    ``backbone`` (from :func:`artsy.models.backbone.load_backbone`) fixes the embedding's width;
    one is loaded with ``config.embedding``'s pooled stages when not given.
    """
    logger.info("extracting %s features of %d images", config.artsy.feature_set, len(images))
    inputs = {"features": extract_features(images, config.artsy.feature_set)}
    if crops is not None:
        logger.info("embedding %d centre crops with %s", len(crops),
                    backbone_module.DEFAULT_BACKBONE)
        stages = backbone_module.EMBEDDINGS[config.embedding]
        inputs["embedding"] = backbone_module.embed(crops, model=backbone, pooled_stages=stages,
                                                    batch_size=config.artsy.batch_size)
    return inputs


def final_combiner(run: TrainingRun) -> LogisticRegression:
    """Choose the members and fit the combiner on every seed's out-of-fold probabilities."""
    candidates, seeds = run.config.models, run.config.cv_seeds
    columns = np.concatenate([np.column_stack([run.results[name].oof[seed]
                                               for name in candidates]) for seed in seeds])
    labels = np.tile(run.data.labels, len(seeds))
    run.members = rank_members(columns, labels, candidates)
    picks = [candidates.index(name) for name in run.members]
    combiner = fit_combiner(columns[:, picks], labels)
    logger.info("ensemble members %s, combiner weights %s", run.members, combiner.coef_.tolist())
    return combiner
