"""evopilot can die at any moment: after `kill -9` and a restart, every job ends in its true
state with its whole log; a job whose session vanished without an exit code is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, evopilot_cmd, wait_until

pytestmark = pytest.mark.slow

TICKER = """
import sys, time
n = int(sys.argv[1])
for i in range(1, n + 1):
    print(f"[{i}/{n}] line {i}", flush=True)
    time.sleep(0.1)
"""


def _jobs(cli):
    return json.loads(cli("jobs", "--json")[1])


def test_kill_9_during_jobs_then_restart_reconciles_everything(cli, make_project):
    root = make_project({"benchmarks/tick.py": TICKER, "benchmarks/crash.py": TICKER + "sys.exit(4)\n"})
    cli("project", "add", root)
    worker = subprocess.Popen(evopilot_cmd("worker"), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        cli("run", "proj", "tick.py", "--arg", "30")
        cli("run", "proj", "crash.py", "--arg", "25")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            jobs = _jobs_no_reconcile(root)
            if jobs and all(j.get("progress_current", 0) >= 3 for j in jobs):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("jobs did not start reporting progress")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    # the jobs keep running without evopilot; wait until their wrappers wrote exit codes
    for job in _jobs_no_reconcile(root):
        _wait_file(Path(job["log_path"]).parent / "exit_code")
    jobs = {j["benchmark"]: j for j in _jobs(cli)}  # `jobs` reconciles first
    ok, bad = jobs["tick.py"], jobs["crash.py"]
    assert ok["status"] == "succeeded" and (ok["progress_current"], ok["progress_total"]) == (30, 30)
    assert bad["status"] == "failed" and bad["exit_code"] == 4
    log = cli("logs", str(ok["id"]))[1]
    assert [l for l in log.splitlines() if l.startswith("[")] == [f"[{i}/30] line {i}" for i in range(1, 31)]


def _start_long_job(cli, make_project, cfg):
    """A running job (its process group recorded), with jobs lost at once when they vanish."""
    cfg.write_text("[engine]\nlost_grace = 0\n")
    root = make_project({"benchmarks/long.py": "import time\nprint('[1/2]', flush=True)\ntime.sleep(60)\n"})
    cli("project", "add", root, "--config", cfg)
    cli("run", "proj", "long.py", "--config", cfg)
    (job,) = _benchmark_jobs(cli, cfg)
    _wait_file(Path(job["log_path"]).parent / "pid")
    return job


def test_vanished_session_becomes_lost_with_the_reason(cli, make_project, tmp_path):
    cfg = tmp_path / "c.toml"
    _start_long_job(cli, make_project, cfg)
    subprocess.run(["tmux", "kill-server"], check=True)
    # the pane's wrapper records the hangup; `jobs` reconciles the job to lost
    deadline = time.monotonic() + 10
    while (job := _benchmark_jobs(cli, cfg)[0])["status"] == "running":
        assert time.monotonic() < deadline, "job still running after its tmux server died"
        time.sleep(0.1)
    assert job["status"] == "lost"
    assert "went away under the job" in job["error_message"]


def test_session_gone_without_exit_code_is_lost(cli, make_project, tmp_path):
    cfg = tmp_path / "c.toml"
    job = _start_long_job(cli, make_project, cfg)
    job_dir = Path(job["log_path"]).parent
    # the wrapper is killed outright (as by the OOM killer), then its session goes
    pane_pid = subprocess.run(["tmux", "list-panes", "-t", job["tmux_session"], "-F", "#{pane_pid}"],
                              capture_output=True, text=True, check=True).stdout.split()[0]
    os.kill(int(pane_pid), signal.SIGKILL)
    os.killpg(int((job_dir / "pid").read_text()), signal.SIGKILL)
    subprocess.run(["tmux", "kill-session", "-t", job["tmux_session"]])
    (job,) = _benchmark_jobs(cli, cfg)
    assert job["status"] == "lost" and job["exit_code"] is None
    assert "vanished without an exit code" in job["error_message"]


def _benchmark_jobs(cli, cfg):
    """`jobs --json` without the setup job that built the project's environment."""
    return [j for j in json.loads(cli("jobs", "--json", "--config", cfg)[1]) if j["kind"] != "setup"]


def _jobs_no_reconcile(root):
    """Read the benchmark jobs straight from the database, as a second observer would."""
    import sqlite3

    db = sqlite3.connect(Path(os.environ["EVOPILOT_HOME"]) / "evopilot.db")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM jobs WHERE kind != 'setup'")]
    db.close()
    return rows


def _wait_file(path: Path, timeout: float = 30) -> None:
    wait_until(path.exists, timeout, f"{path} to appear")
