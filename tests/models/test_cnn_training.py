"""Tests of artsy.models.cnn_training: real TensorFlow, real photos, tiny training runs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from artsy.models import cnn, cnn_training  # noqa: E402


def test_cnn_training_stops_early_and_checkpoints(labelled_photos, tmp_path):
    images, labels = labelled_photos
    model = cnn.build_cnn(seed=5)
    checkpoint = tmp_path / "best.keras"
    history = cnn_training.train_cnn(model, images[:16], labels[:16],
                                     validation_data=(images[16:], labels[16:]), epochs=3,
                                     batch_size=8, seed=5, patience=1,
                                     checkpoint_path=checkpoint)
    assert 1 <= len(history.history["loss"]) <= 3
    assert np.all(np.isfinite(history.history["val_loss"]))
    best = cnn_training.best_epoch(history)
    assert history.history["val_loss"][best - 1] == min(history.history["val_loss"])
    assert checkpoint.is_file()


def test_cnn_training_lowers_the_loss(labelled_photos):
    images, labels = labelled_photos
    model = cnn.build_cnn(seed=1, augment=False, learning_rate=1e-2)
    history = cnn_training.train_cnn(model, images, labels, epochs=6, batch_size=8, seed=1)
    losses = history.history["loss"]
    assert len(losses) == 6  # no validation data: exactly ``epochs`` epochs
    assert min(losses[-2:]) < losses[0]
    assert cnn_training.best_epoch(history) == int(np.argmin(losses)) + 1


def test_cnn_training_same_seed_same_weights(labelled_photos):
    images, labels = labelled_photos

    def weights_after_one_epoch(seed: int) -> list[np.ndarray]:
        model = cnn.build_cnn(seed=seed)
        cnn_training.train_cnn(model, images[:16], labels[:16], epochs=1, batch_size=8,
                               seed=seed)
        return [np.asarray(weight) for weight in model.get_weights()]

    first, again, other = (weights_after_one_epoch(seed) for seed in (3, 3, 4))
    for left, right in zip(first, again, strict=True):
        np.testing.assert_array_equal(left, right)
    assert any(not np.array_equal(left, right) for left, right in zip(first, other, strict=True))


def test_cnn_training_bad_input_raises(labelled_photos):
    images, labels = labelled_photos
    model = cnn.build_cnn()
    with pytest.raises(ValueError, match="labels must be ints"):
        cnn_training.train_cnn(model, images, labels + 2, epochs=1)
    with pytest.raises(ValueError, match="labels for the images"):
        cnn_training.train_cnn(model, images, labels[:-1], epochs=1)
    with pytest.raises(ValueError, match="class_weight"):
        cnn_training.train_cnn(model, images, labels, epochs=1, class_weight="even")
    with pytest.raises(ValueError, match="epochs"):
        cnn_training.train_cnn(model, images, labels, epochs=0)
    with pytest.raises(ValueError, match="shape"):
        cnn_training.train_cnn(model, images[:, :50], labels, epochs=1)


def test_cnn_training_balanced_class_weight_evens_the_classes():
    labels = np.array([0, 1, 1, 1])
    weights = cnn_training._class_weight("balanced", labels, 2)
    assert weights == {0: 2.0, 1: pytest.approx(2 / 3)}
    assert weights[0] * 1 == pytest.approx(weights[1] * 3)
