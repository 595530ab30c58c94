"""The one reader of job logs: ``evopilot logs`` and the TUI's log view both read through it.

A log is read in place, never loaded whole. ``read``/``chunks`` give raw bytes by range (a log
with invalid UTF-8 prints exactly as the job wrote it), ``tail_offset`` where the last N lines
start, ``index`` a lazy line index for a view that scrolls through millions of lines (display
text with invalid UTF-8 replaced and 10 MB lines cut, see ``LogIndex``), and ``follow`` the
bytes as they arrive until the job ends. The engine hands these out (``Engine.log_reader``,
``Engine.follow_log``): a remote job's log is its local mirror, which the monitor keeps
caught up.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from evopilot.core.hosts.local import read_range
from evopilot.core.jobs.logindex import LogIndex

CHUNK = 1 << 20
"""Bytes per read when copying a log out."""


class LogReader:
    """One log file, by path; it opens the file only for the duration of each call."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def read(self, offset: int, limit: int = CHUNK) -> bytes:
        """Up to ``limit`` bytes from ``offset``; b"" past the end or when the file is missing."""
        return read_range(self.path, offset, limit)

    def chunks(self, offset: int = 0) -> Iterator[bytes]:
        """The bytes from ``offset`` to the end as it is now, ``CHUNK`` at a time."""
        while chunk := self.read(offset):
            offset += len(chunk)
            yield chunk

    def tail_offset(self, count: int) -> int:
        """Byte offset where the last ``count`` lines start (``tail -n``); bounded reads,
        however long the lines."""
        with LogIndex(self.path) as index:
            return index.tail_offset(count)

    def index(self) -> LogIndex:
        """A new lazy line index of the log (the caller closes it)."""
        return LogIndex(self.path)


async def follow(
    reader: LogReader, offset: int, *, running: Callable[[], Awaitable[bool]], interval: float,
) -> AsyncIterator[bytes]:
    """The log's bytes from ``offset``, then each new piece as it arrives, until ``running()``
    (which also brings the log up to date) says the job has ended and its last bytes are out."""
    while True:
        still = await running()
        for chunk in reader.chunks(offset):
            offset += len(chunk)
            yield chunk
        if not still:
            return
        await asyncio.sleep(interval)
