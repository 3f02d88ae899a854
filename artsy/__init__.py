"""artsy: label the emotion (positive / negative affect) that images evoke, in batch, on Ray."""

from artsy.config import EMOTIONS, ArtsyConfig, JobConfig, TrainConfig

__all__ = ["EMOTIONS", "ArtsyConfig", "JobConfig", "TrainConfig"]
__version__ = "0.1.0"
