"""Training: from a labelled image folder to a verified model bundle with its report.

Steps of :func:`train`: list the labelled folders (:mod:`artsy.training.sources`) → decode (failures
listed, never fatal) → features of the 100×100 square and the pretrained backbone's embedding of
the centre crop → near-duplicates grouped across sources → grouped cross-validation of every
requested model (hyper-parameters searched inside the training folds only) → a stacked,
calibrated ensemble evaluated on the same outer folds → final fits on all images → transfer
checks (the first source alone → the others and ``eval_data``; everything → ``eval_data``,
:mod:`artsy.training.transfer`) → report → :func:`artsy.models.bundle_save.save_bundle`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from artsy.config import TrainConfig
from artsy.features import feature_names
from artsy.models import backbone as backbone_module
from artsy.models.bundle import MANIFEST_NAME
from artsy.models.bundle_save import save_bundle
from artsy.training import model_card
from artsy.training.dataset import LabelledImages, data_fingerprint, decode_labelled
from artsy.training.evaluate import majority_baseline
from artsy.training.members import (
    EMBEDDING_MODELS,
    STACKING_TRANSFORM,
    TRAINABLE_MODELS,
    TrainingRun,
    classical_cv,
    cnn_cv,
    compute_inputs,
    ensemble_cv,
    final_classical,
    final_cnn,
    final_combiner,
    rank_members,
)
from artsy.training.sources import group_duplicates, load_sources

__all__ = ["TRAINABLE_MODELS", "TrainingRun", "command_line", "rank_members", "train"]

logger = logging.getLogger(__name__)

def _check_config(config: TrainConfig) -> None:
    unknown = [name for name in config.models if name not in TRAINABLE_MODELS]
    if unknown or not config.models:
        raise ValueError(f"unknown models {unknown}; choose from {', '.join(TRAINABLE_MODELS)}")
    backbone_module.check_input_side(config.backbone_size)
    out = Path(config.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                               and not (out / MANIFEST_NAME).is_file())):
        raise ValueError(f"--out {out} exists and is not a model bundle; choose a new folder")
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise ValueError(f"--out {out} is not writable ({parent} is a file, not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} is not writable (no write permission on {parent})")


def command_line(config: TrainConfig, *, ablation: Sequence[str | Path] = (),
                 tried: str | Path | None = None) -> str:
    """The ``jobs/train.py`` command that reproduces ``config`` (and the report's extra files)."""
    parts = ["python", "jobs/train.py", "--data", *config.data, "--out", config.out]
    parts += ["--eval-data", *config.eval_data] if config.eval_data else []
    if config.min_agree is not None:
        parts += ["--min-agree", str(config.min_agree)]
    parts += ["--models", *config.models, "--embedding", config.embedding,
              "--backbone-size", str(config.backbone_size),
              "--feature-set", config.artsy.feature_set,
              "--seed", str(config.artsy.seed), "--cv-seeds", *map(str, config.cv_seeds),
              "--n-splits", str(config.n_splits), "--cnn-epochs", str(config.cnn_epochs)]
    parts += ["--ablation", *map(str, ablation)] if ablation else []
    parts += ["--tried", str(tried)] if tried is not None else []
    return " ".join(parts)


def _load(config: TrainConfig) -> tuple[LabelledImages, Any]:
    data = load_sources(config.data, min_agree=config.min_agree)
    crop = (config.backbone_size if any(name in EMBEDDING_MODELS for name in config.models)
            else None)
    decoded = decode_labelled(data.paths, size=config.artsy.image_size, crop=crop)
    data = data.subset(decoded.ok_mask)
    if len(np.unique(data.labels)) < 2:
        raise ValueError(f"fewer than two classes left in {', '.join(config.data)} after "
                         f"dropping {len(decoded.failures)} unreadable images")
    return data, decoded


def train(config: TrainConfig, *, ablation: Sequence[str | Path] = (),
          tried: str | Path | None = None) -> Path:
    """Train, evaluate and save a model bundle as ``config`` says.

    Parameters
    ----------
    config : TrainConfig
        Data folder, output bundle, agreement subset, models, CV folds and seeds, CNN epochs and
        the shared settings (feature set, image size, seed).
    ablation : sequence of str or Path, default=()
        JSON files from ``python -m artsy.training.ablation`` (e.g. one per agreement subset);
        their tables
        go into the model card and the manifest (one path is accepted too).
    tried : str or Path or None, default=None
        Markdown for the model card's "What was tried" section.

    Returns
    -------
    Path
        The bundle directory (``config.out``), with ``report/`` inside.

    Raises
    ------
    ValueError
        On an unknown model, an ``out`` that is not writable or not a bundle, an unreadable
        ``ablation`` or ``tried`` file, and every problem
        :func:`artsy.training.dataset.load_labelled_folder` reports (missing folder, one class,
        ...).
    """
    _check_config(config)
    ablation = [ablation] if isinstance(ablation, str | Path) else list(ablation)
    extras = {"ablation": [model_card.read_ablation(path) for path in ablation] or None,
              "tried": None if tried is None else model_card.read_tried(tried)}
    started, cpu_started = time.perf_counter(), time.process_time()
    data, decoded = _load(config)
    images = decoded.images[decoded.ok_mask]
    crops = None if decoded.crops is None else decoded.crops[decoded.ok_mask]
    run = TrainingRun(config=config, data=data, failures=decoded.failures)
    run.seconds["load_and_decode"] = time.perf_counter() - started
    backbone = None
    with _timed(run, "features"):
        if crops is not None:
            from artsy.models.inference import configure_tensorflow

            configure_tensorflow()
            backbone = backbone_module.load_backbone(
                pooled_stages=backbone_module.EMBEDDINGS[config.embedding],
                image_size=config.backbone_size)
        run.inputs = compute_inputs(images, crops, config, backbone)
    if "embedding" in run.inputs:
        head = run.inputs["embedding"][:, :backbone_module.EMBEDDING_SIZE]  # the pooled head
        groups, run.duplicate_pairs = group_duplicates(data.groups, head)
        data = run.data = dataclasses.replace(data, groups=groups)
    run.results["majority"] = majority_baseline(data.labels, data.groups,
                                                n_splits=config.n_splits, seeds=config.cv_seeds)
    classical_names = tuple(name for name in config.models if name != "cnn")
    for name in classical_names:
        with _timed(run, f"cv_{name}"):
            run.results[name] = classical_cv(name, run.model_inputs(name), data, config)
    if "cnn" in config.models:
        with _timed(run, "cv_cnn"):
            logger.info("cross-validating cnn (up to %d epochs per fold)", config.cnn_epochs)
            run.results["cnn"] = cnn_cv(images, data, run)
    run.results["ensemble"] = ensemble_cv(run, config.models)
    combiner = final_combiner(run)
    with _timed(run, "emotion"):
        from artsy.models.emotion import train_emotion

        emotion_head, run.emotion = train_emotion(run)

    # Every trained model is saved (the batch job writes one p_positive_<model> column each);
    # only the ensemble members decide the label.
    fitted, params = {}, {}
    for name in classical_names:
        with _timed(run, f"final_{name}"):
            fitted[name], params[name] = final_classical(name, run.model_inputs(name), data,
                                                          config.artsy.seed)
    classical = {name: model for name, model in fitted.items() if name not in EMBEDDING_MODELS}
    embedding = {name: model for name, model in fitted.items() if name in EMBEDDING_MODELS}
    with _timed(run, "transfer"):
        from artsy.training import transfer

        run.transfer = transfer.evaluate(run, fitted, combiner, backbone=backbone)
    cnn_model = None
    if "cnn" in config.models:
        with _timed(run, "final_cnn"):
            cnn_model = final_cnn(images, data, run)
    run.seconds["total"] = time.perf_counter() - started
    run.seconds["total_cpu"] = time.process_time() - cpu_started  # all threads of this process
    manifest = _manifest(run, params, combiner)
    manifest["training"]["command"] = command_line(config, ablation=ablation, tried=tried)
    manifest.update({key: value for key, value in extras.items() if value is not None})
    with tempfile.TemporaryDirectory(prefix="artsy-report-") as report_dir:
        model_card.write_report(Path(report_dir), run=run, manifest=manifest, cnn_model=cnn_model)
        bundle = save_bundle(config.out, classical=classical, cnn_model=cnn_model,
                             combiner=combiner, manifest=manifest, report_dir=report_dir,
                             embedding=embedding, emotion_head=emotion_head)
    logger.info("trained in %.0f s: %s", time.perf_counter() - started,
                {stage: round(seconds) for stage, seconds in run.seconds.items()})
    return bundle


@contextlib.contextmanager
def _timed(run: TrainingRun, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    run.seconds[stage] = time.perf_counter() - start


def _source_facts(data: LabelledImages) -> dict[str, dict[str, Any]]:
    """Per source: images, class counts and a fingerprint of its own files."""
    facts = {}
    for name in dict.fromkeys(data.source.tolist()):
        part = data.subset(data.source == name)
        facts[name] = {"n_images": len(part), "fingerprint": data_fingerprint(part),
                       "class_counts": np.bincount(part.labels, minlength=2).tolist()}
    return facts


def _manifest(run: TrainingRun, params: dict[str, Any], combiner: LogisticRegression) -> dict:
    import sklearn

    config, data = run.config, run.data
    feature_set = config.artsy.feature_set
    first = run.results["majority"].to_dict()
    return {
        "image_size": config.artsy.image_size,
        "feature_set": {"name": feature_set, "length": len(feature_names(feature_set)),
                        "names": list(feature_names(feature_set))},
        "data": {"fingerprint": data_fingerprint(data),
                 "folder": ", ".join(Path(folder).name for folder in config.data),
                 "sources": _source_facts(data), "n_images": len(data),
                 "n_unreadable": len(run.failures),
                 "class_counts": np.bincount(data.labels, minlength=2).tolist(),
                 "min_agree": config.min_agree,
                 "near_duplicate_pairs": [[data.relative_paths[i], data.relative_paths[j]]
                                          for i, j in run.duplicate_pairs]},
        **({"backbone": backbone_module.bundle_record(embedding=config.embedding,
                                                      image_size=config.backbone_size)}
           if "embedding" in run.inputs else {}),
        "transfer": run.transfer,
        **({"emotion": run.emotion} if run.emotion else {}),
        "protocol": {"outer": first["protocol"], "n_splits": config.n_splits,
                     "seeds": list(config.cv_seeds),
                     "inner": "grid search on inner stratified grouped 3-fold splits of each "
                              "training fold (classical); CNN early stopping on a grouped 20% "
                              "split of each training fold",
                     "ensemble": "members ranked by out-of-fold ROC AUC and combiner fitted on "
                                 "the training folds' out-of-fold probabilities only"},
        "metrics": model_card.subset_metrics(run),
        "hyper_parameters": params,
        "ensemble": {"members": list(run.members), "method": "stacking",
                     "transform": STACKING_TRANSFORM,
                     "combiner_coefficients": [float(c) for c in combiner.coef_.ravel()],
                     "combiner_intercept": float(combiner.intercept_[0])},
        "training": {"command": command_line(config), "seed": config.artsy.seed,
                     "cv_seeds": list(config.cv_seeds), "models": list(config.models),
                     "cnn_epochs": config.cnn_epochs, "cnn_final_epochs": run.cnn_final_epochs,
                     "seconds": {stage: round(value, 1) for stage, value in run.seconds.items()},
                     "scikit_learn": sklearn.__version__},
    }
