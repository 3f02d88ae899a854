"""CPU inference levers of artsy's backbone (EfficientNet-Lite0, 224 px, 1 280-d embedding).

``python -m benchmarks.cnn_levers [--n N] [--passes P] [--threads 1,2] [--out FILE]`` (from the
repository root) prints ONE JSON document: images/s of :func:`artsy.models.backbone.load_backbone`'s
embedding in one process for each lever, and each figure's ratio to the baseline measured in the
same run (fused, batch 64, all cores as TensorFlow intra-op threads, plain ``tf.function``,
float32). Levers:

* batch size 8 / 16 / 32 / 64 / 128;
* TensorFlow intra-op threads (each setting in its own subprocess, set before TensorFlow runs an
  op; the baseline and EfficientNetB0 are measured at every setting);
* batch norm folded (``fused=True``) or not;
* ``tf.function(jit_compile=True)`` (XLA) against a plain ``tf.function``;
* bfloat16: Keras policy ``mixed_bfloat16`` (float32 weights, bfloat16 compute) and ``bfloat16``
  (weights cast too), each with the max |delta| of the embedding against float32;
* the peer's model for reference: ``keras.applications.EfficientNetB0(weights=None,
  include_top=False, pooling="avg")`` at the same batch size (``lite0_vs_b0``).

Every forward is a fixed-shape ``tf.function`` (uint8 in, cast inside; the last batch padded, as
:func:`artsy.models.inference.predict_batched` does), called twice before timing (tracing, XLA
compilation). The ``N`` images (random 224 px crops of scikit-image's bundled photos; the speed
does not depend on the content, the deltas are on natural images) pass ``P`` times; the passes
go round-robin over the configurations, so a burst of load on this shared machine hits them all
alike, and each figure is the median pass. A configuration whose pass would exceed
:data:`MAX_PASS_S` (XLA here) times only the batches that fit (``images_per_pass``). Keep ``N`` a
multiple of 128, or the padded last batch counts against the large batch sizes.
``delta_vs_float32`` compares each Lite0 variant's embedding of the first 64 images with the
baseline's (same process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

DEFAULT_N = 256
DEFAULT_PASSES = 3
BATCH_SIZES = (8, 16, 32, 64, 128)
BASELINE = "baseline"
SIDE = 224
#: Images whose embeddings are compared with the float32 baseline.
DELTA_IMAGES = 64
#: A configuration slower than this per pass (XLA on CPU) times only the batches that fit.
MAX_PASS_S = 12.0


@dataclass(frozen=True)
class Config:
    """One measured configuration of the forward pass."""

    name: str
    model: str = "lite0"  # "lite0" (artsy's backbone) or "b0" (keras.applications)
    fused: bool = True
    batch_size: int = 64
    xla: bool = False
    policy: str = "float32"  # Keras dtype policy while building: float32, mixed_bfloat16, ...


def configurations(full: bool) -> list[Config]:
    """The configurations of one thread setting (``full``: every lever; else baseline and B0)."""
    configs = [Config(BASELINE), Config("efficientnet_b0", model="b0")]
    if full:
        configs += [Config(f"batch_{size}", batch_size=size) for size in BATCH_SIZES
                    if size != 64]
        configs += [Config("unfused", fused=False), Config("xla", xla=True),
                    Config("mixed_bfloat16", policy="mixed_bfloat16"),
                    Config("bfloat16", policy="bfloat16")]
    return configs


def _log(message: str) -> None:
    print(f"[levers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def natural_pixels(count: int, seed: int = 0) -> np.ndarray:
    """``(count, 224, 224, 3)`` uint8: seeded random crops / flips of scikit-image's photos."""
    import skimage.data
    from PIL import Image

    photos = [np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB"))
              for name in ("astronaut", "coffee", "chelsea", "rocket")]
    rng = np.random.default_rng(seed)
    out = np.empty((count, SIDE, SIDE, 3), dtype=np.uint8)
    for index in range(count):
        photo = photos[index % len(photos)]
        side = int(rng.integers(SIDE // 2, min(photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((SIDE, SIDE))
        out[index] = np.asarray(crop)[:, ::-1] if rng.random() < 0.5 else np.asarray(crop)
    return out


def build(config: Config) -> object:
    """Build ``config``'s Keras model under its dtype policy (then restore float32)."""
    import keras

    keras.config.set_dtype_policy(config.policy)
    try:
        if config.model == "b0":
            return keras.applications.EfficientNetB0(weights=None, include_top=False,
                                                     pooling="avg", input_shape=(SIDE, SIDE, 3))
        from artsy.models.backbone import load_backbone

        return load_backbone(fused=config.fused)
    finally:
        keras.config.set_dtype_policy("float32")


def forward_function(model: object, config: Config) -> object:
    """Fixed-shape ``tf.function``: uint8 ``(batch, 224, 224, 3)`` in, float32 embedding out."""
    import tensorflow as tf

    spec = tf.TensorSpec((config.batch_size, SIDE, SIDE, 3), tf.uint8)

    @tf.function(input_signature=[spec], jit_compile=config.xla)
    def forward(batch: tf.Tensor) -> tf.Tensor:
        return tf.cast(model(tf.cast(batch, tf.float32), training=False), tf.float32)

    return forward


def padded(batch: np.ndarray, batch_size: int) -> np.ndarray:
    """``batch`` with zero images appended up to ``batch_size`` rows."""
    if len(batch) >= batch_size:
        return batch
    return np.concatenate([batch, np.zeros((batch_size - len(batch), *batch.shape[1:]),
                                           dtype=batch.dtype)])


def embed(forward: object, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    """Run ``forward`` over ``pixels`` in batches of ``batch_size``, padding the last one."""
    outputs = []
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start:start + batch_size]
        outputs.append(forward(padded(batch, batch_size)).numpy()[:len(batch)])
    return np.concatenate(outputs)


def _delta(output: np.ndarray, reference: np.ndarray) -> dict:
    """Max |delta|, that relative to max |reference|, and the lowest cosine similarity."""
    difference = float(np.abs(output - reference).max())
    cosine = (output * reference).sum(1) / (np.linalg.norm(output, axis=1)
                                            * np.linalg.norm(reference, axis=1) + 1e-12)
    return {"max_abs": round(difference, 5),
            "max_abs_relative": round(difference / float(np.abs(reference).max()), 5),
            "min_cosine": round(float(cosine.min()), 6)}


def worker(threads: int, count: int, passes: int, full: bool) -> dict:
    """Measure every configuration with ``threads`` TensorFlow intra-op threads (one process)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    pixels = natural_pixels(count)
    configs = configurations(full)
    prepared: dict[str, tuple[Config, object]] = {}
    result: dict[str, dict] = {}
    reference = None
    for config in configs:
        _log(f"threads={threads}: building {config.name}")
        start = time.perf_counter()
        model = build(config)
        built = time.perf_counter() - start
        forward = forward_function(model, config)
        warm = padded(pixels[:config.batch_size], config.batch_size)
        start = time.perf_counter()
        forward(warm)  # tracing (and XLA compilation)
        first = time.perf_counter() - start
        start = time.perf_counter()
        forward(warm).numpy()
        per_batch = time.perf_counter() - start
        batches = -(-count // config.batch_size)
        if per_batch * batches > MAX_PASS_S:
            batches = max(1, int(MAX_PASS_S / per_batch))
        output = embed(forward, pixels[:DELTA_IMAGES], config.batch_size)
        if config.name == BASELINE:
            reference = output
        result[config.name] = {**asdict(config), "build_s": round(built, 2),
                               "first_call_s": round(first, 2),
                               "images_per_pass": min(count, batches * config.batch_size),
                               "pass_images_per_s": []}
        if config.model == "lite0" and config.name != BASELINE and reference is not None:
            result[config.name]["delta_vs_float32"] = _delta(output, reference)
        prepared[config.name] = (config, forward)
    for index in range(passes):
        for name, (config, forward) in prepared.items():
            images = pixels[:result[name]["images_per_pass"]]
            start = time.perf_counter()
            embed(forward, images, config.batch_size)
            rate = len(images) / (time.perf_counter() - start)
            result[name]["pass_images_per_s"].append(round(rate, 2))
        _log(f"threads={threads}: pass {index + 1}/{passes} done")
    for entry in result.values():
        entry["images_per_s"] = round(statistics.median(entry["pass_images_per_s"]), 2)
    return {"threads": threads,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "configs": result}


def _run_worker(threads: int, count: int, passes: int, full: bool, timeout: float) -> dict:
    """Run :func:`worker` in a fresh interpreter (TensorFlow fixes its threads at start)."""
    environment = common.child_environment()
    environment.update({name: str(threads) for name in ("OMP_NUM_THREADS",
                                                        "OPENBLAS_NUM_THREADS")})
    command = [common.python(), "-m", "benchmarks.cnn_levers", "--worker", str(threads),
               "--n", str(count), "--passes", str(passes)] + ([] if full else ["--baseline-only"])
    try:
        returncode, stdout, stderr = common.run_bounded(command, timeout=timeout,
                                                        env=environment)
    except Exception as error:  # noqa: BLE001 - a timeout is data for the report
        return {"error": f"{type(error).__name__}: {error}"}
    for line in stderr.splitlines():
        if line.startswith("[levers"):
            print(line, file=sys.stderr, flush=True)
    if returncode != 0:
        return {"error": f"worker exited {returncode}", "stderr_tail": stderr[-3000:]}
    return json.loads(stdout)


def _rate(workers: dict, threads: int, name: str) -> float | None:
    entry = workers.get(str(threads), {}).get("configs", {}).get(name, {})
    return entry.get("images_per_s")


def levers(count: int = DEFAULT_N, *, passes: int = DEFAULT_PASSES,
           threads: tuple[int, ...] | None = None, timeout: float = 1800.0) -> dict:
    """Measure every lever; the largest thread count gets every configuration.

    Returns ``{"settings", "workers": {threads: ...}, "images_per_s", "ratios"}``: ``ratios``
    are each configuration's images/s over the baseline's (largest thread count), plus
    ``lite0_vs_b0`` per thread count and ``threads_{max}_vs_1``.
    """
    threads = tuple(sorted(set(threads or (1, os.cpu_count() or 1))))
    most = threads[-1]
    workers = {}
    started = time.perf_counter()
    for setting in reversed(threads):
        left = timeout - (time.perf_counter() - started)
        workers[str(setting)] = _run_worker(setting, count, passes, setting == most, left)
    rates: dict[str, float | None] = {}
    for setting in reversed(threads):
        for name in workers[str(setting)].get("configs", {}):
            key = name if setting == most else f"threads_{setting}_{name}"
            rates[key] = _rate(workers, setting, name)
    baseline = rates.get(BASELINE)
    ratios = {f"{key}_vs_baseline": round(value / baseline, 3)
              for key, value in rates.items() if key != BASELINE and value and baseline}
    for setting in threads:
        lite, b0 = _rate(workers, setting, BASELINE), _rate(workers, setting, "efficientnet_b0")
        if lite and b0:
            ratios[f"lite0_vs_b0_threads_{setting}"] = round(lite / b0, 3)
    if len(threads) > 1 and baseline and _rate(workers, threads[0], BASELINE):
        ratios[f"threads_{most}_vs_{threads[0]}"] = round(
            baseline / _rate(workers, threads[0], BASELINE), 3)
    return {"settings": {"n": count, "passes": passes, "threads": list(threads),
                         "baseline": f"{BASELINE}: lite0 fused, batch 64, {most} intra-op "
                                     "threads, plain tf.function, float32",
                         "seconds": round(time.perf_counter() - started, 1)},
            "images_per_s": rates, "ratios": ratios, "workers": workers}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line; print the JSON document (a worker prints its own); return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="images (default %(default)s)")
    parser.add_argument("--passes", type=int, default=DEFAULT_PASSES,
                        help="timed passes per configuration (default %(default)s)")
    parser.add_argument("--threads", help="comma-separated intra-op thread counts "
                        "(default: 1 and all cores)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds, all workers")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.n < 1 or arguments.passes < 1:
        parser.error("--n and --passes must be >= 1")
    if arguments.worker is not None:
        print(json.dumps(worker(arguments.worker, arguments.n, arguments.passes,
                                not arguments.baseline_only)))
        return 0
    threads = (tuple(int(value) for value in arguments.threads.split(","))
               if arguments.threads else None)
    document = {"machine": common.machine_info(),
                **levers(arguments.n, passes=arguments.passes, threads=threads,
                         timeout=arguments.timeout)}
    text = json.dumps(document, indent=2, default=str)
    if arguments.out:
        arguments.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
