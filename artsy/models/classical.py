"""Classical classifiers over feature vectors, each tuned inside its own ``fit``.

:func:`make_classifier` returns a ``GridSearchCV`` around an sklearn ``Pipeline`` (scaling inside
where the learner needs it). Calling ``fit(X, y, groups=groups)`` searches the grid on inner
stratified *grouped* folds of the data it is given, then refits the best pipeline on all of it, so
an outer test fold is never seen by the search. ``best_estimator_`` is the tuned ``Pipeline`` (plain
sklearn types only, the easiest thing to save with ``skops.io``); ``predict_proba`` on the search
object delegates to it.

Example
-------
>>> import numpy as np
>>> from artsy.models.classical import make_classifier
>>> rng = np.random.default_rng(0)
>>> X, y = rng.normal(size=(60, 4)), np.repeat([0, 1], 30)
>>> model = make_classifier("logreg", random_state=0).fit(X, y, groups=np.arange(60) // 2)
>>> model.predict_proba(X).shape
(60, 2)
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

logger = logging.getLogger(__name__)

#: Names accepted by :func:`make_classifier`.
CLASSICAL_MODELS: tuple[str, ...] = ("knn", "rf", "svm", "logreg", "hgb")
#: Inner folds of the hyper-parameter search.
INNER_SPLITS = 3
#: Score the inner search maximises (threshold-free, rewards good probabilities).
INNER_SCORING = "roc_auc"
KNN_NEIGHBORS = tuple(range(2, 10))
RF_MAX_DEPTH = (5, 7, 9, None)
RF_ESTIMATORS = 100
SVM_C = (0.5, 1.0, 2.0, 4.0)
SVM_GAMMA = ("scale",)
SVM_CALIBRATION_SPLITS = 3
LOGREG_C = (0.003, 0.01, 0.03, 0.1, 0.3)
HGB_LEARNING_RATE = (0.1,)
HGB_MAX_LEAF_NODES = (7, 15)
HGB_MAX_ITER = 100


class InnerKFold(StratifiedGroupKFold):
    """``StratifiedGroupKFold`` that treats every sample as its own group when ``groups`` is None.

    Parameters
    ----------
    n_splits : int, default=3
    shuffle : bool, default=True
    random_state : int or None, default=None
    """

    def __init__(self, n_splits: int = INNER_SPLITS, *, shuffle: bool = True,
                 random_state: int | None = None) -> None:
        super().__init__(n_splits=n_splits, shuffle=shuffle, random_state=random_state)

    def split(self, X, y=None, groups=None):  # noqa: N803 (sklearn's argument name)
        """Yield ``(train, test)`` index arrays; singletons as groups when ``groups`` is None."""
        if groups is None:
            groups = np.arange(len(X))
        return super().split(X, y, groups)


def _pipeline_and_grid(name: str, random_state: int) -> tuple[Pipeline, dict[str, list]]:
    if name == "knn":
        pipeline = Pipeline([("scale", StandardScaler()), ("knn", KNeighborsClassifier())])
        grid = {"knn__n_neighbors": list(KNN_NEIGHBORS), "knn__weights": ["uniform", "distance"]}
    elif name == "rf":
        forest = RandomForestClassifier(n_estimators=RF_ESTIMATORS, max_features="sqrt",
                                        class_weight="balanced", random_state=random_state)
        pipeline = Pipeline([("rf", forest)])
        grid = {"rf__max_depth": list(RF_MAX_DEPTH)}
    elif name == "svm":
        svc = SVC(kernel="rbf", class_weight="balanced", random_state=random_state)
        # Platt scaling on inner folds, then one SVC refit on all the data (ensemble=False).
        calibrated = CalibratedClassifierCV(svc, method="sigmoid", cv=SVM_CALIBRATION_SPLITS,
                                            ensemble=False)
        pipeline = Pipeline([("scale", StandardScaler()), ("svm", calibrated)])
        grid = {"svm__estimator__C": list(SVM_C), "svm__estimator__gamma": list(SVM_GAMMA)}
    elif name == "logreg":
        logreg = LogisticRegression(class_weight="balanced", max_iter=2000)
        pipeline = Pipeline([("scale", StandardScaler()), ("logreg", logreg)])
        grid = {"logreg__C": list(LOGREG_C)}
    elif name == "hgb":
        # No class_weight: with sample weights sklearn 1.9's HGB fit is ~10x slower here.
        boosted = HistGradientBoostingClassifier(max_iter=HGB_MAX_ITER, early_stopping=False,
                                                 l2_regularization=1.0,
                                                 random_state=random_state)
        pipeline = Pipeline([("hgb", boosted)])
        grid = {"hgb__learning_rate": list(HGB_LEARNING_RATE),
                "hgb__max_leaf_nodes": list(HGB_MAX_LEAF_NODES)}
    else:
        raise ValueError(f"unknown classical model {name!r}; choose one of {CLASSICAL_MODELS}")
    return pipeline, grid


def make_classifier(name: str, *, random_state: int, n_jobs: int | None = None,
                    inner_splits: int = INNER_SPLITS, scoring: str = INNER_SCORING) -> GridSearchCV:
    """A self-tuning classifier: grid search on inner grouped folds, then refit on all data.

    Parameters
    ----------
    name : str
        One of ``CLASSICAL_MODELS``: ``"knn"`` (scaled kNN, k 2-9 x uniform/distance), ``"rf"``
        (random forest, 100 trees, depth 5/7/9/None), ``"svm"`` (scaled RBF SVC with Platt
        probabilities, C grid), ``"logreg"`` (scaled L2 logistic regression, C grid), ``"hgb"``
        (histogram gradient boosting, 100 rounds, 7 or 15 leaves).
    random_state : int
        Seeds the inner folds and every randomised learner.
    n_jobs : int or None, default=None
        Parallel grid fits (None = 1).
    inner_splits : int, default=3
        Inner folds of the search.
    scoring : str, default="roc_auc"
        sklearn scorer name the search maximises.

    Returns
    -------
    GridSearchCV
        Unfitted; ``fit(X, y, groups=groups)`` tunes and refits, ``predict_proba`` gives
        ``(n, 2)`` probabilities in ``classes_`` order, ``best_estimator_`` is a ``Pipeline``.

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    """
    pipeline, grid = _pipeline_and_grid(name, random_state)
    inner = InnerKFold(n_splits=inner_splits, shuffle=True, random_state=random_state)
    return GridSearchCV(pipeline, grid, scoring=scoring, cv=inner, refit=True, n_jobs=n_jobs,
                        error_score="raise")
