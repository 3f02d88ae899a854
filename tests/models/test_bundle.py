"""Model bundle: round trip, lazy CNN, tamper detection, format version, default bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from artsy.io import decode_image
from artsy.models import bundle as bundle_module
from artsy.models.bundle import BundleError, load_bundle
from artsy.models.bundle_save import save_bundle
from artsy.testing import write_photos

ROOT = Path(__file__).resolve().parents[2]


def _colour_features(images: np.ndarray) -> np.ndarray:
    """Per-channel mean and standard deviation of real photos: a tiny real feature set."""
    pixels = images.reshape(len(images), -1, 3).astype(np.float32)
    return np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)


@pytest.fixture(scope="module")
def training_data(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of 30 real photos, labelled by brightness, and the decoded images."""
    folder = tmp_path_factory.mktemp("photos")
    paths = write_photos(folder, 30, seed=3, max_side=300)
    images = np.stack([decode_image(Path(path).read_bytes(), size=32).pixels for path in paths])
    features = _colour_features(images)
    labels = (features[:, :3].mean(axis=1) > np.median(features[:, :3].mean(axis=1))).astype(int)
    return features, labels, images


def _manifest(members: list[str], method: str = "stacking") -> dict:
    return {
        "feature_set": {"name": "colour6", "length": 6,
                        "names": [f"{stat}_{c}" for stat in ("mean", "std") for c in "rgb"]},
        "ensemble": {"members": members, "method": method, "transform": "logit"},
        "data": {"fingerprint": "0" * 64},
        "training": {"command": "test", "seed": 0},
    }


@pytest.fixture(scope="module")
def classical_bundle(training_data, tmp_path_factory) -> tuple[Path, dict]:
    """A saved bundle with kNN + random forest stacked by logistic regression."""
    features, labels, _ = training_data
    models = {
        "knn": make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=3)),
        "rf": RandomForestClassifier(n_estimators=15, max_depth=3, random_state=0),
    }
    for model in models.values():
        model.fit(features, labels)
    columns = np.column_stack([models[name].predict_proba(features)[:, 1] for name in models])
    combiner = LogisticRegression().fit(bundle_module.stacking_inputs(columns, "logit"), labels)
    out = tmp_path_factory.mktemp("bundles") / "bundle"
    save_bundle(out, classical=models, combiner=combiner, manifest=_manifest(["knn", "rf"]))
    expected = {name: model.predict_proba(features)[:, 1] for name, model in models.items()}
    expected["ensemble"] = combiner.predict_proba(
        bundle_module.stacking_inputs(columns, "logit"))[:, 1]
    return out, expected


@pytest.fixture
def bundle_copy(classical_bundle, tmp_path) -> Path:
    """A fresh copy of the classical bundle that a test may tamper with."""
    return Path(shutil.copytree(classical_bundle[0], tmp_path / "copy"))


def test_bundle_round_trip_gives_same_predictions(classical_bundle, training_data):
    path, expected = classical_bundle
    features = training_data[0]
    loaded = load_bundle(path)
    probs = loaded.predict_classical(features)
    for name in ("knn", "rf"):
        np.testing.assert_allclose(probs[name], expected[name], rtol=1e-6)
    np.testing.assert_allclose(loaded.combine(probs), expected["ensemble"], rtol=1e-5)
    assert loaded.members == ("knn", "rf")
    assert not loaded.cnn_member
    assert loaded.feature_set == "colour6"
    assert loaded.class_names == ("negative", "positive")
    assert loaded.version.startswith("colour6-") and len(loaded.version) == len("colour6-") + 12
    assert load_bundle(path).version == loaded.version


def test_bundle_manifest_records_provenance_and_checksums(classical_bundle):
    manifest = json.loads((classical_bundle[0] / "manifest.json").read_text())
    assert manifest["format_version"] == bundle_module.FORMAT_VERSION
    assert set(manifest["files"]) == {"models/knn.skops", "models/rf.skops", "combiner.skops"}
    assert all(len(digest) == 64 for digest in manifest["files"].values())
    assert manifest["models"]["rf"]["trusted"] == ["sklearn.tree._tree.Tree"]
    assert manifest["git_commit"]
    assert manifest["created_utc"].endswith("+00:00")


def test_bundle_combine_mean_and_single(tmp_path, training_data):
    features, labels, _ = training_data
    model = LogisticRegression().fit(features, labels)
    weighted = _manifest(["a", "b"], method="mean")
    weighted["ensemble"]["weights"] = {"a": 3.0, "b": 1.0}
    loaded = load_bundle(save_bundle(tmp_path / "w", classical={"a": model, "b": model},
                                     manifest=weighted))
    combined = loaded.combine({"a": np.array([1.0, 0.0]), "b": np.array([0.0, 0.0])})
    np.testing.assert_allclose(combined, [0.75, 0.0])
    with pytest.raises(ValueError, match=r"missing for ensemble members \['b'\]"):
        loaded.combine({"a": np.array([0.5])})
    single = load_bundle(save_bundle(tmp_path / "s", classical={"a": model},
                                     manifest=_manifest(["a"], method="single")))
    np.testing.assert_allclose(single.combine({"a": np.array([0.25])}), [0.25])


