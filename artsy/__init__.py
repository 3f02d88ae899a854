"""artsy: label the emotion images evoke (positive / negative affect and the Mikels category),
in batch, on Ray.

Heavy modules (Ray, TensorFlow, scikit-learn) are imported lazily: ``import artsy`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from artsy.config import EMOTION_CATEGORIES, EMOTIONS, ArtsyConfig, JobConfig, TrainConfig

__all__ = [
    "EMOTIONS",
    "EMOTION_CATEGORIES",
    "ArtsyConfig",
    "JobConfig",
    "TrainConfig",
    "decode_image",
    "extract_features",
    "load_bundle",
    "run_job",
    "validate_job",
    "train",
    "OUTPUT_SCHEMA",
    "output_schema",
    "load_backbone",
    "embed",
    "write_report",
]
__version__ = "0.1.0"

_LAZY = {
    "decode_image": "artsy.io",
    "extract_features": "artsy.features",
    "load_bundle": "artsy.models.bundle",
    "run_job": "artsy.job.pipeline",
    "validate_job": "artsy.job.pipeline",
    "train": "artsy.training.train",
    "OUTPUT_SCHEMA": "artsy.job.schema",
    "output_schema": "artsy.job.schema",
    "load_backbone": "artsy.models.backbone",
    "embed": "artsy.models.backbone",
    "write_report": "artsy.job.run_report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'artsy' has no attribute {name!r}")
