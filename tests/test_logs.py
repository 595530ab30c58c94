"""Reading job logs: the one reader (byte ranges, the last N lines, following) and
`evopilot logs [-n N] [-f]` on real jobs in tmux, with invalid UTF-8 and a 10 MB line."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from evopilot.core.jobs.logread import CHUNK, LogReader, follow
from tests.conftest import REPO, evopilot_cmd, wait_until

BIG = b"y" * (10 * 1024 * 1024)
LOG = b"bad \xff\xfe bytes\n" + BIG + b"\nprogress\r[2/2] end\n"


def test_reader_reads_bytes_by_range_and_to_the_end(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(LOG)
    reader = LogReader(path)
    assert reader.exists() and reader.path == str(path)
    assert reader.read(0, 13) == b"bad \xff\xfe bytes\n"
    assert reader.read(len(LOG) - 4, 100) == b"end\n"
    assert reader.read(len(LOG), 10) == b""
    chunks = list(reader.chunks(4))
    assert b"".join(chunks) == LOG[4:] and max(map(len, chunks)) == CHUNK
    missing = LogReader(tmp_path / "none")
    assert not missing.exists() and missing.read(0, 10) == b"" and list(missing.chunks()) == []


def test_reader_finds_the_last_lines_past_a_10mb_line(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(LOG)
    reader = LogReader(path)
    assert LOG[reader.tail_offset(1):] == b"progress\r[2/2] end\n"
    assert LOG[reader.tail_offset(2):] == BIG + b"\nprogress\r[2/2] end\n"
    assert reader.tail_offset(3) == 0 and reader.tail_offset(100) == 0
    assert reader.tail_offset(0) == len(LOG)
    path.write_bytes(b"no newline at the end")
    assert reader.tail_offset(1) == 0
    assert LogReader(tmp_path / "none").tail_offset(5) == 0


def test_reader_index_gives_display_lines(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(LOG)
    with LogReader(path).index() as index:
        index.refresh()
        assert index.line_count == 3
        first, big, last = index.lines(0, 3)
        assert first == "bad \ufffd\ufffd bytes"
        assert big.endswith(f" … [{len(BIG):,} bytes]") and len(big) < 5000
        assert last == "[2/2] end"  # what a terminal shows after the \r


def test_follow_yields_what_arrives_until_the_job_ends(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"one\n")
    appended = [b"two \xff\n", BIG + b"\n", b"three\n"]
    polls = []

    async def running() -> bool:
        # Each poll stands for the engine bringing the log up to date: the job writes more.
        polls.append(len(polls))
        if appended:
            with open(path, "ab") as f:
                f.write(appended.pop(0))
        return bool(appended)

    async def collect() -> bytes:
        return b"".join([c async for c in follow(LogReader(path), 2, running=running, interval=0)])

    assert asyncio.run(collect()) == (b"one\n" + b"two \xff\n" + BIG + b"\nthree\n")[2:]
    assert len(polls) == 3  # it stopped once the job had ended and its last bytes were out


BENCH = """
import os, sys, time
out = sys.stdout.buffer
out.write(b"bad \\xff\\xfe bytes\\n"); out.flush()
go = os.path.join(os.environ["EVOPILOT_JOB_DIR"], "go")
while sys.argv[1:] == ["--hold"] and not os.path.exists(go):  # the test says when to go on
    time.sleep(0.02)
out.write(b"y" * (10 * 1024 * 1024) + b"\\n")
out.write(b"[2/2] end\\n")
"""


@pytest.mark.slow
def test_logs_follow_prints_the_log_byte_exact_until_the_job_ends(cli, make_project, tmp_path):
    cli("project", "add", make_project({"benchmarks/noisy.py": BENCH}))
    code, out, err = cli("run", "proj", "noisy.py", "--arg=--hold", "--json")
    assert code == 0, err
    (job,) = json.loads(out)
    followed = tmp_path / "followed"
    with open(followed, "wb") as sink:
        proc = subprocess.Popen(evopilot_cmd("logs", job["id"], "-f"), cwd=REPO, stdout=sink,
                                stderr=subprocess.PIPE)
        try:
            wait_until(lambda: followed.read_bytes() == b"bad \xff\xfe bytes\n", what="the first line, followed")
            assert proc.poll() is None  # still following: the job waits for us
            job = next(j for j in json.loads(cli("jobs", "--json")[1]) if j["id"] == job["id"])
            (Path(job["log_path"]).parent / "go").touch()
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
        finally:
            proc.kill()
            proc.wait()
    job = next(j for j in json.loads(cli("jobs", "--json")[1]) if j["id"] == job["id"])
    assert job["status"] == "succeeded"  # following brought the job's end in
    assert followed.read_bytes() == Path(job["log_path"]).read_bytes()
    assert followed.read_bytes().endswith(b"y\n[2/2] end\n")


def test_logs_last_lines(cli, make_project, tmp_path):
    cli("project", "add", make_project({"benchmarks/noisy.py": BENCH}))
    assert cli("run", "proj", "noisy.py", "--wait")[0] == 0
    _setup, job = json.loads(cli("jobs", "--json")[1])
    last = subprocess.run(evopilot_cmd("logs", job["id"], "-n", "2"), cwd=REPO, capture_output=True)
    assert last.returncode == 0 and last.stdout == b"y" * (10 * 1024 * 1024) + b"\n[2/2] end\n"
    assert cli("logs", job["id"], "-n", "1") == (0, "[2/2] end\n", "")
    assert cli("logs", job["id"], "-n", "0") == (0, "", "")
    code, _, err = cli("logs", job["id"], "-n", "-1")
    assert code == 2 and err.count("\n") == 1 and "--lines" in err
