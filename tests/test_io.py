"""Tests for artsy.io: safe, EXIF-aware decoding to a square RGB array."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsy.io import DecodedImage, ImageDecodeError, decode_image
from artsy.testing import write_photos


def _encode(image: Image.Image, format: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hostile_corpus(tmp_path_factory, badinputs_script) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "corpus"
    subprocess.run([sys.executable, str(badinputs_script), str(root)], check=True,
                   capture_output=True, timeout=120)
    return root


def test_decode_image_returns_square_uint8_rgb(photo_dir):
    path = sorted(photo_dir.iterdir())[0]
    decoded = decode_image(path.read_bytes(), size=64)
    assert isinstance(decoded, DecodedImage)
    assert decoded.pixels.shape == (64, 64, 3)
    assert decoded.pixels.dtype == np.uint8
    with Image.open(path) as original:
        assert (decoded.width, decoded.height) == original.size


def test_decode_image_hostile_corpus_matches_manifest(hostile_corpus):
    """Every file the manifest calls ok decodes; every error file raises ImageDecodeError."""
    rows = list(csv.DictReader((hostile_corpus / "MANIFEST.csv").open(encoding="utf-8")))
    checked = 0
    for row in rows:
        path = hostile_corpus / row["file"]
        if row["expected"] == "skip" or not path.is_file():
            continue  # directories, junk and dangling links are discovery's business
        data = path.read_bytes()
        if row["expected"] == "ok":
            assert decode_image(data).pixels.shape == (100, 100, 3), row["file"]
        else:
            with pytest.raises(ImageDecodeError):
                decode_image(data)
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero_bytes.jpg", "empty file"),
        ("html_named_as.jpg", "not an image"),
        ("bomb_30000x30000.png", "decompression bomb"),
        ("bomb_65535x65535.gif", "decompression bomb"),
        ("truncated_60pct.jpg", "corrupt image data"),
        ("corrupt_idat_data.png", "corrupt image data"),
    ],
)
def test_decode_image_error_reasons_are_specific(hostile_corpus, name, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image((hostile_corpus / name).read_bytes())


def test_decode_image_applies_exif_orientation():
    """A picture stored sideways with Orientation=6 comes out upright."""
    upright = np.zeros((120, 80, 3), np.uint8)
    upright[:40] = (255, 0, 0)  # red band at the top of the upright picture
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what a camera stores
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(_encode(stored, "PNG", exif=exif), size=30)
    assert (decoded.width, decoded.height) == (80, 120)
    assert decoded.pixels[:8, :, 0].mean() > 200 and decoded.pixels[:8, :, 1].mean() < 50
    assert decoded.pixels[-8:, :, 0].mean() < 50


def test_decode_image_composites_alpha_on_white():
    rgba = np.zeros((40, 40, 4), np.uint8)  # black, fully transparent
    decoded = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), size=20)
    assert decoded.pixels.min() == 255


def test_decode_image_scales_16_bit_instead_of_clipping():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    decoded = decode_image(_encode(Image.fromarray(ramp), "PNG"), size=64, draft=False)
    row = decoded.pixels[32, :, 0].astype(int)
    assert row[0] < 10 and row[-1] > 245
    assert 100 < row[32] < 160  # mid-grey, where a clipping convert('RGB') would give 255


def test_decode_image_first_frame_of_animation():
    frames = [Image.new("RGB", (32, 24), colour) for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    pixels = decode_image(buffer.getvalue(), size=10).pixels
    assert pixels[..., 0].mean() > 200 and pixels[..., 1].mean() < 50


def test_decode_image_draft_stays_close_to_full_decode(tmp_path):
    """JPEG draft decoding changes the 100x100 pixels by a small amount (documented tolerance)."""
    paths = write_photos(tmp_path, 8, seed=3, min_side=800, max_side=2000)
    for path in paths:
        data = path.read_bytes()
        fast = decode_image(data, draft=True).pixels.astype(float)
        full = decode_image(data, draft=False).pixels.astype(float)
        assert np.abs(fast - full).mean() < 3.0  # of 255
        assert np.percentile(np.abs(fast - full), 99) < 25


def test_decode_image_is_deterministic(photo_dir):
    data = sorted(photo_dir.iterdir())[1].read_bytes()
    np.testing.assert_array_equal(decode_image(data).pixels, decode_image(data).pixels)


def test_decode_image_rejects_bad_size():
    with pytest.raises(ValueError, match="must be >= 1"):
        decode_image(b"x", size=0)
    with pytest.raises(ValueError, match="must be >= 1"):
        decode_image(b"x", crop=0)


def test_centre_crop_keeps_the_aspect_and_the_middle():
    """A wide image: the crop is its middle square, not the squashed whole."""
    wide = np.zeros((200, 600, 3), dtype=np.uint8)
    wide[:, 200:400] = 255  # a white middle third
    data = _encode(Image.fromarray(wide), "PNG")
    decoded = decode_image(data, size=50, crop=64)
    assert decoded.crop.shape == (64, 64, 3) and decoded.crop.dtype == np.uint8
    assert decoded.crop[:, 2:-2].min() == 255  # all white: only the middle square
    assert decoded.pixels[:, :10].max() == 0 and decoded.pixels.mean() < 128  # squashed whole
    assert decode_image(data, size=50).crop is None


def test_centre_crop_of_a_draft_jpeg_is_close_to_the_full_decode():
    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).resize(
        (1600, 1200), Image.Resampling.BICUBIC)
    data = _encode(photo, "JPEG")
    draft = decode_image(data, size=100, crop=224).crop.astype(float)
    full = decode_image(data, size=100, crop=224, draft=False).crop.astype(float)
    assert np.abs(draft - full).mean() < 3.0
