"""Training report: subset metrics, plots and the model card, from real cross-validation results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsy.config import ArtsyConfig, TrainConfig
from artsy.training import model_card as report
from artsy.training import plots
from artsy.training.dataset import LabelledImages
from artsy.training.evaluate import cross_validate, majority_baseline
from artsy.training.members import TrainingRun


@pytest.fixture
def run() -> TrainingRun:
    """A training run of 60 images with agreement 3-5 and two real cross-validated 'models'."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    agree = np.tile([3, 4, 5], 20)
    groups = np.arange(60).astype(str).astype(object)
    signal = labels + rng.normal(scale=0.8, size=60)
    data = LabelledImages(root=Path("/data"), paths=tuple(f"/data/{i}.jpg" for i in range(60)),
                          labels=labels, groups=groups, agree=agree)
    config = TrainConfig(data="/data", out="/out", models=("score",), n_splits=3, cv_seeds=(0, 1),
                         artsy=ArtsyConfig(seed=1))

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-2 * (signal[test_idx] - 0.5)))

    results = {"majority": majority_baseline(labels, groups, n_splits=3, seeds=(0, 1)),
               "score": cross_validate(fit_predict, labels, groups, n_splits=3, seeds=(0, 1),
                                       name="score")}
    results["ensemble"] = results["score"]
    return TrainingRun(config=config, data=data, failures=[("/data/bad.jpg", "empty file")],
                       results=results, members=("score",))


def test_report_agree_levels():
    assert report.agree_levels(None) == [("all", None)]
    levels = report.agree_levels(np.array([5, 3, 4, 5]))
    assert [name for name, _ in levels] == ["3-agree", "4-agree", "5-agree"]
    assert levels[2][1].tolist() == [True, False, False, True]


def test_report_subset_metrics_match_cross_validation(run):
    table = report.subset_metrics(run)
    assert set(table) == {"majority", "score", "ensemble"}
    whole = table["score"]["3-agree"]
    assert whole["n"] == 60
    for metric, value in run.results["score"].mean().items():
        assert whole["mean"][metric] == pytest.approx(value)
    assert table["score"]["5-agree"]["n"] == 20
    assert table["score"]["5-agree"]["mean"] != whole["mean"]
    assert table["majority"]["5-agree"]["mean"]["balanced_accuracy"] == 0.5


def test_report_plots_are_pngs(run, tmp_path):
    labels = run.data.labels
    probs = run.results["score"].oof[0]
    paths = [
        plots.plot_confusion(labels, probs, "score", tmp_path / "confusion.png"),
        plots.plot_reliability(labels, {"score": probs}, tmp_path / "reliability.png"),
        plots.plot_learning_curves([{"loss": [0.7, 0.6], "val_loss": [0.7, 0.65],
                                      "accuracy": [0.5, 0.6], "val_accuracy": [0.5, 0.55]}],
                                    tmp_path / "curves.png"),
        plots.plot_feature_maps([("conv0", np.random.default_rng(0).random((50, 50, 8))),
                                  ("conv1", np.ones((25, 25, 4)))],
                                 plots.public_photo(100), tmp_path / "maps.png"),
    ]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_report_public_photo_is_decoded_like_training_images():
    photo = plots.public_photo(100)
    assert photo.shape == (100, 100, 3) and photo.dtype == np.uint8 and photo.std() > 10


