"""Model bundles: a directory holding trained models, their provenance and a verified manifest.

Layout of a bundle directory::

    manifest.json          format version, provenance, feature layout, metrics, ensemble, checksums
    models/<name>.skops    one scikit-learn estimator per model (``skops.io``, no pickle): classical
                           models read the feature set, embedding models the backbone's embedding
    combiner.skops         optional stacking combiner over the members' probabilities
    cnn.keras              optional Keras model (loaded lazily, in safe mode)
    report/...             optional training report (model card, plots)

Every file except ``manifest.json`` is listed in ``manifest["files"]`` with its SHA-256. The
pretrained backbone is not copied into bundles: ``manifest["backbone"]`` names the one shipped in
the package (:mod:`artsy.models.backbone`) and records its weight file's SHA-256, checked when it
loads.
:func:`load_bundle` refuses a bundle whose format version it does not read, whose files are missing
or altered, or whose model files hold types that were not recorded (and allowed) when it was saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from artsy.models.ensemble import (
    ENSEMBLE_METHODS,
    combine_columns,
    stacking_inputs,
)
from artsy.models.manifest import (
    ALLOWED_TYPE_PREFIXES,
    CNN_FILE,
    FORMAT_VERSION,
    MANIFEST_NAME,
    BundleError,
    check_allowed,
    check_backbone,
    load_skops,
    read_manifest,
    sha256_file,
    untrusted_types,
    verify_file,
)

__all__ = ["ALLOWED_TYPE_PREFIXES", "ENSEMBLE_METHODS", "FORMAT_VERSION", "MANIFEST_NAME",
           "Bundle", "BundleError", "combine_columns", "default_bundle_path", "load_bundle",
           "sha256_file", "stacking_inputs", "untrusted_types"]

logger = logging.getLogger(__name__)

def default_bundle_path() -> Path:
    """Return the directory of the bundle shipped inside the package (``artsy/default_bundle``).

    Resolved next to this module rather than through ``importlib.resources.files("artsy")``: a
    checkout folder named ``artsy`` in the working directory (where ``ray submit`` runs scripts)
    would otherwise join the package as a namespace portion and be returned first.
    """
    return Path(__file__).resolve().parents[1] / "default_bundle"


class Bundle:
    """A verified, loaded model bundle (made by :func:`load_bundle`).

    Attributes
    ----------
    path : Path
        The bundle directory.
    manifest : dict
        The parsed ``manifest.json``.
    classical : dict of str to estimator
        Classical models by name; ``predict_proba(features)[:, 1]`` is the positive probability.
        Loaded on first use (checksum re-verified), so a process that only needs the manifest,
        the combiner or the CNN never imports scikit-learn's estimators for them.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._loaded: dict[str, dict[str, Any]] = {}
        self._combiner: Any = None
        self._emotion_head: Any = None

    def _models(self, kind: str) -> dict[str, Any]:
        if kind not in self._loaded:
            self._loaded[kind] = {name: load_skops(self.path, entry, self.manifest["files"])
                                  for name, entry in self._entries(kind).items()}
        return self._loaded[kind]

    def _entries(self, kind: str) -> dict[str, Mapping[str, Any]]:
        return {name: entry for name, entry in sorted(self.manifest["models"].items())
                if entry.get("kind") == kind}

    @property
    def classical(self) -> dict[str, Any]:
        """Classical models by name (loaded with skops on first access)."""
        return self._models("classical")

    @property
    def classical_names(self) -> tuple[str, ...]:
        """Names of the classical models, sorted (read from the manifest, nothing loaded)."""
        return tuple(self._entries("classical"))

    @property
    def embedding_models(self) -> dict[str, Any]:
        """Models over the backbone embedding, by name (loaded on first access)."""
        return self._models("embedding")

    @property
    def embedding_names(self) -> tuple[str, ...]:
        """Names of the models over the backbone embedding, sorted (nothing loaded)."""
        return tuple(self._entries("embedding"))

    @property
    def backbone(self) -> dict[str, Any] | None:
        """``{"name", "sha256", "image_size"[, "pooled_stages"]}`` of the backbone, or ``None``."""
        return self.manifest.get("backbone") if self.embedding_names else None

    @property
    def crop_size(self) -> int | None:
        """Side of the centre crop the backbone reads (``None`` without a backbone)."""
        return None if self.backbone is None else int(self.backbone["image_size"])

    def load_backbone(self) -> Any:
        """Load the pretrained backbone this bundle was trained on (imports TensorFlow)."""
        if self.backbone is None:
            raise BundleError(f"bundle {self.path} has no backbone models")
        from artsy.models.backbone import BackboneError, load_backbone

        try:
            return load_backbone(self.backbone["name"], expected_sha256=self.backbone["sha256"],
                                 pooled_stages=tuple(self.backbone.get("pooled_stages", ())),
                                 image_size=self.crop_size)
        except BackboneError as error:
            raise BundleError(f"bundle {self.path}: {error}") from None

    @property
    def has_emotion(self) -> bool:
        """Whether the bundle has an emotion-category head (over the backbone embedding)."""
        return bool(self.backbone) and "file" in self.manifest.get("emotion", {})

    def predict_emotion(self, embeddings: np.ndarray, p_positive: np.ndarray) -> np.ndarray:
        """``(n, 8)`` category probabilities (:data:`artsy.config.EMOTION_CATEGORIES` order)."""
        from artsy.models.emotion import category_probabilities

        entry = self.manifest["emotion"]
        if self._emotion_head is None:
            self._emotion_head = load_skops(self.path, entry, self.manifest["files"])
        return category_probabilities(self._emotion_head, embeddings, p_positive,
                                      valence_weight=float(entry["valence_weight"]))

    def predict_embedding(self, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        """Each embedding model's positive-class probability, ``{name: (n,) float32}``."""
        return _positive(self.embedding_models, embeddings, self.class_names)

    @property
    def combiner(self) -> Any:
        """The stacking combiner (``None`` for other ensemble methods), loaded on first access."""
        entry = self.manifest["ensemble"].get("combiner")
        if entry and self._combiner is None:
            self._combiner = load_skops(self.path, entry, self.manifest["files"])
        return self._combiner

    @property
    def version(self) -> str:
        """Stable model identifier: feature set plus a hash of the model files and ensemble spec."""
        report_free = {name: digest for name, digest in self.manifest["files"].items()
                       if not name.startswith("report/")}
        identity = {"files": report_free, "ensemble": self.manifest["ensemble"]}
        if self.backbone is not None:
            identity["backbone"] = self.backbone
        payload = json.dumps(identity, sort_keys=True)
        return f"{self.feature_set}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"

    @property
    def feature_set(self) -> str:
        """Name of the feature set the classical models read (see :mod:`artsy.features`)."""
        return str(self.manifest["feature_set"]["name"])

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in probability-column order (``EMOTIONS``)."""
        return tuple(self.manifest["class_names"])

    @property
    def image_size(self) -> int:
        """Side of the square images the models were trained on."""
        return int(self.manifest.get("image_size", 100))

    @property
    def members(self) -> tuple[str, ...]:
        """Models whose probabilities the ensemble combines, in combiner column order."""
        return tuple(self.manifest["ensemble"]["members"])

    @property
    def has_cnn(self) -> bool:
        """Whether the bundle holds a CNN (the batch job then runs it and writes its column)."""
        return "cnn" in self.manifest["models"]

    @property
    def cnn_member(self) -> bool:
        """Whether the CNN is an ensemble member (then the batch job must run it)."""
        return "cnn" in self.members

    @property
    def needs_actor(self) -> bool:
        """Whether the batch job runs a TensorFlow actor (a CNN or a backbone)."""
        return self.has_cnn or bool(self.embedding_names)

    @property
    def actor_member(self) -> bool:
        """Whether an ensemble member runs in the actor (then the actor combines and labels)."""
        return any(name == "cnn" or name in self.embedding_names for name in self.members)

    def load_cnn(self) -> Any:
        """Load the Keras model in safe mode (imports TensorFlow; checksum re-verified)."""
        if "cnn" not in self.manifest["models"]:
            raise BundleError(f"bundle {self.path} has no CNN")
        path = self.path / CNN_FILE
        verify_file(self.path, CNN_FILE, self.manifest["files"].get(CNN_FILE))
        try:
            import artsy.models.cnn  # noqa: F401  registers artsy's serializable layers, if any
        except ImportError:
            pass
        import keras

        return keras.saving.load_model(path, safe_mode=True)

    def predict_classical(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Return each classical model's positive-class probability, ``{name: (n,) float32}``."""
        return _positive(self.classical, features, self.class_names)

    def combine(self, probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Combine members' positive-class probabilities into the ensemble's ``(n,)`` p_positive.

        Parameters
        ----------
        probs : dict of str to (n,) ndarray
            Positive-class probability of every member (other keys are ignored).

        Returns
        -------
        (n,) float32 ndarray
            Ensemble probability of the positive class; deterministic.

        Raises
        ------
        ValueError
            If a member's probabilities are missing or the arrays differ in length.
        """
        missing = [name for name in self.members if name not in probs]
        if missing:
            raise ValueError(f"probabilities missing for ensemble members {missing}")
        columns = np.column_stack([np.asarray(probs[name], dtype=np.float64).reshape(-1)
                                   for name in self.members])
        return combine_columns(self.manifest["ensemble"], columns, self.combiner)


def _positive(models: Mapping[str, Any], inputs: np.ndarray,
              class_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    positive = class_names.index("positive")
    return {name: model.predict_proba(inputs)[:, positive].astype(np.float32)
            for name, model in models.items()}


def load_bundle(path: str | Path | None = None, *, lazy: bool = False) -> Bundle:
    """Load and verify a model bundle.

    Parameters
    ----------
    path : str or Path or None, default=None
        Bundle directory; ``None`` loads the one shipped in the package (``artsy/default_bundle``).
    lazy : bool, default=False
        Verify the manifest, every checksum and the recorded types, but load the classical
        models and the combiner only when first used (no scikit-learn import until then).

    Returns
    -------
    Bundle
        The bundle, with classical models and combiner loaded unless ``lazy``; the CNN loads on
        ``load_cnn()``.

    Raises
    ------
    BundleError
        One line saying what is wrong: not found, no manifest, unsupported format version, missing
        file, checksum mismatch, or types that were not recorded at save time.
    """
    if path is None:
        root = default_bundle_path()
        if not (root / MANIFEST_NAME).is_file():
            raise BundleError(f"no default bundle shipped at {root}; pass a bundle path "
                              f"or train one with jobs/train.py")
    else:
        root = Path(path)
    manifest = read_manifest(root)
    for name, digest in sorted(manifest["files"].items()):
        verify_file(root, name, digest)
    combiner_entry = manifest["ensemble"].get("combiner")
    extra = [entry for entry in (combiner_entry, manifest.get("emotion"))
             if entry and "file" in entry]
    for entry in [*manifest["models"].values(), *extra]:
        if entry["file"] not in manifest["files"]:
            raise BundleError(f"bundle {root}: {entry['file']} is not listed in manifest.json")
        check_allowed(list(entry.get("trusted", [])), f"bundle {root}: {entry['file']}")
    bundle = Bundle(root, manifest)
    missing = [name for name in bundle.members if name not in manifest["models"]]
    if missing:
        raise BundleError(f"bundle {root}: ensemble members {missing} have no model file")
    if manifest["ensemble"].get("method") == "stacking" and not combiner_entry:
        raise BundleError(f"bundle {root}: stacking ensemble without a combiner file")
    if bundle.embedding_names:
        check_backbone(root, manifest.get("backbone"))
    if not lazy:
        _ = bundle.classical, bundle.embedding_models, bundle.combiner
    logger.info("loaded bundle %s (version %s)", root, bundle.version)
    return bundle
