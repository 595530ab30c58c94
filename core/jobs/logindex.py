"""A lazy, compact line index over a growing log file (no Textual here).

Why
---
Job logs can reach gigabytes. Loading them into a widget (Textual's ``Log``
keeps every line as a Python ``str``) costs seconds and gigabytes, so the log
view reads only the lines it shows, straight from the file, through this index.

Design
------
* **Sparse checkpoints, not one offset per line.** The file is cut into
  fixed buckets of ``block_size`` bytes (16 KiB). For every bucket that
  contains a newline we store one checkpoint: the line number and byte offset
  of the line that starts right after the *first* newline of that bucket
  (plus the checkpoint ``(0, 0)``). Two ``int64`` numpy arrays hold them: a
  1 GB log costs at most 65,536 checkpoints, about 1 MB, whatever its line
  count (a full ``uint64`` offset per line would cost ~120 MB for 15 M lines).
* **Blocks decoded on demand.** All line starts between a checkpoint and the
  next one lie inside one bucket, so the offsets of the lines of one block are
  found by reading at most ``block_size`` bytes and one
  ``np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)``. A small LRU keeps
  recently decoded blocks; showing a screen of lines costs one or two ``pread``
  calls of 16 KiB.
* **Indexing in bounded steps.** ``refresh(max_bytes=...)`` scans at most that
  many new bytes (in 8 MiB ``pread`` chunks, per bucket with ``bytes.find`` /
  ``bytes.count``, ~1.5-2.5 GB/s on a warm page cache), so a UI can index a big
  file in a background thread while it shows the tail. ``refresh()`` without a
  limit indexes everything that is new. When nothing changed, ``refresh`` is
  one ``os.stat``.
* **The tail without the index.** ``tail(count)`` scans backwards from the end
  of the file for the last ``count`` lines, so a view can show the end of a
  1 GB log at once, before (and independently of) the forward index.
* **Replaced or truncated files.** ``refresh`` compares the inode with the one
  it opened and the size with the last size seen, and checks that the byte
  before the indexed end is still a newline; any mismatch resets the index
  (``generation`` is incremented) and indexing starts again from byte 0.
* **Display text.** ``line(i)`` reads the line's bytes with ``os.pread``,
  decodes UTF-8 with ``errors="replace"``, strips the ``\\n`` / ``\\r\\n``,
  keeps only the text after the last ``\\r`` (progress bars redraw a line with
  ``\\r``) and cuts lines longer than ``max_line_chars`` (4,000) to that many
  characters followed by `` … [N bytes]``. At most ~16 KiB (plus a 64 KiB
  window at the end of the line to find the last ``\\r``) is read per line,
  so a 10 MB line costs no more than a short one. For lines over 64 KiB, a
  ``\\r`` is only looked for in the last 64 KiB.
* **Search** reads the file in 4 MiB chunks cut at line boundaries and uses
  ``bytes.find`` / ``bytes.rfind`` (literal), ``bytes.lower()`` + find
  (case-insensitive ASCII) or a compiled bytes regex; only a match's offset is
  turned into a line number (through the checkpoints). Non-ASCII patterns that
  need case folding run on the chunk decoded with ``surrogateescape`` (which
  maps back to exact byte offsets). Search sees the raw bytes, so it can also
  match text that a ``\\r`` has overwritten on screen.
* **Threads.** Public methods are safe to call from a UI thread while one
  background thread runs ``refresh``: the scan itself runs outside the state
  lock and is committed in one short critical section.

Line numbers are 0-based. ``line_count`` counts the lines indexed so far; once
the index has reached the end of the file, an unterminated last line (a
progress bar being redrawn, a line being written) counts as a line too.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

__all__ = ["LogIndex", "ERROR_PATTERN", "MAX_LINE_CHARS"]

BLOCK_SIZE = 16 * 1024
"""Bucket size: one checkpoint per bucket that contains a newline."""

SCAN_CHUNK = 8 * 1024 * 1024
"""Bytes read per ``pread`` while indexing."""

SEARCH_CHUNK = 4 * 1024 * 1024
"""Bytes read per ``pread`` while searching."""

MAX_LINE_CHARS = 4000
"""Lines longer than this are cut for display."""

_SMALL_LINE = 64 * 1024
"""Lines up to this many bytes are read whole; longer ones in two bounded reads."""

_TAIL_STEP = 64 * 1024
_TAIL_SCAN_CAP = 64 * 1024 * 1024
"""``tail`` gives up looking for the start of a single line after this many bytes."""

_BLOCK_CACHE = 64

ERROR_PATTERN = (
    r"Traceback \(most recent call last\)"
    r"|\b(?:[A-Z][A-Za-z0-9_]*)?(?:Error|Exception)\b"
    r"|\berror(?:\[E?\d+\])?:"
    r"|\b(?:ERROR|FATAL|FAILED)\b"
    r"|\bpanicked at\b"
    r"|Segmentation fault"
)
"""What ``first_error_line`` looks for (case-sensitive):

