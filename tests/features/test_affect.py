"""Tests for artsy.features.affect: group layout, colour conversions and behaviour of the affect
cues."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import color

from artsy.features.affect import (
    AFFECT_GROUPS,
    ALL_GROUPS,
    affect_feature_names,
    affect_features,
)
from artsy.features.imaging import glcm_props, rgb_to_hsv, rgb_to_lab
from artsy.testing import sample_photos


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's bundled 'coffee'), resized to 100x100 by striding."""
    from PIL import Image

    source = sample_photos()[2]
    return np.asarray(Image.fromarray(source).resize((100, 100)), dtype=np.uint8)


def _value(image: np.ndarray, name: str) -> float:
    return float(affect_features(image)[affect_feature_names().index(name)])


def test_group_lengths_and_names_are_unique():
    lengths = {group: len(affect_feature_names([group])) for group in ALL_GROUPS}
    assert lengths == {"colour": 28, "hue": 12, "texture": 21, "colour_lbp": 30, "spectrum": 16,
                       "composition": 12, "layout": 27, "hog": 324}
    names = affect_feature_names()
    assert len(names) == sum(lengths[group] for group in AFFECT_GROUPS) == 119
    assert len(set(affect_feature_names(ALL_GROUPS))) == 470


def test_groups_concatenate_in_order(photo):
    full = affect_features(photo)
    parts = [affect_features(photo, groups=[group]) for group in AFFECT_GROUPS]
    np.testing.assert_array_equal(full, np.concatenate(parts))
    everything = affect_features(photo, groups=ALL_GROUPS)
    assert everything.shape == (470,) and np.array_equal(everything[:119], full)


def test_colour_conversions_match_skimage(photo):
    np.testing.assert_allclose(rgb_to_lab(photo), color.rgb2lab(photo), atol=1e-6)
    np.testing.assert_allclose(np.stack(rgb_to_hsv(photo / 255.0), axis=-1), color.rgb2hsv(photo),
                               atol=1e-12)


def test_glcm_props_match_skimage(photo):
    from skimage import feature

    levels = (color.rgb2gray(photo) * 15).astype(np.uint8)
    matrix = feature.graycomatrix(levels, (1, 4), (0.0, np.pi / 2), levels=16, symmetric=True,
                                  normed=True)
    expected = np.stack([feature.graycoprops(matrix, prop).mean(axis=1) for prop in
                         ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")],
                        axis=1)
    np.testing.assert_allclose(glcm_props(matrix), expected, rtol=1e-10, atol=1e-12)


def test_spectrum_sees_stripe_orientation():
    rows = np.sin(np.arange(100) * 2 * np.pi * 8 / 100)  # 8 cycles down the image
    stripes = np.repeat(((rows[:, None] + 1) * 127.5).astype(np.uint8)[..., None], 3, axis=2)
    stripes = np.broadcast_to(stripes, (100, 100, 3)).copy()
    names = affect_feature_names(["spectrum"])
    values = dict(zip(names, affect_features(stripes, groups=["spectrum"]), strict=True))
    # Power at 8 cycles/image lies in ring 1 (6-12); horizontal stripes vary along rows (90°).
    assert max(values, key=values.get) == "spectrum_r1_o090"


@pytest.mark.parametrize("fill", [0, 128, 255])
def test_flat_images_are_finite(fill):
    out = affect_features(np.full((100, 100, 3), fill, dtype=np.uint8))
    assert np.isfinite(out).all()


def test_saturated_warm_image_reads_as_colourful_and_warm(photo):
    grey = np.repeat(photo.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    red = np.zeros_like(photo)
    red[..., 0] = 220
    assert _value(grey, "colourfulness") < 1.0 < _value(photo, "colourfulness")
    assert _value(red, "frac_warm") == 1.0 and _value(red, "frac_cool") == 0.0
    assert _value(red, "hue_hist_000") == pytest.approx(1.0)
    assert _value(grey, "frac_grey") == 1.0


def test_brightness_raises_pleasure(photo):
    brighter = np.clip(photo.astype(int) + 60, 0, 255).astype(np.uint8)
    assert _value(brighter, "pleasure") > _value(photo, "pleasure")
    assert _value(brighter, "hsv_v_mean") > _value(photo, "hsv_v_mean")


def test_texture_and_edges_respond_to_detail(photo):
    flat = np.full_like(photo, 90)
    assert _value(flat, "edge_density") == 0.0 < _value(photo, "edge_density")
    assert _value(flat, "lbp_u8") == 1.0  # every pixel equals all its neighbours
    assert _value(flat, "lbp_s_u8") == 1.0 and _value(flat, "lbp_a_u8") == 1.0


def test_mirror_symmetric_image_has_no_left_right_asymmetry(photo):
    symmetric = photo.copy()
    symmetric[:, 50:] = photo[:, :50][:, ::-1]
    assert _value(symmetric, "asym_lr") == 0.0 < _value(photo, "asym_lr")


def test_unknown_group_raises():
    with pytest.raises(ValueError, match="non-empty subset of"):
        affect_features(np.zeros((100, 100, 3), np.uint8), groups=["colour", "smell"])
    with pytest.raises(ValueError, match="non-empty subset of"):
        affect_feature_names([])


def test_affect_features_match_saved_reference():
    """Speed work must not move the features: tests/data/affect_reference.npy holds the
    ``affect`` features of six bundled photos as computed before the vectorised rewrite."""
    from pathlib import Path

    from artsy.features import extract_features
    from artsy.io import decode_image

    root = Path(__file__).resolve().parents[2]
    names = ("astronaut.jpg", "camera_greyscale.jpg", "chelsea.jpg", "coffee.jpg",
             "hubble_deep_field.jpg", "rocket.jpg")
    images = np.stack([decode_image((root / "examples" / "images" / name).read_bytes(),
                                    size=100).pixels for name in names])
    reference = np.load(root / "tests" / "data" / "affect_reference.npy")
    batch = extract_features(images, "affect")
    assert batch.shape == reference.shape == (6, 119)
    np.testing.assert_allclose(batch, reference, rtol=1e-4, atol=1e-5)
    singles = np.stack([affect_features(image) for image in images])
    np.testing.assert_allclose(singles, reference, rtol=1e-4, atol=1e-5)


def test_batch_rows_equal_single_image_features(photo):
    from artsy.features.affect import affect_features_batch

    flat = np.full_like(photo, 128)
    images = np.stack([photo, flat, photo[::-1]])
    batch = affect_features_batch(images, groups=ALL_GROUPS)
    singles = np.stack([affect_features(image, groups=ALL_GROUPS) for image in images])
    np.testing.assert_allclose(batch, singles, rtol=1e-9, atol=1e-12)
    assert affect_features_batch(images[:0]).shape == (0, 119)


def test_glcm_matches_skimage(photo):
    from skimage import feature

    from artsy.features.imaging import glcm

    levels = (color.rgb2gray(photo) * 15).astype(np.uint8)
    expected = feature.graycomatrix(levels, (1, 4), (0.0, np.pi / 2), levels=16, symmetric=True,
                                    normed=True)
    batch = glcm(np.stack([levels, levels[::-1]]), 16, (1, 4))
    np.testing.assert_allclose(batch[0], expected, atol=1e-15)
    np.testing.assert_allclose(glcm_props(batch)[0], glcm_props(expected), atol=1e-12)
