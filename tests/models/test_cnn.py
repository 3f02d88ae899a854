"""Tests of artsy.models.cnn: real TensorFlow, real photos; training is test_cnn_training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from artsy.models import cnn, cnn_training  # noqa: E402


@pytest.fixture(scope="module")
def trained(labelled_photos, tmp_path_factory) -> tuple[object, Path]:
    """The default net trained 3 epochs on 16 photos, validated on 8, with a checkpoint."""
    images, labels = labelled_photos
    model = cnn.build_cnn(seed=5)
    checkpoint = tmp_path_factory.mktemp("cnn_checkpoint") / "best.keras"
    cnn_training.train_cnn(model, images[:16], labels[:16],
                           validation_data=(images[16:], labels[16:]), epochs=3,
                           batch_size=8, seed=5, patience=2, checkpoint_path=checkpoint)
    return model, checkpoint


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


def test_cnn_predict_positive_gives_probabilities(labelled_photos, trained):
    images, _ = labelled_photos
    model, checkpoint = trained
    p_positive = cnn.predict_positive(model, images)
    assert p_positive.shape == (len(images),) and p_positive.dtype == np.float32
    assert np.all((p_positive >= 0) & (p_positive <= 1))
    assert checkpoint.is_file()


def test_cnn_keras_file_round_trip_in_safe_mode(labelled_photos, trained, tmp_path):
    images, _ = labelled_photos
    model, checkpoint = trained
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(cnn.predict_positive(loaded, images),
                               cnn.predict_positive(model, images), atol=1e-6)
    best = keras.saving.load_model(checkpoint, safe_mode=True)
    assert best.count_params() == model.count_params()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_cnn_predict_positive_pads_the_last_batch(labelled_photos, trained, dtype):
    images, _ = labelled_photos
    model, _ = trained
    batch = images[:13].astype(dtype)
    expected = model.predict(batch, batch_size=5, verbose=0)[:, 1]
    np.testing.assert_allclose(cnn.predict_positive(model, batch, batch_size=5), expected,
                               atol=1e-5)
    assert cnn.predict_positive(model, batch[:0]).shape == (0,)


def test_cnn_feature_maps_shapes(labelled_photos, trained):
    images, _ = labelled_photos
    model, _ = trained
    maps = cnn.feature_maps(model, images[0])
    assert [(name, array.shape) for name, array in maps] == [
        ("conv0", (25, 25, 24)), ("sepconv1", (12, 12, 48)),
        ("sepconv2", (6, 6, 96)), ("sepconv3", (3, 3, 128))]
    seed_maps = cnn.feature_maps(cnn.build_seed_cnn(), images[0])
    assert [array.shape for _, array in seed_maps] == [(100, 100, 128), (50, 50, 128),
                                                        (12, 12, 128)]


def test_cnn_configure_tensorflow_twice_is_safe():
    first = cnn.configure_tensorflow(intra_op_threads=2)
    assert cnn.configure_tensorflow(intra_op_threads=1, inter_op_threads=1) == first


def test_cnn_bad_input_raises(labelled_photos):
    images, _ = labelled_photos
    model = cnn.build_cnn()
    with pytest.raises(ValueError, match="shape"):
        cnn.predict_positive(model, images[:, :50])
    with pytest.raises(ValueError, match="numeric"):
        cnn.predict_positive(model, images.astype(str))
    with pytest.raises(ValueError, match="downsample"):
        cnn.build_cnn(downsample=0)
    with pytest.raises(ValueError, match="intra_op_threads"):
        cnn.configure_tensorflow(intra_op_threads=0)
