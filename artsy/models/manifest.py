"""A bundle's manifest and files: checksums, format version and trusted model types.

:func:`read_manifest` refuses a manifest this artsy does not read; :func:`verify_file` a missing or
altered file; :func:`load_skops` a model file holding types that were not recorded (and allowed)
when it was saved; :func:`check_backbone` a bundle trained on another backbone. Every failure is a
:class:`BundleError` with a one-line message. :mod:`artsy.models.bundle` builds on these.
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

from artsy.io import sha256_file

#: The bundle format this version of artsy writes and reads.
FORMAT_VERSION = 1
#: Name of the manifest file at the root of every bundle.
MANIFEST_NAME = "manifest.json"
#: Module prefixes whose types may be trusted when loading ``.skops`` files.
ALLOWED_TYPE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "artsy.")
_CHUNK = 1 << 20
#: scikit-learn's array-API shims of optional array libraries. ``import skops.io`` lists every
#: scikit-learn estimator (``sklearn.utils.all_estimators``), and the package walk behind it
#: imports each sub-package, so these would import torch (or cupy, dask) wherever it is installed,
#: as with the ``train`` extra: loading the shipped bundle took 2.7 s and 448 MB RSS instead of
#: 1.8 s and 268 MB, in every process that loads one (decode tasks and CNN actors). They hold
#: no estimator; :func:`skops_io` skips them.
ARRAY_API_SHIMS = tuple(f"sklearn.externals.array_api_compat.{name}"
                        for name in ("torch", "cupy", "dask"))

#: File name of the Keras model inside a bundle.
CNN_FILE = "cnn.keras"
#: File name of the stacking combiner inside a bundle.
COMBINER_FILE = "combiner.skops"
#: File name of the emotion-category head inside a bundle.
EMOTION_FILE = "emotion.skops"
#: Permissions of a bundle directory.
BUNDLE_DIR_MODE = 0o755


class BundleError(ValueError):
    """A model bundle is missing, altered or incompatible; the message is one line."""


def skops_io() -> ModuleType:
    """Import ``skops.io`` without the array libraries of :data:`ARRAY_API_SHIMS`.

    While it imports, each shim not yet imported is an empty placeholder module (no ``__path__``,
    so the walk does not enter it); afterwards the placeholders are gone, and a later import of a
    shim (scikit-learn's array API dispatch with torch arrays) loads the real one.
    """
    if "skops.io" not in sys.modules:
        held = {name: ModuleType(name) for name in ARRAY_API_SHIMS
                if name not in sys.modules}
        sys.modules.update(held)
        try:
            import skops.io  # noqa: F401
        finally:
            for name, placeholder in held.items():
                if sys.modules.get(name) is placeholder:
                    del sys.modules[name]
    return sys.modules["skops.io"]


def untrusted_types(path: Path) -> list[str]:
    return sorted(skops_io().get_untrusted_types(file=path))


def check_allowed(types: list[str], where: str) -> None:
    refused = [name for name in types if not name.startswith(ALLOWED_TYPE_PREFIXES)]
    if refused:
        raise BundleError(f"{where} holds types outside {ALLOWED_TYPE_PREFIXES}: {refused[:5]}")


def dump_skops(estimator: Any, path: Path) -> list[str]:
    """Save ``estimator`` with skops and return the types it needs trusted on load."""
    skops_io().dump(estimator, path, compression=zipfile.ZIP_DEFLATED)
    types = untrusted_types(path)
    check_allowed(types, path.name)
    return types


def safe_relative(name: str) -> bool:
    pure = PurePosixPath(name)
    return bool(name) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in name


def verify_file(root: Path, name: str, expected: str | None) -> None:
    if expected is None:
        raise BundleError(f"bundle {root}: {name} is not listed in manifest.json")
    path = root / name
    if not path.is_file():
        raise BundleError(f"bundle {root}: missing file {name}")
    if sha256_file(path) != expected:
        raise BundleError(f"bundle {root}: checksum mismatch for {name} (file altered or corrupt)")


def read_manifest(root: Path) -> dict[str, Any]:
    manifest_path = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"model bundle not found: {root} is not a directory")
    if not manifest_path.is_file():
        raise BundleError(f"not a bundle: no {MANIFEST_NAME} in {root}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"corrupt {MANIFEST_NAME} in {root}: {error}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"corrupt {MANIFEST_NAME} in {root}: not a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"unsupported bundle format version {version} in {root} "
                          f"(this artsy reads {FORMAT_VERSION}); retrain with jobs/train.py")
    for key in ("files", "models", "ensemble", "feature_set", "class_names"):
        if key not in manifest:
            raise BundleError(f"corrupt {MANIFEST_NAME} in {root}: no {key!r} entry")
    unsafe = [name for name in manifest["files"] if not safe_relative(name)]
    if unsafe:
        raise BundleError(f"corrupt {MANIFEST_NAME} in {root}: unsafe file path {unsafe[0]!r}")
    return manifest


def load_skops(root: Path, entry: Mapping[str, Any], files: Mapping[str, str]) -> Any:
    name = entry["file"]
    trusted = list(entry.get("trusted", []))
    check_allowed(trusted, f"bundle {root}: {name}")
    verify_file(root, name, files.get(name))
    unexpected = sorted(set(untrusted_types(root / name)) - set(trusted))
    if unexpected:
        raise BundleError(f"bundle {root}: {name} holds types not recorded at save time: "
                          f"{unexpected[:5]}")
    return skops_io().load(root / name, trusted=trusted)


def check_backbone(root: Path, record: Mapping[str, Any] | None) -> None:
    """The bundle's backbone must be the one this artsy ships (same name and weight hash)."""
    from artsy.models.backbone import check_input_side, embedding_size
    from artsy.models.backbone_weights import BackboneError, backbone_manifest

    if not record or not {"name", "sha256", "image_size"} <= set(record):
        raise BundleError(f"bundle {root}: embedding models without a backbone record")
    try:
        shipped = backbone_manifest(record["name"])
    except BackboneError as error:
        raise BundleError(f"bundle {root}: {error}") from None
    if shipped.get("sha256") != record["sha256"]:
        raise BundleError(f"bundle {root}: trained on backbone {record['name']} with weights "
                          f"{record['sha256'][:12]}, but this artsy ships "
                          f"{str(shipped.get('sha256'))[:12]}; retrain with jobs/train.py")
    stages = record.get("pooled_stages", [])
    try:
        check_input_side(record["image_size"])
        width = embedding_size(record["name"], tuple(stages))
    except (BackboneError, TypeError, ValueError) as error:
        raise BundleError(f"bundle {root}: backbone record: {error}") from None
    if record.get("embedding_size", width) != width:
        raise BundleError(f"bundle {root}: backbone record says a {record['embedding_size']}-d "
                          f"embedding, but stages {stages} pool {width}")