* ``Traceback (most recent call last)`` - a Python traceback (its first line);
* a word ending in ``Error`` or ``Exception`` that starts with a capital letter
  (``ValueError``, ``RuntimeException``, ``Error``) - but not ``error_rate``
  or ``errors``;
* ``error:`` as compilers and CLIs print it (``error:``, ``error[E0308]:``);
* the upper-case words ``ERROR``, ``FATAL``, ``FAILED`` (log levels, pytest);
* ``panicked at`` (Rust) and ``Segmentation fault``.

Lower-case ``error`` alone, ``0 errors`` or ``warning:`` do not count.
"""

_ERROR_RE = re.compile(ERROR_PATTERN.encode(), re.MULTILINE)
_ERROR_LITERALS = (
    b"Traceback",
    b"Error",
    b"Exception",
    b"error",
    b"ERROR",
    b"FATAL",
    b"FAILED",
    b"panicked",
    b"Segmentation",
)
"""Every match of ``ERROR_PATTERN`` contains one of these: chunks without any
are skipped with ``bytes.find`` instead of running the regex over them."""


class _Matcher:
    """Finds the first or last match of a search pattern in a chunk of bytes."""

    def __init__(self, pattern: str, *, regex: bool, case: bool) -> None:
        self.lower = False
        self.literal: bytes | None = None
        self.bregex: re.Pattern[bytes] | None = None
        self.sregex: re.Pattern[str] | None = None
        if not regex and case:
            self.literal = pattern.encode("utf-8")
        elif not regex and pattern.isascii():
            self.literal = pattern.lower().encode("ascii")
            self.lower = True
        elif pattern.isascii():
            flags = re.MULTILINE | (0 if case else re.IGNORECASE)
            self.bregex = re.compile(pattern.encode("ascii"), flags)
        else:
            source = pattern if regex else re.escape(pattern)
            flags = re.MULTILINE | (0 if case else re.IGNORECASE)
            self.sregex = re.compile(source, flags)

    @classmethod
    def from_regex(cls, compiled: re.Pattern[bytes]) -> _Matcher:
        matcher = cls.__new__(cls)
        matcher.lower = False
        matcher.literal = None
        matcher.bregex = compiled
        matcher.sregex = None
        return matcher

    def find(self, data: bytes, start: int, end: int, last: bool) -> int:
        """Offset in ``data`` of the first (or last) match in ``data[start:end]``, or -1."""
        if self.literal is not None:
            hay = data.lower() if self.lower else data
            if last:
                return hay.rfind(self.literal, start, end)
            return hay.find(self.literal, start, end)
        if self.bregex is not None:
            if not last:
                m = self.bregex.search(data, start, end)
                return m.start() if m else -1
            found = -1
            for m in self.bregex.finditer(data, start, end):
                found = m.start()
            return found
        assert self.sregex is not None
        text = data[start:end].decode("utf-8", "surrogateescape")
        if not last:
            m = self.sregex.search(text)
            pos = m.start() if m else -1
        else:
            pos = -1
            for m in self.sregex.finditer(text):
                pos = m.start()
        if pos < 0:
            return -1
        return start + len(text[:pos].encode("utf-8", "surrogateescape"))


def _decode_short(raw: bytes, total: int, max_chars: int) -> str:
    """Display text of one whole line's bytes (without its ``\\n``)."""
    raw = raw.rstrip(b"\r")
    cr = raw.rfind(b"\r")
    if cr >= 0:
        raw = raw[cr + 1 :]
    text = raw.decode("utf-8", "replace")
    if len(text) > max_chars:
        text = f"{text[:max_chars]} … [{total:,} bytes]"
    return text


