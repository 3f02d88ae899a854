"""The job's CNN in one Ray Data actor against bare ``model.predict`` at the same batch size.

Both see the same decoded images (cached as ``.npy``). The actor is artsy's
``artsy.job.predict.CnnPredictor`` over the shipped default bundle: for a bundle with the pretrained
backbone the bare model is that backbone on the bundle's centre crops (288 px shipped; the actor
adds its heads and the ensemble), for an older bundle its from-scratch CNN on the 100 px squares.
Without a bundle, a stand-in actor (:class:`StandInCnnActor`: ``configure_tensorflow`` +
``predict_positive``, as the real one does) runs an untrained ``build_cnn`` of the same
architecture as the bare model, and the result says so.

The actor runs inside :class:`TimedActor`, which stamps each output row with the wall-clock start
and end of its batch's call. The *steady* rate counts the rows after the first call, from the
first call's end to the moment the driver has the last row: Ray's hand-offs are in; actor start-up
(process, TensorFlow import, model load) and the first call's one-off tracing are not (they are
in ``with_startup`` and ``first_call_s``). ``busy`` is the time inside those calls alone.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from benchmarks import baselines, common

#: Probability given to the classical ensemble members when only the CNN actor runs.
NEUTRAL_PROBABILITY = 0.5


class StandInCnnActor:
    """Stand-in CNN actor: an untrained ``build_cnn``, ``predict_positive`` on ``batch["pixels"]``.

    Parameters
    ----------
    batch_size : int
        Images per forward pass.
    threads : int or None, default=None
        TensorFlow intra-op threads (``None``: TensorFlow's default, all cores).
    """

    def __init__(self, *, batch_size: int, threads: int | None = None) -> None:
        from artsy.models import cnn

        cnn.configure_tensorflow(intra_op_threads=threads, gpu_memory_growth=True)
        self.model = cnn.build_cnn((baselines.SIZE, baselines.SIZE, 3), 2)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add ``p_positive_cnn``; drop ``pixels``."""
        from artsy.models import cnn

        pixels = batch.pop("pixels")
        batch["p_positive_cnn"] = cnn.predict_positive(self.model, pixels,
                                                       batch_size=self.batch_size)
        return batch


class TimedActor:
    """Wrap a predictor class; add ``call_start`` / ``call_end`` (``time.time()``) to each row.

    Parameters
    ----------
    predictor : type
        The callable class to construct (once, in the actor).
    kwargs : dict
        Its constructor's keyword arguments.
    """

    def __init__(self, *, predictor: type, kwargs: dict) -> None:
        self.predictor = predictor(**kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the predictor and stamp its rows."""
        start = time.time()
        output = self.predictor(batch)
        count = len(output["path"])
        output["call_start"] = np.full(count, start)
        output["call_end"] = np.full(count, time.time())
        return output


#: Passes over the decoded images in the CNN part (bare predict and actor alike).
REPEATS = 5

def decoded_pixels(paths: list[str], scratch: Path, crop: int | None = None) -> np.ndarray:
    """Return the ``(n, 100, 100, 3)`` pixels of ``paths`` (or their ``crop`` px centre crops),
    cached as ``.npy`` in ``scratch``."""
    from artsy.io import decode_image

    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]
    cache = scratch / f"pixels-{len(paths)}-{crop or baselines.SIZE}-{digest}.npy"
    if cache.is_file():
        return np.load(cache)
    if crop is None:
        pixels = np.stack([baselines.decode_artsy(path) for path in paths])
    else:
        pixels = np.stack([decode_image(Path(path).read_bytes(), size=8, crop=crop).crop
                           for path in paths])
    np.save(cache, pixels)
    return pixels


def _real_actor(model: str | None) -> tuple[object, object, tuple[str, ...], int | None] | None:
    """Return (CnnPredictor, the bundle's bare Keras model, the members the actor does not
    compute, crop size or None) or None without a bundle/predictor."""
    try:
        predict = common.need("artsy.job.predict", "CnnPredictor")
        bundle = common.need("artsy.models.bundle", "load_bundle").load_bundle(model)
        keras_model = bundle.load_backbone() if bundle.backbone else bundle.load_cnn()
    except Exception:  # noqa: BLE001 - no bundle / no CNN in it yet: use the stand-in
        return None
    actor_side = {"cnn", *bundle.embedding_names}
    others = tuple(name for name in bundle.members if name not in actor_side)
    return predict.CnnPredictor, keras_model, others, bundle.crop_size


def cnn(paths: list[str], cpus: int, batch_size: int, scratch: Path, *, gpu: bool = False,
        model: str | None = None) -> dict:
    """Measure bare ``model.predict`` then the CNN actor, same images, same batch size.

    ``model`` is a bundle directory (``None``: the shipped default).
    """
    cnn_module = common.need("artsy.models.cnn", "build_cnn", "predict_positive",
                             "configure_tensorflow")
    # Memory growth on, so the actor can share the GPU with this process's bare model.
    cnn_module.configure_tensorflow(gpu_memory_growth=True)
    # The images pass REPEATS times: one pass takes well under a second, too short a window
    # for a stable ratio on a noisy machine.
    real = _real_actor(model)
    crop = None if real is None else real[3]
    pixels = np.concatenate([decoded_pixels(paths, scratch, crop)] * REPEATS)
    if real is None:
        keras_model = cnn_module.build_cnn((baselines.SIZE, baselines.SIZE, 3), 2)
        source = "untrained artsy.models.cnn.build_cnn (no shipped bundle with a CNN yet)"
    else:
        keras_model, source = real[1], f"bundle {model or '(shipped default)'}"
    warm = pixels[: 2 * batch_size]
    keras_model.predict(warm, batch_size=batch_size, verbose=0)
    start = time.perf_counter()
    keras_model.predict(pixels, batch_size=batch_size, verbose=0)
    bare = common.rate(len(pixels), time.perf_counter() - start)
    from artsy.models.inference import predict_batched

    predict_batched(keras_model, warm, batch_size=batch_size)
    start = time.perf_counter()
    predict_batched(keras_model, pixels, batch_size=batch_size)
    wrapped = common.rate(len(pixels), time.perf_counter() - start)
    del keras_model
    predictor, kwargs, others = ((StandInCnnActor, {}, ()) if real is None
                                 else (real[0], {"bundle_path": model}, real[2]))
    actor_cpus, threads = job_actor_resources(cpus, gpu=gpu)
    result = {"model": source, "actor_class": f"{predictor.__module__}.{predictor.__name__}",
              "batch_size": batch_size, "gpu": gpu, "bare_predict": bare,
              "predict_positive_in_process": wrapped}
    # As the job configures it, then with TensorFlow threads on every core (as bare predict).
    for name, actor_threads in (("actor", threads), ("actor_all_threads", cpus)):
        result[name] = _actor_rate(predictor, {**kwargs, "threads": actor_threads}, pixels,
                                   others, cpus, batch_size, actor_cpus=actor_cpus, gpu=gpu,
                                   crops=crop is not None)
        result[name].update(num_cpus=actor_cpus, threads=actor_threads)
    return result


def job_actor_resources(cpus: int, *, gpu: bool) -> tuple[float, int | None]:
    """Return the CNN actor's (num_cpus, TensorFlow threads) as the job chooses them.

    From ``artsy.job.pipeline.cnn_resources`` when it exists, else (1, None).
    """
    try:
        pipeline = common.need("artsy.job.pipeline", "_cnn_resources", "cnn_threads")
        config = common.need("artsy.config", "JobConfig").JobConfig(inputs=("-",), output="-")
        _, _, actor_cpus = pipeline.cnn_resources(config, {"CPU": float(cpus),
                                                            "GPU": 1.0 if gpu else 0.0})
    except (common.Skip, TypeError, ValueError):
        return 1.0, None
    return actor_cpus, pipeline.cnn_threads(actor_cpus, float(cpus))


def _rows(pixels: np.ndarray, others: tuple[str, ...], crops: bool) -> list[dict]:
    extra = {f"p_positive_{name}": NEUTRAL_PROBABILITY for name in others}
    square = np.zeros((baselines.SIZE, baselines.SIZE, 3), dtype=np.uint8)
    return [{"path": f"image_{index}", "status": "ok", "kind": "new",
             **({"pixels": square, "crops": image} if crops else {"pixels": image}), **extra}
            for index, image in enumerate(pixels)]


def _actor_rate(predictor: type, constructor_kwargs: dict, pixels: np.ndarray,
                others: tuple[str, ...], cpus: int, batch_size: int, *, actor_cpus: float,
                gpu: bool, crops: bool = False) -> dict:
    """Stream ``pixels`` through one actor; the steady rate counts from the first output batch."""
    ray = common.start_ray(cpus, gpus=1 if gpu else 0)
    try:
        blocks = max(1, -(-len(pixels) // batch_size))
        dataset = ray.data.from_items(_rows(pixels, others, crops), override_num_blocks=blocks)
        dataset = dataset.materialize()  # inputs in the object store before the clock starts
        dataset = dataset.map_batches(TimedActor, batch_size=batch_size, batch_format="numpy",
                                      compute=ray.data.ActorPoolStrategy(size=1),
                                      num_gpus=1 if gpu else 0, num_cpus=actor_cpus,
                                      fn_constructor_kwargs={"predictor": predictor, "kwargs": {
                                          **constructor_kwargs, "batch_size": batch_size}})
        start = time.time()
        calls: dict[float, list] = {}  # call start -> [call end, rows]
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for call_start, call_end in zip(batch["call_start"].tolist(),
                                            batch["call_end"].tolist(), strict=True):
                calls.setdefault(call_start, [call_end, 0])[1] += 1
        end = time.time()
    finally:
        ray.shutdown()
    rows = sum(count for _, count in calls.values())
    if rows != len(pixels):
        raise RuntimeError(f"CNN actor returned {rows} rows for {len(pixels)} images")
    # The first call pays one-off costs (tf.function tracing): steady counts from its end.
    first_start = min(calls)
    first_end, first_rows = calls.pop(first_start)
    busy = sum(call_end - call_start for call_start, (call_end, _) in calls.items())
    return {"with_startup": common.rate(rows, end - start),
            "first_call_s": round(first_end - first_start, 3),
            "steady": common.rate(rows - first_rows, end - first_end) if calls else None,
            "busy": common.rate(rows - first_rows, busy) if calls else None,
            "calls": len(calls) + 1}
