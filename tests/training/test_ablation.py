"""Feature-group ablation: combination names, cached group features, table and JSON, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsy.features.affect import AFFECT_GROUPS, ALL_GROUPS, affect_feature_names
from artsy.testing import write_photos
from artsy.training import ablation
from artsy.training.dataset import decode_labelled, load_labelled_folder


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """24 real photos in negative/ and positive/ split by brightness."""
    root = tmp_path_factory.mktemp("ablation_photos")
    paths = write_photos(root / "unsorted", 24, seed=8, max_side=200)
    brightness = [np.asarray(Image.open(path)).mean() for path in paths]
    for path, value in zip(paths, brightness, strict=True):
        target = root / ("positive" if value > np.median(brightness) else "negative")
        target.mkdir(exist_ok=True)
        path.rename(target / path.name)
    (root / "unsorted").rmdir()
    return root


@pytest.fixture(scope="module")
def rows_and_cache(photo_folder, tmp_path_factory) -> tuple[list[dict], Path]:
    data = load_labelled_folder(photo_folder)
    images = decode_labelled(data.paths).images
    cache = tmp_path_factory.mktemp("cache")
    rows = ablation.run_ablation(data, images, combinations=("colour", "hue", "colour+hue"),
                                 models=("logreg",), seeds=(0,), n_splits=2, cache=cache)
    return rows, cache


def test_ablation_parse_combination_expands_affect_and_rejects_unknown_groups():
    assert ablation.parse_combination("affect+hog") == (*AFFECT_GROUPS, "hog")
    assert ablation.parse_combination("hue+colour+hue") == ("hue", "colour")
    with pytest.raises(ValueError, match="unknown feature group 'faces'"):
        ablation.parse_combination("colour+faces")


def test_ablation_default_combinations_cover_each_group_and_build_up_to_affect():
    combinations = ablation.default_combinations()
    assert set(ALL_GROUPS) <= set(combinations)
    assert {"affect", "affect+layout", "affect+hog"} <= set(combinations)
    sizes = [len(ablation.parse_combination(spec)) for spec in combinations[len(ALL_GROUPS):]]
    assert sizes == [*range(2, len(AFFECT_GROUPS) + 1), len(AFFECT_GROUPS) + 1,
                     len(AFFECT_GROUPS) + 1]


def test_ablation_rows_lengths_add_up_and_scores_are_valid(rows_and_cache):
    rows, _ = rows_and_cache
    assert [(row["features"], row["model"]) for row in rows] == [
        ("majority", "majority"), ("colour", "logreg"), ("hue", "logreg"),
        ("colour+hue", "logreg")]
    lengths = {row["features"]: row["length"] for row in rows}
    assert lengths["colour"] == len(affect_feature_names(("colour",)))
    assert lengths["colour+hue"] == lengths["colour"] + lengths["hue"]
    for row in rows:
        assert row["n"] == 24
        assert 0.0 <= row["mean"]["balanced_accuracy"] <= 1.0
        assert row["std"]["accuracy"] >= 0.0
    assert rows[0]["mean"]["balanced_accuracy"] == 0.5


def test_ablation_group_features_are_cached_and_reused(rows_and_cache, photo_folder):
    _, cache = rows_and_cache
    files = sorted(path.name for path in cache.glob("*.npy"))
    assert len(files) == 2 and files[0].endswith("_100_colour.npy")
    data = load_labelled_folder(photo_folder)
    images = decode_labelled(data.paths).images
    key = files[0].split("_")[0]
    fresh = ablation.group_features(images, "hue")
    np.testing.assert_allclose(np.load(cache / f"{key}_100_hue.npy"), fresh)
    marked = np.full_like(fresh, 7.0)
    np.save(cache / f"{key}_100_hue.npy", marked)  # a cached file is read, not recomputed
    assert np.all(ablation.group_features(images, "hue", cache=cache, key=key) == 7.0)


def test_ablation_table_and_json_hold_every_row(rows_and_cache, tmp_path):
    rows, _ = rows_and_cache
    table, json_path = ablation.write_ablation(rows, tmp_path / "out" / "ablation.md",
                                               {"data": "photos", "min_agree": None, "n": 24})
    lines = table.read_text().splitlines()
    assert lines[2] == "| features | numbers | model | accuracy | balanced accuracy |"
    body = [line for line in lines[4:] if line]
    assert len(body) == len(rows)
    assert body[3].startswith("| colour+hue | 40 | logreg | ")
    assert body[3].count("±") == 2
    saved = json.loads(json_path.read_text())
    assert json_path.name == "ablation.json" and saved["rows"] == rows
    assert saved["meta"]["n"] == 24


def test_ablation_rejects_unknown_model_and_mismatched_images(photo_folder):
    data = load_labelled_folder(photo_folder)
    images = np.zeros((len(data), 100, 100, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="unknown models"):
        ablation.run_ablation(data, images, combinations=("hue",), models=("xgboost",))
    with pytest.raises(ValueError, match="images for"):
        ablation.run_ablation(data, images[:3], combinations=("hue",), cache=None)
    with pytest.raises(ValueError, match="unknown feature group"):
        ablation.group_features(images, "affect")


def test_ablation_command_line_exits_2_on_a_bad_group(photo_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ablation.main(["--data", str(photo_folder), "--out", str(tmp_path / "a.md"),
                       "--combinations", "colour+glow"])
    assert exit_info.value.code == 2
    assert "unknown feature group 'glow'" in capsys.readouterr().err
    assert not (tmp_path / "a.md").exists()
