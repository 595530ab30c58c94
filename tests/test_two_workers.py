"""Two evopilot processes on one database never start the same job twice."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import time

import pytest

from tests.conftest import REPO, evopilot_cmd

pytestmark = pytest.mark.slow

N = 200


def test_two_workers_200_jobs_none_started_twice(cli, make_project, tmp_path):
    ledger = tmp_path / "ledger"
    root = make_project({"benchmarks/once.py": (
        "import os\n"
        f"fd = os.open({str(ledger)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
        "os.write(fd, (os.environ['EVOPILOT_JOB_ID'] + '\\n').encode())\n")})
    cfg = tmp_path / "c.toml"
    cfg.write_text("[hosts.local]\nmax_parallel = 16\n[engine]\npoll_interval = 0.05\n")
    cli("project", "add", root, "--config", cfg)
    cli("queue", "pause", "--config", cfg)
    code, out, err = cli("run", "proj", *["once.py"] * N, "--config", cfg)
    assert code == 0, err
    logs = [tmp_path / f"worker{i}.jsonl" for i in range(2)]  # files: a full pipe would block a worker
    workers = [subprocess.Popen(evopilot_cmd("worker", "--config", cfg, "--json"), cwd=REPO,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, env=os.environ.copy())
               for log in logs]
    try:
        cli("queue", "resume", "--config", cfg)
        deadline = time.monotonic() + 240
        while True:
            jobs = json.loads(cli("jobs", "--json", "--config", cfg)[1])
            if all(j["status"] not in ("queued", "running") for j in jobs):
                break
            assert time.monotonic() < deadline, "200 jobs did not finish in time"
            time.sleep(0.5)
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=30)
    outputs = [log.read_text() for log in logs]
    assert [j["status"] for j in jobs if j["kind"] != "setup"] == ["succeeded"] * N
    runs = collections.Counter(ledger.read_text().split())
    assert len(runs) == N and set(runs.values()) == {1}, "a job ran twice or not at all"
    # no job was reported started by both workers
    started = [collections.Counter(json.loads(l)["id"] for l in out.splitlines()
                                   if json.loads(l)["status"] == "running") for out in outputs]
    assert not set(started[0]) & set(started[1])
    assert sum(len(s) for s in started) <= N
