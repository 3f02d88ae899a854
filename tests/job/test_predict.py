"""The job's stages called directly on batches: error rows and predictors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from artsy.io import read_file
from artsy.job.discover import discover
from artsy.job.predict import (
    CnnPredictor,
    add_classical,
    cached_bundle,
    decode_and_featurize,
    featurize_and_score,
)
from artsy.job.rows import to_output_table
from artsy.job.schema import output_schema
from artsy.models.bundle import load_bundle
from artsy.testing import write_photos


def _batch(folder: Path) -> dict[str, np.ndarray]:
    files = discover([str(folder)])
    return {"path": np.array([item.path for item in files], dtype=object),
            "location": np.array([item.location for item in files], dtype=object)}


@pytest.fixture
def mixed_dir(tmp_path: Path) -> Path:
    """Three photos, a text file named .jpg, an empty file and a dangling link."""
    folder = tmp_path / "mixed"
    write_photos(folder, 3, seed=5, max_side=300)
    (folder / "text.jpg").write_text("not an image")
    (folder / "zero.png").write_bytes(b"")
    os.symlink("gone.jpg", folder / "dangling.jpg")
    return folder


def _decoded(folder: Path, **kwargs) -> dict[str, np.ndarray]:
    return decode_and_featurize(_batch(folder), image_size=100, feature_set="affect", **kwargs)


def test_decode_turns_every_broken_file_into_an_error_row_with_its_reason(mixed_dir):
    out = _decoded(mixed_dir)
    reasons = {Path(path).name: error
               for path, error in zip(out["path"], out["error"], strict=True)}
    assert reasons["dangling.jpg"] == "dangling symlink: target does not exist"
    assert reasons["text.jpg"].startswith("not an image")
    assert reasons["zero.png"] == "empty file"
    assert list(out["status"]).count("ok") == 3
    ok = out["status"] == "ok"
    assert (out["width"][ok] > 0).all() and (out["features"][ok] != 0).any(axis=1).all()
    assert (out["features"][~ok] == 0).all() and out["pixels"].shape == (6, 100, 100, 3)


def test_decode_reports_a_file_deleted_after_discovery(mixed_dir):
    batch = _batch(mixed_dir)
    (mixed_dir / "photo_000000.jpg").unlink()
    out = decode_and_featurize(batch, image_size=100, feature_set="affect")
    index = [Path(path).name for path in out["path"]].index("photo_000000.jpg")
    assert out["status"][index] == "error"
    assert out["error"][index] == "file not found: deleted after discovery"


def test_read_file_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(OSError, match="not a regular file"):
        read_file(os.fsencode(tmp_path / "pipe.jpg"))


def test_predictors_label_ok_rows_and_pass_error_rows_untouched(mixed_dir, job_bundle):
    batch = featurize_and_score(_batch(mixed_dir), bundle_path=str(job_bundle), image_size=100,
                                feature_set="affect")
    assert "features" not in batch and "pixels" in batch
    side = load_bundle(job_bundle).crop_size  # the backbone's input, from the same decode
    assert side == 288 and batch["crops"].shape[1:] == (side, side, 3)
    batch = CnnPredictor(str(job_bundle), batch_size=4, threads=1)(batch)
    assert "pixels" not in batch and "crops" not in batch
    ok = batch["status"] == "ok"
    members = ("knn", "rf", "cnn", "effnet")
    for column in ("p_positive", *(f"p_positive_{name}" for name in members)):
        assert np.isnan(batch[column][~ok]).all()
        assert ((batch[column][ok] >= 0) & (batch[column][ok] <= 1)).all()
    mean = sum(batch[f"p_positive_{name}"] for name in members) / len(members)
    np.testing.assert_allclose(batch["p_positive"][ok], mean[ok], rtol=1e-5)

    models = ("knn", "rf", "effnet", "cnn")
    table = to_output_table(batch, run_id="r", models=models, model_version="v",
                            feature_set="affect")
    assert table.schema.equals(output_schema(models))
    rows = {Path(row["path"]).name: row for row in table.to_pylist()}
    assert rows["zero.png"]["label"] is None and rows["zero.png"]["p_positive"] is None
    assert rows["zero.png"]["content_sha256"] is not None and rows["zero.png"]["width"] is None
    assert rows["dangling.jpg"]["file_size"] is None
    ok_labels = {row["label"] for row in rows.values() if row["status"] == "ok"}
    assert ok_labels <= {"positive", "negative"} and rows["photo_000000.jpg"]["error"] is None


def test_cpu_task_finishes_the_table_when_there_is_no_cnn(mixed_dir, job_bundle_classical):
    batch = add_classical(cached_bundle(str(job_bundle_classical)), _decoded(mixed_dir),
                          combine=True)
    ok = batch["status"] == "ok"
    expected = (batch["p_positive_knn"] + batch["p_positive_rf"]) / 2
    np.testing.assert_allclose(batch["p_positive"][ok], expected[ok], rtol=1e-5)
    finish = {"run_id": "r", "models": ("knn", "rf"), "model_version": "v",
              "feature_set": "affect"}
    table = featurize_and_score(_batch(mixed_dir), bundle_path=str(job_bundle_classical),
                                image_size=100, feature_set="affect", output=finish)
    assert table.schema.equals(output_schema(("knn", "rf")))
    assert table.column("p_positive").to_pylist() == [
        None if np.isnan(value) else value for value in batch["p_positive"].astype(float)]


def test_cnn_actor_returns_the_finished_table_and_skips_error_rows(tmp_path, job_bundle):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    batch = featurize_and_score(_batch(folder), bundle_path=str(job_bundle), image_size=100,
                                feature_set="affect")
    finish = {"run_id": "r", "models": ("knn", "rf", "cnn"), "model_version": "v",
              "feature_set": "affect"}
    table = CnnPredictor(str(job_bundle), batch_size=4, output=finish)(batch)
    row = table.to_pylist()[0]
    assert (row["status"], row["error"], row["p_positive_cnn"]) == ("error", "empty file", None)


def test_shipped_bundle_labels_in_the_actor_which_never_loads_the_classical_models(
        mixed_dir, monkeypatch):
    batch = featurize_and_score(_batch(mixed_dir), bundle_path=None, image_size=100,
                                feature_set="affect")
    ok = batch["status"] == "ok"
    assert "p_positive" not in batch  # a backbone model is an ensemble member: the actor labels
    assert ((batch["p_positive_svm"][ok] > 0) & (batch["p_positive_svm"][ok] < 1)).all()
    monkeypatch.setattr("artsy.job.predict._BUNDLES", {})  # as in a separate actor process
    predictor = CnnPredictor(None, batch_size=8, threads=1)
    out = predictor(batch)
    assert ((out["p_positive"][ok] > 0) & (out["p_positive"][ok] < 1)).all()
    assert np.isnan(out["p_positive"][~ok]).all()
    assert ((out["p_positive_effnet"][ok] > 0) & (out["p_positive_effnet"][ok] < 1)).all()
    assert "classical" not in predictor.bundle._loaded  # heads and combiner only
