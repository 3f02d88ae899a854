"""The job's stages called directly on batches: error rows and predictors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from artsy.discover import discover
from artsy.io import read_file
from artsy.predict import (
    ClassicalPredictor,
    CnnPredictor,
    decode_and_featurize,
    to_output_table,
)
from artsy.schema import output_schema
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
    batch = _decoded(mixed_dir)
    batch = ClassicalPredictor(str(job_bundle))(batch)
    assert "features" not in batch
    batch = CnnPredictor(str(job_bundle), batch_size=4, threads=1)(batch)
    assert "pixels" not in batch
    ok = batch["status"] == "ok"
    for column in ("p_positive", "p_positive_knn", "p_positive_rf", "p_positive_cnn"):
        assert np.isnan(batch[column][~ok]).all()
        assert ((batch[column][ok] >= 0) & (batch[column][ok] <= 1)).all()
    mean = (batch["p_positive_knn"] + batch["p_positive_rf"] + batch["p_positive_cnn"]) / 3
    np.testing.assert_allclose(batch["p_positive"][ok], mean[ok], rtol=1e-5)

    models = ("knn", "rf", "cnn")
    table = to_output_table(batch, run_id="r", models=models, model_version="v",
                            feature_set="affect")
    assert table.schema.equals(output_schema(models))
    rows = {Path(row["path"]).name: row for row in table.to_pylist()}
    assert rows["zero.png"]["label"] is None and rows["zero.png"]["p_positive"] is None
    assert rows["zero.png"]["content_sha256"] is not None and rows["zero.png"]["width"] is None
    assert rows["dangling.jpg"]["file_size"] is None
    ok_labels = {row["label"] for row in rows.values() if row["status"] == "ok"}
    assert ok_labels <= {"positive", "negative"} and rows["photo_000000.jpg"]["error"] is None


def test_classical_predictor_combines_when_there_is_no_cnn(mixed_dir, job_bundle_classical):
    batch = ClassicalPredictor(str(job_bundle_classical), combine=True)(_decoded(mixed_dir))
    assert "pixels" not in batch
    ok = batch["status"] == "ok"
    expected = (batch["p_positive_knn"] + batch["p_positive_rf"]) / 2
    np.testing.assert_allclose(batch["p_positive"][ok], expected[ok], rtol=1e-5)


def test_cnn_predictor_loads_tensorflow_only_for_new_images(tmp_path, job_bundle):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    batch = ClassicalPredictor(str(job_bundle))(_decoded(folder))
    predictor = CnnPredictor(str(job_bundle), batch_size=4)
    out = predictor(batch)
    assert predictor.model is None and np.isnan(out["p_positive_cnn"]).all()