def test_bundle_version_changes_with_model(tmp_path, training_data):
    features, labels, _ = training_data
    versions = set()
    for index, c_value in enumerate((1.0, 0.01)):
        model = LogisticRegression(C=c_value).fit(features, labels)
        path = save_bundle(tmp_path / f"b{index}", classical={"a": model},
                           manifest=_manifest(["a"], method="single"))
        versions.add(load_bundle(path).version)
    assert len(versions) == 2


def test_bundle_one_changed_byte_is_refused(bundle_copy):
    model_file = bundle_copy / "models" / "rf.skops"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"checksum mismatch for models/rf\.skops") as caught:
        load_bundle(bundle_copy)
    assert "\n" not in str(caught.value)


def test_bundle_missing_file_is_refused(bundle_copy):
    (bundle_copy / "combiner.skops").unlink()
    with pytest.raises(BundleError, match=r"missing file combiner\.skops"):
        load_bundle(bundle_copy)


def test_bundle_newer_format_version_is_refused(bundle_copy):
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 2
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"unsupported bundle format version 2 .*reads 1"):
        load_bundle(bundle_copy)


def test_bundle_without_manifest_is_refused(tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(BundleError, match="not a bundle: no manifest.json"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")


def test_bundle_dangerous_trusted_type_is_refused(bundle_copy):
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["models"]["rf"]["trusted"].append("builtins.eval")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"models/rf\.skops holds types outside"):
        load_bundle(bundle_copy)


def test_bundle_path_escaping_manifest_is_refused(bundle_copy):
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["../outside"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unsafe file path"):
        load_bundle(bundle_copy)


def test_save_bundle_validates_its_arguments(tmp_path, training_data):
    features, labels, _ = training_data
    model = LogisticRegression().fit(features, labels)
    with pytest.raises(ValueError, match=r"ensemble members \['svm'\] are not among"):
        save_bundle(tmp_path / "a", classical={"a": model}, manifest=_manifest(["svm"]))
    with pytest.raises(ValueError, match="'stacking' needs a combiner"):
        save_bundle(tmp_path / "b", classical={"a": model}, manifest=_manifest(["a"]))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not a model bundle"):
        save_bundle(occupied, classical={"a": model}, manifest=_manifest(["a"], method="single"))
    assert (occupied / "notes.txt").read_text() == "mine"


def test_save_bundle_replaces_previous_bundle(bundle_copy, training_data):
    features, labels, _ = training_data
    model = LogisticRegression().fit(features, labels)
    save_bundle(bundle_copy, classical={"a": model}, manifest=_manifest(["a"], method="single"))
    assert load_bundle(bundle_copy).members == ("a",)
    assert not (bundle_copy / "models" / "rf.skops").exists()
    assert [p.name for p in bundle_copy.parent.iterdir() if p.name.startswith(".")] == []


def test_bundle_loading_classical_does_not_import_tensorflow(classical_bundle):
    code = ("import sys; from artsy.models.bundle import load_bundle; "
            f"load_bundle({str(classical_bundle[0])!r}); "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.stdout.strip() == "False"


def test_bundle_cnn_round_trip_in_safe_mode(tmp_path, training_data):
    keras = pytest.importorskip("keras")
    features, labels, images = training_data
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=images.shape[1:])
    hidden = keras.layers.Rescaling(1.0 / 255)(inputs)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    outputs = keras.layers.Dense(2, activation="softmax")(hidden)
    cnn = keras.Model(inputs, outputs)
    expected = cnn.predict(images, verbose=0)[:, 1]
    model = LogisticRegression().fit(features, labels)
    manifest = _manifest(["a", "cnn"], method="mean")
    path = save_bundle(tmp_path / "cnn", classical={"a": model}, cnn_model=cnn, manifest=manifest)
    loaded = load_bundle(path)
    assert loaded.cnn_member
    np.testing.assert_allclose(loaded.load_cnn().predict(images, verbose=0)[:, 1], expected,
                               rtol=1e-5)
    cnn_file = path / "cnn.keras"
    cnn_file.write_bytes(cnn_file.read_bytes() + b"\0")
    with pytest.raises(BundleError, match=r"checksum mismatch for cnn\.keras"):
        loaded.load_cnn()


def test_default_bundle_loads():
    if not (bundle_module.default_bundle_path() / "manifest.json").is_file():
        pytest.skip("no default bundle shipped yet (artsy/default_bundle)")
    loaded = load_bundle(None)
    assert loaded.path == bundle_module.default_bundle_path()
    assert loaded.version.startswith(loaded.feature_set + "-")
    assert set(loaded.members) <= set(loaded.manifest["models"])


@pytest.mark.parametrize(("change", "message"), [
    ({"pooled_stages": [3, 9]}, "distinct stage numbers"),
    ({"embedding_size": 1280}, "says a 1280-d embedding, but stages"),
    ({"image_size": 250}, "multiple of 32"),
])
def test_bundle_backbone_record_must_fit_its_embedding(job_bundle, tmp_path, change, message):
    copy = tmp_path / "bundle"
    shutil.copytree(job_bundle, copy)
    manifest_path = copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["backbone"]["embedding_size"] == 1984  # the multi-level embedding
    assert manifest["backbone"]["image_size"] == 288  # the shipped recipe's crop
    manifest["backbone"].update(change)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)
