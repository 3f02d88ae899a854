"""Tests for artsy.features: the notebook-parity seed set, layouts, dtypes and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from skimage import color, feature
from sklearn.preprocessing import PolynomialFeatures

from artsy.features import (
    FEATURE_SETS,
    colour_moments,
    extract_features,
    feature_names,
    seed_features,
)
from artsy.io import decode_image
from artsy.testing import write_photos


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> np.ndarray:
    """Six real photos decoded the way the batch job decodes them."""
    folder = tmp_path_factory.mktemp("photos")
    paths = write_photos(folder, 6, seed=3, max_side=500)
    return np.stack([decode_image(path.read_bytes(), size=100).pixels for path in paths])


def _notebook_seed(image: np.ndarray) -> np.ndarray:
    """The notebook's features, recomputed with direct scipy / skimage / sklearn calls."""
    channels = image.astype(np.float64).reshape(-1, 3)
    moments = np.concatenate([channels.var(axis=0), stats.skew(channels),
                              stats.kurtosis(channels)])
    poly = PolynomialFeatures(degree=2, include_bias=False).fit_transform(moments[None])[0]
    lightness = color.rgb2lab(image)[..., 0].mean()
    _, hog_image = feature.hog(image, orientations=9, pixels_per_cell=(10, 10),
                               cells_per_block=(2, 2), visualize=True, channel_axis=-1)
    return np.concatenate([moments, [lightness], poly, hog_image.ravel()])


def test_seed_parity_with_notebook_definitions(images):
    for image in images:
        expected = _notebook_seed(image)
        assert expected.size == 10_064
        np.testing.assert_array_equal(seed_features(image), expected)
    np.testing.assert_array_equal(extract_features(images, "seed"),
                                  np.stack([_notebook_seed(i) for i in images]).astype(np.float32))


def test_seed_layout_names():
    names = feature_names("seed")
    assert len(names) == 10_064 and len(set(names)) == 10_064
    assert names[:10] == ("var_r", "var_g", "var_b", "skew_r", "skew_g", "skew_b",
                          "kurt_r", "kurt_g", "kurt_b", "lightness")
    assert names[10] == "poly_var_r" and names[19] == "poly_var_r^2"
    assert names[20] == "poly_var_r*var_g" and names[63] == "poly_kurt_b^2"
    assert names[64] == "hogvis_r0_c0" and names[-1] == "hogvis_r99_c99"
    sklearn_names = PolynomialFeatures(degree=2, include_bias=False).fit(
        np.zeros((1, 9))).get_feature_names_out(names[:9])
    assert tuple(f"poly_{n}".replace(" ", "*") for n in sklearn_names) == names[10:64]


def test_constant_image_moments_are_zero_not_nan():
    grey = np.full((100, 100, 3), 128, dtype=np.uint8)
    assert np.array_equal(colour_moments(grey), np.zeros(9))
    assert np.isfinite(extract_features(grey[None], "seed")).all()


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_extract_shapes_dtype_and_names(images, name):
    out = extract_features(images, name)
    assert out.dtype == np.float32
    assert out.shape == (len(images), len(feature_names(name)))
    assert np.isfinite(out).all()
    assert FEATURE_SETS[name].names == feature_names(name)
    assert extract_features(images[:0], name).shape == (0, len(feature_names(name)))


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_extract_is_pure_and_per_image(images, name):
    batch = extract_features(images, name)
    np.testing.assert_array_equal(batch, extract_features(images, name))
    np.testing.assert_array_equal(batch[2:3], extract_features(images[2:3], name))
    np.testing.assert_array_equal(batch[::-1], extract_features(images[::-1].copy(), name))
    copy = images.copy()
    extract_features(copy, name)
    np.testing.assert_array_equal(copy, images)


def test_unknown_feature_set_raises():
    with pytest.raises(ValueError, match="unknown feature set 'nope'; choose one of"):
        extract_features(np.zeros((1, 100, 100, 3), np.uint8), "nope")
    with pytest.raises(ValueError, match="unknown feature set"):
        feature_names("nope")


@pytest.mark.parametrize("shape", [(100, 100, 3), (2, 64, 64, 3), (2, 100, 100), (2, 100, 100, 4)])
def test_wrong_shape_raises(shape):
    with pytest.raises(ValueError, match=r"must have shape \(n, 100, 100, 3\)"):
        extract_features(np.zeros(shape, np.uint8), "affect")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16, np.int64])
def test_wrong_dtype_raises(dtype):
    with pytest.raises(ValueError, match="must be uint8"):
        extract_features(np.zeros((1, 100, 100, 3), dtype), "affect")
