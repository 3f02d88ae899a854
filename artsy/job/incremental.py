"""Incremental runs: which discovered files a run must read, decode and label.

The index is the label table itself (no side file that a reader's ``OUTPUT/**/*.parquet`` glob
could trip over): every ``ok`` row holds ``path``, ``file_size``, ``file_modified`` and
``content_sha256``. :func:`read_prior` collects, for one model version, the content hashes with an
``ok`` row in the *other* committed partitions (those files are skipped: they get no row in this
partition), the ``ok`` rows of the partition this run replaces (carried forward unchanged when
their file still has the same path and content) and, per path, the size and mtime its newest row
saw.

:func:`plan_work` decides on the driver, before any Ray work, **without reading a file**: a file
whose listed size and mtime equal its row's has that row's content, so an unchanged rerun starts
no Ray tasks or actors at all. Every other file (new, touched, changed, or indexed by an artsy
that did not record mtimes) goes to the decode tasks, which hash it and drop it when its content
is already labelled elsewhere (:class:`HashSet`), so the driver never reads image bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.dataset

from artsy.job.discover import DiscoveredFile
from artsy.job.output import OutputLocation, committed_partitions, parquet_files, partition_name

logger = logging.getLogger(__name__)


class HashSet:
    """A compact set of hex SHA-256 digests (32 bytes each, sorted), for the decode tasks.

    A million digests take 32 MB, against about 150 MB as a Python ``set`` of strings; it travels
    to the workers once, through the object store.
    """

    def __init__(self, digests: Iterable[str]) -> None:
        self._digests = np.unique(np.array([bytes.fromhex(d) for d in digests], dtype="S32"))

    def __len__(self) -> int:
        return len(self._digests)

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, str) or len(digest) != 64 or not len(self._digests):
            return False
        key = np.array(bytes.fromhex(digest), dtype="S32")
        index = int(np.searchsorted(self._digests, key))
        return index < len(self._digests) and self._digests[index] == key


@dataclass
class PriorRows:
    """What the committed table already holds for one model version.

    Attributes
    ----------
    skip_hashes : set of str
        Hashes with an ``ok`` row in a partition other than the one being replaced.
    carried_rows : pyarrow.Table or None
        ``ok`` rows of the partition being replaced.
    carried : dict of (path, sha256) to int
        Row index in ``carried_rows`` of each (path, content) pair.
    listed : dict of str to (int, int, str)
        Per path, ``(file_size, file_modified in µs, content_sha256)`` of its newest ``ok`` row
        that recorded both.
    """

    skip_hashes: set[str] = field(default_factory=set)
    carried_rows: pa.Table | None = None
    carried: dict[tuple[str, str], int] = field(default_factory=dict)
    listed: dict[str, tuple[int, int, str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Whether there is nothing to skip or carry (a first run, or a new model version)."""
        return not self.skip_hashes and not self.carried


@dataclass
class Work:
    """What one run must do.

    Attributes
    ----------
    todo : list of DiscoveredFile
        Files to read, decode and label: new, changed or touched since their row (the tasks
        hash them; known content is dropped there).
    carried_rows : pyarrow.Table or None
        Earlier rows kept unchanged in the partition being replaced.
    skipped : int
        Files with an ``ok`` row of this model version in another partition (no row here).
    skip_hashes : set of str
        Content the decode tasks must drop (labelled in another partition): a file in ``todo``
        may turn out to be one of them once it is hashed.
    """

    todo: list[DiscoveredFile]
    carried_rows: pa.Table | None = None
    skipped: int = 0
    skip_hashes: set[str] = field(default_factory=set)

    @property
    def carried_forward(self) -> int:
        """Rows carried forward unchanged."""
        return 0 if self.carried_rows is None else self.carried_rows.num_rows


