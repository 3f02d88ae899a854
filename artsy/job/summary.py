"""The end-of-run summary: printed by the job and written as ``_SUMMARY.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RunSummary:
    """The end-of-run summary (printed by the job and written as ``_SUMMARY.json``).

    Attributes
    ----------
    run_id, run_date, output, partition : str
        Identity of the run and where its rows are.
    model_version, feature_set : str
        The bundle that labelled them.
    images_seen : int
        Files discovered under the inputs.
    processed : int
        Files read, decoded and labelled (or failed) by this run.
    skipped : int
        Files not processed because their content already has an ``ok`` row of this model version
        (``carried_forward`` of them keep their earlier row in this partition).
    carried_forward : int
    labelled : dict of str to int
        ``ok`` rows per label in the partition.
    emotions : dict of str to int
        ``ok`` rows per emotion category (empty when the bundle has no emotion head).
    emotion_valence_agreement : float or None
        Share of those rows whose category's valence matches their label.
    errors : int
    errors_by_reason : dict of str to int
        Error rows by kind (the reason's text before ``:``).
    seconds : float
        Wall time of discovery, the incremental decision and the run up to the commit (starting
        Ray, which the caller does between the two, is not counted).
    images_per_second : float
        ``processed / seconds``.
    committed : bool
    cpus, gpus : float
        Resources of the Ray cluster (0 when nothing was new and Ray was not used).
    nodes : dict of str to dict
        Per Ray node id: ``address``, its ``cpus`` and ``gpus``, the new rows it decoded
        (``rows``) and scored in its CNN actor (``cnn_rows``); empty when Ray was not used.
    """

    run_id: str
    run_date: str
    output: str
    partition: str
    model_version: str
    feature_set: str
    images_seen: int
    processed: int
    skipped: int
    carried_forward: int
    labelled: dict[str, int]
    emotions: dict[str, int]
    emotion_valence_agreement: float | None
    errors: int
    errors_by_reason: dict[str, int]
    seconds: float
    images_per_second: float
    committed: bool
    cpus: float
    gpus: float
    nodes: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict."""
        return asdict(self)


def describe_nodes(rows_by_node: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Add each node's address and resources (from ``ray.nodes()``) to its row counts."""
    import ray

    nodes = {}
    for node in ray.nodes():
        counts = rows_by_node.get(node["NodeID"], {"rows": 0, "cnn_rows": 0})
        if node["Alive"] or counts["rows"] or counts["cnn_rows"]:
            nodes[node["NodeID"]] = {
                "address": node.get("NodeManagerAddress", ""), "alive": node["Alive"],
                "cpus": node["Resources"].get("CPU", 0.0),
                "gpus": node["Resources"].get("GPU", 0.0), **counts}
    return dict(sorted(nodes.items(), key=lambda item: -item[1]["rows"]))


def busy_nodes(nodes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The nodes of :attr:`RunSummary.nodes` that decoded or scored rows, when more than one did
    (one busy node is not worth a per-node listing)."""
    busy = {node: counts for node, counts in nodes.items()
            if counts.get("rows") or counts.get("cnn_rows")}
    return busy if len(busy) > 1 else {}
