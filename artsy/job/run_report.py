"""The run report: one self-contained HTML page per partition (``_REPORT.html``).

What a person looking after a photo collection wants to *see* after a night's run: counts per
label, emotion and error reason, the model and the timings, a histogram of ``p_positive``, how
often each model agrees with the ensemble, contact sheets of the most positive, the most negative
and the least certain images and of each emotion category, the files that failed and why, and
the trend over earlier partitions. No JavaScript and no network: plots are inline SVG,
thumbnails are JPEG ``data:`` URIs.

Bounded for any run size: the table is read one column batch at a time keeping only the top
:data:`SHEET_SIZE` rows per sheet (heaps), and thumbnails are decoded from those few files only
(``SHEET_SIZE`` x a handful of sheets), never from every file. The job writes the page into the
staged partition before the commit; ``jobs/report.py`` renders it from any existing output.
"""

from __future__ import annotations

import base64
import heapq
import html
import io
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow.dataset

from artsy.config import EMOTION_CATEGORIES

logger = logging.getLogger(__name__)

#: Images per contact sheet (and failures listed).
SHEET_SIZE = 24
#: Images per emotion-category sheet.
CATEGORY_SHEET_SIZE = 8
#: Side of a thumbnail in pixels.
THUMB_SIDE = 96
#: Bins of the ``p_positive`` histogram.
HISTOGRAM_BINS = 20
#: File name of the report inside a partition.
REPORT_NAME = "_REPORT.html"