def test_report_model_card_has_table_anchors_and_provenance(run, tmp_path):
    manifest = {
        "data": {"folder": "data", "n_images": 60, "class_counts": [30, 30], "min_agree": None,
                 "n_unreadable": 1, "fingerprint": "f" * 64},
        "feature_set": {"name": "affect", "length": 424},
        "ensemble": {"members": ["score"], "transform": "logit",
                     "combiner_coefficients": [1.5], "combiner_intercept": -0.25},
        "hyper_parameters": {},
        "training": {"command": "python jobs/train.py --data data --out out"},
        "protocol": {"outer": "grouped", "inner": "inner", "ensemble": "stacked"},
        "metrics": report.subset_metrics(run),
    }
    files = report.write_report(tmp_path, run=run, manifest=manifest)
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert [path.name for path in files] == ["confusion_score.png", "confusion_ensemble.png",
                                             "reliability.png", "MODEL_CARD.md"]
    assert "`python jobs/train.py --data data --out out`" in card
    assert "f" * 64 in card and "Seed: 1" in card
    assert "| score | 5-agree | 20 |" in card and "| majority | 3-agree | 60 |" in card
    for anchor in ("0.659", "0.620", "0.563", "0.545", "≈0.77", "≈0.83"):
        assert anchor in card
    assert "research-only" in card and "`bad.jpg`: empty file" in card
    assert "score +1.500" in card


def _manifest(run: TrainingRun, **extra) -> dict:
    return {
        "data": {"folder": "data", "n_images": 60, "class_counts": [30, 30], "min_agree": None,
                 "n_unreadable": 1, "fingerprint": "f" * 64},
        "feature_set": {"name": "affect", "length": 119},
        "ensemble": {"members": ["score"], "transform": "logit",
                     "combiner_coefficients": [1.5], "combiner_intercept": -0.25},
        "hyper_parameters": {}, "training": {"command": "python jobs/train.py"},
        "protocol": {"outer": "grouped", "inner": "inner", "ensemble": "stacked"},
        "metrics": report.subset_metrics(run), **extra,
    }


ABLATION = {"meta": {"data": "twitter_i", "min_agree": 5, "n": 882},
            "rows": [{"features": "colour", "model": "svm", "length": 28,
                      "mean": {"accuracy": 0.7031, "balanced_accuracy": 0.6412},
                      "std": {"accuracy": 0.03, "balanced_accuracy": 0.037}}]}


def test_report_model_card_shows_ablation_and_what_was_tried(run, tmp_path):
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps(ABLATION))
    tried = tmp_path / "tried.md"
    tried.write_text("- face cascade: no gain\n")
    four = {**ABLATION, "meta": {"data": "twitter_i", "min_agree": 4, "n": 1116}}
    manifest = _manifest(run, ablation=[report.read_ablation(path), four],
                         tried=report.read_tried(tried))
    card = report.model_card(run, manifest, ["reliability.png"])
    ablation_at, tried_at = card.index("## Feature-group ablation"), card.index("## What was tried")
    assert card.index("## Anchors") < ablation_at < tried_at
    assert "| colour | 28 | svm | 0.703 ± 0.030 | 0.641 ± 0.037 |" in card
    assert card.index("data twitter_i, min_agree 5, n 882:") < card.index(
        "data twitter_i, min_agree 4, n 1116:") < tried_at
    assert card.count("| colour | 28 | svm |") == 2
    assert "- face cascade: no gain" in card[tried_at:]
    plain = report.model_card(run, _manifest(run), ["reliability.png"])
    assert "## Feature-group ablation" not in plain and "## What was tried" not in plain


@pytest.mark.parametrize(("content", "message"), [
    (None, "ablation file not found"),
    ("{not json", "is not JSON"),
    (json.dumps({"rows": [{"features": "colour"}]}), "needs a non-empty 'rows' list"),
    (json.dumps([1, 2]), "needs a non-empty 'rows' list"),
])
def test_report_read_ablation_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "ablation.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        report.read_ablation(path)


def test_report_read_tried_rejects_missing_and_empty(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        report.read_tried(tmp_path / "none.md")
    (tmp_path / "empty.md").write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        report.read_tried(tmp_path / "empty.md")


def test_report_shipped_model_card_links_only_files_in_the_bundle():
    from artsy.models.bundle import default_bundle_path

    folder = default_bundle_path() / "report"
    links = re.findall(r"\]\(([^)]+)\)", (folder / "MODEL_CARD.md").read_text())
    assert "reliability.png" in links
    for name in links:
        with Image.open(folder / name) as image:
            assert image.format == "PNG"
