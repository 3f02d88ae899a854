"""Fast numpy image primitives for small images: colour conversions, LBP codes, GLCM properties.

scikit-image's general-purpose ``rgb2hsv`` / ``rgb2lab`` / ``local_binary_pattern`` /
``graycoprops`` cost more than all of :mod:`artsy.features.affect`'s features together at 100x100.
The colour
conversions and GLCM properties here give scikit-image's numbers (tested); the LBP uses the 8
integer neighbours of the 3x3 square (scikit-image interpolates the diagonal ones on a circle).
The ``batch_*`` helpers, :func:`glcm`, :func:`sobel` and :func:`laplace` work on a whole
``(n, H, W)`` batch at once, so :mod:`artsy.features.affect` pays numpy's per-call overhead once
per batch.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy import ndimage

_LBP_POINTS = 8

# sRGB -> linear lookup table and the D65 RGB -> XYZ matrix (IEC 61966-2-1), as in skimage.color.
_CODES = np.arange(256) / 255.0
_LINEAR = np.where(_CODES > 0.04045, ((_CODES + 0.055) / 1.055) ** 2.4, _CODES / 12.92)
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ_D65 = _RGB_TO_XYZ.T / _D65  # RGB -> XYZ / white point in one product


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a float RGB image in [0, 1] to hue, saturation and value (as ``skimage.color``).

    Parameters
    ----------
    rgb : (H, W, 3) float ndarray

    Returns
    -------
    hue, saturation, value : (H, W) float64 ndarrays in [0, 1]
    """
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = np.maximum(np.maximum(red, green), blue)
    delta = value - np.minimum(np.minimum(red, green), blue)
    is_red, is_green = value == red, value == green
    # One division: the sector's difference over delta, plus the sector's offset (0, 2 or 4).
    difference = np.where(is_red, green - blue, np.where(is_green, blue - red, red - green))
    offset = np.where(is_red, 0.0, np.where(is_green, 2.0, 4.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        saturation = np.where(value > 0, delta / value, 0.0)
        hue = difference / delta + offset
    hue = np.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
    return hue, saturation, value


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """Convert a uint8 sRGB image to CIE L*a*b* (D65, 2°), matching ``skimage.color.rgb2lab``.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray

    Returns
    -------
    (H, W, 3) float64 ndarray
        L* in [0, 100], a* and b* roughly in [-128, 127].
    """
    xyz = _LINEAR[image] @ _RGB_TO_XYZ_D65
    f = np.cbrt(xyz)
    linear = xyz <= 0.008856
    f[linear] = 7.787 * xyz[linear] + 16.0 / 116.0
    lab = np.empty_like(f)
    np.subtract(116.0 * f[..., 1], 16.0, out=lab[..., 0])
    np.multiply(500.0, f[..., 0] - f[..., 1], out=lab[..., 1])
    np.multiply(200.0, f[..., 1] - f[..., 2], out=lab[..., 2])
    return lab


def _uniform_lbp_table() -> np.ndarray:
    """Map each 8-bit LBP code to its rotation-invariant uniform label (0..8; 9 = non-uniform)."""
    bits = (np.arange(256)[:, None] >> np.arange(_LBP_POINTS)) & 1
    transitions = np.sum(bits != np.roll(bits, 1, axis=1), axis=1)
    return np.where(transitions <= 2, bits.sum(axis=1), _LBP_POINTS + 1).astype(np.intp)


#: Uniform label (0..8; 9 = non-uniform) of each 8-bit LBP code.
UNIFORM_LBP = _uniform_lbp_table()
# The 8 neighbours on the 3x3 square, in circular order.
_LBP_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def lbp_codes(grey8: np.ndarray) -> np.ndarray:
    """8-neighbour LBP codes of the interior pixels (neighbour >= centre sets the bit).

    Works on one ``(H, W)`` image or a batch ``(..., H, W)`` (the last two axes are the image).
    """
    centre = grey8[..., 1:-1, 1:-1]
    height, width = grey8.shape[-2:]
    codes = np.zeros(centre.shape, dtype=np.uint8)
    for bit, (dy, dx) in enumerate(_LBP_OFFSETS):
        neighbour = grey8[..., 1 + dy: height - 1 + dy, 1 + dx: width - 1 + dx]
        codes |= (neighbour >= centre).view(np.uint8) << np.uint8(bit)
    return codes


def glcm(levels: np.ndarray, n_levels: int, distances: tuple[int, ...]) -> np.ndarray:
    """Symmetric, normalised grey-level co-occurrence matrices at 0° and 90° of a batch.

    Equals ``skimage.feature.graycomatrix(image, distances, (0, pi / 2), n_levels,
    symmetric=True, normed=True)`` for each image, with a leading batch axis.

    Parameters
    ----------
    levels : (n, H, W) integer ndarray
        Grey levels in ``0 .. n_levels - 1``.
    n_levels : int
    distances : tuple of int

    Returns
    -------
    (n, n_levels, n_levels, len(distances), 2) float64 ndarray
    """
    n = levels.shape[0]
    levels = levels.astype(np.intp)
    offset = (np.arange(n, dtype=np.intp) * n_levels * n_levels)[:, None, None]
    out = np.empty((n, n_levels, n_levels, len(distances), 2))
    for index, distance in enumerate(distances):
        pairs = ((levels[:, :, :-distance], levels[:, :, distance:]),
                 (levels[:, :-distance, :], levels[:, distance:, :]))
        for angle, (first, second) in enumerate(pairs):
            counts = np.bincount((offset + first * n_levels + second).ravel(),
                                 minlength=n * n_levels * n_levels)
            counts = counts.reshape(n, n_levels, n_levels).astype(np.float64)
            counts += counts.transpose(0, 2, 1)
            total = counts.sum(axis=(1, 2), keepdims=True)
            out[..., index, angle] = counts / np.where(total == 0, 1.0, total)
    return out


def glcm_props(matrix: np.ndarray) -> np.ndarray:
    """Contrast, dissimilarity, homogeneity, energy, correlation of GLCMs, averaged over angles.

    Same definitions as ``skimage.feature.graycoprops`` (energy = sqrt(ASM)), computed in one pass.

    Parameters
    ----------
    matrix : (..., levels, levels, n_distances, n_angles) float ndarray
        From ``graycomatrix(..., normed=True)`` or :func:`glcm` (leading batch axes allowed).

    Returns
    -------
    (..., n_distances, 5) float64 ndarray
        Columns in Contrast, dissimilarity, homogeneity, energy and correlation order.
    """
    levels = matrix.shape[-4]
    i, j = np.ogrid[:levels, :levels]
    weights = np.stack([(i - j) ** 2, np.abs(i - j), 1.0 / (1.0 + (i - j) ** 2)])
    contrast, dissimilarity, homogeneity = np.moveaxis(
        np.einsum("wij,...ijda->...wda", weights, matrix), -3, 0)
    energy = np.sqrt(np.einsum("...ijda,...ijda->...da", matrix, matrix))
    index = np.arange(levels, dtype=np.float64)
    mean_i = np.einsum("i,...ijda->...da", index, matrix)
    mean_j = np.einsum("j,...ijda->...da", index, matrix)
    var_i = np.einsum("i,...ijda->...da", index**2, matrix) - mean_i**2
    var_j = np.einsum("j,...ijda->...da", index**2, matrix) - mean_j**2
    cross = np.einsum("i,j,...ijda->...da", index, index, matrix) - mean_i * mean_j
    std = np.sqrt(np.clip(var_i, 0, None) * np.clip(var_j, 0, None))
    correlation = np.where(std > 1e-15, cross / np.where(std > 1e-15, std, 1.0), 1.0)
    props = np.stack([contrast, dissimilarity, homogeneity, energy, correlation], axis=-1)
    return props.mean(axis=-2)


def batch_mean(array: np.ndarray) -> np.ndarray:
    """Per-image mean of an ``(n, ...)`` batch: ``(n,)``."""
    return array.reshape(array.shape[0], -1).mean(axis=1)


def batch_std(array: np.ndarray) -> np.ndarray:
    """Per-image standard deviation of an ``(n, ...)`` batch: ``(n,)``."""
    return array.reshape(array.shape[0], -1).std(axis=1)


def batch_bincount(codes: np.ndarray, bins: int,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Per-image ``np.bincount`` of integer codes in ``0 .. bins - 1`` in one call.

    Parameters
    ----------
    codes : (n, ...) integer ndarray
    bins : int
    weights : (n, ...) float ndarray, optional

    Returns
    -------
    (n, bins) float64 ndarray
    """
    n = codes.shape[0]
    flat = codes.reshape(n, -1).astype(np.intp) + (np.arange(n, dtype=np.intp) * bins)[:, None]
    flat_weights = None if weights is None else weights.reshape(n, -1).ravel()
    return np.bincount(flat.ravel(), weights=flat_weights, minlength=n * bins).reshape(
        n, bins).astype(np.float64)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round values in [0, 1] to uint8 codes ``0 .. 255``."""
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def sobel(grey: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.ndimage.sobel(image, axis - 1)`` of each image of an ``(n, H, W)`` batch."""
    derivative = ndimage.correlate1d(grey, [-1, 0, 1], axis=axis)
    return ndimage.correlate1d(derivative, [1, 2, 1], axis=3 - axis)


def laplace(grey: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.laplace(image)`` of each image of an ``(n, H, W)`` batch."""
    return (ndimage.correlate1d(grey, [1, -2, 1], axis=1)
            + ndimage.correlate1d(grey, [1, -2, 1], axis=2))


@cache
def spectrum_bins(height: int, width: int, radii: tuple[float, ...],
                  orientations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ring x orientation bin of each FFT frequency inside the rings, their flat indices, window.

    Rings lie between consecutive ``radii`` (cycles per image); ``orientations`` equal sectors
    of [0, pi). Returns the bins, the flat FFT indices they belong to and a Hann window.
    """
    rows = np.fft.fftfreq(height)[:, None] * height
    cols = np.fft.fftfreq(width)[None, :] * width
    radius = np.hypot(rows, cols)
    ring = np.digitize(radius, radii) - 1
    angle = np.mod(np.arctan2(rows, cols), np.pi)
    orientation = np.minimum((angle / np.pi * orientations).astype(np.intp),
                             orientations - 1)
    rings = len(radii) - 1
    bins = np.where((ring >= 0) & (ring < rings), ring * orientations + orientation, -1)
    inside = np.flatnonzero(bins.ravel() >= 0)
    window = np.outer(np.hanning(height), np.hanning(width))
    return bins.ravel()[inside], inside, window


@cache
def thirds_band_and_border(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The rule-of-thirds band and the 20 % border of an image, as boolean masks."""
    thirds_band = np.zeros((height, width), dtype=bool)
    for line in (height // 3, 2 * height // 3):
        thirds_band[max(0, line - height // 12): line + height // 12] = True
    for line in (width // 3, 2 * width // 3):
        thirds_band[:, max(0, line - width // 12): line + width // 12] = True
    rows, cols = max(1, int(height * 0.2)), max(1, int(width * 0.2))
    border = np.zeros((height, width), dtype=bool)
    border[:rows], border[-rows:], border[:, :cols], border[:, -cols:] = True, True, True, True
    return thirds_band, border
