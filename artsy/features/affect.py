"""Affect-carrying image features: colour, hue, texture, composition, layout and HOG groups.

Every function here is pure and cheap: the groups are vectorised over a batch of ``(100, 100, 3)``
uint8 images (colour conversions, LBP / GLCM and filter primitives come from
:mod:`artsy.features.imaging`).
:func:`affect_features` (one image) and :func:`affect_features_batch` (``(n, 100, 100, 3)``)
concatenate the groups named in ``AFFECT_GROUPS``; :func:`affect_feature_names` gives the names.

Groups (lengths at 100x100; the ``affect`` set is ``AFFECT_GROUPS``, 119 numbers)
----------------------------------------------------------------------------------
``colour`` (28)
    Saturation and value (HSV) mean, std and 10/50/90th percentiles (1/255 resolution); Lab L*,
    a*, b* mean and std; saturation-weighted circular hue mean (cos, sin) and its resultant length;
    fractions of dark, bright, grey, warm and cool pixels; Hasler–Süsstrunk colourfulness;
    Valdez–Mehrabian pleasure, arousal and dominance from mean S and V.
``hue`` (12)
    Saturation-weighted hue histogram (30° bins starting at red), divided by the pixel count.
``texture`` (21)
    Uniform LBP histogram of the grey image (8 neighbours on the 3x3 square, interior pixels; 10
    bins), grey-level entropy, and GLCM contrast, dissimilarity, homogeneity, energy and
    correlation at distances 1 and 4 (16 grey levels, averaged over 0° and 90°).
``colour_lbp`` (30)
    The same LBP histogram of the saturation, value and a* (red-green) channels.
``spectrum`` (16)
    Log mean power of the windowed grey-image FFT in 4 frequency rings (3-6-12-25-50 cycles per
    image) x 4 orientations: coarse scene layout and texture scale (a GIST-like envelope).
``composition`` (12)
    Gradient magnitude mean, edge density, centre-to-whole edge ratio, Laplacian variance
    (sharpness) and its centre-to-whole ratio, rule-of-thirds centre minus whole for S and V,
    centre-to-border Lab distance, left-right and top-bottom asymmetry, the fraction of edges in
    the rule-of-thirds band, and the value contrast between top and bottom halves.
``layout`` (27, optional)
    Mean Lab colour of each cell of a 3x3 grid (row-major).
``hog`` (324, optional)
    The HOG descriptor of the grey image (9 orientations, 25x25-pixel cells, 2x2-cell blocks,
    L2-Hys), not the visualisation picture.

References
----------
.. [1] Hasler, D. and Süsstrunk, S. "Measuring colourfulness in natural images", SPIE 2003.
.. [2] Valdez, P. and Mehrabian, A. "Effects of color on emotions", J. Exp. Psych. 1994.
.. [3] Machajdik, J. and Hanbury, A. "Affective image classification using features inspired by
   psychology and art theory", ACM MM 2010.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from skimage import feature

from artsy.features import imaging

#: Feature groups of the ``affect`` set (the default), in output order.
AFFECT_GROUPS: tuple[str, ...] = ("colour", "hue", "texture", "colour_lbp", "spectrum",
                                  "composition")
#: Every group :func:`affect_features` can compute (``layout`` and ``hog`` lowered CV accuracy).
ALL_GROUPS: tuple[str, ...] = AFFECT_GROUPS + ("layout", "hog")

HUE_BINS = 12
QUANTILES = (0.1, 0.5, 0.9)
LBP_POINTS = 8
GLCM_LEVELS = 16
GLCM_DISTANCES = (1, 4)
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")
SPECTRUM_RADII = (3, 6, 12, 25, 50)  # ring edges in cycles per image; 4 rings
SPECTRUM_ORIENTATIONS = 4
LAYOUT_GRID = 3
HOG_ORIENTATIONS = 9
HOG_PIXELS_PER_CELL = (25, 25)
HOG_CELLS_PER_BLOCK = (2, 2)
EDGE_THRESHOLD = 0.1  # gradient magnitude (grey in [0, 1]) that counts as an edge
SATURATION_GREY = 0.1
VALUE_DARK, VALUE_BRIGHT = 0.2, 0.8

_GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray


class _Views(NamedTuple):
    """Colour spaces shared by the groups, each computed once per batch of ``n`` images."""

    rgb: np.ndarray  # (n, H, W, 3) float64 in [0, 1]
    hue: np.ndarray  # (n, H, W) in [0, 1)
    saturation: np.ndarray  # (n, H, W) in [0, 1]
    value: np.ndarray  # (n, H, W) in [0, 1]
    lab: np.ndarray  # (n, H, W, 3) CIE L*a*b* (D65)
    grey: np.ndarray  # (n, H, W) in [0, 1]


def _views(images: np.ndarray) -> _Views:
    rgb = images / 255.0
    hue, saturation, value = imaging.rgb_to_hsv(rgb)
    return _Views(rgb, hue, saturation, value, imaging.rgb_to_lab(images), rgb @ _GREY_WEIGHTS)


_mean, _std = imaging.batch_mean, imaging.batch_std  # per-image statistics of a batch


def _quantiles(values: np.ndarray) -> np.ndarray:
    """``QUANTILES`` of values in [0, 1] at 1/255 resolution (lower bin edge): ``(n, 3)``."""
    counts = imaging.batch_bincount(imaging.to_uint8(values), 256)
    cumulative = np.cumsum(counts, axis=1) / counts[0].sum()
    # np.searchsorted(cumulative, q) (side="left") == number of entries below q.
    return np.stack([(cumulative < q).sum(axis=1) for q in QUANTILES], axis=1) / 255.0


def _colour(views: _Views) -> np.ndarray:
    saturation, value = views.saturation, views.value
    n = saturation.shape[0]
    lab = np.ascontiguousarray(np.moveaxis(views.lab.reshape(n, -1, 3), 2, 1))  # (n, 3, H * W)
    angle = 2.0 * np.pi * views.hue
    hue_cos = _mean(saturation * np.cos(angle))
    hue_sin = _mean(saturation * np.sin(angle))
    coloured = saturation > SATURATION_GREY
    degrees = views.hue * 360.0
    warm = coloured & ((degrees < 75.0) | (degrees >= 330.0))
    cool = coloured & (degrees >= 150.0) & (degrees < 270.0)
    rgb = views.rgb * 255.0
    red_green = rgb[..., 0] - rgb[..., 1]
    yellow_blue = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourfulness = np.hypot(_std(red_green), _std(yellow_blue)) + 0.3 * np.hypot(
        _mean(red_green), _mean(yellow_blue))
    s_mean, v_mean = _mean(saturation), _mean(value)
    pleasure = _mean(0.69 * value + 0.22 * saturation)
    arousal = _mean(-0.31 * value + 0.60 * saturation)
    dominance = _mean(-0.76 * value + 0.32 * saturation)
    return np.column_stack([
        s_mean, _std(saturation), _quantiles(saturation),
        v_mean, _std(value), _quantiles(value),
        lab.mean(axis=2), lab.std(axis=2),
        hue_cos, hue_sin, np.hypot(hue_cos, hue_sin),
        _mean(value < VALUE_DARK), _mean(value > VALUE_BRIGHT), _mean(~coloured),
        _mean(warm), _mean(cool), colourfulness, pleasure, arousal, dominance,
    ])


def _hue(views: _Views) -> np.ndarray:
    bins = np.minimum((views.hue * HUE_BINS).astype(np.intp), HUE_BINS - 1)
    return imaging.batch_bincount(bins, HUE_BINS, views.saturation) / views.hue[0].size


def _lbp_histograms(channel8: np.ndarray) -> np.ndarray:
    codes = imaging.UNIFORM_LBP[imaging.lbp_codes(channel8)]
    return imaging.batch_bincount(codes, LBP_POINTS + 2) / codes[0].size


def _texture(views: _Views) -> np.ndarray:
    grey8 = imaging.to_uint8(views.grey)
    levels = grey8 // (256 // GLCM_LEVELS)
    histogram = imaging.batch_bincount(levels, GLCM_LEVELS) / levels[0].size
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.sum(np.where(histogram > 0, histogram * np.log2(histogram), 0.0), axis=1)
    props = imaging.glcm_props(imaging.glcm(levels, GLCM_LEVELS, GLCM_DISTANCES))
    return np.column_stack([_lbp_histograms(grey8), entropy, props.reshape(len(levels), -1)])


def _colour_lbp(views: _Views) -> np.ndarray:
    channels = (views.saturation, views.value, views.lab[..., 1] / 255.0 + 0.5)
    return np.column_stack([_lbp_histograms(imaging.to_uint8(channel)) for channel in channels])


def _spectrum(views: _Views) -> np.ndarray:
    grey = views.grey
    bins, inside, window = imaging.spectrum_bins(*grey.shape[1:], SPECTRUM_RADII,
                                                 SPECTRUM_ORIENTATIONS)
    centred = (grey - _mean(grey)[:, None, None]) * window
    power = np.abs(np.fft.fft2(centred)) ** 2
    n_bins = (len(SPECTRUM_RADII) - 1) * SPECTRUM_ORIENTATIONS
    selected = power.reshape(len(grey), -1)[:, inside]
    totals = imaging.batch_bincount(np.broadcast_to(bins, selected.shape), n_bins, selected)
    counts = np.bincount(bins, minlength=n_bins)
    return np.log(totals / np.maximum(counts, 1) + 1e-9)


def _centre(array: np.ndarray) -> np.ndarray:
    """The middle third of each image of an ``(n, H, W, ...)`` batch."""
    height, width = array.shape[1:3]
    return array[:, height // 3: 2 * height // 3, width // 3: 2 * width // 3]


def _composition(views: _Views) -> np.ndarray:
    grey = views.grey
    n, height, width = grey.shape
    magnitude = np.hypot(imaging.sobel(grey, 1), imaging.sobel(grey, 2)) / 8.0
    edges = magnitude > EDGE_THRESHOLD
    laplace = imaging.laplace(grey)
    tiny = 1e-9
    thirds_band, border = imaging.thirds_band_and_border(height, width)
    centre_lab = _centre(views.lab).reshape(n, -1, 3).mean(axis=1)
    border_lab = views.lab[:, border].mean(axis=1)
    value = views.value
    magnitude_mean, laplace_var = _mean(magnitude), laplace.reshape(n, -1).var(axis=1)
    return np.column_stack([
        magnitude_mean,
        _mean(edges),
        _mean(_centre(magnitude)) / (magnitude_mean + tiny),
        laplace_var,
        _centre(laplace).reshape(n, -1).var(axis=1) / (laplace_var + tiny),
        _mean(_centre(views.saturation)) - _mean(views.saturation),
        _mean(_centre(value)) - _mean(value),
        np.linalg.norm(centre_lab - border_lab, axis=1),
        _mean(np.abs(grey - grey[:, :, ::-1])),
        _mean(np.abs(grey - grey[:, ::-1, :])),
        (edges & thirds_band).reshape(n, -1).sum(axis=1) / (edges.reshape(n, -1).sum(axis=1)
                                                           + tiny),
        np.abs(_mean(value[:, : height // 2]) - _mean(value[:, height // 2:])),
    ])


def _layout(views: _Views) -> np.ndarray:
    n, height, width = views.grey.shape
    rows = np.array_split(np.arange(height), LAYOUT_GRID)
    cols = np.array_split(np.arange(width), LAYOUT_GRID)
    cells = [views.lab[:, r[0]: r[-1] + 1, c[0]: c[-1] + 1].reshape(n, -1, 3).mean(axis=1)
             for r in rows for c in cols]
    return np.concatenate(cells, axis=1)


def _hog(views: _Views) -> np.ndarray:
    return np.stack([feature.hog(grey, orientations=HOG_ORIENTATIONS,
                                 pixels_per_cell=HOG_PIXELS_PER_CELL,
                                 cells_per_block=HOG_CELLS_PER_BLOCK, block_norm="L2-Hys",
                                 feature_vector=True) for grey in views.grey])


_GROUP_FUNCTIONS: dict[str, Callable[[_Views], np.ndarray]] = {
    "colour": _colour, "hue": _hue, "texture": _texture, "colour_lbp": _colour_lbp,
    "spectrum": _spectrum, "composition": _composition, "layout": _layout, "hog": _hog,
}


def _group_names(group: str, *, image_size: int = 100) -> tuple[str, ...]:
    if group == "colour":
        stats = ("mean", "std", "p10", "p50", "p90")
        return (tuple(f"hsv_s_{s}" for s in stats) + tuple(f"hsv_v_{s}" for s in stats)
                + tuple(f"lab_{c}_mean" for c in "lab") + tuple(f"lab_{c}_std" for c in "lab")
                + ("hue_wcos", "hue_wsin", "hue_wresultant", "frac_dark", "frac_bright",
                   "frac_grey", "frac_warm", "frac_cool", "colourfulness", "pleasure", "arousal",
                   "dominance"))
    if group == "hue":
        width = 360 // HUE_BINS
        return tuple(f"hue_hist_{b * width:03d}" for b in range(HUE_BINS))
    if group == "texture":
        return (tuple(f"lbp_u{code}" for code in range(LBP_POINTS + 2)) + ("grey_entropy",)
                + tuple(f"glcm_{prop}_d{d}" for d in GLCM_DISTANCES for prop in GLCM_PROPS))
    if group == "colour_lbp":
        return tuple(f"lbp_{channel}_u{code}" for channel in ("s", "v", "a")
                     for code in range(LBP_POINTS + 2))
    if group == "spectrum":
        return tuple(f"spectrum_r{ring}_o{orientation * 180 // SPECTRUM_ORIENTATIONS:03d}"
                     for ring in range(len(SPECTRUM_RADII) - 1)
                     for orientation in range(SPECTRUM_ORIENTATIONS))
    if group == "composition":
        return ("grad_mean", "edge_density", "edge_centre_ratio", "laplace_var",
                "laplace_centre_ratio", "thirds_s_centre_minus_all", "thirds_v_centre_minus_all",
                "centre_border_lab_dist", "asym_lr", "asym_tb", "edges_in_thirds_band",
                "v_top_bottom_contrast")
    if group == "layout":
        return tuple(f"layout_r{r}c{c}_{ch}" for r in range(LAYOUT_GRID)
                     for c in range(LAYOUT_GRID) for ch in "lab")
    if group == "hog":
        cells = [image_size // p for p in HOG_PIXELS_PER_CELL]
        blocks = [n - b + 1 for n, b in zip(cells, HOG_CELLS_PER_BLOCK, strict=True)]
        return tuple(f"hog_b{br}_{bc}_c{cr}_{cc}_o{o}" for br in range(blocks[0])
                     for bc in range(blocks[1]) for cr in range(HOG_CELLS_PER_BLOCK[0])
                     for cc in range(HOG_CELLS_PER_BLOCK[1]) for o in range(HOG_ORIENTATIONS))
    raise ValueError(f"unknown affect group {group!r}; choose from {ALL_GROUPS}")


def _check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    groups = tuple(groups)
    unknown = [g for g in groups if g not in _GROUP_FUNCTIONS]
    if unknown or not groups:
        raise ValueError(f"groups must be a non-empty subset of {ALL_GROUPS}, got {groups}")
    return groups


def affect_feature_names(groups: Sequence[str] = AFFECT_GROUPS) -> tuple[str, ...]:
    """Names of :func:`affect_features`' outputs, in order, for a 100x100 image.

    Parameters
    ----------
    groups : sequence of str, default=AFFECT_GROUPS
        Which groups, in output order.

    Returns
    -------
    tuple of str

    Raises
    ------
    ValueError
        If a group is unknown.
    """
    return tuple(name for group in _check_groups(groups) for name in _group_names(group))


def affect_features(image: np.ndarray, *, groups: Sequence[str] = AFFECT_GROUPS) -> np.ndarray:
    """Affect-carrying features of one RGB image (see the module docstring for the layout).

    Parameters
    ----------
    image : (100, 100, 3) uint8 ndarray
        One RGB image as made by :func:`artsy.io.decode_image`.
    groups : sequence of str, default=AFFECT_GROUPS
        Which groups to compute, in output order.

    Returns
    -------
    (d,) float64 ndarray
        ``d == len(affect_feature_names(groups))``; finite for any uint8 image.

    Raises
    ------
    ValueError
        If a group is unknown.
    """
    return affect_features_batch(np.asarray(image, dtype=np.uint8)[None], groups=groups)[0]


def affect_features_batch(images: np.ndarray, *,
                          groups: Sequence[str] = AFFECT_GROUPS) -> np.ndarray:
    """:func:`affect_features` of a whole batch at once (vectorised over the batch axis).

    Parameters
    ----------
    images : (n, 100, 100, 3) uint8 ndarray
        RGB images as made by :func:`artsy.io.decode_image`.
    groups : sequence of str, default=AFFECT_GROUPS
        Which groups to compute, in output order.

    Returns
    -------
    (n, d) float64 ndarray
        Row ``i`` equals ``affect_features(images[i], groups=groups)`` up to rounding.

    Raises
    ------
    ValueError
        If a group is unknown.
    """
    groups = _check_groups(groups)
    images = np.asarray(images, dtype=np.uint8)
    if images.shape[0] == 0:
        return np.empty((0, len(affect_feature_names(groups))))
    views = _views(images)
    values = np.concatenate([_GROUP_FUNCTIONS[group](views) for group in groups], axis=1)
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
