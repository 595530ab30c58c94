"""LogIndex on real files: counts, growth, rotation, odd bytes, search, big files."""

from __future__ import annotations

import os
import random
import time

import pytest

from evopilot.core.jobs.logindex import LogIndex


def reference_lines(data: bytes, max_chars: int = 4000) -> list[str]:
    """What LogIndex should show, computed the obvious way."""
    if not data:
        return []
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    out = []
    for raw in parts:
        raw = raw.rstrip(b"\r")
        if b"\r" in raw:
            raw = raw[raw.rfind(b"\r") + 1 :]
        text = raw.decode("utf-8", "replace")
        out.append(text)
    return out


def write(path, data: bytes, mode: str = "wb") -> None:
    with open(path, mode) as f:
        f.write(data)


def test_counts_and_lines(tmp_path):
    p = tmp_path / "log"
    write(p, b"".join(b"line %d\n" % i for i in range(1000)))
    idx = LogIndex(p)
    assert idx.refresh() == 1000
    assert idx.line_count == 1000
    assert idx.complete
    assert idx.line(0) == "line 0"
    assert idx.line(999) == "line 999"
    assert idx.lines(10, 3) == ["line 10", "line 11", "line 12"]
    assert idx.lines(998, 10) == ["line 998", "line 999"]
    with pytest.raises(IndexError):
        idx.line(1000)


def test_missing_and_empty_file(tmp_path):
    p = tmp_path / "log"
    idx = LogIndex(p)
    assert idx.refresh() == 0
    assert idx.tail(10) == (0, [])
    write(p, b"")
    assert idx.refresh() == 0
    write(p, b"a\n")
    assert idx.refresh() == 1
    assert idx.line(0) == "a"


@pytest.mark.parametrize("block_size", [7, 64, 16 * 1024])
def test_random_files_match_reference(tmp_path, block_size):
    rng = random.Random(block_size)
    for trial in range(30):
        pieces = []
        for _ in range(rng.randint(0, 300)):
            kind = rng.random()
            if kind < 0.1:
                pieces.append(b"\n")
            elif kind < 0.15:
                pieces.append(b"x" * rng.randint(50, 300) + b"\n")
            elif kind < 0.2:
                pieces.append(b"a\rbb\rccc\r\n")
            else:
                pieces.append(b"w%d" % rng.randint(0, 10**6) * rng.randint(1, 5) + b"\n")
        data = b"".join(pieces)
        if rng.random() < 0.5:
            data += b"partial"
        p = tmp_path / f"log{trial}"
        write(p, data)
        idx = LogIndex(p, block_size=block_size)
        # Index in small random steps to exercise progressive indexing.
        while True:
            idx.refresh(max_bytes=rng.randint(1, 200))
            if idx.complete:
                break
        ref = reference_lines(data)
        assert idx.line_count == len(ref), trial
        assert [idx.line(i) for i in range(len(ref))] == ref
        assert idx.lines(0, len(ref) + 5) == ref
        for n in (1, 3, 50, 1000):
            off, tail = idx.tail(n)
            assert tail == ref[-n:] if ref else tail == []
            if tail:
                assert idx.line_at_offset(off) == len(ref) - len(tail)


def test_appended_bytes_and_partial_last_line(tmp_path):
    p = tmp_path / "log"
    write(p, b"one\ntwo\nthr")
    idx = LogIndex(p)
    assert idx.refresh() == 3
    assert idx.line(2) == "thr"  # the unterminated line is shown
    gen = idx.generation
    write(p, b"ee\nfour\n", "ab")
    assert idx.refresh() == 4
    assert idx.lines(0, 10) == ["one", "two", "three", "four"]
    assert idx.generation == gen  # appended, not re-indexed
    # Nothing changed: the count is stable.
    assert idx.refresh() == 4
    write(p, b"".join(b"more %d\n" % i for i in range(5000)), "ab")
    assert idx.refresh() == 5004
    assert idx.line(5003) == "more 4999"


def test_truncation_and_rotation(tmp_path):
    p = tmp_path / "log"
    write(p, b"".join(b"old %d\n" % i for i in range(100)))
    idx = LogIndex(p)
    assert idx.refresh() == 100
    gen = idx.generation
    # Truncated in place (same inode), shorter.
    write(p, b"new 0\nnew 1\n")
    assert idx.refresh() == 2
    assert idx.lines(0, 5) == ["new 0", "new 1"]
    assert idx.generation > gen
    # Replaced by another file (rename over it), longer than before.
    q = tmp_path / "log.new"
    write(q, b"".join(b"rotated %d\n" % i for i in range(300)))
    os.replace(q, p)
    assert idx.refresh() == 300
    assert idx.line(0) == "rotated 0"
    assert idx.line(299) == "rotated 299"
    # Rewritten in place to a different content that is longer: the byte
    # before the old indexed end is no longer a newline -> re-indexed.
    write(p, b"Z" * 5000 + b"\n" + b"tail\n")
    assert idx.refresh() == 2
    assert idx.line(1) == "tail"


def test_invalid_utf8(tmp_path):
    p = tmp_path / "log"
    write(p, b"ok \xff\xfe bad\n\xc3\x28 also\n\xe2\x82\xac euro\n")
    idx = LogIndex(p)
    assert idx.refresh() == 3
    assert idx.line(0) == "ok \ufffd\ufffd bad"
    assert idx.line(1).endswith("( also")
    assert idx.line(2) == "€ euro"


