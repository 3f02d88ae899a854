"""The run report: a self-contained page with counts, sheets and thumbnails; jobs/report.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet
import pytest
from PIL import Image

from artsy.job import output, run_report
from artsy.job.discover import discover
from artsy.job.predict import CnnPredictor, featurize_and_score
from artsy.testing import write_photos

ROOT = Path(__file__).resolve().parents[2]
N_PHOTOS = 14


@pytest.fixture(scope="module")
def partition(tmp_path_factory, job_bundle) -> Path:
    """A committed-looking partition: real photos labelled by a real bundle, two broken files."""
    root = tmp_path_factory.mktemp("report")
    photos = root / "photos"
    write_photos(photos, N_PHOTOS, seed=3, max_side=400)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    (photos / "empty.png").write_bytes(b"")
    files = discover([str(photos)])
    batch = {"path": np.array([item.path for item in files], dtype=object),
             "location": np.array([item.location for item in files], dtype=object)}
    batch = featurize_and_score(batch, bundle_path=str(job_bundle), image_size=100,
                                feature_set="affect")
    finish = {"run_id": "r1", "models": ("knn", "rf", "effnet", "cnn"),
              "model_version": "test-v1", "feature_set": "affect"}
    table = CnnPredictor(str(job_bundle), batch_size=8, threads=1, output=finish)(batch)
    folder = root / "labels" / "run_date=2026-12-01"
    folder.mkdir(parents=True)
    pyarrow.parquet.write_table(table, folder / "part-0.parquet")
    summary = {"run_id": "r1", "run_date": "2026-12-01", "images_seen": N_PHOTOS + 2,
               "processed": N_PHOTOS + 2, "skipped": 0, "model_version": "test-v1",
               "feature_set": "affect", "labelled": {"positive": 7, "negative": 7}}
    (folder / output.SUMMARY_NAME).write_text(json.dumps(summary))
    earlier = root / "labels" / "run_date=2026-11-30"
    earlier.mkdir()
    (earlier / output.SUMMARY_NAME).write_text(json.dumps({**summary, "images_seen": 3}))
    return folder


def _render(partition: Path) -> str:
    location = output.locate(str(partition.parent))
    summary = json.loads((partition / output.SUMMARY_NAME).read_text())
    return Path(run_report.write_report(location, str(partition), summary)).read_text()


def test_report_is_self_contained_with_thumbnails_counts_and_failures(partition):
    page = _render(partition)
    assert page.startswith("<!doctype html>") and "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing from the network
    thumbnails = re.findall(r'<img src="data:image/jpeg;base64,[A-Za-z0-9+/=]+"', page)
    # fewer images than a sheet holds: each is in the positive or the negative sheet, and in
    # the least-certain one
    assert len(thumbnails) == 2 * N_PHOTOS
    assert "broken.jpg" in page and "corrupt image data" in page and "empty file" in page
    assert "<h2>Most positive</h2>" in page and "<h2>Least certain</h2>" in page
    assert "aria-label=\"histogram of p_positive\"" in page
    labels = re.search(r"<h2>Labels</h2>\s*<table>(.*?)</table>", page, re.S).group(1)
    counted = sum(int(n) for n in re.findall(r"<td class=num>(\d+)</td>", labels))
    assert counted == N_PHOTOS
    assert "<h2>Trend</h2>" in page and "2026-11-30" in page
    assert "effnet" in page  # per-model agreement with the ensemble


def test_report_size_stays_bounded_by_the_sheets(partition, tmp_path):
    """Many more rows than a sheet holds: the page keeps SHEET_SIZE thumbnails per sheet."""
    table = pyarrow.parquet.read_table(partition / "part-0.parquet")
    big = tmp_path / "labels" / "run_date=2026-12-02"
    big.mkdir(parents=True)
    for copy in range(6):  # 6 x 16 rows, every row a real, readable file
        pyarrow.parquet.write_table(table, big / f"part-{copy}.parquet")
    shutil.copy(partition / output.SUMMARY_NAME, big / output.SUMMARY_NAME)
    page = _render(big)
    figures = page.count("<figure")
    assert run_report.SHEET_SIZE * 2 <= figures <= 3 * run_report.SHEET_SIZE  # 84 ok rows
    assert len(page) < 3 * run_report.SHEET_SIZE * 8_000 + 50_000  # thumbnails are a few kB
    assert page.count("broken.jpg") == 6  # every failure listed (fewer than SHEET_SIZE)


def _job(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "jobs/report.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_jobs_report_renders_an_existing_output_and_refuses_a_missing_one(partition, tmp_path):
    target = tmp_path / "page.html"
    result = _job(str(partition.parent), "--out", str(target))
    assert result.returncode == 0, result.stderr
    assert "Most negative" in target.read_text()
    missing = _job(str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    wrong_date = _job(str(partition.parent), "--run-date", "2020-01-01")
    assert wrong_date.returncode == 2 and "no partition" in wrong_date.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run "
                    "installs it as root); the page is checked without a browser above")
def test_report_renders_in_headless_chromium(partition, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(_render(partition))
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,1400",
                    f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20  # not a blank page: text, bars and thumbnails
    assert (pixels < 128).mean() > 0.02


def test_report_lists_the_nodes_only_when_several_worked(partition):
    scanned = run_report.scan([str(path) for path in partition.glob("*.parquet")], None)
    one = {"a" * 56: {"address": "10.0.0.1", "alive": True, "gpus": 0.0, "rows": 4321,
                      "cnn_rows": 4321}}
    assert "<h2>Nodes</h2>" not in run_report.render(scanned, {"nodes": one}, {})
    two = {**one, "b" * 56: {"address": "10.0.0.2", "alive": False, "gpus": 1.0, "rows": 1234,
                             "cnn_rows": 0}}
    page = run_report.render(scanned, {"nodes": two}, {})
    assert "<h2>Nodes</h2>" in page and "10.0.0.2 (lost)" in page
    assert page.count("<td class=num>4321</td>") == 2  # node a: decoded 4321, scored 4321
    assert "<td class=num>1234</td>" in page