class LogIndex:
    """A lazy line index over a (growing) log file; see the module docstring.

    ``LogIndex(path)`` opens nothing and reads nothing: call ``refresh()``
    (everything) or ``refresh(max_bytes=...)`` (a bounded step) to index, and
    ``tail(count)`` for the last lines without waiting for the index. A missing
    file is an empty log until it appears.
    """

    ERROR_PATTERN = ERROR_PATTERN
    """What ``first_error_line`` looks for (a view marks its matches)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_size: int = BLOCK_SIZE,
        max_line_chars: int = MAX_LINE_CHARS,
    ) -> None:
        self.path = os.fspath(path)
        self.block_size = int(block_size)
        self.max_line_chars = int(max_line_chars)
        self._read_cap = self.max_line_chars * 4 + 4
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._file = None  # an unbuffered binary file object, kept for pread
        self._ident: tuple[int, int] | None = None
        self._closed = False
        self.generation = 0
        """Incremented every time the index is reset (file replaced or truncated)."""
        self._reset()

    # -- state -----------------------------------------------------------

    def _reset(self) -> None:
        self._size = 0  # file size as of the last check
        self._scan_pos = 0  # bytes scanned for newlines
        self._lines = 0  # newlines seen = complete lines
        self._end = 0  # offset just past the last newline seen
        self._last_nl_bucket = -1
        self._cp_line = np.zeros(1024, np.int64)
        self._cp_off = np.zeros(1024, np.int64)
        self._ncp = 1  # checkpoint 0 is (line 0, offset 0)
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()

    def close(self) -> None:
        """Close the file; later calls read nothing (a closed index stays empty)."""
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
            self._file = None
            self._ident = None
            self.generation += 1
            self._reset()

    def __enter__(self) -> LogIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def size(self) -> int:
        """File size in bytes as of the last ``refresh``/``tail``."""
        return self._size

    @property
    def indexed_bytes(self) -> int:
        return self._scan_pos

    @property
    def complete(self) -> bool:
        """True when the index has reached the size seen at the last check."""
        return self._scan_pos >= self._size

    @property
    def progress(self) -> float:
        """Fraction of the file indexed (1.0 for an empty file)."""
        size = self._size
        return 1.0 if size <= 0 else min(1.0, self._scan_pos / size)

    @property
    def line_count(self) -> int:
        with self._lock:
            return self._line_count()

    def _line_count(self) -> int:
        partial = self._scan_pos >= self._size and self._size > self._end
        return self._lines + (1 if partial else 0)

    def _check_file(self) -> None:
        """Stat the path; (re)open it; reset the index if it was replaced or cut.

        Called with ``self._lock`` held.
        """
        if self._closed:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            # Keep what we have: a rotated log's new file may not exist yet.
            if self._file is None:
                self._size = 0
            return
        ident = (st.st_dev, st.st_ino)
        if self._file is None or ident != self._ident:
            new = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open for pread
            if self._file is not None:
                self._file.close()
                self.generation += 1
                self._reset()
            self._file = new
            fst = os.fstat(new.fileno())
            self._ident = (fst.st_dev, fst.st_ino)
        size = st.st_size
        if size < self._size:
            self.generation += 1
            self._reset()
        elif size != self._size and self._end > 0:
            if os.pread(self._file.fileno(), 1, self._end - 1) != b"\n":
                self.generation += 1
                self._reset()
        self._size = size

    # -- indexing ----------------------------------------------------------

    def refresh(self, max_bytes: int | None = None) -> int:
        """Index bytes appended since the last call; return the new ``line_count``.

        ``max_bytes`` bounds the work of this call (a background indexer calls
        it in a loop until ``complete``). Cheap (one ``stat``) when the file
        has not changed. Detects a replaced or truncated file and re-indexes
        it from the start (``generation`` changes).
        """
        with self._refresh_lock:
            with self._lock:
                self._check_file()
                if self._file is None or self._scan_pos >= self._size:
                    return self._line_count()
                fd = self._file.fileno()
                gen = self.generation
                pos = self._scan_pos
                lines = self._lines
                end = self._end
                last_bucket = self._last_nl_bucket
                limit = self._size if max_bytes is None else min(self._size, pos + max(1, max_bytes))
            block = self.block_size
            cp_lines: list[int] = []
            cp_offs: list[int] = []
            while pos < limit:
                data = os.pread(fd, min(SCAN_CHUNK, limit - pos), pos)
                if not data:
                    break
                n = len(data)
                s = 0
                bucket = pos // block
                while s < n:
                    t = min(n, (bucket + 1) * block - pos)
                    if bucket != last_bucket:
                        p = data.find(b"\n", s, t)
                        if p >= 0:
                            lines += 1
                            cp_lines.append(lines)
                            cp_offs.append(pos + p + 1)
                            last_bucket = bucket
                            lines += data.count(b"\n", p + 1, t)
                    else:
                        lines += data.count(b"\n", s, t)
                    s = t
                    bucket += 1
                r = data.rfind(b"\n")
                if r >= 0:
                    end = pos + r + 1
                pos += n
            with self._lock:
                if gen != self.generation:
                    return self._line_count()
                if cp_offs:
                    # The last block grows: drop its decoded starts.
                    self._blocks.pop(self._ncp - 1, None)
                    self._append_checkpoints(cp_lines, cp_offs)
                elif lines != self._lines:
                    self._blocks.pop(self._ncp - 1, None)
                self._scan_pos = pos
                self._lines = lines
                self._end = end
                self._last_nl_bucket = last_bucket
                return self._line_count()

    def _append_checkpoints(self, lines: list[int], offs: list[int]) -> None:
        need = self._ncp + len(lines)
        if need > len(self._cp_line):
            cap = max(need, 2 * len(self._cp_line))
            self._cp_line = np.resize(self._cp_line, cap)
            self._cp_off = np.resize(self._cp_off, cap)
        self._cp_line[self._ncp : need] = lines
        self._cp_off[self._ncp : need] = offs
        self._ncp = need

    def _block_starts(self, k: int) -> np.ndarray:
        """Start offsets of the lines of block ``k`` (checkpoint k to k+1)."""
        starts = self._blocks.get(k)
        if starts is not None:
            self._blocks.move_to_end(k)
            return starts
        off = int(self._cp_off[k])
        bucket_end = ((off - 1) // self.block_size + 1) * self.block_size
        hi = min(bucket_end, self._end)
        if hi > off:
            data = os.pread(self._file.fileno(), hi - off, off)
            nl = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
            starts = np.empty(len(nl) + 1, np.int64)
            starts[0] = off
            starts[1:] = nl + (off + 1)
        else:
            starts = np.array([off], np.int64)
        self._blocks[k] = starts
        if len(self._blocks) > _BLOCK_CACHE:
            self._blocks.popitem(last=False)
        return starts

    def _start(self, i: int) -> int:
        """Byte offset where line ``i`` starts, for ``0 <= i <= self._lines``."""
        if i >= self._lines:
            return self._end
        k = int(np.searchsorted(self._cp_line[: self._ncp], i, side="right")) - 1
        base = int(self._cp_line[k])
        if base == i:
            return int(self._cp_off[k])
        return int(self._block_starts(k)[i - base])

    def _span(self, i: int) -> tuple[int, int]:
        """``(start, end)`` of line ``i``'s bytes, without the newline."""
        if i < 0 or i >= self._line_count():
            raise IndexError(f"line {i} out of range (0..{self._line_count() - 1})")
        start = self._start(i)
        if i < self._lines:
            return start, self._start(i + 1) - 1
        return start, self._size  # the unterminated last line

    def line_at_offset(self, offset: int) -> int:
        """Number of the line that contains byte ``offset`` (clamped to the index)."""
        with self._lock:
            if offset >= self._end:
                return max(0, min(self._lines, self._line_count() - 1))
            offset = max(0, offset)
            k = int(np.searchsorted(self._cp_off[: self._ncp], offset, side="right")) - 1
            starts = self._block_starts(k)
            j = int(np.searchsorted(starts, offset, side="right")) - 1
            return int(self._cp_line[k]) + j

    # -- reading -------------------------------------------------------------

    def _read_line(self, fd: int, start: int, end: int) -> str:
        n = end - start
        if n <= 0:
            return ""
        if n <= _SMALL_LINE:
            return _decode_short(os.pread(fd, n, start), n, self.max_line_chars)
        # A long line: find its last \r in a bounded window at its end, then
        # read a bounded prefix of the text after it.
        w = min(n, _SMALL_LINE)
        tail = os.pread(fd, w, end - w)
        stripped = tail.rstrip(b"\r")
        seg_end = end - (len(tail) - len(stripped))
        cr = stripped.rfind(b"\r")
        seg_start = end - w + cr + 1 if cr >= 0 else start
        raw = os.pread(fd, min(seg_end - seg_start, self._read_cap), seg_start)
        text = raw.decode("utf-8", "replace")
        if len(text) > self.max_line_chars or seg_end - seg_start > len(raw):
            text = f"{text[: self.max_line_chars]} … [{n:,} bytes]"
        return text

    def line(self, i: int) -> str:
        """Display text of line ``i`` (0-based); ``IndexError`` when out of range."""
        with self._lock:
            start, end = self._span(i)
            return self._read_line(self._file.fileno(), start, end)

    def _starts(self, a: int, b: int) -> list[int]:
        """Start offsets of lines ``a .. b`` inclusive (``b <= self._lines``)."""
        out: list[int] = []
        cp_line = self._cp_line[: self._ncp]
        i = a
        while i <= b:
            if i >= self._lines:
                out.append(self._end)
                i += 1
                continue
            k = int(np.searchsorted(cp_line, i, side="right")) - 1
            base = int(cp_line[k])
            starts = self._block_starts(k)
            j = i - base
            take = min(len(starts) - j, b - i + 1)
            out.extend(starts[j : j + take].tolist())
            i += take
        return out

    def lines(self, start: int, count: int) -> list[str]:
        """Display text of lines ``start .. start+count-1`` that exist."""
        with self._lock:
            total = self._line_count()
            start = max(0, start)
            stop = min(total, start + max(0, count))
            if start >= stop:
                return []
            fd = self._file.fileno()
            # Starts of start..stop (the start of line `stop` ends line stop-1).
            starts = self._starts(start, min(stop, self._lines))
            spans = []
            for n, i in enumerate(range(start, stop)):
                if i < self._lines:
                    spans.append((starts[n], starts[n + 1] - 1))
                else:
                    spans.append((starts[n], self._size))  # the unterminated last line
            lo, hi = spans[0][0], spans[-1][1]
            if hi - lo > 1024 * 1024 or any(e - s > _SMALL_LINE for s, e in spans):
                return [self._read_line(fd, s, e) for s, e in spans]
            data = os.pread(fd, hi - lo, lo)
            cap = self.max_line_chars
            return [_decode_short(data[s - lo : e - lo], e - s, cap) for s, e in spans]

    def tail(self, count: int) -> tuple[int, list[str]]:
        """The last ``count`` lines, found by scanning backwards from the end.

        Works before the forward index has been built (it checks the file
        itself). Returns ``(offset, lines)``: the byte offset where the first
        returned line starts, and the lines' display text.
        """
        with self._lock:
            bounds = self._tail_bounds(count)
            if bounds is None:
                return 0, []
            fd = self._file.fileno()
            out = [
                self._read_line(fd, bounds[j] + 1, bounds[j + 1]) for j in range(len(bounds) - 1)
            ]
            return bounds[0] + 1, out

    def tail_offset(self, count: int) -> int:
        """Byte offset where the last ``count`` lines start (as ``tail``, without reading
        them): 0 for a file with fewer lines, its size for ``count <= 0``."""
        with self._lock:
            if count <= 0:
                self._check_file()
                return self._size
            bounds = self._tail_bounds(count)
            return 0 if bounds is None else bounds[0] + 1

    def _tail_bounds(self, count: int) -> list[int] | None:
        """Offsets ``b`` such that line ``j`` of the tail is the bytes ``b[j]+1 .. b[j+1]``
        (None for an empty file). Called with ``self._lock`` held."""
        self._check_file()
        if self._file is None or self._size == 0 or count <= 0:
            return None
        fd = self._file.fileno()
        size = self._size
        data_end = size - 1 if os.pread(fd, 1, size - 1) == b"\n" else size
        # Separators: newlines strictly before data_end, found from the right.
        seps: list[int] = []
        hi = data_end
        since_sep = 0
        while hi > 0 and len(seps) < count:
            lo = max(0, hi - _TAIL_STEP)
            chunk = os.pread(fd, hi - lo, lo)
            r = len(chunk)
            found = len(seps)
            while len(seps) < count:
                r = chunk.rfind(b"\n", 0, r)
                if r < 0:
                    break
                seps.append(lo + r)
            since_sep = 0 if len(seps) > found else since_sep + (hi - lo)
            hi = lo
            if since_sep > _TAIL_SCAN_CAP:
                break  # one enormous line: show it from where we stopped
        if len(seps) < count:
            seps.append(hi - 1)  # the file start (or where we gave up)
        seps.reverse()
        return [*seps, data_end]

    # -- search --------------------------------------------------------------

    def search(
        self,
        pattern: str,
        start_line: int,
        backwards: bool = False,
        regex: bool = False,
        case: bool = False,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> int | None:
        """First line ``>= start_line`` (or last line ``<= start_line`` when
        ``backwards``) whose raw text matches ``pattern``; ``None`` if none.

        ``regex``: ``pattern`` is a Python regular expression (MULTILINE);
        otherwise a literal. ``case``: match case exactly. Only indexed lines
        are searched. ``should_stop`` is polled between chunks (cancellation);
        a stopped search returns ``None``. ``re.error`` propagates.
        """
        if not pattern:
            return None
        matcher = _Matcher(pattern, regex=regex, case=case)
        return self._search(matcher, start_line, backwards, should_stop, None)

    def first_error_line(
        self, start_line: int = 0, *, should_stop: Callable[[], bool] | None = None
    ) -> int | None:
        """First line at or after ``start_line`` that matches ``ERROR_PATTERN``."""
        matcher = _Matcher.from_regex(_ERROR_RE)
        return self._search(matcher, start_line, False, should_stop, _ERROR_LITERALS)

    def _search(
        self,
        matcher: _Matcher,
        start_line: int,
        backwards: bool,
        should_stop: Callable[[], bool] | None,
        prefilter: tuple[bytes, ...] | None,
    ) -> int | None:
        with self._lock:
            total = self._line_count()
            if total == 0 or self._file is None:
                return None
            f = self._file  # keeps the descriptor alive if the file is replaced
            limit = self._size if self.complete else self._end
            if backwards:
                if start_line < 0:
                    return None
                i = min(start_line, total - 1)
                # Search [0, end of line i including its newline).
                hi = self._start(i + 1) if i < self._lines else limit
            else:
                if start_line >= total:
                    return None
                pos = self._start(max(0, start_line))
        fd = f.fileno()
        if not backwards:
            while pos < limit:
                if should_stop is not None and should_stop():
                    return None
                data = os.pread(fd, min(SEARCH_CHUNK, limit - pos), pos)
                if not data:
                    return None
                n = len(data)
                if pos + n < limit:
                    cut = data.rfind(b"\n")
                    if cut >= 0:
                        n = cut + 1
                begin = 0
                if prefilter is not None:
                    hits = [h for h in (data.find(lit, 0, n) for lit in prefilter) if h >= 0]
                    if not hits:
                        pos += n
                        continue
                    begin = data.rfind(b"\n", 0, min(hits)) + 1
                idx = matcher.find(data, begin, n, last=False)
                if idx >= 0:
                    return self.line_at_offset(pos + idx)
                pos += n
            return None
        while hi > 0:
            if should_stop is not None and should_stop():
                return None
            lo = max(0, hi - SEARCH_CHUNK)
            data = os.pread(fd, hi - lo, lo)
            if not data:
                return None
            skip = 0
            if lo > 0:
                first = data.find(b"\n")
                skip = first + 1 if first >= 0 else 0
            idx = matcher.find(data, skip, len(data), last=True)
            if idx >= 0:
                return self.line_at_offset(lo + idx)
            hi = lo + skip if skip else lo
        return None
