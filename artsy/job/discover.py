"""Discovery of the image files under local paths or ``s3://`` / ``gs://`` / ``file://`` URIs.

Rules (the same for every input):

- folders are walked recursively; files whose extension is in :data:`IMAGE_EXTENSIONS` (any case)
  are listed;
- hidden names (``.*``, which covers macOS ``._*`` forks and ``.DS_Store``) and OS junk
  (:data:`JUNK_NAMES`) are skipped, files and folders alike;
- symbolic links to folders are not followed (no loops, no escaping the input); links to files are
  listed, and so is a dangling link with an image extension, so it becomes an error row instead of
  vanishing;
- a folder whose name looks like an image (``holiday.jpg/``) is walked, never opened;
- a file named explicitly as an input is listed whatever its name;
- the result is sorted, so runs over the same tree see the same order.

Each file comes with the size and modification time its listing gave (``os.scandir`` stats, an
object store's LIST response), never its bytes: an unchanged rerun decides from these alone
(:mod:`artsy.job.incremental`).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass

from artsy.io import is_uri

logger = logging.getLogger(__name__)

#: Extensions (lower case, with the dot) treated as images.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".webp", ".ppm", ".pgm", ".pbm", ".pnm",
})
#: File names (lower case) that operating systems leave behind and that are never images.
JUNK_NAMES: frozenset[str] = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})


@dataclass(frozen=True)
class DiscoveredFile:
    """One file to label.

    Attributes
    ----------
    path : str
        Path or URI written to the table (always valid UTF-8).
    location : bytes
        Where to read it: a local path as OS bytes (``os.fsencode``) or a UTF-8 URI.
    size : int or None
        Bytes, as listed (``None`` when the listing could not stat it, e.g. a dangling link).
    mtime_ns : int or None
        Modification time in nanoseconds since the epoch, as listed (object stores: the
        object's ``Last-Modified``, whole seconds).
    """

    path: str
    location: bytes
    size: int | None = None
    mtime_ns: int | None = None


def display_path(path: str | bytes) -> str:
    """Return a UTF-8-safe version of a local path: undecodable bytes become ``\\xNN``."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", errors="backslashreplace")


def is_image_name(name: str) -> bool:
    """Return whether a file name has an image extension (case-insensitive) and is not junk."""
    if _is_skipped_name(name):
        return False
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _is_skipped_name(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def discover(inputs: list[str] | tuple[str, ...]) -> list[DiscoveredFile]:
    """List the image files under ``inputs``.

    Parameters
    ----------
    inputs : sequence of str
        Local files or folders, or URIs (``s3://bucket/prefix``, ``gs://...``, ``file:///...``).

    Returns
    -------
    list of DiscoveredFile
        Sorted by path, without duplicates (a file reachable from two inputs is listed once).
        Two local names that differ only in undecodable bytes versus their ``\\xNN`` spelling
        get the same ``path`` but stay two files.

    Raises
    ------
    ValueError
        If no input is given or an input does not exist.
    """
    if not inputs:
        raise ValueError("no input given; pass at least one --input PATH")
    found: dict[bytes, DiscoveredFile] = {}
    for source in inputs:
        listed = _discover_uri(source) if is_uri(source) else _discover_local(source)
        for item in listed:
            found.setdefault(item.location, item)
        logger.info("discovered %d image files under %s", len(listed), source)
    return sorted(found.values(), key=lambda item: (item.path, item.location))


def check_inputs(inputs: list[str] | tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless every input exists (cheap; no listing)."""
    if not inputs:
        raise ValueError("no input given; pass at least one --input PATH")
    for source in inputs:
        if is_uri(source):
            import pyarrow.fs

            filesystem, path = _from_uri(source)
            if _file_info(filesystem, path, source).type == pyarrow.fs.FileType.NotFound:
                raise ValueError(f"input not found: {source}; check the URI and credentials")
        elif not os.path.exists(source):
            raise ValueError(f"input not found: {source}; pass an existing file or folder")


def _discover_local(source: str) -> list[DiscoveredFile]:
    if not os.path.lexists(source):
        raise ValueError(f"input not found: {source}; pass an existing file or folder")
    root = os.path.abspath(source)
    if not os.path.isdir(root):
        if not os.path.exists(root):
            raise ValueError(f"input not found: {source} is a dangling link")
        return [_local_file(display_path(root), os.fsencode(root))]
    found: list[DiscoveredFile] = []
    pending = [os.fsencode(root)]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as error:
            logger.warning("cannot list %s: %s", display_path(folder), error)
            continue
        for entry in entries:
            name = os.fsdecode(entry.name)
            if _is_skipped_name(name):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif entry.is_symlink():
                if _is_dir_link(entry.path):
                    logger.debug("not following folder link %s", display_path(entry.path))
                elif is_image_name(name):
                    found.append(_local_file(display_path(entry.path), entry.path))
            elif entry.is_file(follow_symlinks=False) and is_image_name(name):
                found.append(_local_file(display_path(entry.path), entry.path, entry))
    return found


def _local_file(path: str, location: bytes, entry: os.DirEntry | None = None) -> DiscoveredFile:
    """A local file with its size and mtime (a link's target's; ``None`` when it has none)."""
    try:
        info = entry.stat() if entry is not None else os.stat(location)
    except OSError:
        return DiscoveredFile(path, location)
    return DiscoveredFile(path, location, info.st_size, info.st_mtime_ns)


def _is_dir_link(path: bytes) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:  # dangling or looping: not a folder we could walk
        return False


def _from_uri(uri: str):
    import pyarrow.fs

    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except (pyarrow.ArrowException, OSError, ValueError) as error:
        raise ValueError(f"cannot open {uri}: {error}") from None


def _file_info(filesystem, path, source: str):
    """``filesystem.get_file_info(path)``; a failure (credentials, network) is a ValueError."""
    import pyarrow

    try:
        return filesystem.get_file_info(path)
    except (pyarrow.ArrowException, OSError) as error:
        raise ValueError(f"cannot read input {source}: {' '.join(str(error).split())}; check "
                         "the URI, the credentials and the endpoint (AWS_ENDPOINT_URL)") from None


def _discover_uri(source: str) -> list[DiscoveredFile]:
    import pyarrow.fs

    filesystem, base = _from_uri(source)
    info = _file_info(filesystem, base, source)
    if info.type == pyarrow.fs.FileType.NotFound:
        raise ValueError(f"input not found: {source}; check the URI and credentials")
    prefix = source[: source.index("://") + 3]
    if info.type == pyarrow.fs.FileType.File:
        return [_listed_file(source, info)]
    selector = pyarrow.fs.FileSelector(base, recursive=True)
    found = []
    for item in _file_info(filesystem, selector, source):
        relative = item.path[len(base):].strip("/").split("/")
        if item.type != pyarrow.fs.FileType.File or any(map(_is_skipped_name, relative)):
            continue
        if is_image_name(relative[-1]):
            found.append(_listed_file(_join_uri(prefix, item.path, filesystem), item))
    return found


def _listed_file(uri: str, info) -> DiscoveredFile:
    """A file of a :mod:`pyarrow.fs` listing, with the size and mtime the listing carried."""
    return DiscoveredFile(uri, uri.encode(), info.size, info.mtime_ns)


def _join_uri(prefix: str, path: str, filesystem) -> str:
    import pyarrow.fs

    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        return f"file://{path}"
    return f"{prefix}{path}"
