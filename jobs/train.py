"""Train artsy's models on a labelled image folder and write a verified model bundle.

Examples
--------
python jobs/train.py --data ../shared/data/twitter_i ../shared/data/fi_subset --out /tmp/bundle \
    --min-agree 5 --eval-data ../shared/data/bass
python jobs/train.py --data my_photos --out my_bundle --models effnet svm --cv-seeds 0 1 2

Labels come from ``DATA/labels.csv`` (``path,label[,agree_min]``) when present, else from the
``negative/`` and ``positive/`` sub-folders. Exit codes: 0 trained, 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys

from artsy.config import ArtsyConfig, TrainConfig

#: Exit status for bad input (argparse uses the same).
EXIT_BAD_INPUT = 2


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse the command line into a :class:`~artsy.config.TrainConfig`."""
    return _parse(argv)[0]


def _parse(argv: list[str] | None) -> tuple[TrainConfig, argparse.Namespace]:
    from artsy.models.backbone import EMBEDDINGS
    from artsy.training.train import TRAINABLE_MODELS

    defaults, shared = TrainConfig(data=(), out=""), ArtsyConfig()
    parser = _OneLineParser(prog="train.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, nargs="+", metavar="DIR",
                        help="labelled folders (labels.csv or negative/ and positive/ "
                             "sub-folders), trained on together; the first is also trained on "
                             "alone to score the others")
    parser.add_argument("--eval-data", nargs="+", default=[], metavar="DIR",
                        help="labelled folders only scored (cross-domain checks)")
    parser.add_argument("--out", required=True, metavar="BUNDLE_DIR",
                        help="bundle directory to write (replaced)")
    parser.add_argument("--min-agree", type=int, default=defaults.min_agree, metavar="N",
                        help="keep images with agree_min >= N (needs the labels.csv column)")
    parser.add_argument("--models", nargs="+", choices=TRAINABLE_MODELS, metavar="MODEL",
                        default=list(defaults.models),
                        help=f"models to train and ensemble, from {' '.join(TRAINABLE_MODELS)}")
    parser.add_argument("--embedding", choices=sorted(EMBEDDINGS), default=defaults.embedding,
                        help="what the effnet models read: the backbone's pooled head, or the "
                             f"head plus pooled mid-level stages (default {defaults.embedding})")
    parser.add_argument("--backbone-size", type=int, default=defaults.backbone_size, metavar="PX",
                        help="side of the centre crop the backbone reads, a multiple of 32 "
                             f"(default {defaults.backbone_size})")
    parser.add_argument("--feature-set", default=shared.feature_set, metavar="NAME",
                        help=f"feature set of the classical models (default {shared.feature_set})")
    parser.add_argument("--seed", type=int, default=shared.seed, metavar="S",
                        help="seed for every model")
    parser.add_argument("--cv-seeds", type=int, nargs="+", default=list(defaults.cv_seeds),
                        metavar="S",
                        help="one repetition of the outer cross-validation per seed")
    parser.add_argument("--n-splits", type=int, default=defaults.n_splits, metavar="K",
                        help="outer CV folds")
    parser.add_argument("--cnn-epochs", type=int, default=defaults.cnn_epochs, metavar="E",
                        help="upper bound on CNN epochs (early stopping ends sooner)")
    parser.add_argument("--ablation", nargs="+", default=[], metavar="FILE.json",
                        help="ablation JSON files (python -m artsy.training.ablation) for the "
                             "model card")
    parser.add_argument("--tried", metavar="FILE.md",
                        help="Markdown for the model card's 'What was tried' section")
    args = parser.parse_args(argv)
    return TrainConfig(data=tuple(args.data), eval_data=tuple(args.eval_data), out=args.out,
                       min_agree=args.min_agree,
                       models=tuple(args.models), n_splits=args.n_splits,
                       cv_seeds=tuple(args.cv_seeds), cnn_epochs=args.cnn_epochs,
                       embedding=args.embedding, backbone_size=args.backbone_size,
                       artsy=shared.replace(feature_set=args.feature_set, seed=args.seed)), args


def main(argv: list[str] | None = None) -> int:
    """Run training; return the exit status."""
    config, args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from artsy.features import FEATURE_SETS
    from artsy.training.train import train

    if config.artsy.feature_set not in FEATURE_SETS:
        print(f"train.py: error: unknown feature set {config.artsy.feature_set!r}; choose one of "
              f"{sorted(FEATURE_SETS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        bundle = train(config, ablation=args.ablation, tried=args.tried)
    except (ValueError, PermissionError) as error:
        print(f"train.py: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote model bundle {bundle} (model card: {bundle / 'report' / 'MODEL_CARD.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
