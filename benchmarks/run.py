"""artsy benchmarks: throughput, ratios against same-run baselines, memory and training time.

Usage (from the repository root, with the project's virtual environment active)::

    python benchmarks/run.py [--n N] [--data DIR] [--cpus C] [--only a,b,...] [--out FILE]
                             [--batch-size B] [--model BUNDLE] [--gpu] [--memory] [--train]
                             [--levers-n N]

It prints ONE JSON document on stdout (progress goes to stderr): ``machine`` (platform, CPU model
and count, load, versions, UTC date, git commit), ``settings``, ``parts`` (each part's
measurements, ``{"skipped": reason}`` while a module it needs does not exist yet, or
``{"error": ...}``) and ``ratios`` (each goal of issue 5 with its measured value). Machines are
noisy, so every goal is a ratio of two figures measured in the same run on the same cores.

Parts (default: all six, in this order; ``--only`` picks some):

``floor``     (a) Pillow decode + resize to 100x100, plain process pool; draft and no draft.
``notebook``  (b) the notebook's sequential loop: decode + its features (HOG picture etc.).
``features``  (c) decode + ``affect`` features: one process, process pool, Ray Data function
              tasks over paths (as the job does) with 1 CPU and with all CPUs.
``cnn``       the job's CNN in one Ray actor vs bare ``model.predict`` at the same batch size.
``job``       (d) ``jobs/classify.py`` as a fresh process, start-up included.
``peer``      (e) the Ray Data docs pattern as a fresh process (``benchmarks/peer.py``):
              read_images at 224 px, the notebook's features, an EfficientNetB0 actor, Parquet.

Opt-in (``--only levers``; needs no photos):

``levers``    CPU inference levers of artsy's backbone (``benchmarks/cnn_levers.py``): batch
              size, intra-op threads, fused BN, XLA, bfloat16, and EfficientNetB0 for reference,
              on ``--levers-n`` images.

Opt-in modes (run alone unless ``--only`` names other parts too):

``--memory``  peak RSS / PSS of the whole job (driver + Ray processes) over 10 000 vs 1 000
              photos (``--memory-sizes``); generating 10 000 photos takes a few minutes once.
``--train``   wall time of ``jobs/train.py --data ../shared/data/twitter_i --out SCRATCH/...``.

Photos: ``--n`` seeded, varied JPEGs (100-2000 px wide) from :mod:`artsy.testing`, cached under
``--scratch``; or the first ``--n`` images of ``--data DIR`` (copied to the scratch directory).
Each part runs in its own interpreter under a bounded timeout (scaled by ``--timeout-scale``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import cnn_levers, common, photos  # noqa: E402
from benchmarks.ratios import ratios  # noqa: E402

DEFAULT_PARTS = ("floor", "notebook", "features", "cnn", "job", "peer")
ALL_PARTS = (*DEFAULT_PARTS, "levers", "memory", "train")

#: Default photo count (issue: job vs peer on 1 500 photos); ~10 min on 2 quiet cores.
DEFAULT_N = 1500

#: Per-part timeout: base seconds + seconds per image (generous; a hang must not last forever).
TIMEOUTS = {"floor": (60, 0.03), "notebook": (60, 0.1), "features": (180, 0.15),
            "cnn": (240, 0.2), "job": (180, 0.4), "peer": (240, 0.5),
            "levers": (600, 3.0), "memory": (600, 0.15), "train": (1800, 0.0)}

#: Parts whose processes get one BLAS / OpenMP thread each, so "one process" means one core.
SINGLE_THREADED = ("floor", "notebook", "features")
_ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS")}

#: Images in the untimed warm-up run of the job and the peer.
WARM_IMAGES = 8


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; ``.parts`` holds the parts to run, in order."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="photos (default %(default)s)")
    parser.add_argument("--data", type=Path, help="take photos from this folder instead")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(),
                        help="cores to use (default: all, %(default)s)")
    parser.add_argument("--only", help=f"comma-separated parts out of {','.join(ALL_PARTS)}")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--batch-size", type=int, default=64, help="default %(default)s")
    parser.add_argument("--model", help="model bundle for the job and the CNN "
                        "(default: the shipped one)")
    parser.add_argument("--gpu", action="store_true", help="cnn part: actor with num_gpus=1")
    parser.add_argument("--memory", action="store_true", help="peak memory mode")
    parser.add_argument("--memory-sizes", default="1000,10000", help="default %(default)s")
    parser.add_argument("--train", action="store_true", help="training time mode")
    parser.add_argument("--train-data", type=Path,
                        default=common.ROOT.parent / "shared" / "data" / "twitter_i")
    parser.add_argument("--levers-n", type=int, default=cnn_levers.DEFAULT_N,
                        help="levers part: images (default %(default)s, a multiple of 128)")
    parser.add_argument("--seed", type=int, default=0, help="photo generator seed")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench"))
    parser.add_argument("--timeout-scale", type=float, default=1.0)
    arguments = parser.parse_args(argv)
    if min(arguments.n, arguments.cpus, arguments.batch_size, arguments.levers_n) < 1:
        parser.error("--n, --cpus, --batch-size and --levers-n must be >= 1")
    if arguments.data is not None and not arguments.data.is_dir():
        parser.error(f"--data {arguments.data} is not a folder")
    if arguments.only:
        parts = tuple(part.strip() for part in arguments.only.split(",") if part.strip())
        unknown = sorted(set(parts) - set(ALL_PARTS))
        if unknown:
            parser.error(f"unknown part(s) {unknown}; choose from {', '.join(ALL_PARTS)}")
    else:
        parts = ()
    modes = tuple(mode for mode in ("memory", "train") if getattr(arguments, mode))
    arguments.parts = tuple(dict.fromkeys(parts + modes)) or DEFAULT_PARTS
    arguments.memory_sizes = tuple(int(size) for size in arguments.memory_sizes.split(","))
    return arguments


def _run_child(spec: dict, scratch: Path) -> dict:
    """Run one part in a fresh interpreter under its timeout and return its result."""
    spec_file = scratch / f"spec-{spec['part']}.json"
    spec["result"] = str(scratch / f"result-{spec['part']}.json")
    Path(spec["result"]).unlink(missing_ok=True)
    spec_file.write_text(json.dumps(spec))
    start = time.perf_counter()
    try:
        environment = common.child_environment()
        if spec["part"] in SINGLE_THREADED:
            environment.update(_ONE_THREAD)
        command = common.pinned([common.python(), "-m", "benchmarks.parts", str(spec_file)],
                                spec["cpus"])
        returncode, _, stderr = common.run_bounded(command, timeout=spec["timeout"],
                                                   env=environment)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {spec['timeout']:.0f} s (raise --timeout-scale)"}
    if Path(spec["result"]).is_file():
        return json.loads(Path(spec["result"]).read_text())
    return {"error": f"part process exited {returncode} after "
                     f"{time.perf_counter() - start:.1f} s without a result",
            "stderr_tail": stderr[-3000:]}


def prepare_sets(arguments: argparse.Namespace) -> dict:
    """Make the photo folders the selected parts need and return them for the specs."""
    scratch = arguments.scratch
    sets: dict = {}
    if set(arguments.parts) & set(DEFAULT_PARTS):
        main = photos.photo_set(scratch, arguments.n, data=arguments.data, seed=arguments.seed)
        files = [Path(path) for path in photos.list_set(main)]
        sets["set"] = str(main)
        sets["warm_set"] = str(photos.flat_set(scratch, files[:WARM_IMAGES], "warm"))
    if "memory" in arguments.parts:
        sets["memory_sets"] = [str(photos.photo_set(scratch, size, seed=arguments.seed))
                               for size in arguments.memory_sizes]
        sets["memory_sizes"] = list(arguments.memory_sizes)
    return sets


def main(argv: list[str] | None = None) -> int:
    """Run the selected parts, print the JSON document; return 0 (2: bad photo folder)."""
    arguments = parse_arguments(argv)
    scratch = arguments.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _log(f"preparing photos (n={arguments.n}, data={arguments.data})")
    try:
        sets = prepare_sets(arguments)
    except ValueError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 2
    settings = {"n": arguments.n, "data": str(arguments.data) if arguments.data else None,
                "cpus": arguments.cpus, "batch_size": arguments.batch_size,
                "parts": list(arguments.parts), "gpu": arguments.gpu, "seed": arguments.seed,
                "model": arguments.model, "levers_n": arguments.levers_n,
                "prepare_s": round(time.perf_counter() - started, 1)}
    document = {"machine": common.machine_info(), "settings": settings, "parts": {}}
    for part in arguments.parts:
        base, per_image = TIMEOUTS[part]
        count = {"memory": sum(arguments.memory_sizes),
                 "levers": arguments.levers_n}.get(part, arguments.n)
        timeout = (base + per_image * count) * arguments.timeout_scale
        _log(f"part {part} (timeout {timeout:.0f} s)")
        spec = {"part": part, "cpus": arguments.cpus, "batch_size": arguments.batch_size,
                "scratch": str(scratch), "timeout": timeout, "gpu": arguments.gpu,
                "train_data": str(arguments.train_data), "model": arguments.model,
                "levers_n": arguments.levers_n, **sets}
        result = _run_child(spec, scratch)
        document["parts"][part] = result
        _log(f"part {part}: " + (result.get("skipped") or result.get("error")
                                 or f"done in {result.get('part_wall_s')} s"))
    document["ratios"] = ratios(document["parts"], arguments.cpus)
    settings["total_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(document, indent=2, default=str)
    if arguments.out:
        arguments.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
