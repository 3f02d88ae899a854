"""Labelled folders: labels.csv and class sub-folders, agreement subsets, clear errors, decoding."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from artsy.testing import write_photos
from artsy.training.dataset import data_fingerprint, decode_labelled, load_labelled_folder


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """4 negative and 6 positive real photos in class sub-folders, plus a stray text file."""
    root = tmp_path / "data"
    write_photos(root / "negative", 4, seed=1, max_side=200)
    for index, path in enumerate(write_photos(root / "positive" / "nested", 6, seed=2,
                                              max_side=200)):
        path.rename(path.with_name(f"111_222_media{index}.jpg"))
    (root / "positive" / "notes.txt").write_text("not an image")
    (root / "positive" / ".hidden.jpg").write_bytes(b"")
    return root


def _write_csv(root: Path, rows: list[str], header: str = "path,label,agree_min") -> None:
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")


def test_dataset_labels_from_class_folders(class_folder):
    images = load_labelled_folder(class_folder)
    assert len(images) == 10
    assert images.labels.tolist() == [0] * 4 + [1] * 6
    assert images.agree is None
    assert images.relative_paths[0] == "negative/photo_000000.jpg"
    assert images.relative_paths[-1] == "positive/nested/111_222_media5.jpg"
    assert images.groups[-1] == "media5"
    assert all(Path(path).is_absolute() and Path(path).is_file() for path in images.paths)


def test_dataset_labels_csv_wins_and_min_agree_filters(class_folder):
    rows = [f"negative/photo_{i:06d}.jpg,negative,{3 + i % 3}" for i in range(4)]
    rows += [f"positive/nested/111_222_media{i}.jpg,1,{3 + i % 3}" for i in range(6)]
    _write_csv(class_folder, rows)
    everything = load_labelled_folder(class_folder)
    assert everything.agree.tolist() == [3, 4, 5, 3, 3, 4, 5, 3, 4, 5]
    strict = load_labelled_folder(class_folder, min_agree=5)
    assert len(strict) == 3 and set(strict.agree.tolist()) == {5}
    assert strict.labels.tolist() == [0, 1, 1]


def test_dataset_twitter_subsets_have_paper_counts(twitter_dir):
    for min_agree, counts in ((None, [500, 769]), (4, [427, 689]), (5, [301, 581])):
        images = load_labelled_folder(twitter_dir, min_agree=min_agree)
        assert np.bincount(images.labels).tolist() == counts
    assert len(set(load_labelled_folder(twitter_dir).groups)) == 1269 - 13


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "data folder not found"),
    ("empty", "no labelled images in"),
    ("one_class", r"need images of both classes .* got negative 0, positive 6"),
    ("unknown_folder", r"unknown label folders \['happy'\]"),
    ("unknown_label", r"line 2: unknown label 'joy'"),
    ("missing_files", r"names 2 missing files, e\.g\. gone/a\.jpg, gone/b\.jpg"),
    ("escaping_path", "must be relative and inside"),
    ("no_agree", "min_agree=4 needs an agree_min column"),
    ("bad_header", "needs a header with columns path,label"),
    ("min_agree_one_class", r"with agree_min >= 5, got negative 0"),
])
def test_dataset_bad_folders_raise_clear_errors(class_folder, tmp_path, setup, message):
    root, min_agree = class_folder, None
    if setup == "missing":
        root = tmp_path / "nowhere"
    elif setup == "empty":
        root = tmp_path / "empty"
        root.mkdir()
    elif setup == "one_class":
        shutil.rmtree(class_folder / "negative")
    elif setup == "unknown_folder":
        (class_folder / "happy").mkdir()
    elif setup == "unknown_label":
        _write_csv(class_folder, ["negative/photo_000000.jpg,joy,5"])
    elif setup == "missing_files":
        _write_csv(class_folder, ["negative/photo_000000.jpg,negative,5", "gone/a.jpg,positive,5",
                                  "gone/b.jpg,positive,5"])
    elif setup == "escaping_path":
        _write_csv(class_folder, ["../outside.jpg,negative,5"])
    elif setup == "no_agree":
        _write_csv(class_folder, ["negative/photo_000000.jpg,negative"], header="path,label")
        min_agree = 4
    elif setup == "bad_header":
        _write_csv(class_folder, ["negative/photo_000000.jpg,negative"], header="file,class")
    elif setup == "min_agree_one_class":
        _write_csv(class_folder, ["negative/photo_000000.jpg,negative,3",
                                  "positive/nested/111_222_media0.jpg,positive,5"])
        min_agree = 5
    with pytest.raises(ValueError, match=message) as caught:
        load_labelled_folder(root, min_agree=min_agree)
    assert "\n" not in str(caught.value)


def test_dataset_fingerprint_tracks_bytes_and_labels(class_folder):
    first = data_fingerprint(load_labelled_folder(class_folder))
    assert first == data_fingerprint(load_labelled_folder(class_folder))
    victim = class_folder / "negative" / "photo_000000.jpg"
    victim.write_bytes(victim.read_bytes() + b"\0")
    second = data_fingerprint(load_labelled_folder(class_folder))
    shutil.move(victim, class_folder / "positive" / victim.name)
    third = data_fingerprint(load_labelled_folder(class_folder))
    assert len({first, second, third}) == 3


def test_dataset_decode_lists_failures_without_crashing(class_folder):
    (class_folder / "negative" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (class_folder / "negative" / "empty.png").write_bytes(b"")
    images = load_labelled_folder(class_folder)
    decoded = decode_labelled(images.paths, size=32)
    pixels, ok_mask, failures = decoded.images, decoded.ok_mask, decoded.failures
    assert pixels.shape == (12, 32, 32, 3) and pixels.dtype == np.uint8
    assert ok_mask.sum() == 10
    assert [Path(path).name for path, _ in failures] == ["broken.jpg", "empty.png"]
    assert failures[1][1] == "empty file"
    assert not pixels[~ok_mask].any() and pixels[ok_mask].any()