def read_prior(location: OutputLocation, model_version: str, run_date: str) -> PriorRows:
    """Read the ``ok`` rows of ``model_version`` from the committed table.

    Parameters
    ----------
    location : OutputLocation
    model_version : str
        Only rows labelled by this bundle version count.
    run_date : str
        The partition this run replaces: its rows become ``carried`` candidates, not skips.

    Returns
    -------
    PriorRows
    """
    prior = PriorRows()
    wanted = (pyarrow.dataset.field("status") == "ok") & (
        pyarrow.dataset.field("model_version") == model_version)
    newest: dict[str, int] = {}  # path -> inferred_at of the row in prior.listed
    for name, folder in committed_partitions(location, warn=True).items():
        files = parquet_files(location, folder)
        if not files:
            continue
        dataset = pyarrow.dataset.dataset(files, filesystem=location.filesystem)
        if not {"status", "model_version", "path", "content_sha256"} <= set(dataset.schema.names):
            logger.warning("ignoring %s: not an artsy label partition", folder)
            continue
        if name == partition_name(run_date):
            rows = dataset.to_table(filter=wanted)
            keys = zip(rows.column("path").to_pylist(),
                       rows.column("content_sha256").to_pylist(), strict=True)
            prior.carried_rows = rows
            prior.carried = {key: index for index, key in enumerate(keys)}
        else:
            columns = ["path", "content_sha256", "inferred_at"]
            columns += [name for name in ("file_size", "file_modified")
                        if name in dataset.schema.names]
            rows = dataset.to_table(columns=columns, filter=wanted)
            prior.skip_hashes.update(rows.column("content_sha256").to_pylist())
        _add_listed(prior, newest, rows)
    logger.info("index: %d labelled hashes in other partitions, %d rows in %s, %d paths with "
                "size and mtime", len(prior.skip_hashes), len(prior.carried),
                partition_name(run_date), len(prior.listed))
    return prior


def _add_listed(prior: PriorRows, newest: dict[str, int], rows: pa.Table) -> None:
    """Record each row's (size, mtime, hash) under its path, the newest row winning."""
    if not {"file_size", "file_modified"} <= set(rows.column_names):
        return  # written before artsy recorded mtimes: these files are hashed by the tasks
    columns = [rows.column(name).to_pylist() for name in ("path", "file_size", "content_sha256")]
    for name in ("file_modified", "inferred_at"):
        columns.append(rows.column(name).cast(pa.int64()).to_pylist())
    for path, size, digest, modified, inferred in zip(*columns, strict=True):
        if size is None or modified is None or inferred < newest.get(path, -1):
            continue
        newest[path] = inferred
        prior.listed[path] = (size, modified, digest)


def plan_work(files: Sequence[DiscoveredFile], prior: PriorRows) -> Work:
    """Split the discovered files into those to process, to carry forward and to skip.

    Parameters
    ----------
    files : sequence of DiscoveredFile
        With the size and mtime of their listing.
    prior : PriorRows
        From :func:`read_prior` (empty for ``--full`` or a new model version).

    Returns
    -------
    Work
        No file is read: a file is known when its path, listed size and mtime equal an indexed
        row's; everything else is to do (the tasks hash it and drop known content).
    """
    if prior.empty:
        return Work(todo=list(files))
    todo, carry, skipped = [], [], 0
    for item in files:
        digest = _known_digest(item, prior.listed)
        if digest is None:
            todo.append(item)
        elif digest in prior.skip_hashes:
            skipped += 1
        elif (item.path, digest) in prior.carried:
            carry.append(prior.carried[(item.path, digest)])
        else:
            todo.append(item)
    carried_rows = prior.carried_rows.take(carry) if carry else None
    logger.info("incremental: %d to process (hashed in the tasks), %d carried forward, "
                "%d skipped", len(todo), len(carry), skipped)
    return Work(todo=todo, carried_rows=carried_rows, skipped=skipped,
                skip_hashes=prior.skip_hashes if todo else set())


def _known_digest(item: DiscoveredFile, listed: dict[str, tuple[int, int, str]]) -> str | None:
    """The indexed content hash of ``item`` when its listed size and mtime are unchanged."""
    entry = listed.get(item.path)
    if entry is None or item.size is None or item.mtime_ns is None:
        return None
    size, modified, digest = entry
    return digest if (size, modified) == (item.size, item.mtime_ns // 1000) else None
