"""Tests for artsy.models.classical: every model tunes inside fit, on grouped inner folds, and
saves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from artsy.models.classical import CLASSICAL_MODELS, InnerKFold, make_classifier
from artsy.training.evaluate import cross_validate


@pytest.fixture(autouse=True)
def one_thread():
    """HistGradientBoosting's OpenMP threads thrash on a busy 2-core machine; use one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def separable() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """80 samples, 6 features, the first two carry the label; pairs of rows share a group."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    X = rng.normal(size=(80, 6))
    X[:, :2] += 2.0 * y[:, None]
    return X, y, np.arange(80) // 2


def _small(name: str, random_state: int):
    """The real factory, with fewer trees / boosting rounds so the tests stay fast."""
    model = make_classifier(name, random_state=random_state)
    if name == "rf":
        model.set_params(estimator__rf__n_estimators=30)
    if name == "hgb":
        model.set_params(estimator__hgb__max_iter=30)
    return model


@pytest.mark.parametrize("name", CLASSICAL_MODELS)
def test_fit_tunes_and_predicts_probabilities(separable, name):
    X, y, groups = separable
    model = _small(name, random_state=0).fit(X, y, groups=groups)
    assert isinstance(model.best_estimator_, Pipeline)
    probs = model.predict_proba(X)
    assert probs.shape == (80, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert list(model.classes_) == [0, 1]
    assert np.mean((probs[:, 1] >= 0.5) == y) >= 0.85
    assert len(model.cv_results_["params"]) >= 1


@pytest.mark.parametrize("name", ["rf", "svm", "hgb"])
def test_same_random_state_same_probabilities(separable, name):
    X, y, groups = separable
    first = _small(name, random_state=3).fit(X, y, groups=groups).predict_proba(X)
    second = _small(name, random_state=3).fit(X, y, groups=groups).predict_proba(X)
    np.testing.assert_array_equal(first, second)


def test_knn_grid_covers_k_2_to_9_and_both_weights():
    grid = make_classifier("knn", random_state=0).param_grid
    assert grid["knn__n_neighbors"] == list(range(2, 10))
    assert set(grid["knn__weights"]) == {"uniform", "distance"}


def test_rf_grid_has_depths_and_more_than_21_trees():
    model = make_classifier("rf", random_state=0)
    assert {5, 7, 9, None} <= set(model.param_grid["rf__max_depth"])
    assert model.estimator.named_steps["rf"].n_estimators > 21


def test_inner_folds_keep_groups_together(separable):
    X, y, groups = separable
    for train_idx, test_idx in InnerKFold(random_state=0).split(X, y, groups):
        assert not set(groups[train_idx]) & set(groups[test_idx])
    folds = list(InnerKFold(random_state=0).split(X, y))  # no groups: stratified singletons
    assert len(folds) == 3 and sum(len(test) for _, test in folds) == 80


def test_unknown_model_raises():
    with pytest.raises(ValueError, match="unknown classical model 'tree'; choose one of"):
        make_classifier("tree", random_state=0)


def test_skops_round_trip_of_tuned_pipeline(separable, tmp_path):
    from skops import io as skops_io

    X, y, groups = separable
    model = make_classifier("svm", random_state=0).fit(X, y, groups=groups)
    path = tmp_path / "svm.skops"
    skops_io.dump(model.best_estimator_, path)
    untrusted = skops_io.get_untrusted_types(file=path)
    assert all(name.startswith("sklearn.") for name in untrusted)  # no artsy or lambda types
    loaded = skops_io.load(path, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_search_object_clones_and_pickles(separable):
    import pickle

    X, y, groups = separable
    model = clone(make_classifier("logreg", random_state=0)).fit(X, y, groups=groups)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))


def test_determinism_on_real_twitter_subset(twitter_dir):
    """Same seed, same metrics: affect features + kNN on 60 real Twitter I images."""
    import csv

    from artsy.features import extract_features
    from artsy.io import decode_image
    from artsy.training.evaluate import media_groups

    rows = [r for r in csv.DictReader((twitter_dir / "labels.csv").open())]
    rows = rows[::len(rows) // 60][:60]
    images = np.stack([decode_image((twitter_dir / r["path"]).read_bytes()).pixels for r in rows])
    X = extract_features(images, "affect")
    y = np.array([r["label"] == "positive" for r in rows], dtype=int)
    groups = media_groups([r["path"] for r in rows])

    def run() -> list[dict[str, float]]:
        def fit_predict(train_idx, test_idx):
            model = make_classifier("knn", random_state=1).fit(X[train_idx], y[train_idx],
                                                               groups=groups[train_idx])
            return model.predict_proba(X[test_idx])[:, 1]
        return cross_validate(fit_predict, y, groups, n_splits=3, seeds=(1,)).folds

    assert run() == run()
