"""The goals of issue 5 as ratios of figures measured in the same run.

Each entry is ``{"value", "goal", "met", "formula"}``; ``value`` is ``None`` (with ``missing``) when
a figure it needs was skipped or failed.
"""

from __future__ import annotations

import operator

_COMPARE = {">=": operator.ge, "<=": operator.le}


def _get(parts: dict, *keys: str) -> float | None:
    value: object = parts
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, int | float) else None


def _entry(formula: str, goal: str | None, numerator: float | None,
           denominator: float | None, scale: float = 1.0) -> dict:
    entry: dict = {"formula": formula, "goal": goal}
    if numerator is None or not denominator:
        entry.update(value=None, met=None, missing="a figure in the formula was not measured")
        return entry
    value = round(numerator / (denominator * scale), 3)
    entry["value"] = value
    if goal is not None:
        sign, threshold = goal.split()
        entry["met"] = bool(_COMPARE[sign](value, float(threshold)))
    return entry


def _rate(parts: dict, *keys: str) -> float | None:
    return _get(parts, *keys, "images_per_s")


def ratios(parts: dict, cpus: int) -> dict:
    """Return every goal's measured ratio, plus informative ratios (``goal`` None)."""
    floor = _rate(parts, "floor", "draft")
    one = _rate(parts, "features", "one_process")
    ray_all = _rate(parts, "features", "ray_all_cpus")
    pool_all = _rate(parts, "features", "pool_all_cpus")
    actor = _rate(parts, "cnn", "actor", "steady")
    job = _rate(parts, "job")
    job_summary = _get(parts, "job", "summary", "images_per_second")
    slower = min(ray_all, actor) if ray_all and actor else None
    speedup_goal = f">= {round(0.9 * cpus, 2)}" if cpus > 1 else None
    result = {
        "features_vs_floor": _entry("(c) ray all cpus / (a) floor draft", ">= 0.5",
                                    ray_all, floor),
        "parallel_efficiency": _entry("(c) ray all cpus / (cpus x (c) one process)", ">= 0.9",
                                      ray_all, one, cpus),
        "speedup_1_to_all_cpus": _entry("(c) ray all cpus / (c) ray 1 cpu", speedup_goal,
                                        ray_all, _rate(parts, "features", "ray_1_cpu")),
        "job_vs_peer": _entry("(d) job / (e) peer, start-up included", ">= 2",
                              job, _rate(parts, "peer")),
        "job_overlap": _entry("(d) job's own _SUMMARY throughput (after ray.init) / "
                              "min((c) ray all cpus, cnn actor steady)", ">= 0.9",
                              job_summary, slower),
        "rerun_vs_first_run": _entry("(d) unchanged rerun wall clock / (d) first run", "<= 0.2",
                                     _get(parts, "job", "rerun", "seconds"),
                                     _get(parts, "job", "seconds")),
        "cnn_actor_vs_bare_predict": _entry("cnn actor steady / bare model.predict", ">= 0.9",
                                            actor, _rate(parts, "cnn", "bare_predict")),
        "cnn_actor_vs_predict_positive": _entry("cnn actor steady / in-process predict_positive",
                                                None, actor,
                                                _rate(parts, "cnn", "predict_positive_in_process")),
        "memory_10k_vs_1k": _entry("peak PSS of job over large / small set", "<= 1.2",
                                   _get(parts, "memory", "large", "peak_pss_mib"),
                                   _get(parts, "memory", "small", "peak_pss_mib")),
        "memory_10k_vs_1k_rss": _entry("peak RSS of job over large / small set", "<= 1.2",
                                       _get(parts, "memory", "large", "peak_rss_mib"),
                                       _get(parts, "memory", "small", "peak_rss_mib")),
        "train_minutes": _entry("jobs/train.py on Twitter I, minutes", "<= 15",
                                _get(parts, "train", "minutes"), 1.0),
        # Informative, no goal.
        "features_pool_vs_floor": _entry("(c) pool all cpus / (a) floor draft", None,
                                         pool_all, floor),
        "parallel_efficiency_pool": _entry("(c) pool all cpus / (cpus x one process)", None,
                                           pool_all, one, cpus),
        "ray_vs_pool_features": _entry("(c) ray all cpus / (c) pool all cpus", None,
                                       ray_all, pool_all),
        "features_vs_notebook": _entry("(c) ray all cpus / (b) notebook loop", None,
                                       ray_all, _rate(parts, "notebook")),
        "peer_vs_notebook": _entry("(e) peer / (b) notebook loop", None,
                                   _rate(parts, "peer"), _rate(parts, "notebook")),
        "floor_draft_vs_no_draft": _entry("(a) draft / (a) no draft", None,
                                          floor, _rate(parts, "floor", "no_draft")),
    }
    levers = {name: _get(parts, "levers", "images_per_s", name)
              for name in ("baseline", "efficientnet_b0", "xla", "mixed_bfloat16")}
    result["levers_lite0_vs_b0"] = _entry("levers: artsy Lite0 / keras EfficientNetB0, "
                                          "same batch and threads", None,
                                          levers["baseline"], levers["efficientnet_b0"])
    result["levers_xla_vs_plain"] = _entry("levers: tf.function(jit_compile=True) / plain",
                                           None, levers["xla"], levers["baseline"])
    result["levers_mixed_bfloat16_vs_float32"] = _entry("levers: mixed_bfloat16 / float32",
                                                        None, levers["mixed_bfloat16"],
                                                        levers["baseline"])
    result["job_overlap_incl_startup"] = _entry(
        "(d) job wall clock incl. start-up / min((c) ray all cpus, cnn actor steady)", None,
        job, slower)
    return result
