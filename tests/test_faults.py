"""The engine under faults: a worker killed between claiming a job and starting it loses
nothing and runs nothing twice; a job's times are when it ran, not when evopilot noticed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from evopilot.core.models import now_iso
from evopilot.core.quoting import quote
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
    """Three crash points of a dispatch: right after the claim; after the job's directory and
    session were recorded but before the start script ran; and in the start script, killed
    between creating the wrapper file and writing it (an empty run.sh, seen in the kill drill:
    the next start took it for written, its session ran nothing and the job was lost). Each
    job runs once."""
    ledger = tmp_path / "ledger"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[engine]\npoll_interval = 0.05\n")  # lost_grace stays at its 5 s default
    cli("project", "add", make_project({"benchmarks/once.py": LEDGER_JOB}), "--config", cfg)
    # the project's environment first (forced back to the queue, the jobs no longer wait for it)
    assert cli("run", "proj", "once.py", "--arg", tmp_path / "warm", "--wait", "--config", cfg)[0] == 0
    cli("queue", "pause", "--config", cfg)
    code, out, err = cli("run", "proj", "once.py", "once.py", "once.py", "once.py", "--arg", ledger, "--config", cfg)
    assert code == 0, err
    first, second, third, fourth = sorted(_jobs(cli, cfg))[-4:]
    # job directories are named <database tag>-<job id>, side by side: the warm run's shows where
    (warm,) = [Path(j["log_path"]).parent for i, j in _jobs(cli, cfg).items()
               if j["kind"] == "benchmark" and i not in (first, second, third, fourth)]
    cut, untold = (warm.parent / f"{warm.name.rsplit('-', 1)[0]}-{i}" for i in (third, fourth))
    db = sqlite3.connect(Path(os.environ["EVOPILOT_HOME"]) / "evopilot.db")
    claimer = f"{socket.gethostname()}:{_dead_pid()}"
    with db:
        # what claim_next commits, then the claimer was killed
        db.execute("UPDATE jobs SET status = 'running', claimed_by = ?, started_at = ? WHERE id IN (?, ?, ?, ?)",
                   (claimer, now_iso(), first, second, third, fourth))
        # the second also got as far as recording where it would live
        db.execute("UPDATE jobs SET job_dir = ?, tmux_session = ? WHERE id = ?",
                   (str(tmp_path / "never-created"), f"evp-never-{second}", second))
        # the third's start script was killed right after `> run.sh` created the file (in the
        # directory its next start uses)
        cut.mkdir(mode=0o700)
        for name in ("env", "run.sh"):  # the log comes after the wrapper
            (cut / name).touch(mode=0o600)
        db.execute("UPDATE jobs SET job_dir = ?, tmux_session = ? WHERE id = ?",
                   (str(cut), f"evp-cut-{third}", third))
        # the fourth's files were written, its log too, then the claimer died before tmux (its
        # wrapper is left for the next start to write: it is the job's own, long to copy here)
        untold.mkdir(mode=0o700)
        for name in ("env", "log"):
            (untold / name).touch(mode=0o600)
        db.execute("UPDATE jobs SET job_dir = ?, tmux_session = ? WHERE id = ?",
                   (str(untold), f"evp-untold-{fourth}", fourth))
    db.close()
    cli("queue", "resume", "--config", cfg)
    t0 = time.monotonic()
    assert cli("worker", "--until-idle", "--config", cfg)[0] == 0
    jobs = _jobs(cli, cfg)
    assert [jobs[i]["status"] for i in (first, second, third, fourth)] == ["succeeded"] * 4, jobs
    assert collections.Counter(ledger.read_text().split()) == {str(i): 1 for i in (first, second, third, fourth)}
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


@pytest.mark.slow
def test_job_times_come_from_the_job_not_from_when_evopilot_noticed(cli, make_project, tmp_path):
    """A 0.3 s job that ends while no evopilot runs, reconciled well after it ended."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    cli("project", "add", make_project({"benchmarks/short.py": "import time\ntime.sleep(0.3)\n"}),
        "--config", cfg)
    assert cli("run", "proj", "short.py", "--config", cfg)[0] == 0  # starts it, then exits
    (job,) = [j for j in _jobs(cli, cfg).values() if j["kind"] != "setup"]
    job_dir = Path(job["log_path"]).parent
    wait_until(lambda: (job_dir / "exit_code").exists(), what="the job's exit code")
    time.sleep(1.5)  # nobody watches: evopilot notices the end only now
    job = _jobs(cli, cfg)[job["id"]]
    assert job["status"] == "succeeded"
    started, finished = (datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
    assert 0.3 <= (finished - started).total_seconds() < 1.0
    assert finished.timestamp() == pytest.approx(float((job_dir / "finished_at").read_text()), abs=0.001)


async def _run_short_jobs(home: Path, cfg_text: str, n: int, command: str) -> list:
    from evopilot.core.config import parse_config
    from evopilot.core.engine import Engine

    engine = await Engine.open(parse_config(cfg_text), home)
    try:
        ids = [(await engine.submit(command, name="short")).id for _ in range(n)]
        await asyncio.wait_for(engine.run_forever(until_done=ids), 60)
        return [await engine.job(i) for i in ids]
    finally:
        await engine.close()


def test_a_worker_loop_cancelled_as_a_wake_comes_stops(tmp_path):
    """The worker loop is stopped by cancelling it (`evolve start` does so once its experiment
    ends). A cancel in the same step as a wake (a job's end) must still stop it: 3.11's
    asyncio.wait_for returned the wake and lost the cancel, and `evolve start` never exited."""
    from evopilot.core.config import parse_config
    from evopilot.core.engine import Engine

    async def main() -> bool:
        engine = await Engine.open(parse_config("[engine]\npoll_interval = 10\n"), tmp_path / "home")
        try:
            worker = asyncio.create_task(engine.run_forever())
            await asyncio.sleep(0.5)  # nothing to do: it waits for work
            engine.scheduler._wake.set()  # what a job's end does
            worker.cancel()
            await asyncio.wait({worker}, timeout=10)
            return worker.cancelled()
        finally:
            await engine.close()

    assert asyncio.run(main()), "the worker loop ran on after it was cancelled"


def test_a_users_remain_on_exit_keeps_no_job_session_alive(tmp_path):
    """A user's tmux config may keep a pane whose command has ended (remain-on-exit on). A job's
    session must still end with its wrapper: else one dead session per job piles up in the
    user's tmux, and a job whose wrapper was killed looks alive for ever instead of lost."""
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g remain-on-exit on\n")
    subprocess.run(["tmux", "-f", str(conf), "new-session", "-d", "-s", "users-own", "sleep 600"], check=True)
    from evopilot.core.config import parse_config
    from evopilot.core.engine import Engine

    async def main():
        engine = await Engine.open(parse_config("[engine]\nlost_grace = 0.5\n"), tmp_path / "home")
        try:
            short = [(await engine.submit("true", name="short")).id for _ in range(3)]
            await asyncio.wait_for(engine.run_forever(until_done=short), 60)
            wrapped = await engine.submit("sleep 60", name="killed")
            await engine.dispatch()
            session = (await engine.job(wrapped.id)).tmux_session
            pane_pid = subprocess.run(["tmux", "list-panes", "-t", f"={session}", "-F", "#{pane_pid}"],
                                      capture_output=True, text=True, check=True).stdout.split()[0]
            os.kill(int(pane_pid), signal.SIGKILL)  # the wrapper, not the job's own group
            await asyncio.wait_for(engine.run_forever(until_done=[wrapped.id]), 60)
            return [await engine.job(i) for i in [*short, wrapped.id]]
        finally:
            await engine.close()

    *short, killed = asyncio.run(main())
    with contextlib.suppress(OSError, ValueError):  # its command, left running by the wrapper's death
        os.killpg(int((Path(killed.job_dir) / "pid").read_text()), signal.SIGKILL)
    assert [j.status for j in short] == ["succeeded"] * 3
    assert killed.status == "lost", killed
    sessions = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True)
    assert sessions.stdout.split() == ["users-own"]


