"""Tests for artsy.training.evaluate: grouping, the grouped CV protocol, metrics and
serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from artsy.training.evaluate import (
    METRICS,
    cross_validate,
    majority_baseline,
    media_groups,
    outer_splits,
    score,
)


@pytest.fixture
def grouped_labels() -> tuple[np.ndarray, np.ndarray]:
    """60 labels in 40 groups (20 duplicated pairs), 2:1 positive like Twitter I."""
    rng = np.random.default_rng(0)
    groups = np.concatenate([np.arange(40), np.arange(20)])
    per_group = (rng.random(40) < 0.66).astype(int)
    return per_group[groups], groups


def test_media_groups_twitter_names_and_fallback():
    paths = ["positive/100003032_428124307202400256_Be_S6KkCMAA411d.jpg",
             "negative/757883414_463861173985615873_Be_S6KkCMAA411d.jpg",
             "/data/holiday_photo.png", "IMG_0001.JPG"]
    groups = media_groups(paths)
    assert groups.tolist() == ["Be_S6KkCMAA411d", "Be_S6KkCMAA411d", "holiday_photo", "IMG_0001"]


def test_twitter_duplicates_share_a_group(twitter_dir):
    import csv

    rows = list(csv.DictReader((twitter_dir / "labels.csv").open()))
    groups = media_groups([row["path"] for row in rows])
    assert len(groups) == 1269 and len(set(groups)) == 1269 - 13


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_group_on_both_sides_and_every_image_tested_once(grouped_labels, seed):
    y, groups = grouped_labels
    tested = np.zeros(y.size, dtype=int)
    for train_idx, test_idx in outer_splits(y, groups, n_splits=5, seed=seed):
        assert not set(groups[train_idx]) & set(groups[test_idx])
        tested[test_idx] += 1
    assert np.all(tested == 1)


def test_cross_validate_passes_only_training_labels_and_collects_oof(grouped_labels):
    y, groups = grouped_labels
    seen = []

    def fit_predict(train_idx, test_idx):
        seen.append((set(train_idx), set(test_idx)))
        return np.full(test_idx.size, y[train_idx].mean())

    result = cross_validate(fit_predict, y, groups, n_splits=4, seeds=(0, 1), name="prior")
    assert len(result.folds) == 8 and len(seen) == 8
    assert all(not train & test for train, test in seen)
    assert set(result.oof) == {0, 1} and all(np.isfinite(p).all() for p in result.oof.values())
    assert set(result.mean()) == set(METRICS)


def test_perfect_and_inverted_models_score_one_and_zero(grouped_labels):
    y, groups = grouped_labels
    perfect = cross_validate(lambda tr, te: y[te].astype(float), y, groups)
    inverted = cross_validate(lambda tr, te: 1.0 - y[te], y, groups)
    assert perfect.mean() == {"accuracy": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0,
                              "brier": 0.0}
    assert inverted.mean()["accuracy"] == 0.0 and inverted.mean()["brier"] == 1.0


def test_majority_baseline_is_positive_rate_with_half_balanced_accuracy(grouped_labels):
    y, groups = grouped_labels
    result = majority_baseline(y, groups, seeds=(0, 1, 2))
    assert result.mean()["accuracy"] == pytest.approx(y.mean(), abs=0.05)
    assert result.mean()["balanced_accuracy"] == 0.5
    assert len(result.folds) == 15


def test_same_seed_same_result_and_json_round_trip(grouped_labels):
    y, groups = grouped_labels
    rng_predict = lambda tr, te: np.random.default_rng(te.sum()).random(te.size)  # noqa: E731
    first = cross_validate(rng_predict, y, groups, seeds=(3,))
    second = cross_validate(rng_predict, y, groups, seeds=(3,))
    assert first.folds == second.folds
    data = json.loads(json.dumps(first.to_dict()))
    assert data["mean"] == first.mean() and len(data["oof"]["3"]) == y.size
    assert "StratifiedGroupKFold" in data["protocol"]


def test_score_thresholds_at_one_half():
    assert score(np.array([0, 1, 1]), np.array([0.49, 0.5, 0.9]))["accuracy"] == 1.0


def test_bad_inputs_raise(grouped_labels):
    y, groups = grouped_labels
    with pytest.raises(ValueError, match="same length"):
        cross_validate(lambda tr, te: y[te], y, groups[:-1])
    with pytest.raises(ValueError, match="both classes"):
        cross_validate(lambda tr, te: y[te], np.ones_like(y), groups)
    with pytest.raises(ValueError, match="n_splits must be between 2"):
        cross_validate(lambda tr, te: y[te], y, groups, n_splits=1)
    with pytest.raises(ValueError, match="probabilities in"):
        cross_validate(lambda tr, te: np.full(te.size, 2.0), y, groups)
    with pytest.raises(ValueError, match="probabilities in"):
        cross_validate(lambda tr, te: np.zeros(3), y, groups)
