"""Fixtures shared by the model tests."""

from __future__ import annotations

import numpy as np
import pytest

from artsy.io import decode_image
from artsy.testing import write_photos


@pytest.fixture(scope="module")
def labelled_photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """24 decoded real photos and a learnable label: brighter than the median is "positive"."""
    folder = tmp_path_factory.mktemp("cnn_photos")
    paths = write_photos(folder, 24, seed=11, max_side=300)
    images = np.stack([decode_image(path.read_bytes(), size=100).pixels for path in paths])
    brightness = images.reshape(len(images), -1).mean(axis=1)
    labels = (brightness > np.median(brightness)).astype(np.int64)
    return images, labels
