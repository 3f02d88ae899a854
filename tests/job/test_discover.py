"""Discovery: recursion, extensions, hidden files and junk, symlinks, odd names, URIs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artsy.io import read_file
from artsy.job.discover import discover, display_path, is_image_name


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder with every discovery case: nested, hidden, junk, links, a folder named .jpg."""
    root = tmp_path / "in"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "album.jpg").mkdir()
    (root / ".hidden_dir").mkdir()
    for name in ["a.jpg", "B.JPEG", "c.Png", "nested/deeper/d.webp", "album.jpg/e.tif",
                 ".hidden_dir/f.jpg", ".g.jpg", "._h.jpg", "notes.txt", "Thumbs.db"]:
        (root / name).write_bytes(b"x")
    (root / ".DS_Store").write_bytes(b"junk")
    os.symlink("a.jpg", root / "link_to_a.jpg")
    os.symlink("missing.jpg", root / "dangling.jpg")
    os.symlink(".", root / "loop")
    os.symlink(str(root / "nested"), root / "dir_link")
    return root


def _relative(files, root: Path) -> list[str]:
    return [os.path.relpath(item.path, root) for item in files]


def test_discover_lists_images_recursively_and_skips_junk_hidden_and_folder_links(tree):
    files = discover([str(tree)])
    assert _relative(files, tree) == sorted([
        "B.JPEG", "a.jpg", "album.jpg/e.tif", "c.Png", "dangling.jpg", "link_to_a.jpg",
        "nested/deeper/d.webp"])


def test_discover_keeps_dangling_links_so_they_become_error_rows(tree):
    dangling = [item for item in discover([str(tree)]) if item.path.endswith("dangling.jpg")]
    with pytest.raises(OSError, match="dangling symlink"):
        read_file(dangling[0].location)


def test_discover_is_sorted_and_deduplicates_overlapping_inputs(tree):
    files = discover([str(tree / "nested"), str(tree), str(tree / "a.jpg")])
    paths = [item.path for item in files]
    assert paths == sorted(paths)
    assert len(paths) == len(set(paths)) == 7


def test_discover_lists_an_explicit_file_whatever_its_name(tree):
    files = discover([str(tree / "notes.txt")])
    assert [item.path for item in files] == [str(tree / "notes.txt")]


def test_discover_keeps_file_names_that_are_not_utf8(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9_\xff.jpg"
    with open(raw, "wb") as handle:
        handle.write(b"bytes")
    (item,) = discover([str(tmp_path)])
    assert item.path.endswith("caf\\xe9_\\xff.jpg")
    item.path.encode("utf-8")  # safe for Arrow strings
    assert read_file(item.location) == b"bytes"
    assert display_path(raw) == item.path


def test_discover_reads_file_uris_through_pyarrow_fs(tree):
    files = discover([f"file://{tree}"])
    assert [item.path for item in files][:2] == [f"file://{tree}/B.JPEG", f"file://{tree}/a.jpg"]
    assert not any("/." in item.path for item in files)
    assert read_file(files[0].location) == b"x"


@pytest.mark.parametrize("inputs", [["/definitely/not/here"], []])
def test_discover_refuses_missing_inputs(inputs):
    with pytest.raises(ValueError, match="input"):
        discover(inputs)


def test_is_image_name_is_case_insensitive_and_skips_junk():
    assert is_image_name("X.JPG") and is_image_name("y.tiff")
    assert not is_image_name("._x.jpg") and not is_image_name("notes.txt")
