"""Face cue: the bundled cascade finds the astronaut's face in a decoded square, not the cat's."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from artsy.features import faces
from artsy.io import decode_image


def _square(array: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return decode_image(buffer.getvalue(), size=100).pixels


def test_faces_finds_the_astronaut_face_where_it_is():
    portrait = _square(skimage.data.astronaut())
    count, any_face, area, x, y = faces.face_features_batch(portrait[None])[0]
    assert count >= 1 and any_face == 1.0
    assert 0.02 < area < 0.3
    assert 0.3 < x < 0.6 and 0.1 < y < 0.4  # her face: left of centre, upper third
    closer = faces.face_features_batch(_square(skimage.data.astronaut()[:300, 100:400])[None])[0]
    assert closer[1] == 1.0 and closer[2] > 1.5 * area  # a tighter crop: a larger face


def test_faces_no_face_gives_the_documented_defaults():
    images = np.stack([_square(skimage.data.chelsea()), np.full((100, 100, 3), 128, np.uint8)])
    np.testing.assert_array_equal(faces.face_features_batch(images),
                                  [[0.0, 0.0, 0.0, 0.5, 0.5]] * 2)
    assert faces.face_features_batch(np.zeros((0, 100, 100, 3), np.uint8)).shape == (0, 5)
    assert faces.face_numbers(np.zeros((10, 10))).tolist() == [0.0, 0.0, 0.0, 0.5, 0.5]
    assert len(faces.FACE_NAMES) == 5


def test_faces_rejects_a_single_image_without_batch_axis():
    with pytest.raises(ValueError, match="add a batch axis"):
        faces.face_features_batch(np.zeros((100, 100, 3), np.uint8))
