"""Training end to end on small real photos: determinism, bundle + report, bad input, job script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsy.config import EMOTION_CATEGORIES, ArtsyConfig, TrainConfig
from artsy.features import extract_features
from artsy.models.bundle import load_bundle
from artsy.testing import write_photos
from artsy.training.dataset import decode_labelled, load_labelled_folder
from artsy.training.train import rank_members, train

ROOT = Path(__file__).resolve().parents[2]
SEED = 5


def _photo_folder(root: Path, count: int) -> Path:
    """Real photos in negative/ and positive/, split by brightness so there is signal to learn."""
    paths = write_photos(root / "unsorted", count, seed=21, max_side=240)
    brightness = [np.asarray(Image.open(path)).mean() for path in paths]
    cut = np.median(brightness)
    for path, value in zip(paths, brightness, strict=True):
        target = root / ("positive" if value > cut else "negative")
        target.mkdir(exist_ok=True)
        path.rename(target / path.name)
    (root / "unsorted").rmdir()
    return root


@pytest.fixture(scope="module")
def agree_folder(tmp_path_factory) -> Path:
    """36 photos with a labels.csv that gives agreement levels 3, 4 and 5."""
    root = _photo_folder(tmp_path_factory.mktemp("agree"), 36)
    files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.jpg"))
    rows = [f"{name},{name.split('/')[0]},{3 + index % 3}" for index, name in enumerate(files)]
    (root / "labels.csv").write_text("path,label,agree_min\n" + "\n".join(rows) + "\n")
    return root


def _config(data: Path | tuple[str, ...], out: Path, models: tuple[str, ...],
            **changes) -> TrainConfig:
    settings = {"data": data if isinstance(data, tuple) else str(data), "n_splits": 2,
                "cv_seeds": (0, 1), "cnn_epochs": 1, **changes}
    return TrainConfig(out=str(out), models=models, artsy=ArtsyConfig(seed=SEED), **settings)


@pytest.fixture(scope="module")
def classical_runs(agree_folder, tmp_path_factory) -> list[Path]:
    """Two trainings with the same seed (kNN + logistic regression)."""
    out = tmp_path_factory.mktemp("classical")
    return [train(_config(agree_folder, out / f"run{index}", ("knn", "logreg")))
            for index in range(2)]


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory) -> Path:
    """One training with kNN and a one-epoch CNN on 36 photos plus one unreadable file."""
    root = _photo_folder(tmp_path_factory.mktemp("cnn_data"), 36)
    (root / "negative" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    out = tmp_path_factory.mktemp("cnn") / "bundle"
    return train(_config(root, out, ("knn", "cnn"), cv_seeds=(0,)))


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_train_same_seed_gives_same_metrics_and_models(classical_runs, agree_folder):
    first, second = (_manifest(path) for path in classical_runs)
    assert first["metrics"] == second["metrics"]
    assert first["ensemble"]["members"] == second["ensemble"]["members"]
    images = decode_labelled(load_labelled_folder(agree_folder).paths).images
    features = extract_features(images, "affect")
    predictions = [load_bundle(path).predict_classical(features) for path in classical_runs]
    for name in predictions[0]:
        np.testing.assert_array_equal(predictions[0][name], predictions[1][name])


def test_train_reports_every_agree_subset(classical_runs):
    manifest = _manifest(classical_runs[0])
    assert set(manifest["metrics"]) == {"majority", "knn", "logreg", "ensemble"}
    knn = manifest["metrics"]["knn"]
    assert {subset: row["n"] for subset, row in knn.items()} == {
        "3-agree": 36, "4-agree": 24, "5-agree": 12}
    for row in knn.values():
        assert set(row["mean"]) == {"accuracy", "balanced_accuracy", "macro_f1", "brier"}
        assert all(0.0 <= value <= 1.0 for value in row["mean"].values())
    assert manifest["metrics"]["majority"]["3-agree"]["mean"]["balanced_accuracy"] == 0.5
    assert manifest["data"]["n_images"] == 36 and manifest["data"]["min_agree"] is None
    assert manifest["training"]["command"].startswith("python jobs/train.py --data ")


def test_train_min_agree_trains_on_the_subset(agree_folder, tmp_path):
    manifest = _manifest(train(_config(agree_folder, tmp_path / "b", ("logreg",), min_agree=4)))
    assert manifest["data"]["n_images"] == 24
    assert set(manifest["metrics"]["logreg"]) == {"4-agree", "5-agree"}
    assert "--min-agree 4" in manifest["training"]["command"]


def test_train_with_cnn_writes_bundle_and_report(cnn_run):
    manifest = _manifest(cnn_run)
    assert manifest["data"]["n_unreadable"] == 1 and manifest["data"]["n_images"] == 36
    bundle = load_bundle(cnn_run)
    assert bundle.cnn_member and set(bundle.members) == {"knn", "cnn"}
    assert manifest["training"]["cnn_final_epochs"] == 1
    report = cnn_run / "report"
    for name in ("confusion_knn.png", "confusion_cnn.png", "confusion_ensemble.png",
                 "cnn_learning_curves.png", "cnn_feature_maps.png", "reliability.png"):
        with Image.open(report / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
        assert f"report/{name}" in manifest["files"]
    card = (report / "MODEL_CARD.md").read_text()
    assert manifest["data"]["fingerprint"] in card
    assert manifest["training"]["command"] in card
    assert "| cnn | all | 36 |" in card and "| ensemble | all | 36 |" in card
    assert "0.659" in card and "research-only" in card
    assert "`truncated.jpg`" in card


def test_train_cnn_bundle_labels_new_images(cnn_run, tmp_path):
    bundle = load_bundle(cnn_run)
    paths = write_photos(tmp_path, 5, seed=99, max_side=200)
    decoded = decode_labelled(paths, size=bundle.image_size)
    images, ok_mask = decoded.images, decoded.ok_mask
    assert ok_mask.all()
    from artsy.models.cnn import predict_positive

    probs = bundle.predict_classical(extract_features(images, bundle.feature_set))
    probs["cnn"] = predict_positive(bundle.load_cnn(), images, batch_size=4)
    combined = bundle.combine(probs)
    assert combined.shape == (5,) and np.all((combined >= 0) & (combined <= 1))
    np.testing.assert_array_equal(combined, bundle.combine(probs))


def test_rank_members_orders_by_auc():
    labels = np.array([0, 0, 1, 1])
    columns = np.array([[0.1, 0.9, 0.4], [0.2, 0.8, 0.6], [0.9, 0.7, 0.5], [0.8, 0.1, 0.7]])
    assert rank_members(columns, labels, ("good", "bad", "fair")) == ("good", "fair", "bad")


def test_train_rejects_unknown_model_before_work(tmp_path):
    with pytest.raises(ValueError, match="unknown models"):
        train(_config(tmp_path, tmp_path / "out", ("knn", "xgboost")))


def _job(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "jobs/train.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_job_train_help():
    result = _job("--help")
    assert result.returncode == 0
    for option in ("--data", "--out", "--min-agree", "--models", "--seed", "--cv-seeds"):
        assert option in result.stdout


def test_job_train_bad_backbone_size_exits_2_before_work(tmp_path):
    data = tmp_path / "data"
    write_photos(data / "positive", 2, seed=1, max_side=120)
    write_photos(data / "negative", 2, seed=2, max_side=120)
    result = _job("--data", str(data), "--out", str(tmp_path / "out"), "--backbone-size", "300")
    assert result.returncode == 2
    assert "multiple of 32" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "data folder not found"),
    ("empty", "no labelled images"),
    ("one_class", "need images of both classes"),
    ("missing_files", "names 1 missing files"),
    ("out_under_file", "is not writable"),
    ("out_not_bundle", "exists and is not a model bundle"),
])
def test_job_train_bad_input_exits_2_with_one_line(tmp_path, case, message):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    if case == "missing":
        data = tmp_path / "nowhere"
    elif case in ("one_class", "out_under_file", "out_not_bundle", "missing_files"):
        write_photos(data / "positive", 2, seed=1, max_side=120)
        if case != "one_class":
            write_photos(data / "negative", 2, seed=2, max_side=120)
    if case == "missing_files":
        (data / "labels.csv").write_text("path,label\npositive/photo_000000.jpg,positive\n"
                                         "negative/gone.jpg,negative\n")
    elif case == "out_under_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "bundle"
    elif case == "out_not_bundle":
        out.mkdir()
        (out / "keep.txt").write_text("x")
    result = _job("--data", str(data), "--out", str(out), "--models", "knn")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_puts_ablation_and_what_was_tried_in_card_and_command(agree_folder, tmp_path):
    rows = [{"features": "hue", "model": "logreg", "length": 12,
             "mean": {"accuracy": 0.61, "balanced_accuracy": 0.6},
             "std": {"accuracy": 0.02, "balanced_accuracy": 0.03}}]
    (tmp_path / "ablation.json").write_text(json.dumps({"meta": {"n": 36}, "rows": rows}))
    (tmp_path / "tried.md").write_text("Tried a face cue: no gain.\n")
    bundle = train(_config(agree_folder, tmp_path / "b", ("logreg",), cv_seeds=(0,)),
                   ablation=[tmp_path / "ablation.json"], tried=tmp_path / "tried.md")
    manifest = _manifest(bundle)
    assert [table["rows"] for table in manifest["ablation"]] == [rows]
    assert manifest["tried"] == "Tried a face cue: no gain."
    assert manifest["training"]["command"].endswith(
        f"--ablation {tmp_path / 'ablation.json'} --tried {tmp_path / 'tried.md'}")
    card = (bundle / "report" / "MODEL_CARD.md").read_text()
    assert "| hue | 12 | logreg | 0.610 ± 0.020 | 0.600 ± 0.030 |" in card
    assert "## What was tried\n\nTried a face cue: no gain." in card


def test_job_train_bad_ablation_file_exits_2_before_training(agree_folder, tmp_path):
    result = _job("--data", str(agree_folder), "--out", str(tmp_path / "out"), "--models",
                  "logreg", "--ablation", str(tmp_path / "missing.json"))
    assert result.returncode == 2
    assert "ablation file not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def effnet_run(tmp_path_factory) -> Path:
    """Two small sources and one scored-only set, with the pretrained backbone's models."""
    base = tmp_path_factory.mktemp("sources")
    first = _photo_folder(base / "first", 24)
    second = _photo_folder(base / "second", 16)
    # the same picture in both sources must end up in one CV group
    shutil.copy(next((first / "positive").iterdir()), second / "positive" / "copy.jpg")
    rows = []  # the second source also names each image's emotion category (two per category)
    for label, categories in (("positive", EMOTION_CATEGORIES[:4]),
                              ("negative", EMOTION_CATEGORIES[4:])):
        files = sorted((second / label).iterdir())
        rows += [f"{label}/{path.name},{label},{categories[index % 4]}"
                 for index, path in enumerate(files)]
    (second / "labels.csv").write_text("path,label,emotion\n" + "\n".join(rows) + "\n")
    aside = _photo_folder(base / "aside", 12)
    out = tmp_path_factory.mktemp("effnet") / "bundle"
    return train(_config((str(first), str(second)), out, ("effnet", "effnet_logreg", "logreg"),
                         cv_seeds=(0,), eval_data=(str(aside),)))


