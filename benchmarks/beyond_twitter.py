"""The shipped bundle on pictures unlike Twitter's, and how stable its output is under small edits.

No labels exist for these pictures, so this is a sanity check, not an accuracy figure: it lists
``p_positive`` per picture (``examples/images`` and scikit-image's bundled samples) and, for each
edit, the share of pictures whose label is unchanged and the mean ``|Δp_positive|``. Edits: a
horizontal flip, a JPEG re-encode at quality 70, and a 2x downscale (Lanczos). The ensemble runs as
the batch job runs it (``decode_image`` → ``extract_features`` → classical models, and the centre
crop → backbone embedding → its heads → combiner), in this process, without Ray.

Usage::

    python -m benchmarks.beyond_twitter [--out beyond.md]
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from artsy.features import extract_features
from artsy.io import decode_image
from artsy.models.bundle import Bundle, load_bundle
from artsy.training.evaluate import THRESHOLD

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
#: scikit-image samples that ship inside the package and are not already in ``examples/images``
#: (greyscale and drawings included; nothing is fetched).
SKIMAGE_SAMPLES = ("coins", "colorwheel", "moon", "page", "text", "clock", "grass", "gravel",
                   "brick", "horse", "logo", "skin", "lily", "motorcycle_left")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


EDITS: dict[str, Callable[[Image.Image], bytes]] = {
    "flip": lambda image: _png(ImageOps.mirror(image)),
    "jpeg70": lambda image: _jpeg(image, 70),
    "downscale2x": lambda image: _png(image.resize((max(1, image.width // 2),
                                                   max(1, image.height // 2)),
                                                  Image.Resampling.LANCZOS)),
}


def pictures() -> dict[str, Image.Image]:
    """Upright RGB pictures by name: the example folder, then scikit-image's samples."""
    import skimage.data

    found: dict[str, Image.Image] = {}
    for path in sorted(EXAMPLES.rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            with Image.open(path) as image:
                found[f"examples/{path.relative_to(EXAMPLES)}"] = (
                    ImageOps.exif_transpose(image).convert("RGB"))
    for name in SKIMAGE_SAMPLES:
        try:
            array = np.asarray(getattr(skimage.data, name)())
        except Exception:  # a sample that would need the network, or is missing
            continue
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        found[f"skimage.data.{name}"] = Image.fromarray(array.astype(np.uint8)).convert("RGB")
    return found


_BACKBONES: dict[str, object] = {}


def p_positive(bundle: Bundle, encoded: list[bytes]) -> np.ndarray:
    """Ensemble positive-class probability of encoded images, as the batch job computes it."""
    decoded = [decode_image(data, size=bundle.image_size, crop=bundle.crop_size)
               for data in encoded]
    images = np.stack([image.pixels for image in decoded])
    probs = bundle.predict_classical(extract_features(images, bundle.feature_set))
    if bundle.backbone is not None:
        from artsy.models.backbone import embed

        model = _BACKBONES.get(str(bundle.path)) or _BACKBONES.setdefault(
            str(bundle.path), bundle.load_backbone())
        crops = np.stack([image.crop for image in decoded])
        probs.update(bundle.predict_embedding(embed(crops, model=model)))
    return bundle.combine(probs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None, help="markdown file (JSON beside it)")
    args = parser.parse_args()
    bundle = load_bundle(None)
    found = pictures()
    names = list(found)
    base = p_positive(bundle, [_png(found[name]) for name in names])
    edited = {edit: p_positive(bundle, [make(found[name]) for name in names])
              for edit, make in EDITS.items()}
    lines = ["| picture | p_positive | label | " + " | ".join(f"Δp {e}" for e in EDITS) + " |",
             "|---|---|---|" + "---|" * len(EDITS)]
    for index, name in enumerate(names):
        label = "positive" if base[index] >= THRESHOLD else "negative"
        deltas = " | ".join(f"{edited[e][index] - base[index]:+.3f}" for e in EDITS)
        lines.append(f"| {name} | {base[index]:.3f} | {label} | {deltas} |")
    summary = {edit: {"label_agreement": float(np.mean((probs >= THRESHOLD)
                                                       == (base >= THRESHOLD))),
                      "mean_abs_delta": float(np.mean(np.abs(probs - base))),
                      "mean_delta": float(np.mean(probs - base)),
                      "max_abs_delta": float(np.max(np.abs(probs - base)))}
               for edit, probs in edited.items()}
    lines += ["", "| edit | label agreement | mean abs Δp | mean Δp | max abs Δp |",
              "|---|---|---|---|---|"]
    lines += [f"| {edit} | {row['label_agreement']:.3f} | {row['mean_abs_delta']:.3f} | "
              f"{row['mean_delta']:+.3f} | {row['max_abs_delta']:.3f} |"
              for edit, row in summary.items()]
    near = int(np.sum(np.abs(base - THRESHOLD) < 0.1))
    lines.append(f"\n{len(names)} pictures, {int(np.sum(base >= THRESHOLD))} labelled positive, "
                 f"{near} within 0.1 of the threshold; bundle {bundle.version}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(
            {"p_positive": dict(zip(names, base.tolist(), strict=True)),
             "edits": {e: dict(zip(names, p.tolist(), strict=True)) for e, p in edited.items()},
             "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