def test_next_job_starts_when_one_ends_not_at_the_next_poll(tmp_path):
    """One slot and a 10 s poll: each start must follow the previous job's end at once. The
    tmux server exits between jobs here (its only session ends), so a wake that depends on
    it would leave each job to the poll."""
    t0 = time.monotonic()
    jobs = asyncio.run(_run_short_jobs(tmp_path / "home", "[hosts.local]\nmax_parallel = 1\n"
                                       "[engine]\npoll_interval = 10\n", 6, "sleep 0.05"))
    assert [j.status for j in jobs] == ["succeeded"] * 6
    assert time.monotonic() - t0 < 10
    times = [(datetime.fromisoformat(j.started_at), datetime.fromisoformat(j.finished_at)) for j in jobs]
    gaps = [(start - end).total_seconds() for (_, end), (start, _) in zip(times, times[1:])]
    assert all(0 <= g < 1.5 for g in gaps), gaps


def test_start_that_races_tmux_exiting_is_tried_again(tmp_path, monkeypatch):
    """A `tmux new-session` that fails as when it races the server's exit ("server exited
    unexpectedly") does not fail the job: the start tries again. The failure is injected by a
    `tmux` first on PATH that fails each job's first new-session, then runs the real tmux."""
    shim = tmp_path / "bin"
    shim.mkdir()
    real = shutil.which("tmux")
    (shim / "tmux").write_text(
        "#!/bin/bash\n"
        f"if [ \"$1\" = new-session ] && mkdir {quote(str(tmp_path / 'failed'))}-\"$4\" 2>/dev/null; then\n"
        "  echo 'server exited unexpectedly' >&2; exit 1\nfi\n"
        f"exec {quote(real)} \"$@\"\n")
    (shim / "tmux").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    jobs = asyncio.run(_run_short_jobs(tmp_path / "home", "[hosts.local]\nmax_parallel = 2\n", 4, "true"))
    assert [j.status for j in jobs] == ["succeeded"] * 4, [j.error_message for j in jobs]
    assert len(list(tmp_path.glob("failed-*"))) == 4  # each job's start did fail once