_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:1rem auto;max-width:1100px;padding:0 .8rem;
color:#222}h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.6rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:.15rem .6rem;text-align:left;
border-bottom:1px solid #eee}.sheet{display:grid;gap:.5rem;
grid-template-columns:repeat(auto-fill,minmax(104px,1fr))}figure{margin:0;font-size:.75rem}
figure img{width:100%;height:auto;border-radius:4px;display:block}figcaption{overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}.num{text-align:right}svg{max-width:100%;height:auto}
"""


class _Top:
    """The ``size`` rows with the largest key seen so far (a bounded heap)."""

    def __init__(self, size: int) -> None:
        self.size, self.heap, self.count = size, [], 0

    def push(self, key: float, row: dict[str, Any]) -> None:
        self.count += 1
        item = (key, self.count, row)
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, item)
        elif key > self.heap[0][0]:
            heapq.heapreplace(self.heap, item)

    def rows(self) -> list[dict[str, Any]]:
        return [row for _, _, row in sorted(self.heap, key=lambda item: (-item[0], item[1]))]


def scan(files: list[str], filesystem: Any) -> dict[str, Any]:
    """One streamed pass over a partition's rows: counts, histogram, agreement, sheets."""
    dataset = pyarrow.dataset.dataset(files, filesystem=filesystem)
    names = dataset.schema.names
    models = [name for name in names if name.startswith("p_positive_")]
    categories = [name for name in EMOTION_CATEGORIES if f"p_{name}" in names]
    columns = ["path", "status", "error", "label", "p_positive", *models,
               *(["emotion", *(f"p_{name}" for name in categories)] if categories else [])]
    sheets = {"most positive": _Top(SHEET_SIZE), "most negative": _Top(SHEET_SIZE),
              "least certain": _Top(SHEET_SIZE)}
    failed: list[dict[str, Any]] = []  # the first SHEET_SIZE failures
    by_category = {name: _Top(CATEGORY_SHEET_SIZE) for name in categories}
    histogram = np.zeros(HISTOGRAM_BINS, dtype=int)
    agree = {name: [0, 0] for name in models}
    labels: dict[str, int] = {}
    emotions: dict[str, int] = {}
    errors: dict[str, int] = {}
    for batch in dataset.to_batches(columns=columns):
        for row in batch.to_pylist():
            if row["status"] != "ok":
                reason = (row["error"] or "unknown").split(":", 1)[0]
                errors[reason] = errors.get(reason, 0) + 1
                if len(failed) < SHEET_SIZE:
                    failed.append(row)
                continue
            p = row["p_positive"]
            labels[row["label"]] = labels.get(row["label"], 0) + 1
            if p is None:
                continue
            histogram[min(int(p * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
            sheets["most positive" if p >= 0.5 else "most negative"].push(abs(p - 0.5), row)
            sheets["least certain"].push(-abs(p - 0.5), row)
            for name in models:
                if row[name] is not None:
                    agree[name][0] += (row[name] >= 0.5) == (p >= 0.5)
                    agree[name][1] += 1
            if row.get("emotion"):
                emotions[row["emotion"]] = emotions.get(row["emotion"], 0) + 1
                by_category[row["emotion"]].push(row[f"p_{row['emotion']}"], row)
    return {"labels": labels, "emotions": emotions, "errors": errors, "histogram": histogram,
            "agreement": {name[len("p_positive_"):]: done / total
                          for name, (done, total) in agree.items() if total},
            "sheets": {**{name: top.rows() for name, top in sheets.items()}, "failed": failed},
            "categories": {name: top.rows() for name, top in by_category.items()}}


def thumbnail(path: str) -> str | None:
    """A ``data:`` URI of the file's centre crop (JPEG), or ``None`` if it cannot be read."""
    from PIL import Image

    from artsy.io import ImageDecodeError, decode_image, is_uri, read_file

    location = path.encode() if is_uri(path) else os.fsencode(path)
    try:
        crop = decode_image(read_file(location), size=8, crop=THUMB_SIDE).crop
    except (OSError, ImageDecodeError):
        return None
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _histogram_svg(counts: np.ndarray) -> str:
    width, height, top = 420, 150, max(int(counts.max()), 1)
    bar = width / len(counts)
    bars = "".join(
        f'<rect x="{i * bar + 1:.1f}" y="{height - 20 - c / top * (height - 30):.1f}" '
        f'width="{bar - 2:.1f}" height="{c / top * (height - 30):.1f}" '
        f'fill="{"#2a9d8f" if i >= len(counts) / 2 else "#e76f51"}"><title>'
        f'{i / len(counts):.2f}-{(i + 1) / len(counts):.2f}: {c}</title></rect>'
        for i, c in enumerate(counts.tolist()))
    axis = "".join(f'<text x="{x * width:.0f}" y="{height - 4}" font-size="11" '
                   f'text-anchor="{anchor}">{x:g}</text>'
                   for x, anchor in ((0, "start"), (0.5, "middle"), (1, "end")))
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" role="img" '
            f'aria-label="histogram of p_positive">{bars}{axis}</svg>')


def _sheet(rows: list[dict[str, Any]], caption: Any) -> str:
    if not rows:
        return "<p>none</p>"
    cells = []
    for row in rows:
        uri, name = thumbnail(row["path"]), html.escape(os.path.basename(row["path"]))
        title = html.escape(f"{row['path']}: {caption(row)}")
        image = (f'<img src="{uri}" alt="{name}" width="{THUMB_SIDE}" height="{THUMB_SIDE}">'
                 if uri else f'<div style="height:{THUMB_SIDE}px;background:#eee"></div>')
        cells.append(f'<figure title="{title}">{image}<figcaption>{name}<br>'
                     f'{html.escape(caption(row))}</figcaption></figure>')
    return f'<div class="sheet">{"".join(cells)}</div>'


def _counts_table(counts: Mapping[str, Any], header: str) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(key))}</td><td class=num>{value}</td></tr>"
                   for key, value in sorted(counts.items(), key=lambda item: -item[1]))
    return f"<table><tr><th>{header}</th><th class=num>images</th></tr>{rows}</table>"


