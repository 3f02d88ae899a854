"""Configuration objects: built once in a job's ``main()`` and passed down.

No stage reads ``argv`` or the environment; every tunable number lives here with its default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: Class names, in the order used by every probability column (index 1 is "positive").
EMOTIONS: tuple[str, str] = ("negative", "positive")
#: The eight Mikels emotion categories (Mikels et al. 2005; the FI data set's labels), positive
#: ones first; each has an output column ``p_<category>``.
EMOTION_CATEGORIES: tuple[str, ...] = ("amusement", "awe", "contentment", "excitement",
                                       "anger", "disgust", "fear", "sadness")
#: Valence of each category (the usual FI split): the first four are positive.
POSITIVE_CATEGORIES: frozenset[str] = frozenset(EMOTION_CATEGORIES[:4])


@dataclass(frozen=True)
class ArtsyConfig:
    """Settings shared by training and the batch job.

    Parameters
    ----------
    image_size : int, default=100
        Side of the square RGB image every decoder produces.
    feature_set : str, default="affect"
        Name of the feature set (see :mod:`artsy.features`).
    hog_orientations : int, default=9
        HOG orientation bins.
    hog_pixels_per_cell : tuple of int, default=(10, 10)
        HOG cell size in pixels.
    hog_cells_per_block : tuple of int, default=(2, 2)
        HOG block size in cells.
    seed : int, default=1337
        Seed for everything random (CV splits, models, CNN initialisation).
    batch_size : int, default=64
        Images per batch in the batch job and CNN inference.
    """

    image_size: int = 100
    feature_set: str = "affect"
    hog_orientations: int = 9
    hog_pixels_per_cell: tuple[int, int] = (10, 10)
    hog_cells_per_block: tuple[int, int] = (2, 2)
    seed: int = 1337
    batch_size: int = 64

    def replace(self, **changes: object) -> ArtsyConfig:
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """Arguments of ``jobs/train.py``.

    Parameters
    ----------
    data : tuple of str (one str is accepted)
        Labelled folders: ``labels.csv`` (``path,label[,agree_min]``) or one sub-folder per
        class. Several folders are trained on together (:mod:`artsy.training.sources`); the
        first is also trained on alone to measure how the model transfers to the others.
    out : str
        Directory the model bundle is written to.
    min_agree : int or None, default=None
        Keep only images whose rater agreement is at least this (Twitter I: 3, 4 or 5), in the
        folders that record it.
    models : tuple of str, default=("effnet", "effnet_logreg", "svm", "logreg", "rf")
        Models to train; the bundle's ensemble is built from them (``effnet*`` read the
        pretrained backbone's embedding, the others the feature set).
    eval_data : tuple of str, default=()
        Labelled folders only scored, never trained on (cross-domain checks in the model card).
    n_splits : int, default=5
        Outer cross-validation folds.
    cv_seeds : tuple of int, default=(0,)
        One repetition of the outer cross-validation per seed.
    cnn_epochs : int, default=40
        Upper bound on CNN epochs (early stopping usually ends sooner).
    embedding : str, default="multilevel"
        What the ``effnet*`` models read (:data:`artsy.models.backbone.EMBEDDINGS`): the
        backbone's pooled head (``"head"``, 1 280-d) or the head plus pooled stages 3-6.
    backbone_size : int, default=288
        Side of the centre crop the backbone reads, a multiple of 32 (its weights were trained
        at 224; a crop of the same field of view at 288 ranks better, see the model card).
    artsy : ArtsyConfig
        Shared settings.
    """

    data: tuple[str, ...]
    out: str
    min_agree: int | None = None
    models: tuple[str, ...] = ("effnet", "effnet_logreg", "svm", "logreg", "rf")
    n_splits: int = 5
    cv_seeds: tuple[int, ...] = (0,)
    cnn_epochs: int = 40
    artsy: ArtsyConfig = field(default_factory=ArtsyConfig)
    eval_data: tuple[str, ...] = ()
    embedding: str = "multilevel"
    backbone_size: int = 288

    def __post_init__(self) -> None:
        for name in ("data", "eval_data"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,) if value else ())


@dataclass(frozen=True)
class JobConfig:
    """Arguments of ``jobs/classify.py``.

    Parameters
    ----------
    inputs : tuple of str
        Local paths or ``s3://`` / ``gs://`` URIs of image files or folders.
    output : str
        Root of the hive-partitioned Parquet table.
    model : str or None, default=None
        Model bundle directory; ``None`` means the bundle shipped inside the package.
    run_date : str or None, default=None
        Partition date ``YYYY-MM-DD``; ``None`` means today (UTC).
    cnn_actors : int or None, default=None
        CNN actors; ``None`` means one per GPU, or one on a CPU-only cluster.
    gpus_per_actor : float or None, default=None
        GPUs per CNN actor; ``None`` means 1 when the cluster has GPUs, else 0.
    full : bool, default=False
        Reprocess every file, even those already labelled by the same model version.
    max_error_rate : float, default=1.0
        Fail (and do not commit) when more than this fraction of files error.
    artsy : ArtsyConfig
        Shared settings.
    """

    inputs: tuple[str, ...]
    output: str
    model: str | None = None
    run_date: str | None = None
    cnn_actors: int | None = None
    gpus_per_actor: float | None = None
    full: bool = False
    max_error_rate: float = 1.0
    artsy: ArtsyConfig = field(default_factory=ArtsyConfig)
