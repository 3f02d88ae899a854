"""Incremental runs: which discovered files a run must read, decode and label.

The index is the label table itself (no side file that a reader's ``OUTPUT/**/*.parquet`` glob
could trip over). :func:`read_prior` collects, for one model version, the content hashes with an
``ok`` row in the *other* committed partitions (those files are skipped: they get no row in this
partition) and the ``ok`` rows of the partition this run replaces (those are carried forward
unchanged when their file still has the same path and content).

:func:`plan_work` decides on the driver, before any Ray work: it hashes every discovered file (a
thread pool; ``hashlib`` and file reads release the GIL) when the table has anything to skip or
carry, so a rerun over an unchanged folder starts no Ray tasks or actors at all. A file that cannot
be read now is left to the decode tasks, which write its error row.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset

from artsy.discover import DiscoveredFile
from artsy.io import read_file
from artsy.output import OutputLocation, committed_partitions, parquet_files, partition_name

logger = logging.getLogger(__name__)

#: Most threads hashing files on the driver.
MAX_HASH_THREADS = 32


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
    """

    skip_hashes: set[str] = field(default_factory=set)
    carried_rows: pa.Table | None = None
    carried: dict[tuple[str, str], int] = field(default_factory=dict)

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
        Files to read, decode and label (new, changed, or unreadable on the driver).
    carried_rows : pyarrow.Table or None
        Earlier rows kept unchanged in the partition being replaced.
    skipped : int
        Files with an ``ok`` row of this model version in another partition (no row here).
    """

    todo: list[DiscoveredFile]
    carried_rows: pa.Table | None = None
    skipped: int = 0

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
            table = dataset.to_table(columns=["content_sha256"], filter=wanted)
            prior.skip_hashes.update(table.column("content_sha256").to_pylist())
    logger.info("index: %d labelled hashes in other partitions, %d rows in %s",
                len(prior.skip_hashes), len(prior.carried), partition_name(run_date))
    return prior


def file_sha256(item: DiscoveredFile) -> str | None:
    """Return the hex SHA-256 of a discovered file's bytes, or ``None`` if it cannot be read."""
    try:
        return hashlib.sha256(read_file(item.location)).hexdigest()
    except OSError:
        return None


def hash_files(files: Sequence[DiscoveredFile], *, threads: int | None = None
               ) -> list[str | None]:
    """Return :func:`file_sha256` of every file, in order, computed by a thread pool."""
    threads = threads or min(MAX_HASH_THREADS, 4 * (os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(file_sha256, files, chunksize=16))


def plan_work(files: Sequence[DiscoveredFile], prior: PriorRows, *,
              threads: int | None = None) -> Work:
    """Split the discovered files into those to process, to carry forward and to skip.

    Parameters
    ----------
    files : sequence of DiscoveredFile
    prior : PriorRows
        From :func:`read_prior` (empty for ``--full`` or a new model version).
    threads : int or None, default=None
        Hashing threads (``None``: 4 per CPU, at most :data:`MAX_HASH_THREADS`).

    Returns
    -------
    Work
        Nothing is read when ``prior`` is empty: every file is to do.
    """
    if prior.empty:
        return Work(todo=list(files))
    todo, carry, skipped = [], [], 0
    for item, digest in zip(files, hash_files(files, threads=threads), strict=True):
        if digest is None:
            todo.append(item)
        elif digest in prior.skip_hashes:
            skipped += 1
        elif (item.path, digest) in prior.carried:
            carry.append(prior.carried[(item.path, digest)])
        else:
            todo.append(item)
    carried_rows = prior.carried_rows.take(carry) if carry else None
    logger.info("incremental: %d to process, %d carried forward, %d skipped", len(todo),
                len(carry), skipped)
    return Work(todo=todo, carried_rows=carried_rows, skipped=skipped)