def render(scanned: Mapping[str, Any], summary: Mapping[str, Any] | None,
           trend: Mapping[str, Mapping[str, Any]]) -> str:
    """The HTML page from :func:`scan`, the run summary and earlier partitions' summaries."""
    summary = summary or {}
    title = f"artsy run {summary.get('run_id', '')} ({summary.get('run_date', '')})"
    facts = {"model": f"{summary.get('model_version', '?')} (features: "
                      f"{summary.get('feature_set', '?')})",
             "images seen / processed / skipped": f"{summary.get('images_seen', '?')} / "
                                                   f"{summary.get('processed', '?')} / "
                                                   f"{summary.get('skipped', '?')}",
             "throughput": f"{summary.get('images_per_second', '?')} images/s in "
                           f"{summary.get('seconds', '?')} s ({summary.get('cpus', '?')} CPUs, "
                           f"{summary.get('gpus', '?')} GPUs)"}
    parts = [f"<h1>{html.escape(title)}</h1><table>",
             *(f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>"
               for key, value in facts.items()), "</table>",
             "<h2>Labels</h2>", _counts_table(scanned["labels"], "label")]
    if scanned["emotions"]:
        parts += ["<h2>Emotions</h2>", _counts_table(scanned["emotions"], "emotion")]
    parts += _nodes_table(summary.get("nodes") or {})
    parts += ["<h2>Errors</h2>", _counts_table(scanned["errors"], "reason")
              if scanned["errors"] else "<p>none</p>",
              "<h2>p_positive</h2>", _histogram_svg(scanned["histogram"])]
    if scanned["agreement"]:
        parts += ["<h2>Models agreeing with the ensemble's label</h2><table>",
                  *(f"<tr><td>{html.escape(name)}</td><td class=num>{share:.1%}</td></tr>"
                    for name, share in scanned["agreement"].items()), "</table>"]
    sheets = scanned["sheets"]
    for name in ("most positive", "most negative", "least certain"):
        parts += [f"<h2>{name.capitalize()}</h2>",
                  _sheet(sheets[name], lambda row: f"p_positive {row['p_positive']:.3f}")]
    for name, rows in scanned["categories"].items():
        if rows:
            parts += [f"<h2>Emotion: {html.escape(name)}</h2>",
                      _sheet(rows, lambda row, name=name: f"p_{name} {row[f'p_{name}']:.2f}")]
    parts += ["<h2>Failed files</h2>", "<table>" + "".join(
        f"<tr><td>{html.escape(row['path'])}</td><td>{html.escape(row['error'] or '')}</td></tr>"
        for row in sheets["failed"]) + "</table>" if sheets["failed"] else "<p>none</p>"]
    if len(trend) > 1:
        rows = "".join(
            f"<tr><td>{html.escape(date)}</td><td class=num>{facts_.get('images_seen', '?')}</td>"
            f"<td class=num>{_share(facts_.get('labelled', {}))}</td></tr>"
            for date, facts_ in sorted(trend.items()))
        parts += ["<h2>Trend</h2><table><tr><th>run_date</th><th class=num>images</th>"
                  "<th class=num>positive share</th></tr>", rows, "</table>"]
    body = "\n".join(parts)
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>\n")


def _nodes_table(nodes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Rows decoded and scored per Ray node, when more than one node worked."""
    from artsy.job.summary import busy_nodes

    busy = busy_nodes(dict(nodes))
    if not busy:
        return []
    rows = "".join(
        f"<tr><td>{html.escape(node[:12])}</td><td>{html.escape(str(counts.get('address')))}"
        f"{'' if counts.get('alive', True) else ' (lost)'}</td>"
        f"<td class=num>{counts.get('gpus', 0):g}</td><td class=num>{counts['rows']}</td>"
        f"<td class=num>{counts['cnn_rows']}</td></tr>" for node, counts in busy.items())
    return ["<h2>Nodes</h2><table><tr><th>node</th><th>address</th><th class=num>GPUs</th>"
            "<th class=num>decoded</th><th class=num>CNN</th></tr>", rows, "</table>"]


def _share(labelled: Mapping[str, int]) -> str:
    total = sum(labelled.values())
    return f"{labelled.get('positive', 0) / total:.1%}" if total else "–"


def earlier_summaries(location: Any) -> dict[str, dict[str, Any]]:
    """``{run_date: _SUMMARY.json}`` of every committed partition that has one."""
    from artsy.job.output import SUMMARY_NAME, committed_partitions

    found = {}
    for name, folder in committed_partitions(location).items():
        date = name.split("=", 1)[-1]
        try:
            with location.filesystem.open_input_stream(f"{folder}/{SUMMARY_NAME}") as stream:
                found[date] = json.loads(stream.read())
        except (OSError, ValueError):
            continue
    return found


def write_report(location: Any, folder: str, summary: Mapping[str, Any] | None,
                 path: str | None = None) -> str:
    """Render the report of the partition ``folder`` and write it (default: into the folder)."""
    from artsy.job.output import parquet_files

    trend = earlier_summaries(location)
    if summary:
        trend[str(summary.get("run_date"))] = dict(summary)
    page = render(scan(parquet_files(location, folder), location.filesystem), summary, trend)
    target = path or f"{folder}/{REPORT_NAME}"
    if path is None:
        with location.filesystem.open_output_stream(target) as stream:
            stream.write(page.encode())
    else:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(page)
    logger.info("wrote report %s (%d bytes)", target, len(page))
    return target
