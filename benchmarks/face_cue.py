"""Does a face cue help? scikit-image's bundled LBP frontal-face cascade, added to ``affect``.

Faces are searched by :func:`artsy.features.faces.face_numbers` in each file's grey image scaled so
its
longer side is ``--side`` pixels (aspect kept, EXIF orientation applied), or with ``--decoded`` in
the 100x100 squares the batch job decodes. Five numbers per image
(``artsy.features.faces.FACE_NAMES``). Both
``affect`` and ``affect+faces`` are scored with SVM and logistic regression by
:func:`artsy.training.ablation.evaluate_features` (the project's protocol), one row per CV seed so
the
change can be checked for consistency.

``--train BUNDLE`` instead registers an ``affect_faces`` feature set in this process (faces searched
in the decoded 100x100 squares, as the batch job would) and runs :func:`artsy.training.train.train`
with
SVM, logistic regression and random forest, so the stacked ensemble's figure can be compared with
the shipped one (a research bundle: the batch job does not know this feature set).

Usage::

    python -m benchmarks.face_cue --data ../shared/data/twitter_i --min-agree 5 --out faces.md
    python -m benchmarks.face_cue --data ../shared/data/twitter_i --min-agree 5 --train /tmp/b
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from artsy.features import faces
from artsy.features.affect import AFFECT_GROUPS, affect_feature_names, affect_features_batch
from artsy.training import ablation
from artsy.training.dataset import data_fingerprint, decode_labelled, load_labelled_folder

logger = logging.getLogger(__name__)

FACE_SIDE = 192


def file_grey(path: str, side: int = FACE_SIDE) -> np.ndarray:
    """An image file as grey values in [0, 1], upright, longer side ``side`` (aspect kept)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("L")
        image.thumbnail((side, side))
        return np.asarray(image, dtype=np.float64) / 255.0


def all_face_features(paths: tuple[str, ...], images: np.ndarray | None, cache: Path, key: str,
                      *, side: int = FACE_SIDE, scale_factor: float = faces.SCALE_FACTOR,
                      step_ratio: float = faces.STEP_RATIO) -> tuple[np.ndarray, float]:
    """Face numbers of every image (cached) and the mean seconds per image of computing them.

    With ``images`` (the decoded ``(n, 100, 100, 3)`` squares the batch job sees) faces are
    searched there; without, in each file at ``side`` (decoding time included).
    """
    where = "decoded100" if images is not None else str(side)
    path = cache / f"{key}_faces_{where}_s{scale_factor}_r{step_ratio}.npy"
    timing = path.with_suffix(".seconds.json")
    if path.is_file() and timing.is_file():
        return np.load(path), json.loads(timing.read_text())["per_image"]
    detector = faces.face_detector()
    started = time.perf_counter()
    if images is None:
        greys = (file_grey(p, side) for p in paths)
    else:
        greys = (image @ GREY / 255.0 for image in images)
    out = np.stack([faces.face_numbers(grey, detector=detector, scale_factor=scale_factor,
                                       step_ratio=step_ratio) for grey in greys])
    per_image = (time.perf_counter() - started) / len(paths)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out.astype(np.float32))
    timing.write_text(json.dumps({"per_image": per_image}))
    return out.astype(np.float32), per_image


GREY = np.array([0.2125, 0.7154, 0.0721])


def affect_faces_batch(images: np.ndarray) -> np.ndarray:
    """``affect`` followed by :func:`artsy.features.faces.face_features_batch` of decoded
    squares."""
    return np.concatenate([affect_features_batch(images), faces.face_features_batch(images)],
                          axis=1)


def train_with_faces(data: str, min_agree: int, out: str) -> Path:
    """Register ``affect_faces`` here and train svm + logreg + rf with it (see the docstring)."""
    from artsy.config import ArtsyConfig, TrainConfig
    from artsy.features import FEATURE_SETS, FeatureSet
    from artsy.training.train import train

    FEATURE_SETS["affect_faces"] = FeatureSet(
        "affect_faces", lambda image: affect_faces_batch(image[None])[0],
        affect_feature_names() + faces.FACE_NAMES, "affect + 5 face-cascade numbers (research)",
        affect_faces_batch)
    config = TrainConfig(data=data, out=out, min_agree=min_agree, models=("svm", "logreg", "rf"),
                         cv_seeds=ablation.DEFAULT_SEEDS,
                         artsy=ArtsyConfig(feature_set="affect_faces"))
    return train(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--min-agree", type=int, default=5)
    parser.add_argument("--out", default=None)
    parser.add_argument("--train", default=None, metavar="BUNDLE",
                        help="train svm+logreg+rf on affect_faces into this research bundle")
    parser.add_argument("--cache", default=str(ablation.DEFAULT_CACHE))
    parser.add_argument("--decoded", action="store_true",
                        help="search faces in the decoded 100x100 squares, not the files")
    parser.add_argument("--side", type=int, default=FACE_SIDE,
                        help="longer side of the grey image searched (files only)")
    parser.add_argument("--scale-factor", type=float, default=faces.SCALE_FACTOR)
    parser.add_argument("--step-ratio", type=float, default=faces.STEP_RATIO)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.train:
        print(train_with_faces(args.data, args.min_agree, args.train) / "report" / "MODEL_CARD.md")
        return
    if not args.out:
        parser.error("give --out FILE.md (or --train BUNDLE)")
    cache = Path(args.cache)
    data = load_labelled_folder(args.data, min_agree=args.min_agree)
    decoded = decode_labelled(data.paths)
    images, ok = decoded.images, decoded.ok_mask
    data, images = data.subset(ok), images[ok]
    key = data_fingerprint(data)[:16]
    affect = np.concatenate([ablation.group_features(images, g, cache=cache, key=key)
                             for g in AFFECT_GROUPS], axis=1)
    cue, per_image = all_face_features(data.paths, images if args.decoded else None, cache, key,
                                       side=args.side, scale_factor=args.scale_factor,
                                       step_ratio=args.step_ratio)
    sets = {"affect": affect, "affect+faces": np.concatenate([affect, cue], axis=1)}
    rows = []
    for seed in ablation.DEFAULT_SEEDS:
        for model in ablation.DEFAULT_MODELS:
            for name, features in sets.items():
                row = ablation.evaluate_features(features, data, model, seeds=(seed,), name=name)
                rows.append({"features": f"{name} (seed {seed})", **row})
    where = "decoded 100x100 square" if args.decoded else f"{args.side}-px long side of the file"
    summary = {"per_image_seconds": per_image, "searched": where,
               "scale_factor": args.scale_factor, "step_ratio": args.step_ratio,
               "images_with_face": float(cue[:, 1].mean()),
               "mean_faces": float(cue[:, 0].mean()), "rows": rows}
    Path(args.out).with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    Path(args.out).write_text(
        f"Face cue ({where}, scale factor {args.scale_factor}, step ratio {args.step_ratio}): "
        f"{per_image * 1000:.0f} ms per image, "
        f"{100 * summary['images_with_face']:.1f}% of images with a face\n\n"
        + ablation.markdown_table(rows))
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
