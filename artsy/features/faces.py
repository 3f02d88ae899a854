"""Face cue from the LBP frontal-face cascade that ships inside scikit-image (nothing fetched).

Faces are searched in the decoded ``(100, 100, 3)`` uint8 square every artsy feature set gets, so
the cue fits :class:`artsy.features.FeatureSet` as it is. Five numbers per image
(``FACE_NAMES``): face count, any face (0 / 1), largest face area as a fraction of the image, and
the largest face's centre (x, y in [0, 1]; 0.5 when there is no face).

Measured on Twitter I 5-agree (grouped 5-fold x 3 seeds, ``benchmarks/face_cue.py``): appended to
``affect`` it raised the stacked svm + logreg + rf ensemble from 0.756 / 0.707 to 0.768 / 0.723
(accuracy / balanced), at about 14 ms of one core per image (the ``affect`` features take ~7 ms).

References
----------
.. [1] Liao, S., Zhu, X., Lei, Z., Zhang, L. and Li, S. Z. "Learning multi-scale block local
   binary patterns for face recognition", ICB 2007 (the cascade's features; the trained cascade
   is OpenCV's ``lbpcascade_frontalface``, bundled by scikit-image).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

#: Output names of :func:`face_features_batch`, in order.
FACE_NAMES: tuple[str, ...] = ("face_count", "face_any", "face_largest_area", "face_largest_x",
                               "face_largest_y")
#: Detection settings (image pyramid step, sliding-window step, smallest face in pixels).
SCALE_FACTOR = 1.2
STEP_RATIO = 1.0
MIN_FACE = 20
_GREY = np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray
_NO_FACE = np.array([0.0, 0.0, 0.0, 0.5, 0.5])
_local = threading.local()  # one detector per thread (the Cython cascade is not shared)


def face_detector() -> Any:
    """This thread's ``skimage.feature.Cascade`` loaded from scikit-image's bundled XML."""
    if getattr(_local, "detector", None) is None:
        import skimage.data
        from skimage.feature import Cascade

        _local.detector = Cascade(skimage.data.lbp_frontal_face_cascade_filename())
    return _local.detector


def face_numbers(grey: np.ndarray, *, detector: Any = None, scale_factor: float = SCALE_FACTOR,
                 step_ratio: float = STEP_RATIO) -> np.ndarray:
    """The five face numbers of one grey image.

    Parameters
    ----------
    grey : (H, W) float ndarray
        Grey values in [0, 1]; any size of at least ``MIN_FACE`` pixels a side.
    detector : skimage.feature.Cascade or None, default=None
        None uses :func:`face_detector`.
    scale_factor, step_ratio : float, default=SCALE_FACTOR, STEP_RATIO
        ``Cascade.detect_multi_scale`` pyramid and window steps (larger: faster, fewer faces).

    Returns
    -------
    (5,) float64 ndarray
        In ``FACE_NAMES`` order.
    """
    grey = np.asarray(grey, dtype=np.float64)
    height, width = grey.shape
    if min(height, width) < MIN_FACE:
        return _NO_FACE.copy()
    faces = (detector or face_detector()).detect_multi_scale(
        img=grey, scale_factor=scale_factor, step_ratio=step_ratio,
        min_size=(MIN_FACE, MIN_FACE), max_size=(height, width))
    if not faces:
        return _NO_FACE.copy()
    largest = max(faces, key=lambda face: face["width"] * face["height"])
    return np.array([len(faces), 1.0, largest["width"] * largest["height"] / (height * width),
                     (largest["c"] + largest["width"] / 2) / width,
                     (largest["r"] + largest["height"] / 2) / height])


def face_features_batch(images: np.ndarray) -> np.ndarray:
    """Face numbers of a batch of decoded RGB squares.

    Parameters
    ----------
    images : (n, H, W, 3) uint8 ndarray
        As made by :func:`artsy.io.decode_image` (``H == W == 100`` in every feature set).

    Returns
    -------
    (n, 5) float64 ndarray

    Raises
    ------
    ValueError
        If ``images`` is not ``(n, H, W, 3)``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must have shape (n, H, W, 3), got {images.shape}; stack "
                         "decoded RGB images (add a batch axis for one image)")
    detector = face_detector()
    rows = [face_numbers(image @ _GREY / 255.0, detector=detector) for image in images]
    return np.stack(rows) if rows else np.empty((0, len(FACE_NAMES)))