def test_ten_megabyte_line_is_truncated(tmp_path):
    p = tmp_path / "log"
    big = b"B" * (10 * 1024 * 1024)
    write(p, b"before\n" + big + b"\nafter\n")
    idx = LogIndex(p)
    assert idx.refresh() == 3
    t0 = time.perf_counter()
    text = idx.line(1)
    assert time.perf_counter() - t0 < 0.05
    assert text.startswith("B" * 4000 + " … [")
    assert text.endswith(f"[{len(big):,} bytes]")
    assert len(text) < 4100
    assert idx.lines(0, 3)[2] == "after"
    assert idx.tail(2)[1][0] == text
    # A 10 MB unterminated last line too.
    write(p, big, "ab")
    idx.refresh()
    assert idx.line(3).endswith("bytes]")


def test_carriage_return_progress(tmp_path):
    p = tmp_path / "log"
    write(p, b"start\r\n 10%\r 50%\r100% done\nwin line\r\n\rx\r\nbar \r 7%")
    idx = LogIndex(p)
    assert idx.refresh() == 5
    assert idx.lines(0, 5) == ["start", "100% done", "win line", "x", " 7%"]
    # A long line redrawn with \r keeps its last segment.
    write(p, b"\n" + b"\r".join(b"%d%%" % i + b"=" * 2000 for i in range(100)) + b"\n", "ab")
    idx.refresh()
    assert idx.line(5).startswith("99%=")


def test_search(tmp_path):
    p = tmp_path / "log"
    lines = [f"line {i} alpha" for i in range(20000)]
    lines[123] = "Needle here"
    lines[15000] = "another needle here"
    lines[17000] = "value=42 done"
    lines[-1] = "Ünïcode NEEDLE"
    write(p, ("\n".join(lines) + "\n").encode())
    idx = LogIndex(p)
    idx.refresh()
    assert idx.search("needle", 0) == 123  # case-insensitive by default
    assert idx.search("needle", 0, case=True) == 15000
    assert idx.search("needle", 124) == 15000
    assert idx.search("needle", 123) == 123  # the start line is included
    assert idx.search("needle", 19999, backwards=True) == 19999
    assert idx.search("needle", 19998, backwards=True) == 15000
    assert idx.search("needle", 14999, backwards=True) == 123
    assert idx.search("needle", 122, backwards=True) is None
    assert idx.search(r"value=\d+ done", 0, regex=True) == 17000
    assert idx.search(r"^another", 0, regex=True) == 15000
    assert idx.search(r"^ANOTHER", 0, regex=True, case=True) is None
    assert idx.search("ünïcode", 0) == 19999  # non-ASCII case folding
    assert idx.search("Ünïcode", 0, case=True) == 19999
    assert idx.search("absent", 0) is None
    assert idx.search("absent", 0, backwards=True) is None


def test_search_across_chunks(tmp_path, monkeypatch):
    import evopilot.core.jobs.logindex as mod

    monkeypatch.setattr(mod, "SEARCH_CHUNK", 1000)
    p = tmp_path / "log"
    lines = [f"row {i:05d}" for i in range(5000)]
    write(p, ("\n".join(lines) + "\n").encode())
    idx = LogIndex(p)
    idx.refresh()
    for target in (0, 1, 99, 100, 2500, 4999):
        assert idx.search(f"row {target:05d}", 0) == target
        assert idx.search(f"row {target:05d}", 4999, backwards=True) == target
        assert idx.search(f"ROW {target:05d}$", 0, regex=True) == target


def test_first_error_line(tmp_path):
    p = tmp_path / "log"
    body = [
        "starting",
        "error_rate=0.1 errors: 0",  # not an error
        "warning: something",
        "epoch 1 done",
        "Traceback (most recent call last):",
        '  File "x.py", line 1',
        "ValueError: bad",
    ]
    write(p, ("\n".join(body) + "\n").encode())
    idx = LogIndex(p)
    idx.refresh()
    assert idx.first_error_line() == 4
    write(p, b"only fine\nthings 0 errors\n")
    idx.refresh()
    assert idx.first_error_line() is None
    for text, expect in [
        ("x\nsrc/a.rs:1: error[E0308]: mismatched\n", 1),
        ("x\ny\ntests/test_a.py::test_b FAILED\n", 2),
        ("2024 ERROR boom\n", 0),
        ("ok\nraise RuntimeException\n", 1),
    ]:
        write(p, text.encode())
        idx.refresh()
        assert idx.first_error_line() == expect, text


def test_progressive_indexing_of_a_big_file(tmp_path):
    p = tmp_path / "big.log"
    block = b"".join(b"2024-01-01 12:00:00 INFO step %06d loss=0.1234 lr=3e-4\n" % i for i in range(10000))
    reps = 50 * 1024 * 1024 // len(block) + 1
    with open(p, "wb") as f:
        for _ in range(reps):
            f.write(block)
        f.write(b"the very last line\n")
    total = reps * 10000 + 1
    idx = LogIndex(p)
    # The tail is there at once, before any indexing.
    t0 = time.perf_counter()
    off, tail = idx.tail(40)
    assert time.perf_counter() - t0 < 0.1
    assert tail[-1] == "the very last line"
    assert tail[-2].endswith("step 009999 loss=0.1234 lr=3e-4")
    # Bounded steps.
    steps = 0
    while not idx.complete:
        idx.refresh(max_bytes=8 * 1024 * 1024)
        steps += 1
    assert steps >= 6
    assert idx.line_count == total
    assert idx.line(total - 1) == "the very last line"
    assert idx.line(12345) == "2024-01-01 12:00:00 INFO step 002345 loss=0.1234 lr=3e-4"
    assert idx.line_at_offset(off) == total - 40
    assert idx.search("very last", 0) == total - 1
    # The index is tiny: one checkpoint per 16 KiB bucket.
    assert idx._ncp <= os.path.getsize(p) // idx.block_size + 2
