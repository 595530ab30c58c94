"""The engine under faults: a worker killed between claiming a job and starting it loses
nothing and runs nothing twice; a job's times are when it ran, not when evopilot noticed."""

from __future__ import annotations

import collections
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from evopilot.core.models import now_iso
from tests.conftest import REPO, wait_until

LEDGER_JOB = ("import os, sys\n"
              "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
              "os.write(fd, (os.environ['EVOPILOT_JOB_ID'] + '\\n').encode())\n")


def _jobs(cli, cfg):
    code, out, err = cli("jobs", "--json", "--config", cfg)
    assert code == 0, err
    return {j["id"]: j for j in json.loads(out)}


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_job_claimed_by_a_worker_that_died_before_starting_it_runs_once(cli, make_project, tmp_path):
    """Two crash points of a dispatch: right after the claim, and after the job's directory and
    session were recorded but before the start script ran. Both jobs go back to the queue."""
    ledger = tmp_path / "ledger"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[engine]\npoll_interval = 0.05\n")  # lost_grace stays at its 5 s default
    cli("project", "add", make_project({"benchmarks/once.py": LEDGER_JOB}), "--config", cfg)
    cli("queue", "pause", "--config", cfg)
    code, out, err = cli("run", "proj", "once.py", "once.py", "--arg", ledger, "--config", cfg)
    assert code == 0, err
    first, second = sorted(_jobs(cli, cfg))
    db = sqlite3.connect(Path(os.environ["EVOPILOT_HOME"]) / "evopilot.db")
    claimer = f"{socket.gethostname()}:{_dead_pid()}"
    with db:
        # what claim_next commits, then the claimer was killed
        db.execute("UPDATE jobs SET status = 'running', claimed_by = ?, started_at = ? WHERE id IN (?, ?)",
                   (claimer, now_iso(), first, second))
        # the second also got as far as recording where it would live
        db.execute("UPDATE jobs SET job_dir = ?, tmux_session = ? WHERE id = ?",
                   (str(tmp_path / "never-created"), f"evp-never-{second}", second))
    db.close()
    cli("queue", "resume", "--config", cfg)
    t0 = time.monotonic()
    assert cli("worker", "--until-idle", "--config", cfg)[0] == 0
    jobs = _jobs(cli, cfg)
    assert [jobs[i]["status"] for i in (first, second)] == ["succeeded", "succeeded"], jobs
    assert collections.Counter(ledger.read_text().split()) == {str(first): 1, str(second): 1}
    # the claimer is known dead: no waiting for lost_grace
    assert time.monotonic() - t0 < 5


@pytest.mark.slow
def test_kill_drill_loses_no_job_and_runs_none_twice():
    """A smaller run of bench/kill_drill.py: the worker SIGKILLed 12 times while dispatching."""
    out = subprocess.run(
        [sys.executable, "bench/kill_drill.py", "--jobs", "80", "--slots", "10", "--seconds", "0.3",
         "--kills", "12", "--min-interval", "0.3", "--max-interval", "1.0", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True).stdout
    r = json.loads(out)
    assert r["statuses"] == {"succeeded": 80}, r
    assert (r["lost"], r["run_twice"], r["succeeded_never_ran"]) == (0, 0, 0), r


def test_job_times_come_from_the_job_not_from_when_evopilot_noticed(cli, make_project, tmp_path):
    """A 0.3 s job that ends while no evopilot runs, reconciled well after it ended."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    cli("project", "add", make_project({"benchmarks/short.py": "import time\ntime.sleep(0.3)\n"}),
        "--config", cfg)
    assert cli("run", "proj", "short.py", "--config", cfg)[0] == 0  # starts it, then exits
    (job,) = _jobs(cli, cfg).values()
    job_dir = Path(job["log_path"]).parent
    wait_until(lambda: (job_dir / "exit_code").exists(), what="the job's exit code")
    time.sleep(1.5)  # nobody watches: evopilot notices the end only now
    (job,) = _jobs(cli, cfg).values()
    assert job["status"] == "succeeded"
    started, finished = (datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
    assert 0.3 <= (finished - started).total_seconds() < 1.0
    assert finished.timestamp() == pytest.approx(float((job_dir / "finished_at").read_text()), abs=0.001)
