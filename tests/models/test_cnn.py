"""Tests of artsy.models.cnn: real TensorFlow, real photos, tiny training runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from artsy.io import decode_image  # noqa: E402
from artsy.models import cnn  # noqa: E402
from artsy.testing import write_photos  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """24 decoded real photos and a learnable label: brighter than the median is "positive"."""
    folder = tmp_path_factory.mktemp("cnn_photos")
    paths = write_photos(folder, 24, seed=11, max_side=300)
    images = np.stack([decode_image(path.read_bytes(), size=100).pixels for path in paths])
    brightness = images.reshape(len(images), -1).mean(axis=1)
    labels = (brightness > np.median(brightness)).astype(np.int64)
    return images, labels


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory) -> tuple[object, object, Path]:
    """The default net trained 3 epochs on 16 photos, validated on 8, with a checkpoint."""
    images, labels = photos
    model = cnn.build_cnn(seed=5)
    checkpoint = tmp_path_factory.mktemp("cnn_checkpoint") / "best.keras"
    history = cnn.train_cnn(model, images[:16], labels[:16],
                            validation_data=(images[16:], labels[16:]), epochs=3,
                            batch_size=8, seed=5, patience=2, checkpoint_path=checkpoint)
    return model, history, checkpoint


def test_cnn_seed_net_has_notebook_parameter_count():
    model = cnn.build_seed_cnn()
    assert model.count_params() == 569_954
    assert model.output_shape == (None, 2)
    assert model.optimizer.learning_rate.numpy() == pytest.approx(cnn.SEED_LEARNING_RATE)


def test_cnn_default_net_is_compiled_and_much_smaller():
    model = cnn.build_cnn()
    assert model.compiled
    assert model.output_shape == (None, 2)
    assert model.count_params() < 569_954 / 10
    layer_types = {type(layer).__name__ for layer in model.layers}
    assert {"Rescaling", "RandomFlip", "SeparableConv2D"} <= layer_types
    assert "Lambda" not in layer_types


def test_cnn_train_runs_and_gives_probabilities(photos, trained):
    images, _ = photos
    model, history, checkpoint = trained
    assert len(history.history["loss"]) >= 1
    assert np.all(np.isfinite(history.history["val_loss"]))
    assert 1 <= cnn.best_epoch(history) <= len(history.history["loss"])
    p_positive = cnn.predict_positive(model, images)
    assert p_positive.shape == (len(images),) and p_positive.dtype == np.float32
    assert np.all((p_positive >= 0) & (p_positive <= 1))
    assert checkpoint.is_file()


def test_cnn_training_lowers_the_loss(photos):
    images, labels = photos
    model = cnn.build_cnn(seed=1, augment=False, learning_rate=1e-2)
    history = cnn.train_cnn(model, images, labels, epochs=6, batch_size=8, seed=1)
    losses = history.history["loss"]
    assert len(losses) == 6  # no validation data: exactly ``epochs`` epochs
    assert min(losses[-2:]) < losses[0]


def test_cnn_keras_file_round_trip_in_safe_mode(photos, trained, tmp_path):
    images, _ = photos
    model, _, checkpoint = trained
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(cnn.predict_positive(loaded, images),
                               cnn.predict_positive(model, images), atol=1e-6)
    best = keras.saving.load_model(checkpoint, safe_mode=True)
    assert best.count_params() == model.count_params()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_cnn_predict_positive_pads_the_last_batch(photos, trained, dtype):
    images, _ = photos
    model, _, _ = trained
    batch = images[:13].astype(dtype)
    expected = model.predict(batch, batch_size=5, verbose=0)[:, 1]
    np.testing.assert_allclose(cnn.predict_positive(model, batch, batch_size=5), expected,
                               atol=1e-5)
    assert cnn.predict_positive(model, batch[:0]).shape == (0,)


def test_cnn_feature_maps_shapes(photos, trained):
    images, _ = photos
    model, _, _ = trained
    maps = cnn.feature_maps(model, images[0])
    assert [(name, array.shape) for name, array in maps] == [
        ("conv0", (25, 25, 24)), ("sepconv1", (12, 12, 48)),
        ("sepconv2", (6, 6, 96)), ("sepconv3", (3, 3, 128))]
    seed_maps = cnn.feature_maps(cnn.build_seed_cnn(), images[0])
    assert [array.shape for _, array in seed_maps] == [(100, 100, 128), (50, 50, 128),
                                                        (12, 12, 128)]


def test_cnn_same_seed_same_weights(photos):
    images, labels = photos

    def weights_after_one_epoch(seed: int) -> list[np.ndarray]:
        model = cnn.build_cnn(seed=seed)
        cnn.train_cnn(model, images[:16], labels[:16], epochs=1, batch_size=8, seed=seed)
        return [np.asarray(weight) for weight in model.get_weights()]

    first, again, other = (weights_after_one_epoch(seed) for seed in (3, 3, 4))
    for left, right in zip(first, again, strict=True):
        np.testing.assert_array_equal(left, right)
    assert any(not np.array_equal(left, right) for left, right in zip(first, other, strict=True))


def test_cnn_bad_input_raises(photos):
    images, labels = photos
    model = cnn.build_cnn()
    with pytest.raises(ValueError, match="shape"):
        cnn.predict_positive(model, images[:, :50])
    with pytest.raises(ValueError, match="labels must be ints"):
        cnn.train_cnn(model, images, labels + 2, epochs=1)
    with pytest.raises(ValueError, match="class_weight"):
        cnn.train_cnn(model, images, labels, epochs=1, class_weight="even")
    with pytest.raises(ValueError, match="epochs"):
        cnn.train_cnn(model, images, labels, epochs=0)
    with pytest.raises(ValueError, match="downsample"):
        cnn.build_cnn(downsample=0)
    with pytest.raises(ValueError, match="intra_op_threads"):
        cnn.configure_tensorflow(intra_op_threads=0)


def test_cnn_configure_tensorflow_twice_is_safe():
    first = cnn.configure_tensorflow(intra_op_threads=2)
    assert cnn.configure_tensorflow(intra_op_threads=1, inter_op_threads=1) == first
