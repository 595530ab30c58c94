"""Job kinds: a kind's end handler runs exactly once per job, whichever process sees the end,
even when the engine is killed with SIGKILL before, during or after the job's end."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import REPO, wait_until

pytestmark = pytest.mark.slow

WORKER = [sys.executable, str(REPO / "tests" / "programs" / "kind_worker.py")]


def _row(home, sql, *params):
    with sqlite3.connect(home / "evopilot.db") as db:
        return db.execute(sql, params).fetchone()


def _handled_count(home, job_id) -> int:
    row = _row(home, "SELECT value FROM meta WHERE key = ?", f"probe-{job_id}")
    return int(row[0]) if row else 0


def test_end_handler_runs_once_across_kill_9(home):
    job_id = int(subprocess.check_output([*WORKER, "submit", "1.5"], cwd=REPO, text=True))
    # a worker starts the job and is killed with SIGKILL while it runs
    worker = subprocess.Popen([*WORKER, "work"], cwd=REPO)
    wait_until(lambda: _row(home, "SELECT pgid FROM jobs WHERE id = ?", job_id)[0], 20, "job started")
    worker.kill()
    worker.wait()
    job_dir = _row(home, "SELECT job_dir FROM jobs WHERE id = ?", job_id)[0]
    # the job ends while no evopilot runs
    wait_until(lambda: os.path.exists(f"{job_dir}/exit_code"), 20, "job ended by itself")
    assert _row(home, "SELECT status, end_handled FROM jobs WHERE id = ?", job_id) == ("running", 0)

    # the next process reconciles it and dies inside the handler, before its commit
    crashed = subprocess.run([*WORKER, "work", "--crash"], cwd=REPO, timeout=60)
    assert crashed.returncode == -9
    assert _row(home, "SELECT status FROM jobs WHERE id = ?", job_id) == ("succeeded",)
    assert _handled_count(home, job_id) == 0, "the crashed handler's write was rolled back"
    assert _row(home, "SELECT end_handled FROM jobs WHERE id = ?", job_id) == (0,)

    # two processes then race for it: exactly one handles it
    racers = [subprocess.Popen([*WORKER, "work"], cwd=REPO) for _ in range(2)]
    assert [p.wait(timeout=60) for p in racers] == [0, 0]
    assert _handled_count(home, job_id) == 1
    assert _row(home, "SELECT end_handled, origin_kind, origin_id FROM jobs WHERE id = ?", job_id) == (1, "test", 7)

    # and nobody handles it again
    subprocess.run([*WORKER, "work"], cwd=REPO, check=True, timeout=60)
    assert _handled_count(home, job_id) == 1


def test_process_without_the_kind_leaves_its_end_alone(cli, home):
    job_id = int(subprocess.check_output([*WORKER, "submit", "0.1"], cwd=REPO, text=True))
    # the plain CLI (no probe kind) runs the job to its end but must not mark the end handled
    code, _, err = cli("worker", "--until-idle")
    assert code == 0, err
    assert _row(home, "SELECT status, end_handled FROM jobs WHERE id = ?", job_id) == ("succeeded", 0)
    subprocess.run([*WORKER, "work"], cwd=REPO, check=True, timeout=60)
    assert _handled_count(home, job_id) == 1
