"""Saving a model bundle: every model file, its checksum in ``manifest.json``, and a folder that
replaces the old bundle only once it is complete (loading and verification:
:mod:`artsy.models.bundle`, :mod:`artsy.models.manifest`).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from artsy.config import EMOTIONS
from artsy.models.ensemble import validate_ensemble
from artsy.models.manifest import (
    BUNDLE_DIR_MODE,
    CNN_FILE,
    COMBINER_FILE,
    EMOTION_FILE,
    FORMAT_VERSION,
    MANIFEST_NAME,
    dump_skops,
    sha256_file,
)

logger = logging.getLogger(__name__)


def _git_commit() -> str:
    """Return the commit of the artsy checkout, or ``"unknown"`` outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def save_bundle(out_dir: str | Path, *, classical: Mapping[str, Any], cnn_model: Any = None,
                combiner: Any = None, manifest: Mapping[str, Any],
                report_dir: str | Path | None = None,
                embedding: Mapping[str, Any] | None = None, emotion_head: Any = None) -> Path:
    """Write a model bundle, replacing ``out_dir`` only once the new bundle is complete.

    Parameters
    ----------
    out_dir : str or Path
        Bundle directory; if it exists it must be empty or a bundle (has ``manifest.json``).
    classical : dict of str to estimator
        Fitted scikit-learn estimators with ``predict_proba`` over the bundle's features.
    cnn_model : keras.Model or None, default=None
        Fitted Keras model saved as ``cnn.keras``; it is the member named ``"cnn"``.
    combiner : estimator or None, default=None
        Fitted stacking combiner: ``predict_proba`` over the members' positive-class probabilities,
        columns in ``manifest["ensemble"]["members"]`` order (after the ensemble's ``transform``).
    manifest : dict
        Metadata: must hold ``feature_set`` (``{"name", "length", "names"}``) and ``ensemble``
        (``{"members", "method"[, "weights", "transform"]}``); usually also ``data``, ``metrics``,
        ``protocol`` and ``training``. Format version, creation time, git commit, model files and
        checksums are filled in here.
    report_dir : str or Path or None, default=None
        Folder copied into the bundle as ``report/`` (and checksummed with the rest).
    embedding : dict of str to estimator or None, default=None
        Fitted estimators over the backbone embedding; needs ``manifest["backbone"]``
        (``{"name", "sha256", "image_size"}``).
    emotion_head : estimator or None, default=None
        Fitted emotion-category head over the embedding (:mod:`artsy.models.emotion`), saved as
        ``emotion.skops``; needs ``manifest["emotion"]`` and embedding models.

    Returns
    -------
    Path
        The bundle directory.

    Raises
    ------
    ValueError
        If the manifest is incomplete, the ensemble names models that are not given, or ``out_dir``
        exists and is not a bundle.
    """
    out_dir = Path(out_dir)
    embedding = dict(embedding or {})
    if "cnn" in classical or "cnn" in embedding:
        raise ValueError("the name 'cnn' is reserved for cnn_model; rename the model")
    if set(classical) & set(embedding):
        raise ValueError(f"models named twice: {sorted(set(classical) & set(embedding))}")
    for key in ("feature_set", "ensemble", *(("backbone",) if embedding else ())):
        if key not in manifest:
            raise ValueError(f"manifest needs a {key!r} entry")
    available = (set(classical) | set(embedding)
                 | ({"cnn"} if cnn_model is not None else set()))
    validate_ensemble(manifest["ensemble"], available, combiner is not None)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise ValueError(f"{out_dir} exists and is not a model bundle; "
                         f"choose an empty or new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staging.chmod(BUNDLE_DIR_MODE)  # mkdtemp makes it private; bundles are read by workers
        full = json.loads(json.dumps(dict(manifest)))  # a deep, JSON-clean copy
        full["format_version"] = FORMAT_VERSION
        now = datetime.datetime.now(datetime.UTC)
        full.setdefault("created_utc", now.isoformat(timespec="seconds"))
        full.setdefault("git_commit", _git_commit())
        full.setdefault("class_names", list(EMOTIONS))
        models: dict[str, dict[str, Any]] = {}
        (staging / "models").mkdir()
        kinds = [("classical", classical), ("embedding", embedding)]
        for kind, estimators in kinds:
            for name, estimator in sorted(estimators.items()):
                relative = f"models/{name}.skops"
                models[name] = {"kind": kind, "file": relative,
                                "trusted": dump_skops(estimator, staging / relative)}
        if cnn_model is not None:
            cnn_model.save(staging / CNN_FILE)
            models["cnn"] = {"kind": "cnn", "file": CNN_FILE}
        full["models"] = models
        if combiner is not None:
            trusted = dump_skops(combiner, staging / COMBINER_FILE)
            full["ensemble"]["combiner"] = {"file": COMBINER_FILE, "trusted": trusted}
        if emotion_head is not None:
            if not embedding or "emotion" not in full:
                raise ValueError("an emotion head needs embedding models and manifest['emotion']")
            full["emotion"].update(file=EMOTION_FILE,
                                   trusted=dump_skops(emotion_head, staging / EMOTION_FILE))
        if report_dir is not None:
            _copy_tree(Path(report_dir), staging / "report")
        full["files"] = {
            path.relative_to(staging).as_posix(): sha256_file(path)
            for path in sorted(staging.rglob("*")) if path.is_file()
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved bundle %s (%d files)", out_dir, len(full["files"]))
    return out_dir


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a folder's files (not their permissions) into ``target``."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


def _replace_dir(staging: Path, out_dir: Path) -> None:
    """Move ``staging`` to ``out_dir``; an old ``out_dir`` is removed only after the move."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.replace(out_dir, old)
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)
