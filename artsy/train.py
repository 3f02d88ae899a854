"""Training: from a labelled image folder to a verified model bundle with its report.

Steps of :func:`train`: list the labelled folders (:mod:`artsy.sources`) → decode (failures
listed, never fatal) → features of the 100×100 square and the pretrained backbone's embedding of
the centre crop → near-duplicates grouped across sources → grouped cross-validation of every
requested model (hyper-parameters searched inside the training folds only) → a stacked,
calibrated ensemble evaluated on the same outer folds → final fits on all images → transfer
checks (the first source alone → the others and ``eval_data``; everything → ``eval_data``,
:mod:`artsy.transfer`) → report → :func:`artsy.bundle.save_bundle`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from artsy import backbone as backbone_module
from artsy import report
from artsy.bundle import MANIFEST_NAME, save_bundle, stacking_inputs
from artsy.classical import CLASSICAL_MODELS, make_classifier
from artsy.config import TrainConfig
from artsy.dataset import LabelledImages, data_fingerprint, decode_labelled
from artsy.evaluate import CVResult, cross_validate, majority_baseline
from artsy.features import extract_features, feature_names
from artsy.sources import group_duplicates, load_sources

logger = logging.getLogger(__name__)

#: Models over the pretrained backbone's embedding: name -> learner of :mod:`artsy.classical`.
EMBEDDING_MODELS: dict[str, str] = {"effnet": "svm", "effnet_logreg": "logreg"}
#: Models :func:`train` knows: over the embedding, over the feature set, and the CNN.
TRAINABLE_MODELS: tuple[str, ...] = (*EMBEDDING_MODELS, *CLASSICAL_MODELS, "cnn")
#: Most members the stacked ensemble keeps (ranked by out-of-fold ROC AUC).
ENSEMBLE_MAX_MEMBERS = 3
#: Inverse regularisation of the stacking combiner (logistic regression on member log-odds).
COMBINER_C = 1.0
#: The CNN's early-stopping split: one of this many grouped folds of a training fold.
CNN_VALIDATION_SPLITS = 5
#: Transform applied to member probabilities before the combiner.
STACKING_TRANSFORM = "logit"


@dataclass
class TrainingRun:
    """Everything the report needs from one :func:`train` call."""

    config: TrainConfig
    data: LabelledImages
    failures: list[tuple[str, str]]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    duplicate_pairs: list[tuple[int, int]] = field(default_factory=list)
    results: dict[str, CVResult] = field(default_factory=dict)
    transfer: list[dict[str, Any]] = field(default_factory=list)
    emotion: dict[str, Any] | None = None
    cnn_histories: list[dict[str, list[float]]] = field(default_factory=list)
    cnn_final_epochs: int | None = None
    members: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)

    def model_inputs(self, name: str) -> np.ndarray:
        """What model ``name`` reads: the backbone embedding or the feature vectors."""
        return self.inputs["embedding" if name in EMBEDDING_MODELS else "features"]


def learner(name: str) -> str:
    """The :mod:`artsy.classical` learner behind a trainable model name."""
    return EMBEDDING_MODELS.get(name, name)


def _check_config(config: TrainConfig) -> None:
    unknown = [name for name in config.models if name not in TRAINABLE_MODELS]
    if unknown or not config.models:
        raise ValueError(f"unknown models {unknown}; choose from {', '.join(TRAINABLE_MODELS)}")
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
    parts += ["--models", *config.models, "--feature-set", config.artsy.feature_set,
              "--seed", str(config.artsy.seed), "--cv-seeds", *map(str, config.cv_seeds),
              "--n-splits", str(config.n_splits), "--cnn-epochs", str(config.cnn_epochs)]
    parts += ["--ablation", *map(str, ablation)] if ablation else []
    parts += ["--tried", str(tried)] if tried is not None else []
    return " ".join(parts)


def _classical_cv(name: str, features: np.ndarray, data: LabelledImages,
                  config: TrainConfig) -> CVResult:
    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        model = make_classifier(learner(name), random_state=config.artsy.seed)
        model.fit(features[train_idx], data.labels[train_idx], groups=data.groups[train_idx])
        return model.predict_proba(features[test_idx])[:, 1]

    return cross_validate(fit_predict, data.labels, data.groups, n_splits=config.n_splits,
                          seeds=config.cv_seeds, name=name)


def _validation_split(labels: np.ndarray, groups: np.ndarray,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    splitter = StratifiedGroupKFold(n_splits=CNN_VALIDATION_SPLITS, shuffle=True, random_state=seed)
    return next(splitter.split(np.zeros(labels.size), labels, groups))


def _cnn_cv(images: np.ndarray, data: LabelledImages, run: TrainingRun) -> CVResult:
    from artsy import cnn

    config = run.config
    best_epochs = []

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        fit_idx, val_idx = (train_idx[part] for part in _validation_split(
            data.labels[train_idx], data.groups[train_idx], config.artsy.seed))
        model = cnn.build_cnn(images.shape[1:], 2, seed=config.artsy.seed)
        history = cnn.train_cnn(model, images[fit_idx], data.labels[fit_idx],
                                validation_data=(images[val_idx], data.labels[val_idx]),
                                epochs=config.cnn_epochs, seed=config.artsy.seed)
        run.cnn_histories.append({key: [float(v) for v in values]
                                  for key, values in history.history.items()})
        best_epochs.append(cnn.best_epoch(history))
        logger.info("cnn fold %d: best epoch %d", len(best_epochs), best_epochs[-1])
        return cnn.predict_positive(model, images[test_idx], batch_size=config.artsy.batch_size)

    result = cross_validate(fit_predict, data.labels, data.groups, n_splits=config.n_splits,
                            seeds=config.cv_seeds, name="cnn")
    run.cnn_final_epochs = max(1, int(round(statistics.median(best_epochs))))
    return result


def rank_members(columns: np.ndarray, labels: np.ndarray,
                 names: tuple[str, ...]) -> tuple[str, ...]:
    """The ``ENSEMBLE_MAX_MEMBERS`` best models by ROC AUC of their probabilities, best first."""
    aucs = [roc_auc_score(labels, columns[:, index]) for index in range(len(names))]
    order = sorted(range(len(names)), key=lambda index: (-aucs[index], names[index]))
    return tuple(names[index] for index in order[:ENSEMBLE_MAX_MEMBERS])


def fit_combiner(columns: np.ndarray, labels: np.ndarray) -> LogisticRegression:
    """Fit the stacking combiner on member probabilities ``(n, n_members)``.

    Class-balanced: its probabilities are calibrated for equal class priors, so the 0.5
    threshold maximises balanced accuracy instead of trading it for the training set's base
    rate (which a collection elsewhere does not share).
    """
    combiner = LogisticRegression(C=COMBINER_C, class_weight="balanced")
    return combiner.fit(stacking_inputs(columns, STACKING_TRANSFORM), labels)


def _ensemble_cv(run: TrainingRun, candidates: tuple[str, ...]) -> CVResult:
    """Cross-validate member choice + combiner on the members' out-of-fold probabilities.

    Each outer fold ranks the candidates and fits the combiner on the other folds' out-of-fold
    probabilities only, so the test fold plays no part in choosing or weighting members.
    """
    config, labels, groups = run.config, run.data.labels, run.data.groups
    merged = CVResult(name="ensemble", n_splits=config.n_splits, seeds=tuple(config.cv_seeds),
                      labels=labels)
    for seed in config.cv_seeds:
        columns = np.column_stack([run.results[name].oof[seed] for name in candidates])

        def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray,
                        columns: np.ndarray = columns) -> np.ndarray:
            chosen = rank_members(columns[train_idx], labels[train_idx], candidates)
            picks = [candidates.index(name) for name in chosen]
            combiner = fit_combiner(columns[np.ix_(train_idx, picks)], labels[train_idx])
            inputs = stacking_inputs(columns[np.ix_(test_idx, picks)], STACKING_TRANSFORM)
            return combiner.predict_proba(inputs)[:, 1]

        single = cross_validate(fit_predict, labels, groups, n_splits=config.n_splits,
                                seeds=(seed,), name="ensemble")
        merged.folds += single.folds
        merged.oof.update(single.oof)
    logger.info("%s", merged.summary())
    return merged


def _final_classical(name: str, features: np.ndarray, data: LabelledImages,
                     seed: int) -> tuple[Any, dict[str, Any]]:
    search = make_classifier(learner(name), random_state=seed)
    search.fit(features, data.labels, groups=data.groups)
    params = {key: value for key, value in search.best_params_.items()}
    logger.info("final %s: %s", name, params)
    return search.best_estimator_, params


def _final_cnn(images: np.ndarray, data: LabelledImages, run: TrainingRun) -> Any:
    from artsy import cnn

    config = run.config
    model = cnn.build_cnn(images.shape[1:], 2, seed=config.artsy.seed)
    history = cnn.train_cnn(model, images, data.labels, epochs=run.cnn_final_epochs or 1,
                            seed=config.artsy.seed)
    logger.info("final cnn: %d epochs on %d images, final loss %.4f", run.cnn_final_epochs,
                len(images), history.history["loss"][-1])
    return model


def _load(config: TrainConfig) -> tuple[LabelledImages, Any]:
    data = load_sources(config.data, min_agree=config.min_agree)
    crop = (backbone_module.VARIANTS[backbone_module.DEFAULT_BACKBONE].image_size
            if any(name in EMBEDDING_MODELS for name in config.models) else None)
    decoded = decode_labelled(data.paths, size=config.artsy.image_size, crop=crop)
    data = data.subset(decoded.ok_mask)
    if len(np.unique(data.labels)) < 2:
        raise ValueError(f"fewer than two classes left in {', '.join(config.data)} after "
                         f"dropping {len(decoded.failures)} unreadable images")
    return data, decoded


def compute_inputs(images: np.ndarray, crops: np.ndarray | None, config: TrainConfig,
                   backbone: Any = None) -> dict[str, np.ndarray]:
    """``{"features": (n, d), "embedding": (n, 1280)}`` (embedding only with crops)."""
    logger.info("extracting %s features of %d images", config.artsy.feature_set, len(images))
    inputs = {"features": extract_features(images, config.artsy.feature_set)}
    if crops is not None:
        logger.info("embedding %d centre crops with %s", len(crops),
                    backbone_module.DEFAULT_BACKBONE)
        inputs["embedding"] = backbone_module.embed(crops, model=backbone,
                                                    batch_size=config.artsy.batch_size)
    return inputs


def train(config: TrainConfig, *, ablation: Sequence[str | Path] = (),
          tried: str | Path | None = None) -> Path:
    """Train, evaluate and save a model bundle as ``config`` says.

    Parameters
    ----------
    config : TrainConfig
        Data folder, output bundle, agreement subset, models, CV folds and seeds, CNN epochs and
        the shared settings (feature set, image size, seed).
    ablation : sequence of str or Path, default=()
        JSON files from ``python -m artsy.ablation`` (e.g. one per agreement subset); their tables
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
        :func:`artsy.dataset.load_labelled_folder` reports (missing folder, one class, ...).
    """
    _check_config(config)
    ablation = [ablation] if isinstance(ablation, str | Path) else list(ablation)
    extras = {"ablation": [report.read_ablation(path) for path in ablation] or None,
              "tried": None if tried is None else report.read_tried(tried)}
    started, cpu_started = time.perf_counter(), time.process_time()
    data, decoded = _load(config)
    images = decoded.images[decoded.ok_mask]
    crops = None if decoded.crops is None else decoded.crops[decoded.ok_mask]
    run = TrainingRun(config=config, data=data, failures=decoded.failures)
    run.seconds["load_and_decode"] = time.perf_counter() - started
    backbone = None
    with _timed(run, "features"):
        if crops is not None:
            from artsy.inference import configure_tensorflow

            configure_tensorflow()
            backbone = backbone_module.load_backbone()
        run.inputs = compute_inputs(images, crops, config, backbone)
    if "embedding" in run.inputs:
        groups, run.duplicate_pairs = group_duplicates(data.groups, run.inputs["embedding"])
        data = run.data = dataclasses.replace(data, groups=groups)
    run.results["majority"] = majority_baseline(data.labels, data.groups,
                                                n_splits=config.n_splits, seeds=config.cv_seeds)
    classical_names = tuple(name for name in config.models if name != "cnn")
    for name in classical_names:
        with _timed(run, f"cv_{name}"):
            run.results[name] = _classical_cv(name, run.model_inputs(name), data, config)
    if "cnn" in config.models:
        with _timed(run, "cv_cnn"):
            logger.info("cross-validating cnn (up to %d epochs per fold)", config.cnn_epochs)
            run.results["cnn"] = _cnn_cv(images, data, run)
    run.results["ensemble"] = _ensemble_cv(run, config.models)
    combiner = _final_combiner(run)
    with _timed(run, "emotion"):
        from artsy.emotion import train_emotion

        emotion_head, run.emotion = train_emotion(run)

    # Every trained model is saved (the batch job writes one p_positive_<model> column each);
    # only the ensemble members decide the label.
    fitted, params = {}, {}
    for name in classical_names:
        with _timed(run, f"final_{name}"):
            fitted[name], params[name] = _final_classical(name, run.model_inputs(name), data,
                                                          config.artsy.seed)
    classical = {name: model for name, model in fitted.items() if name not in EMBEDDING_MODELS}
    embedding = {name: model for name, model in fitted.items() if name in EMBEDDING_MODELS}
    with _timed(run, "transfer"):
        from artsy import transfer

        run.transfer = transfer.evaluate(run, fitted, combiner, backbone=backbone)
    cnn_model = None
    if "cnn" in config.models:
        with _timed(run, "final_cnn"):
            cnn_model = _final_cnn(images, data, run)
    run.seconds["total"] = time.perf_counter() - started
    run.seconds["total_cpu"] = time.process_time() - cpu_started  # all threads of this process
    manifest = _manifest(run, params, combiner)
    manifest["training"]["command"] = command_line(config, ablation=ablation, tried=tried)
    manifest.update({key: value for key, value in extras.items() if value is not None})
    with tempfile.TemporaryDirectory(prefix="artsy-report-") as report_dir:
        report.write_report(Path(report_dir), run=run, manifest=manifest, cnn_model=cnn_model)
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


def _final_combiner(run: TrainingRun) -> LogisticRegression:
    """Choose the members and fit the combiner on every seed's out-of-fold probabilities."""
    candidates, seeds = run.config.models, run.config.cv_seeds
    columns = np.concatenate([np.column_stack([run.results[name].oof[seed]
                                               for name in candidates]) for seed in seeds])
    labels = np.tile(run.data.labels, len(seeds))
    run.members = rank_members(columns, labels, candidates)
    picks = [candidates.index(name) for name in run.members]
    combiner = fit_combiner(columns[:, picks], labels)
    logger.info("ensemble members %s, combiner weights %s", run.members, combiner.coef_.tolist())
    return combiner


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
        **({"backbone": backbone_module.bundle_record()} if "embedding" in run.inputs else {}),
        "transfer": run.transfer,
        **({"emotion": run.emotion} if run.emotion else {}),
        "protocol": {"outer": first["protocol"], "n_splits": config.n_splits,
                     "seeds": list(config.cv_seeds),
                     "inner": "grid search on inner stratified grouped 3-fold splits of each "
                              "training fold (classical); CNN early stopping on a grouped 20% "
                              "split of each training fold",
                     "ensemble": "members ranked by out-of-fold ROC AUC and combiner fitted on "
                                 "the training folds' out-of-fold probabilities only"},
        "metrics": report.subset_metrics(run),
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
