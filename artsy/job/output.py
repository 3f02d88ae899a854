"""The label table on disk: staging, atomic commit, ``_SUCCESS``, ``_SUMMARY.json``.

Layout::

    OUTPUT/run_date=YYYY-MM-DD/<part>.parquet    committed rows (hive partition)
    OUTPUT/run_date=YYYY-MM-DD/_SUCCESS          the partition is committed (see below)
    OUTPUT/run_date=YYYY-MM-DD/_SUMMARY.json     the run's summary
    .OUTPUT.artsy-staging/<run_date>-<run_id>/   a run in progress (sibling of OUTPUT, hidden)

Staging lives *next to* ``OUTPUT``, not inside it: duckdb's ``OUTPUT/**/*.parquet`` glob and
polars' ``scan_parquet`` descend into hidden and ``_``-prefixed folders, so any in-progress Parquet
file under ``OUTPUT`` would show up in their reads (pyarrow alone skips ``.``/``_`` names).

Commit on a local (or HDFS) file system: the finished partition (with ``_SUCCESS`` and
``_SUMMARY.json``) is moved into ``OUTPUT`` by rename. An existing partition of the same date is
first renamed away into the staging area, then deleted: readers see the old partition or the new
one, never a mixture (between the two renames, which are microseconds apart, the date is briefly
absent).

Commit on an object store (``s3://``, ``gs://``: no rename, no atomic folder move): the old
partition's ``_SUCCESS`` is deleted *first*, then its other objects; each staged object is copied
to its final key, data files first, then ``_SUMMARY.json`` / ``_REPORT.html``, and ``_SUCCESS`` is
written *last*. A partition is committed exactly when its ``_SUCCESS`` exists: readers must read
only those partitions, and so does artsy (:func:`committed_partitions` ignores a partition without
one, e.g. one left half-copied by a killed commit; the next run of that date rewrites it).

The incremental index is the table itself: :mod:`artsy.job.incremental` reads the committed
partitions.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset
import pyarrow.fs
import pyarrow.parquet

from artsy.job.schema import PARTITION_KEY

logger = logging.getLogger(__name__)

SUCCESS_NAME = "_SUCCESS"
SUMMARY_NAME = "_SUMMARY.json"
STAGING_SUFFIX = ".artsy-staging"


@dataclass(frozen=True)
class OutputLocation:
    """Where a label table lives.

    Attributes
    ----------
    filesystem : pyarrow.fs.FileSystem
    root : str
        Path of ``OUTPUT`` on ``filesystem``.
    staging : str
        Path of the staging area (a hidden sibling of ``OUTPUT``).
    display : str
        ``OUTPUT`` as the user gave it.
    """

    filesystem: pyarrow.fs.FileSystem
    root: str
    staging: str
    display: str

    def partition(self, run_date: str) -> str:
        """Return the committed folder of one run date."""
        return f"{self.root}/{partition_name(run_date)}"

    def partition_display(self, run_date: str) -> str:
        """Return the committed folder of one run date as a URI when ``OUTPUT`` is one."""
        return self.display_path(self.partition(run_date))

    def display_path(self, path: str) -> str:
        """Return ``path`` (on ``filesystem``) as a URI when ``OUTPUT`` is one (``s3://b/k``)."""
        from artsy.io import is_uri

        scheme = self.display[:self.display.index("://") + 3] if is_uri(self.display) else ""
        return f"{scheme}{path}"


def partition_name(run_date: str) -> str:
    """Return ``run_date=YYYY-MM-DD``."""
    return f"{PARTITION_KEY}={run_date}"


def locate(output: str) -> OutputLocation:
    """Resolve ``output`` (a local path or URI) to its file system, root and staging area.

    Raises
    ------
    ValueError
        If the URI cannot be opened or ``OUTPUT`` is a bucket root (staging needs a parent).
    """
    from artsy.io import is_uri

    text = output if is_uri(output) else (output.rstrip("/") or "/")
    if is_uri(text):
        try:
            filesystem, root = pyarrow.fs.FileSystem.from_uri(text)
        except (pa.ArrowException, OSError, ValueError) as error:
            raise ValueError(f"cannot open output {output}: {error}") from None
        root = root.rstrip("/")
    else:
        filesystem, root = pyarrow.fs.LocalFileSystem(), os.path.abspath(text)
    parent, _, name = root.rpartition("/")
    local = isinstance(filesystem, pyarrow.fs.LocalFileSystem)
    if not name or (not parent and not local):
        raise ValueError(f"output {output} must be a folder below a parent folder or bucket, "
                         "e.g. s3://bucket/labels")
    return OutputLocation(filesystem, root, f"{parent}/.{name}{STAGING_SUFFIX}", output)


def check_writable(location: OutputLocation) -> None:
    """Create ``OUTPUT`` and the staging area and prove both writable, before any work.

    Raises
    ------
    ValueError
        One line naming the folder that cannot be written.
    """
    probe_name = f".artsy-write-probe-{uuid.uuid4().hex}"
    for folder in (location.root, location.staging):
        probe = f"{folder}/{probe_name}"
        try:
            location.filesystem.create_dir(folder, recursive=True)
            with location.filesystem.open_output_stream(probe) as stream:
                stream.write(b"probe")
            location.filesystem.delete_file(probe)
        except (OSError, pa.ArrowException) as error:
            raise ValueError(f"output not writable: {location.display_path(folder)}: "
                             f"{_one_line(error)}; choose a "
                             "folder you can write (its parent must be writable too)") from None
        if location.filesystem.get_file_info(folder).type != pyarrow.fs.FileType.Directory:
            raise ValueError(f"output not writable: {location.display_path(folder)} is not a "
                             "folder")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def new_staging(location: OutputLocation, run_date: str, run_id: str) -> str:
    """Create and return this run's staging partition folder (``.../<date>-<id>/run_date=...``)."""
    folder = f"{location.staging}/{run_date}-{run_id}/{partition_name(run_date)}"
    location.filesystem.create_dir(folder, recursive=True)
    return folder


def discard_staging(location: OutputLocation, staging_partition: str) -> None:
    """Delete one run's staging folder (after a failure or a refused commit)."""
    run_folder = staging_partition.rpartition("/")[0]
    try:
        location.filesystem.delete_dir(run_folder)
    except FileNotFoundError:
        pass


def renames_atomically(filesystem: pyarrow.fs.FileSystem) -> bool:
    """Return whether moving a folder on ``filesystem`` is one atomic rename (local, HDFS).

    Object stores (S3, GCS, ...) have no rename: a move there is a copy of every object.
    """
    return filesystem.type_name in ("local", "hdfs")


def committed_partitions(location: OutputLocation, *, warn: bool = False) -> dict[str, str]:
    """Return the committed partition folders by name (``run_date=...``).

    On an object store a partition counts only when its ``_SUCCESS`` exists: one without it is
    being written, or was left half-copied by a killed commit (``warn`` logs a warning for each).
    On a local file system every partition folder is committed (the commit is a rename).
    """
    selector = pyarrow.fs.FileSelector(location.root, allow_not_found=True)
    found = {info.base_name: info.path
             for info in location.filesystem.get_file_info(selector)
             if info.type == pyarrow.fs.FileType.Directory
             and info.base_name.startswith(f"{PARTITION_KEY}=")}
    if not found or renames_atomically(location.filesystem):
        return found
    names = sorted(found)
    markers = location.filesystem.get_file_info([f"{found[name]}/{SUCCESS_NAME}"
                                                 for name in names])
    committed = {}
    for name, marker in zip(names, markers, strict=True):
        if marker.type == pyarrow.fs.FileType.File:
            committed[name] = found[name]
        elif warn:
            logger.warning("ignoring %s: no %s, its commit did not finish; the next run of %s "
                           "rewrites it", found[name], SUCCESS_NAME, name)
    return committed


def parquet_files(location: OutputLocation, folder: str) -> list[str]:
    """Return the Parquet data files of one folder (not ``.``/``_`` names), sorted."""
    selector = pyarrow.fs.FileSelector(folder, allow_not_found=True)
    return sorted(info.path for info in location.filesystem.get_file_info(selector)
                  if info.type == pyarrow.fs.FileType.File
                  and info.base_name.endswith(".parquet")
                  and not info.base_name.startswith((".", "_")))


def staged_counts(location: OutputLocation, staging_partition: str,
                  run_id: str) -> dict[str, object]:
    """Count the staged rows by status, label, emotion and error reason (streamed, few columns).

    ``emotion_valence_agrees`` counts the ``ok`` rows whose emotion category has the valence of
    their label (a ``fear`` row labelled ``negative``); ``nodes`` maps each Ray node id to the
    new rows it decoded (``rows``) and scored with its CNN actor (``cnn_rows``).
    """
    from artsy.config import POSITIVE_CATEGORIES

    counts: dict[str, object] = {"rows": 0, "new": 0, "carried_forward": 0, "ok": 0,
                                 "errors": 0, "labels": {}, "emotions": {},
                                 "emotion_valence_agrees": 0, "errors_by_reason": {},
                                 "nodes": {}}
    files = parquet_files(location, staging_partition)
    if not files:
        return counts
    dataset = pyarrow.dataset.dataset(files, filesystem=location.filesystem)
    columns = ["run_id", "status", "label", "error"]
    columns += [name for name in ("emotion", "node_id", "cnn_node_id")
                if name in dataset.schema.names]
    for batch in dataset.to_batches(columns=columns):
        for row in batch.to_pylist():
            counts["rows"] += 1
            counts["new" if row["run_id"] == run_id else "carried_forward"] += 1
            if row["run_id"] == run_id:
                _count_node(counts["nodes"], row)
            if row["status"] == "ok":
                counts["ok"] += 1
                _bump(counts["labels"], row["label"])
                if row.get("emotion"):
                    _bump(counts["emotions"], row["emotion"])
                    counts["emotion_valence_agrees"] += (
                        (row["emotion"] in POSITIVE_CATEGORIES) == (row["label"] == "positive"))
            else:
                counts["errors"] += 1
                _bump(counts["errors_by_reason"], error_kind(row["error"]))
    return counts


def _count_node(nodes: dict, row: dict) -> None:
    """Count a new row under the node that decoded it and the node whose CNN actor scored it."""
    for column, key in (("node_id", "rows"), ("cnn_node_id", "cnn_rows")):
        if row.get(column):
            node = nodes.setdefault(row[column], {"rows": 0, "cnn_rows": 0})
            node[key] += 1


def _bump(counter: dict, key: object) -> None:
    counter[str(key)] = counter.get(str(key), 0) + 1


def error_kind(reason: str | None) -> str:
    """Return the kind of an error reason: the text before the first ``:`` (``not an image``)."""
    return (reason or "unknown").split(":", 1)[0].strip()


def ensure_file(location: OutputLocation, staging_partition: str, schema: pa.Schema) -> None:
    """Write an empty Parquet file with ``schema`` when a run staged no rows at all."""
    if not parquet_files(location, staging_partition):
        path = f"{staging_partition}/part-empty.parquet"
        with location.filesystem.open_output_stream(path) as stream:
            pyarrow.parquet.write_table(schema.empty_table(), stream)


def commit(location: OutputLocation, staging_partition: str, run_date: str,
           summary: Mapping[str, object]) -> str:
    """Mark a staged partition done and move it into place, replacing that date's partition.

    By rename on a local file system; by copy, ``_SUCCESS`` last, on an object store (see the
    module docstring).

    Returns
    -------
    str
        The committed partition folder.
    """
    filesystem = location.filesystem
    with filesystem.open_output_stream(f"{staging_partition}/{SUMMARY_NAME}") as stream:
        stream.write((json.dumps(summary, indent=1, sort_keys=True) + "\n").encode())
    target = location.partition(run_date)
    if renames_atomically(filesystem):
        _commit_by_rename(filesystem, staging_partition, target)
    else:
        _commit_by_copy(filesystem, staging_partition, target)
    logger.info("committed %s", target)
    remove_stale_staging(location, run_date)
    return target


def _commit_by_rename(filesystem: pyarrow.fs.FileSystem, staging_partition: str,
                      target: str) -> None:
    with filesystem.open_output_stream(f"{staging_partition}/{SUCCESS_NAME}") as stream:
        stream.write(b"")
    run_folder = staging_partition.rpartition("/")[0]
    replaced = f"{run_folder}/replaced"
    had_partition = filesystem.get_file_info(target).type != pyarrow.fs.FileType.NotFound
    if had_partition:
        filesystem.move(target, replaced)
    try:
        filesystem.move(staging_partition, target)
    except BaseException:
        if had_partition:  # put the previous partition back before reporting the failure
            filesystem.move(replaced, target)
        raise


def _commit_by_copy(filesystem: pyarrow.fs.FileSystem, staging_partition: str,
                    target: str) -> None:
    """Copy the staged objects to ``target``: un-commit the old partition first, commit last.

    A commit killed half-way leaves ``target`` without ``_SUCCESS`` (not committed) and the staged
    run in place; the next run of the date rewrites ``target`` and removes that staging.
    """
    selector = pyarrow.fs.FileSelector(staging_partition, recursive=True)
    staged = [info for info in filesystem.get_file_info(selector)
              if info.type == pyarrow.fs.FileType.File and info.base_name != SUCCESS_NAME]
    # data files first, then the _-prefixed markers (_SUMMARY.json, _REPORT.html)
    staged.sort(key=lambda info: (info.base_name.startswith(("_", ".")), info.path))
    marker = f"{target}/{SUCCESS_NAME}"
    if filesystem.get_file_info(marker).type != pyarrow.fs.FileType.NotFound:
        filesystem.delete_file(marker)  # from here on the old partition is not committed
    if filesystem.get_file_info(target).type == pyarrow.fs.FileType.Directory:
        filesystem.delete_dir_contents(target, missing_dir_ok=True)
    for info in staged:
        relative = info.path[len(staging_partition):].lstrip("/")
        filesystem.copy_file(info.path, f"{target}/{relative}")
    with filesystem.open_output_stream(marker) as stream:
        stream.write(b"")


def remove_stale_staging(location: OutputLocation, run_date: str) -> None:
    """Delete the staging folders of every run of ``run_date`` (killed runs, replaced data).

    Runs of the same date must not overlap (a scheduler runs one nightly job at a time).
    """
    selector = pyarrow.fs.FileSelector(location.staging, allow_not_found=True)
    for info in location.filesystem.get_file_info(selector):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(
                f"{run_date}-"):
            try:
                location.filesystem.delete_dir(info.path)
            except (FileNotFoundError, OSError) as error:
                logger.warning("could not remove stale staging %s: %s", info.path, error)
