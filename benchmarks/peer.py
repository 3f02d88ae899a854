"""The peer: the Ray Data docs pattern a user would write for the same kind of work as the job.

``python -m benchmarks.peer --input DIR --output OUT [--batch-size B]`` (from the repository
root) runs, as the Ray Data "batch inference" guide shows for TensorFlow::

    ray.init()
    ray.data.read_images(DIR, size=(224, 224), mode="RGB")
        .map_batches(notebook_features)           # 100x100 resize: colour moments, L*, HOG picture
        .map_batches(TFPredictor, batch_size=B,   # one actor hosting EfficientNetB0(weights=None)
                     compute=ray.data.ActorPoolStrategy(size=1))
        .write_parquet(OUT)

The features function keeps the 224 px image for the CNN stage; the predictor drops it and adds
the model's output, so each Parquet row holds the notebook's 10 064 features and the 1 000 class
scores. ``weights=None``: random weights, nothing downloaded (the speed is that of the trained
network). ``compute=ActorPoolStrategy(size=1)`` is the current API of Ray Data (its
``concurrency=`` argument is deprecated); one actor, as the job runs its CNN.

Timed from outside, as a whole process (start-up included), by :func:`benchmarks.baselines.peer`.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

#: Side of the images read for the CNN (EfficientNetB0's native input).
CNN_SIDE = 224
#: Side the notebook's features are computed at.
FEATURE_SIDE = 100
#: Default rows per call of the predictor (the job's default batch size).
BATCH_SIZE = 64


def notebook_features(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``map_batches`` function: the notebook's features of a 100x100 resize; image kept."""
    from PIL import Image

    from benchmarks.notebook import notebook_features as features

    small = np.stack([np.asarray(Image.fromarray(image).resize((FEATURE_SIDE, FEATURE_SIDE)))
                      for image in batch["image"]])
    return {"image": batch["image"], "features": features(small).astype(np.float32)}


class TFPredictor:
    """Callable class of the docs' TensorFlow pattern: build the model once, predict per batch."""

    def __init__(self) -> None:
        from tensorflow import keras

        self.model = keras.applications.EfficientNetB0(weights=None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the batch's features and the model's 1 000 class scores (image dropped)."""
        return {"features": batch["features"],
                "output": self.model(batch["image"]).numpy()}


def main(argv: list[str] | None = None) -> int:
    """Parse ``--input`` / ``--output`` / ``--batch-size`` and run the pattern; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of images")
    parser.add_argument("--output", required=True, help="Parquet output folder")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="rows per predictor call (default %(default)s)")
    arguments = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    # address="local": a fresh Ray, as the job gets with --ray-address local.
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = ray.data.read_images(arguments.input, size=(CNN_SIDE, CNN_SIDE), mode="RGB")
    dataset = dataset.map_batches(notebook_features)
    dataset = dataset.map_batches(TFPredictor, batch_size=arguments.batch_size,
                                  compute=ray.data.ActorPoolStrategy(size=1))
    dataset.write_parquet(arguments.output)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