def test_train_effnet_on_two_sources_records_backbone_and_transfer(effnet_run):
    from artsy.models.backbone_weights import backbone_manifest

    manifest = _manifest(effnet_run)
    assert manifest["backbone"]["sha256"] == backbone_manifest()["sha256"]
    assert manifest["backbone"]["embedding"] == "multilevel"  # the default
    assert manifest["backbone"]["image_size"] == 288
    assert "--backbone-size 288" in manifest["training"]["command"]
    assert not any(name.endswith(".npz") for name in manifest["files"])  # referred to, not copied
    assert manifest["models"]["effnet"]["kind"] == "embedding"
    assert set(manifest["data"]["sources"]) == {"first", "second"}
    assert manifest["data"]["n_images"] == 41
    assert len(manifest["data"]["near_duplicate_pairs"]) >= 1
    assert {"all", "first", "second"} <= set(manifest["metrics"]["effnet"])
    row = manifest["metrics"]["ensemble"]["second"]
    assert row["n"] == 17 and 0.0 <= row["predicted_positive"] <= 1.0
    transfer = {(tuple(row["trained_on"]), row["scored"]): row for row in manifest["transfer"]}
    assert set(transfer) == {(("first",), "second"), (("first",), "aside"),
                             (("first", "second"), "aside")}
    scores = transfer[("first", "second"), "aside"]["models"]
    assert set(scores) == {"effnet", "effnet_logreg", "logreg", "ensemble"}
    assert 0.0 <= scores["ensemble"]["balanced_accuracy"] <= 1.0
    emotion = manifest["emotion"]
    assert emotion["n"] == 17 and emotion["trained_on"] == ["second"]
    assert 0.0 <= emotion["mean"]["accuracy"] <= 1.0 and "emotion.skops" in manifest["files"]
    assert set(emotion["first_seed"]["per_category"]) == set(EMOTION_CATEGORIES)
    card = (effnet_run / "report" / "MODEL_CARD.md").read_text()
    assert "## Beyond the training data" in card and "efficientnet-lite0" in card
    assert "## Which emotion" in card and "| fear |" in card
    assert (effnet_run / "report" / "confusion_emotion.png").is_file()
    assert "--eval-data" in manifest["training"]["command"]


def test_effnet_bundle_labels_through_the_backbone(effnet_run, tmp_path):
    from artsy.models import backbone

    bundle = load_bundle(effnet_run)
    assert bundle.crop_size == 288 and bundle.actor_member  # the default --backbone-size
    assert set(bundle.embedding_names) <= {"effnet", "effnet_logreg"}
    paths = write_photos(tmp_path, 4, seed=7, max_side=300)
    decoded = decode_labelled(paths, size=bundle.image_size, crop=bundle.crop_size)
    probs = bundle.predict_classical(extract_features(decoded.images, bundle.feature_set))
    embeddings = backbone.embed(decoded.crops, model=bundle.load_backbone())
    assert embeddings.shape == (4, bundle.backbone["embedding_size"])
    probs.update(bundle.predict_embedding(embeddings))
    combined = bundle.combine(probs)
    assert combined.shape == (4,) and np.all((combined >= 0) & (combined <= 1))
    assert bundle.has_emotion
    categories = bundle.predict_emotion(embeddings, combined)
    assert categories.shape == (4, len(EMOTION_CATEGORIES))
    np.testing.assert_allclose(categories.sum(axis=1), 1.0, rtol=1e-6)
