"""Ensemble specs: how a bundle combines its members' positive-class probabilities.

``{"members": [...], "method": "single" | "mean" | "stacking"[, "weights", "transform"]}``;
stacking applies a fitted combiner to the members' probabilities or clipped log-odds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from artsy.models.manifest import BundleError

#: Ensemble methods :func:`combine_columns` understands.
ENSEMBLE_METHODS = ("single", "mean", "stacking")


def validate_ensemble(ensemble: Mapping[str, Any], available: set[str],
                       has_combiner: bool) -> None:
    members = list(ensemble.get("members", []))
    method = ensemble.get("method")
    if not members:
        raise ValueError("manifest['ensemble']['members'] must name at least one model")
    missing = [name for name in members if name not in available]
    if missing:
        raise ValueError(f"ensemble members {missing} are not among the bundle's models "
                         f"{sorted(available)}")
    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"ensemble method must be one of {ENSEMBLE_METHODS}, got {method!r}")
    if method == "single" and len(members) != 1:
        raise ValueError(f"ensemble method 'single' takes one member, got {members}")
    if method == "stacking" and not has_combiner:
        raise ValueError("ensemble method 'stacking' needs a combiner estimator")
    weights = ensemble.get("weights")
    if weights is not None and sorted(weights) != sorted(members):
        raise ValueError(f"ensemble weights must name exactly the members {members}")


def combine_columns(ensemble: Mapping[str, Any], columns: np.ndarray,
                    combiner: Any = None) -> np.ndarray:
    """Apply an ensemble spec to ``(n, n_members)`` positive-class probabilities."""
    columns = np.asarray(columns, dtype=np.float64)
    method = ensemble["method"]
    if method == "single":
        return columns[:, 0].astype(np.float32)
    if method == "mean":
        weights = ensemble.get("weights")
        weight_vector = (np.ones(columns.shape[1]) if weights is None
                         else np.array([weights[name] for name in ensemble["members"]], float))
        return (columns @ weight_vector / weight_vector.sum()).astype(np.float32)
    if method == "stacking":
        inputs = stacking_inputs(columns, ensemble.get("transform", "identity"))
        return combiner.predict_proba(inputs)[:, 1].astype(np.float32)
    raise BundleError(f"unknown ensemble method {method!r}")


def stacking_inputs(columns: np.ndarray, transform: str) -> np.ndarray:
    """Return the combiner's inputs: probabilities as they are or as clipped log-odds."""
    if transform == "identity":
        return columns
    if transform == "logit":
        clipped = np.clip(columns, 1e-4, 1 - 1e-4)
        return np.log(clipped / (1 - clipped))
    raise BundleError(f"unknown stacking transform {transform!r}")
