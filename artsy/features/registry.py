"""Feature sets: pure per-image functions with a named layout, and batch extraction.

``FEATURE_SETS`` maps a name to a :class:`FeatureSet`; :func:`extract_features` applies one to a
batch of decoded ``(100, 100, 3)`` uint8 images and returns ``(n, d)`` float32.

``seed`` (10 064 numbers) replays the notebook this project descends from:

====================  ======  ==================================================================
names                 count   definition (image as float64 values in 0..255, channels R, G, B)
====================  ======  ==================================================================
``var_r`` .. ``var_b``  3     per-channel variance, ``numpy.var`` (ddof=0)
``skew_r`` ..           3     ``scipy.stats.skew`` (defaults: bias=True)
``kurt_r`` ..           3     ``scipy.stats.kurtosis`` (defaults: Fisher, bias=True)
``lightness``           1     mean of the L* channel of ``skimage.color.rgb2lab`` (0..100)
``poly_*``             54     ``PolynomialFeatures(degree=2, include_bias=False)`` of the 9
                              moments above (9 originals, then 45 products, sklearn's order)
``hogvis_r{i}_c{j}``   10000  the HOG *visualisation image* of
                              ``skimage.feature.hog(image, orientations=9,
                              pixels_per_cell=(10, 10), cells_per_block=(2, 2), visualize=True,
                              channel_axis=-1)``, flattened row-major
====================  ======  ==================================================================

Moments of a constant channel are undefined (NaN in scipy); they are written as 0.

``affect`` (119 numbers, the default of :class:`artsy.config.ArtsyConfig`) is described in
:mod:`artsy.features.affect`. ``affect_hog`` appends the true HOG descriptor (324) to it; it scored
lower in
grouped cross-validation on Twitter I, so it is not the default.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial

import numpy as np
from scipy import stats
from skimage import color, feature

from artsy.features.affect import (
    AFFECT_GROUPS,
    affect_feature_names,
    affect_features,
    affect_features_batch,
)
from artsy.features.faces import FACE_NAMES

logger = logging.getLogger(__name__)

#: Side of the square images every feature set is defined on.
IMAGE_SIZE = 100
_CHUNK = 8  # images per vectorised call: float64 temporaries stay in cache (64 was ~1.4x slower)
SEED_HOG_ORIENTATIONS = 9
SEED_HOG_PIXELS_PER_CELL = (10, 10)
SEED_HOG_CELLS_PER_BLOCK = (2, 2)
_CHANNELS = "rgb"
_MOMENTS = tuple(f"{stat}_{c}" for stat in ("var", "skew", "kurt") for c in _CHANNELS)


@dataclass(frozen=True)
class FeatureSet:
    """A named feature set.

    Attributes
    ----------
    name : str
        Registry key.
    function : callable
        Pure ``(100, 100, 3) uint8 -> (d,)`` float function.
    names : tuple of str
        The ``d`` output names, in order.
    description : str
        One line for model cards.
    batch_function : callable or None
        Optional ``(n, 100, 100, 3) uint8 -> (n, d)`` equivalent of ``function`` (faster).
    """

    name: str
    function: Callable[[np.ndarray], np.ndarray]
    names: tuple[str, ...]
    description: str
    batch_function: Callable[[np.ndarray], np.ndarray] | None = None


def colour_moments(image: np.ndarray) -> np.ndarray:
    """Per-channel variance, skewness and kurtosis (the notebook's 9 colour moments).

    Parameters
    ----------
    image : (M, N, 3) uint8 ndarray

    Returns
    -------
    (9,) float64 ndarray
        ``var_r, var_g, var_b, skew_r, skew_g, skew_b, kurt_r, kurt_g, kurt_b``; 0 where undefined.
    """
    channels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    if np.all(channels == channels[:1]):  # constant: skew / kurtosis undefined
        return np.zeros(9)
    with np.errstate(all="ignore"):
        moments = np.concatenate([
            np.var(channels, axis=0), stats.skew(channels, axis=0), stats.kurtosis(channels, axis=0)
        ])
    return np.nan_to_num(moments, nan=0.0)


def _poly_names() -> tuple[str, ...]:
    pairs = itertools.combinations_with_replacement(_MOMENTS, 2)
    return tuple(f"poly_{m}" for m in _MOMENTS) + tuple(
        f"poly_{a}^2" if a == b else f"poly_{a}*{b}" for a, b in pairs)


def _poly_degree2(values: np.ndarray) -> np.ndarray:
    """Degree-2 polynomial terms without bias, in ``PolynomialFeatures`` order."""
    upper = np.triu_indices(values.size)
    return np.concatenate([values, np.outer(values, values)[upper]])


def seed_features(image: np.ndarray) -> np.ndarray:
    """The notebook's 10 064 features of one image (layout in the module docstring).

    Parameters
    ----------
    image : (100, 100, 3) uint8 ndarray

    Returns
    -------
    (10064,) float64 ndarray
    """
    image = np.asarray(image, dtype=np.uint8)
    moments = colour_moments(image)
    lightness = color.rgb2lab(image)[..., 0].mean()
    _, hog_image = feature.hog(image, orientations=SEED_HOG_ORIENTATIONS,
                               pixels_per_cell=SEED_HOG_PIXELS_PER_CELL,
                               cells_per_block=SEED_HOG_CELLS_PER_BLOCK, visualize=True,
                               channel_axis=-1)
    return np.concatenate([moments, [lightness], _poly_degree2(moments), hog_image.ravel()])


@cache
def _seed_names() -> tuple[str, ...]:
    hog = tuple(f"hogvis_r{r}_c{c}" for r in range(IMAGE_SIZE) for c in range(IMAGE_SIZE))
    return _MOMENTS + ("lightness",) + _poly_names() + hog


def _registry() -> dict[str, FeatureSet]:
    return {
        "seed": FeatureSet("seed", seed_features, _seed_names(),
                           "notebook replay: 9 colour moments, lightness, their degree-2 "
                           "polynomial (54), 10 000-pixel HOG visualisation"),
        "affect": FeatureSet("affect", affect_features, affect_feature_names(),
                             "HSV/Lab colour statistics, colourfulness, saturation-weighted hue "
                             "histogram, grey and colour LBP, GLCM, Fourier spectrum envelope, "
                             "edge/composition measures (119)", affect_features_batch),
        "affect_hog": FeatureSet("affect_hog", affect_hog_features,
                                 affect_feature_names(_AFFECT_HOG_GROUPS),
                                 "the affect set plus the 324-long grey HOG descriptor (443)",
                                 partial(affect_features_batch, groups=_AFFECT_HOG_GROUPS)),
        "affect_faces": FeatureSet("affect_faces", affect_faces_features,
                                   affect_feature_names() + FACE_NAMES,
                                   "the affect set plus 5 face-cascade numbers (124): more "
                                   "accurate, about 2.5x the feature cost per image",
                                   affect_faces_batch),
    }


_AFFECT_HOG_GROUPS = AFFECT_GROUPS + ("hog",)


def affect_faces_batch(images: np.ndarray) -> np.ndarray:
    """The ``affect`` features followed by :func:`artsy.features.faces.face_features_batch` (124
    each)."""
    from artsy.features.faces import face_features_batch

    images = np.asarray(images, dtype=np.uint8)
    return np.concatenate([affect_features_batch(images), face_features_batch(images)], axis=1)


def affect_faces_features(image: np.ndarray) -> np.ndarray:
    """One image's ``affect_faces`` features, ``(124,)``."""
    return affect_faces_batch(np.asarray(image, dtype=np.uint8)[None])[0]


def affect_hog_features(image: np.ndarray) -> np.ndarray:
    """The ``affect`` features followed by the HOG descriptor (see :mod:`artsy.features.affect`).

    Parameters
    ----------
    image : (100, 100, 3) uint8 ndarray

    Returns
    -------
    (443,) float64 ndarray
    """
    return affect_features(image, groups=_AFFECT_HOG_GROUPS)


#: Registered feature sets by name (building it only makes name tuples).
FEATURE_SETS: dict[str, FeatureSet] = _registry()


def _get(name: str) -> FeatureSet:
    if name not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {name!r}; choose one of {sorted(FEATURE_SETS)}")
    return FEATURE_SETS[name]


def feature_names(name: str) -> tuple[str, ...]:
    """Names of the columns :func:`extract_features` returns for feature set ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not in ``FEATURE_SETS``.
    """
    return _get(name).names


def extract_features(images: np.ndarray, feature_set: str) -> np.ndarray:
    """Apply one feature set to a batch of images.

    Parameters
    ----------
    images : (n, 100, 100, 3) uint8 ndarray
        Decoded RGB images (``artsy.io.decode_image(data, size=100).pixels``), ``n >= 0``.
    feature_set : str
        A key of ``FEATURE_SETS``.

    Returns
    -------
    (n, d) float32 ndarray
        ``d == len(feature_names(feature_set))``.

    Raises
    ------
    ValueError
        If the feature set is unknown or ``images`` has the wrong shape or dtype.
    """
    spec = _get(feature_set)
    images = np.asarray(images)
    expected = (IMAGE_SIZE, IMAGE_SIZE, 3)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"images must have shape (n, {IMAGE_SIZE}, {IMAGE_SIZE}, 3), got "
                         f"{images.shape}; decode with artsy.io.decode_image(data, size="
                         f"{IMAGE_SIZE}) and stack (add a batch axis for one image)")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB in 0..255, got dtype {images.dtype}; "
                         "convert with np.clip(x, 0, 255).astype(np.uint8)")
    out = np.empty((images.shape[0], len(spec.names)), dtype=np.float32)
    if spec.batch_function is not None:
        for start in range(0, images.shape[0], _CHUNK):  # bounds the float64 temporaries
            out[start: start + _CHUNK] = spec.batch_function(images[start: start + _CHUNK])
        return out
    for index, image in enumerate(images):
        out[index] = spec.function(image)
    return out
