"""The EfficientNet-Lite0 backbone in Keras: block layout, ImageNet sense, folded batch norm."""

from __future__ import annotations

import numpy as np
import pytest

from artsy.models import backbone
from artsy.testing import sample_crops as crops

#: ImageNet classes: 281-285 are the domestic cats, 967 is espresso.
CATS = range(281, 286)
ESPRESSO = 967


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return crops("chelsea", "coffee", "astronaut", "rocket")


def test_block_layout_of_lite0():
    blocks = backbone.block_specs(backbone.VARIANTS["efficientnet-lite0"])
    assert len(blocks) == 16
    assert [b["outputs"] for b in blocks] == [16, *[24] * 2, *[40] * 2, *[80] * 3, *[112] * 3,
                                             *[192] * 4, 320]
    lite2 = backbone.block_specs(backbone.VARIANTS["efficientnet-lite2"])
    assert len(lite2) == 1 + 3 + 3 + 4 + 4 + 5 + 1  # depth 1.2, first and last stages fixed


def test_imagenet_top1_on_public_photos(photos):
    model = backbone.load_backbone(include_top=True)
    logits = model.predict(photos[:2].astype(np.float32), verbose=0)
    assert logits.shape == (2, backbone.IMAGENET_CLASSES)
    assert int(np.argmax(logits[0])) in CATS  # chelsea: a tabby cat
    assert int(np.argmax(logits[1])) == ESPRESSO  # coffee


def test_folded_batchnorm_gives_the_same_embedding(photos):
    fused = backbone.load_backbone(fused=True).predict(photos, verbose=0)
    plain = backbone.load_backbone(fused=False).predict(photos, verbose=0)
    assert fused.shape == (4, backbone.EMBEDDING_SIZE)
    np.testing.assert_allclose(fused, plain, atol=1e-4)
    assert np.abs(fused).max() > 1.0  # real activations, not a zero network


def test_embed_pads_and_matches_predict(photos):
    model = backbone.load_backbone()
    embedded = backbone.embed(photos[:3], model=model, batch_size=2)
    np.testing.assert_allclose(embedded, model.predict(photos[:3], verbose=0), atol=1e-4)
    assert backbone.embed(photos[:0], model=model).shape == (0, backbone.EMBEDDING_SIZE)


def test_stage_ends_of_lite0_and_lite2():
    assert backbone.stage_ends(backbone.VARIANTS["efficientnet-lite0"]) == [0, 2, 4, 7, 10, 14, 15]
    assert backbone.stage_ends(backbone.VARIANTS["efficientnet-lite2"]) == [0, 3, 6, 10, 14, 19, 20]
    assert backbone.embedding_size() == backbone.EMBEDDING_SIZE
    assert backbone.embedding_size(pooled_stages=(3, 4, 5, 6)) == 1280 + 80 + 112 + 192 + 320


def test_multilevel_embedding_is_the_head_then_the_pooled_stages(photos):
    import keras

    stages = backbone.EMBEDDINGS["multilevel"]
    model = backbone.load_backbone(pooled_stages=stages)
    embedded = backbone.embed(photos, model=model, batch_size=4)
    assert embedded.shape == (4, backbone.embedding_size(pooled_stages=stages))
    head = backbone.embed(photos, model=backbone.load_backbone())
    np.testing.assert_allclose(embedded[:, : backbone.EMBEDDING_SIZE], head, atol=1e-4)
    # stage 5's slice is the spatial mean of the output of its last block (block 14)
    block = keras.Model(model.inputs, model.get_layer("block14_add").output)
    start = backbone.EMBEDDING_SIZE + 80 + 112
    expected = block.predict(photos, verbose=0).mean(axis=(1, 2))
    np.testing.assert_allclose(embedded[:, start:start + 192], expected, atol=1e-4)
    assert np.abs(embedded[:, backbone.EMBEDDING_SIZE:]).max() > 0.1


def test_backbone_reads_larger_crops_of_the_same_view():
    big = crops("chelsea", "coffee", side=288)
    model = backbone.load_backbone(include_top=True, image_size=288)
    assert model.input_shape[1:] == (288, 288, 3)
    logits = model.predict(big.astype(np.float32), verbose=0)
    assert int(np.argmax(logits[0])) in CATS and int(np.argmax(logits[1])) == ESPRESSO
    stages = backbone.EMBEDDINGS["multilevel"]
    embedded = backbone.embed(big, pooled_stages=stages)  # loads the backbone at the crops' side
    assert embedded.shape == (2, backbone.embedding_size(pooled_stages=stages))
    record = backbone.bundle_record(embedding="multilevel", image_size=288)
    assert record["image_size"] == 288 and backbone.bundle_record()["image_size"] == 224
    for side in (100, 80, 544, True, "288"):
        with pytest.raises(backbone.BackboneError, match="multiple of 32"):
            backbone.check_input_side(side)
    with pytest.raises(backbone.BackboneError, match="multiple of 32"):
        backbone.load_backbone(image_size=300)


def test_pooled_stages_and_embeddings_are_checked():
    with pytest.raises(backbone.BackboneError, match="distinct stage numbers"):
        backbone.embedding_size(pooled_stages=(3, 7))
    with pytest.raises(backbone.BackboneError, match="distinct stage numbers"):
        backbone.build_efficientnet_lite(pooled_stages=(4, 4))
    with pytest.raises(backbone.BackboneError, match="include_top"):
        backbone.build_efficientnet_lite(include_top=True, pooled_stages=(6,))
    with pytest.raises(backbone.BackboneError, match="unknown embedding"):
        backbone.bundle_record(embedding="pyramid")
    record = backbone.bundle_record(embedding="multilevel")
    assert record["pooled_stages"] == [3, 4, 5, 6] and record["embedding_size"] == 1984
    assert "pooled_stages" not in backbone.bundle_record()  # what older bundles recorded


def test_unknown_variant_is_refused():
    with pytest.raises(backbone.BackboneError, match="unknown backbone"):
        backbone.build_efficientnet_lite("efficientnet-b7")
