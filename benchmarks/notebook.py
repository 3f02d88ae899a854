"""The notebook's features, written the way the notebook (and a Ray Data docs reader) would.

This is the *baseline's* code, kept inside ``benchmarks/`` on purpose: it must not speed up when
artsy's own ``seed`` feature set is optimised. Layout (10 064 numbers per image, as in issue 2):
per-channel variance, skewness and kurtosis (9), mean lightness (1), the degree-2 polynomial terms
of the 9 moments with the originals (54), and the 100x100 HOG *visualisation image* from
``skimage.feature.hog(..., visualize=True)`` (10 000).
"""

from __future__ import annotations

import numpy as np

#: HOG settings of the notebook (the same as :class:`artsy.config.ArtsyConfig`'s defaults).
HOG_ORIENTATIONS = 9
HOG_PIXELS_PER_CELL = (10, 10)
HOG_CELLS_PER_BLOCK = (2, 2)


def colour_moments(image: np.ndarray) -> np.ndarray:
    """Return per-channel variance, skewness and kurtosis of an ``(H, W, 3)`` image, shape (9,)."""
    from scipy import stats

    channels = image.reshape(-1, 3).astype(np.float64)
    return np.concatenate([channels.var(axis=0), stats.skew(channels, axis=0),
                           stats.kurtosis(channels, axis=0)])


def mean_lightness(image: np.ndarray) -> float:
    """Return the mean CIE L* of an RGB uint8 image (skimage ``rgb2lab``)."""
    from skimage import color

    return float(color.rgb2lab(image)[..., 0].mean())


def hog_picture(image: np.ndarray) -> np.ndarray:
    """Return the HOG visualisation image (not the descriptor), flattened to ``(H * W,)``."""
    from skimage import feature

    _, picture = feature.hog(image, orientations=HOG_ORIENTATIONS,
                             pixels_per_cell=HOG_PIXELS_PER_CELL,
                             cells_per_block=HOG_CELLS_PER_BLOCK, visualize=True, channel_axis=-1)
    return picture.ravel()


def notebook_features(images: np.ndarray) -> np.ndarray:
    """Return the notebook's ``(n, 10 064)`` feature matrix of ``(n, 100, 100, 3)`` uint8 images."""
    from sklearn.preprocessing import PolynomialFeatures

    moments = np.stack([colour_moments(image) for image in images])
    lightness = np.array([[mean_lightness(image)] for image in images])
    polynomial = PolynomialFeatures(degree=2, include_bias=False).fit_transform(moments)
    pictures = np.stack([hog_picture(image) for image in images])
    return np.hstack([moments, lightness, polynomial, pictures])


def load_notebook_style(path: str, size: int = 100) -> np.ndarray:
    """Load one image the notebook's way: full decode, RGB, resize (no JPEG draft, no EXIF)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size)), dtype=np.uint8)


def notebook_loop(paths: list[str]) -> np.ndarray:
    """The notebook's sequential loop: load every image, then compute the feature matrix."""
    images = np.stack([load_notebook_style(path) for path in paths])
    return notebook_features(images)


def peer_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``map_batches`` function of the Ray Data docs pattern: image column in, features out."""
    return {"features": notebook_features(batch["image"]).astype(np.float32)}
