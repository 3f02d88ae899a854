"""One benchmark part per process: ``python -m benchmarks.parts SPEC.json``.

The runner (:mod:`benchmarks.run`) writes a spec (part name, photo folders, CPUs, batch size,
scratch directory, result file) and starts this module in a fresh interpreter for every part, under
a timeout, so one part's Ray session, TensorFlow threads or crash cannot touch the next. The result
is written as JSON to ``spec["result"]``: the part's measurements, ``{"skipped": reason}`` when a
module it needs does not exist yet, or ``{"error": ..., "traceback": ...}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from benchmarks import artsy_paths, baselines, cnn_actor, cnn_levers, common, memory, photos


def _paths(spec: dict) -> list[str]:
    return photos.list_set(Path(spec["set"]))


def _timeout(spec: dict) -> float:
    return float(spec["timeout"])


PARTS = {
    "floor": lambda spec: baselines.floor(_paths(spec), spec["cpus"]),
    "notebook": lambda spec: baselines.notebook_loop(_paths(spec)),
    "features": lambda spec: artsy_paths.features(_paths(spec), spec["cpus"],
                                                  spec["batch_size"], model=spec.get("model")),
    "cnn": lambda spec: cnn_actor.cnn(_paths(spec), spec["cpus"], spec["batch_size"],
                                        Path(spec["scratch"]), gpu=spec.get("gpu", False),
                                        model=spec.get("model")),
    "job": lambda spec: artsy_paths.job(Path(spec["set"]), Path(spec["warm_set"]),
                                        len(_paths(spec)), spec["cpus"], spec["batch_size"],
                                        Path(spec["scratch"]), _timeout(spec) / 2,
                                        model=spec.get("model")),
    "peer": lambda spec: baselines.peer(Path(spec["set"]), Path(spec["warm_set"]),
                                        len(_paths(spec)), spec["cpus"], Path(spec["scratch"]),
                                        _timeout(spec) / 2, spec["batch_size"]),
    "levers": lambda spec: cnn_levers.levers(spec["levers_n"], threads=(1, spec["cpus"]),
                                             timeout=0.95 * _timeout(spec)),
    "memory": lambda spec: memory.memory(Path(spec["memory_sets"][0]),
                                         Path(spec["memory_sets"][1]),
                                         tuple(spec["memory_sizes"]), spec["cpus"],
                                         spec["batch_size"], Path(spec["scratch"]),
                                         _timeout(spec) / 2, model=spec.get("model")),
    "train": lambda spec: memory.train(Path(spec["train_data"]), Path(spec["scratch"]),
                                       spec["cpus"], _timeout(spec)),
}


def run_part(spec: dict) -> dict:
    """Run the part ``spec["part"]`` and return its JSON-ready result (never raises)."""
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    try:
        result = PARTS[spec["part"]](spec)
    except common.Skip as reason:
        result = {"skipped": str(reason)}
    except Exception as error:  # noqa: BLE001 - a part's failure is data for the report
        result = {"error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc()[-3000:]}
    result["part_wall_s"] = round(time.perf_counter() - start, 2)
    # Load average (1 min) around the part: high values mean other work shared the cores.
    result["load_1m_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def main(argv: list[str] | None = None) -> int:
    """Read the spec file named in ``argv``, run the part, write its result file."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    result = run_part(spec)
    Path(spec["result"]).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
