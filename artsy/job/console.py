"""A quiet console for the batch job: known-benign framework lines removed from stderr.

Ray's C++ core worker writes to the process's stderr directly (not through Python logging), and
on every healthy run it prints a line a user reads as a failure (``core_worker.cc ... E ...
constructor arguments in the object store``: Ray Data keeps every actor's constructor in the
object store, and artsy's actors may restart). :func:`filtered_stderr` routes file descriptor 2
through a pipe for the duration of a ``with`` block and drops only lines that match
:data:`BENIGN`; everything else — artsy's own errors, tracebacks, Ray's real failures, progress
bars — is passed on unchanged (segments end at ``\\n`` or ``\\r``, so bars still animate).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence

#: Lines dropped from a healthy run's stderr (matched anywhere in the line).
BENIGN: tuple[re.Pattern[str], ...] = (
    re.compile(r"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in "
               r"the object store and max_restarts > 0"),
)
_SEGMENT = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)")


def _forward(source: int, target: int, patterns: Sequence[re.Pattern[str]]) -> None:
    pending = b""
    while chunk := os.read(source, 65536):
        pending += chunk
        position = 0
        for match in _SEGMENT.finditer(pending):
            segment = match.group()
            position = match.end()
            text = segment.decode("utf-8", errors="replace")
            if not any(pattern.search(text) for pattern in patterns):
                os.write(target, segment)
        pending = pending[position:]
    if pending:
        os.write(target, pending)


@contextlib.contextmanager
def filtered_stderr(patterns: Sequence[re.Pattern[str]] = BENIGN) -> Iterator[None]:
    """Drop stderr lines matching ``patterns`` (this process and the C++ code inside it)."""
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    thread = threading.Thread(target=_forward, args=(read_end, original, patterns),
                              name="artsy-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the reader drains and stops
        thread.join(timeout=5)
        os.close(read_end)
        os.close(original)
