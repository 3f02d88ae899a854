"""Research probes over the shipped backbone's embedding (the figures in TRIED_backbone.md).

``python -m benchmarks.backbone_probe [--shared ../shared/data] [--out FILE.json]`` (from the
repository root) embeds Twitter I, the FI subset and BASS once (224 px centre crops, plus their
mirror images), then cross-validates heads over the embedding:

- ``twitter_only``: the issue's linear probe (standardised logistic regression, balanced) at
  several C, Twitter I 5-agree, stratified 5-fold grouped by media id x seeds 0, 1, 2;
- ``both_sources``: heads trained on Twitter I 5-agree + FI together, scored on the Twitter rows
  (accuracy / balanced) and the FI rows (balanced): linear, RBF SVM, embedding + ``affect``
  features, flip test-time augmentation;
- ``transfer``: the linear probe trained on one set and scored on another whole set.

Prints one JSON document; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsy.features import extract_features  # noqa: E402
from artsy.models import backbone  # noqa: E402
from artsy.training.dataset import decode_labelled, load_labelled_folder  # noqa: E402

SEEDS = (0, 1, 2)
Head = Callable[[], object]


def load(folder: Path, model: object) -> dict[str, np.ndarray]:
    """Labels, groups, agreement, ``affect`` features and embeddings (plain and mirrored)."""
    data = load_labelled_folder(folder)
    decoded = decode_labelled(data.paths, size=100, crop=224)
    return {"labels": data.labels, "groups": data.groups.astype(str),
            "agree": data.agree if data.agree is not None else np.full(len(data), 5),
            "features": extract_features(decoded.images, "affect"),
            "emb": backbone.embed(decoded.crops, model=model),
            "flip": backbone.embed(decoded.crops[:, :, ::-1].copy(), model=model)}


def linear(c: float = 0.003) -> Head:
    return lambda: make_pipeline(StandardScaler(),
                                 LogisticRegression(C=c, class_weight="balanced", max_iter=3000))


def svm(c: float = 1.0) -> Head:
    return lambda: make_pipeline(StandardScaler(), SVC(C=c, class_weight="balanced"))


def cv(x_train: np.ndarray, x_test: np.ndarray, labels: np.ndarray, groups: np.ndarray,
       source: np.ndarray, head: Head) -> dict[str, float]:
    """Grouped stratified 5-fold x 3 seeds; Twitter-row accuracy / balanced, FI-row balanced."""
    rows = []
    for seed in SEEDS:
        splits = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
        for train, test in splits.split(x_train, labels, groups):
            predicted = head().fit(x_train[train], labels[train]).predict(x_test[test])
            first, second = source[test] == 0, source[test] == 1
            row = [accuracy_score(labels[test][first], predicted[first]),
                   balanced_accuracy_score(labels[test][first], predicted[first])]
            if second.any():
                row.append(balanced_accuracy_score(labels[test][second], predicted[second]))
            rows.append(row)
    names = ("twitter_accuracy", "twitter_balanced", "fi_balanced")
    return {name: round(float(value), 3) for name, value in zip(names, np.mean(rows, axis=0),
                                                                  strict=False)}


def transfer(train: dict, test: dict, head: Head) -> dict[str, float]:
    model = head().fit(train["emb"], train["labels"])
    probs = model.predict_proba(test["emb"])[:, 1]
    return {"balanced": round(float(balanced_accuracy_score(test["labels"], probs >= 0.5)), 3),
            "roc_auc": round(float(roc_auc_score(test["labels"], probs)), 3),
            "predicted_positive": round(float((probs >= 0.5).mean()), 3),
            "true_positive": round(float(test["labels"].mean()), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared/data", help="folder of the labelled sets")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    model = backbone.load_backbone()
    sets = {name: load(Path(args.shared) / name, model)
            for name in ("twitter_i", "fi_subset", "bass")}
    twitter = {key: value[sets["twitter_i"]["agree"] == 5]
               for key, value in sets["twitter_i"].items()}
    fi = sets["fi_subset"]
    both = {key: np.concatenate([twitter[key], fi[key]]) for key in twitter}
    source = np.repeat([0, 1], [len(twitter["labels"]), len(fi["labels"])])
    groups = np.concatenate([twitter["groups"], np.char.add("fi:", fi["groups"])])
    only = np.zeros(len(twitter["labels"]), dtype=int)
    plain, mean_flip = both["emb"], (both["emb"] + both["flip"]) / 2
    with_features = np.hstack([both["emb"], both["features"]])
    results = {
        "twitter_only": {f"linear C={c}": cv(twitter["emb"], twitter["emb"], twitter["labels"],
                                             twitter["groups"], only, linear(c))
                         for c in (0.001, 0.003, 0.01, 0.03)},
        "both_sources": {
            "linear C=0.003": cv(plain, plain, both["labels"], groups, source, linear()),
            "svm C=0.3": cv(plain, plain, both["labels"], groups, source, svm(0.3)),
            "svm C=1": cv(plain, plain, both["labels"], groups, source, svm(1.0)),
            "svm C=3": cv(plain, plain, both["labels"], groups, source, svm(3.0)),
            "svm C=1, embedding + affect": cv(with_features, with_features, both["labels"],
                                              groups, source, svm(1.0)),
            "svm C=1, flip TTA at test": cv(plain, mean_flip, both["labels"], groups, source,
                                            svm(1.0)),
        },
        "transfer": {
            "twitter_i 5-agree -> fi_subset": transfer(twitter, fi, linear()),
            "twitter_i 5-agree -> bass": transfer(twitter, sets["bass"], linear()),
            "twitter_i + fi_subset -> bass": transfer(both, sets["bass"], linear()),
            "fi_subset -> twitter_i 5-agree": transfer(fi, twitter, linear()),
        },
    }
    text = json.dumps(results, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
