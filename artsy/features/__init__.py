"""Features of the decoded 100×100 square: colour / texture primitives (:mod:`.imaging`), the
affect groups (:mod:`.affect`), the face cue (:mod:`.faces`) and the feature-set registry
(:mod:`.registry`), whose public names are importable from here (lazily: importing a primitive
module does not load the registry).

Used by both flows (the job's CPU tasks and training); imports nothing of ``artsy.job`` or
``artsy.training``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FEATURE_SETS", "FeatureSet", "extract_features", "feature_names"]
_SUBMODULES = frozenset({"affect", "faces", "imaging", "registry"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # ``from artsy.features import imaging`` loads only that module
        return importlib.import_module(f"artsy.features.{name}")
    if name.startswith("_"):
        raise AttributeError(f"module 'artsy.features' has no attribute {name!r}")
    registry = importlib.import_module("artsy.features.registry")
    try:
        return getattr(registry, name)
    except AttributeError:
        raise AttributeError(f"module 'artsy.features' has no attribute {name!r}") from None
