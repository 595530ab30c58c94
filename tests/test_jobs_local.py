"""The job engine on the local host, driven through the CLI as a user would, with real tmux."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import CmdlineWatch, wait_until

PROGRESS = """
import json, os, sys, time
n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
for i in range(1, n + 1):
    print(f"[{i}/{n}] step", flush=True)
    time.sleep(0.05)
json.dump({"score": 0.5, "time": {"value": 1.5, "unit": "s", "higher_is_better": False}},
          open(os.environ["EVOPILOT_RESULTS"], "w"))
"""

FAILS = """
def inner():
    raise ValueError("the solver diverged")
print("[1/2] about to fail", flush=True)
inner()
"""


def jobs_json(cli, *args):
    """The benchmark jobs (a project's first run also has the setup job building its .venv)."""
    code, out, err = cli("jobs", "--json", *args)
    assert code == 0, err
    return [j for j in json.loads(out) if j["kind"] != "setup"]


def test_run_wait_records_progress_metrics_and_exit(cli, make_project):
    root = make_project({"benchmarks/b_ok.py": PROGRESS, "benchmark_fail.py": FAILS})
    code, out, err = cli("project", "add", root)
    assert code == 0, err
    assert "2 benchmark(s)" in out
    code, out, err = cli("run", "proj", "b_ok.py", "benchmark_fail.py", "--wait")
    assert code == 1, "a failed job makes --wait exit non-zero"
    jobs = {j["benchmark"]: j for j in jobs_json(cli)}
    ok, bad = jobs["b_ok.py"], jobs["benchmark_fail.py"]
    assert ok["status"] == "succeeded" and ok["exit_code"] == 0
    assert (ok["progress_current"], ok["progress_total"]) == (3, 3)
    assert ok["metrics"] == {"score": 0.5, "time": 1.5}
    assert ok["started_at"] and ok["finished_at"] and ok["host"] == "local"
    assert bad["status"] == "failed" and bad["exit_code"] == 1
    assert "ValueError: the solver diverged" in bad["error_message"]
    assert "Traceback" in bad["error_message"]
    assert (bad["progress_current"], bad["progress_total"]) == (1, 2)
    code, out, _ = cli("logs", str(bad["id"]))
    assert "[1/2] about to fail" in out and "ValueError" in out


def test_job_environment_and_files(cli, make_project, home):
    root = make_project({"benchmarks/env.py": (
        "import os\nfor k in ('EVOPILOT_JOB_ID','EVOPILOT_JOB_DIR','EVOPILOT_RESULTS'):\n"
        "    print(k, os.environ[k])\nprint('cwd', os.getcwd())\n")})
    cli("project", "add", root)
    code, _, err = cli("run", "proj", "env.py", "--wait")
    assert code == 0, err
    (job,) = jobs_json(cli)
    log = Path(job["log_path"]).read_text()
    job_dir = Path(job["log_path"]).parent
    assert f"EVOPILOT_JOB_ID {job['id']}" in log
    assert f"EVOPILOT_JOB_DIR {job_dir}" in log
    assert f"EVOPILOT_RESULTS {job_dir}/results.json" in log
    assert f"cwd {root}" in log
    assert (job_dir / "exit_code").read_text().strip() == "0"
    assert int((job_dir / "pid").read_text())
    # private to the user: database, job directory, log
    assert (home / "evopilot.db").stat().st_mode & 0o077 == 0
    assert job_dir.stat().st_mode & 0o077 == 0
    assert (job_dir / "log").stat().st_mode & 0o077 == 0


def test_host_env_reaches_the_job_but_no_command_line(cli, make_project, tmp_path, home):
    """A host's env (a licence path, a token) must not show in /proc/*/cmdline, which every
    user of the host can read: it goes to the job through a file private to the user."""
    canary = "tok-3f9c1a7e-canary"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[hosts.local]\nenv = {{ EVP_TOKEN = "{canary}", EVP_PATH = "/a b/é" }}\n')
    root = make_project({f"benchmarks/b{i}.py": "import os\nprint('got', os.environ['EVP_TOKEN'], os.environ['EVP_PATH'])\n"
                         for i in range(3)})
    cli("project", "add", root, "--config", cfg)
    with CmdlineWatch(canary, tmp_path) as watch:
        code, _, err = cli("run", "proj", "b0.py", "b1.py", "b2.py", "--wait", "--config", cfg)
        assert code == 0, err
    assert watch.hits == []
    for job in jobs_json(cli, "--config", cfg):
        assert f"got {canary} /a b/é" in Path(job["log_path"]).read_text()
        env = Path(job["log_path"]).parent / "env"
        assert env.stat().st_mode & 0o777 == 0o600
        assert canary not in (env.parent / "run.sh").read_text()


def test_invalid_results_json_fails_the_job_and_keeps_its_log(cli, make_project):
    root = make_project({"benchmarks/bad.py": (
        "import os\nprint('computed everything')\n"
        "open(os.environ['EVOPILOT_RESULTS'], 'w').write('{not json')\n")})
    cli("project", "add", root)
    assert cli("run", "proj", "bad.py", "--wait")[0] == 1
    (job,) = jobs_json(cli)
    assert job["status"] == "failed" and job["exit_code"] == 0
    assert "results.json is not valid JSON" in job["error_message"]
    assert "computed everything" in cli("logs", str(job["id"]))[1]


def test_results_over_the_size_limit_say_so_and_the_limit_is_a_setting(cli, make_project, tmp_path):
    root = make_project({"benchmarks/big.py": (
        "import json, os\njson.dump({'score': 1, 'pad': {'value': 2, 'unit': 'x' * 2_000_000}},"
        " open(os.environ['EVOPILOT_RESULTS'], 'w'))\n")})
    cli("project", "add", root)
    assert cli("run", "proj", "big.py", "--wait")[0] == 1
    (job,) = jobs_json(cli)
    assert job["status"] == "failed" and job["exit_code"] == 0
    assert "results.json is over the size limit of 1048576 bytes" in job["error_message"]
    assert "results_max_bytes" in job["error_message"]
    cfg = tmp_path / "c.toml"
    cfg.write_text("[engine]\nresults_max_bytes = 4194304\n")
    assert cli("run", "proj", "big.py", "--wait", "--config", cfg)[0] == 0
    assert max(jobs_json(cli), key=lambda j: j["id"])["metrics"]["score"] == 1


@pytest.mark.slow
def test_timeout_kills_and_fails_with_reason(cli, make_project):
    root = make_project({"benchmarks/slow.py": "import time\nprint('[1/9]', flush=True)\ntime.sleep(60)\n"})
    cli("project", "add", root)
    t = time.monotonic()
    assert cli("run", "proj", "slow.py", "--timeout", "1", "--wait")[0] == 1
    assert time.monotonic() - t < 20
    (job,) = jobs_json(cli)
    assert job["status"] == "failed"
    assert job["error_message"].startswith("timeout")


def test_invalid_utf8_and_a_10mb_line_are_logged_byte_exact(cli, make_project):
    root = make_project({"benchmarks/noisy.py": (
        "import sys\nout = sys.stdout.buffer\nout.write(b'bad \\xff\\xfe bytes\\n')\n"
        "out.write(b'y' * (10 * 1024 * 1024) + b'\\n')\nout.write(b'[2/2] end\\n')\n")})
    cli("project", "add", root)
    assert cli("run", "proj", "noisy.py", "--wait")[0] == 0
    (job,) = jobs_json(cli)
    data = Path(job["log_path"]).read_bytes()
    assert data.startswith(b"bad \xff\xfe bytes\n")
    assert len(data) == len(b"bad \xff\xfe bytes\n") + 10 * 1024 * 1024 + 1 + len(b"[2/2] end\n")
    assert (job["progress_current"], job["progress_total"]) == (2, 2)


def test_cancel_retry_and_queue_order(cli, make_project, tmp_path):
    cfg = tmp_path / "one-slot.toml"
    cfg.write_text("[hosts.local]\nmax_parallel = 1\n")
    root = make_project({"benchmarks/a.py": "import time\ntime.sleep(0.5)\n",
                         "benchmarks/b.py": "print('b ran')\n", "benchmarks/c.py": "print('c ran')\n"})
    cli("project", "add", root, "--config", cfg)
    assert cli("run", "proj", "b.py", "--wait", "--config", cfg)[0] == 0  # builds the .venv
    assert cli("queue", "pause", "--config", cfg)[0] == 0
    code, out, _ = cli("run", "proj", "a.py", "b.py", "c.py", "--config", cfg)
    ids = [int(l.split()[1].rstrip(":")) for l in out.splitlines()]
    assert all(j["status"] == "queued" for j in jobs_json(cli, "--config", cfg) if j["id"] in ids)
    assert cli("queue", "front", str(ids[2]), "--config", cfg)[0] == 0
    assert cli("cancel", str(ids[1]), "--config", cfg)[0] == 0
    code, _, err = cli("cancel", str(ids[1]), "--config", cfg)
    assert code == 2 and "it is cancelled" in err
    assert cli("queue", "resume", "--config", cfg)[0] == 0
    assert cli("worker", "--until-idle", "--config", cfg)[0] == 0
    jobs = {j["id"]: j for j in jobs_json(cli, "--config", cfg)}
    assert jobs[ids[1]]["status"] == "cancelled"
    # c was moved to the front: with one slot it started before a
    assert jobs[ids[2]]["started_at"] < jobs[ids[0]]["started_at"]
    code, out, _ = cli("retry", str(ids[1]), "--config", cfg)
    assert code == 0 and f"retry of job {ids[1]}" in out
    cli("worker", "--until-idle", "--config", cfg)
    retried = max(jobs_json(cli, "--config", cfg), key=lambda j: j["id"])
    assert retried["benchmark"] == "b.py" and retried["status"] == "succeeded"


def test_stop_sends_sigint_to_the_whole_group(cli, make_project, tmp_path):
    marker = tmp_path / "child-alive"
    root = make_project({"benchmarks/loop.py": (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen(['bash', '-c', 'trap \"\" INT; while true; do touch {marker}; sleep 0.1; done'])\n"
        "print('[1/2] started', flush=True)\n"
        "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
        "    print('got SIGINT', flush=True)\n    sys.exit(130)\n")})
    cli("project", "add", root)
    cli("run", "proj", "loop.py")
    (job,) = jobs_json(cli)
    wait_until(lambda: marker.exists())
    code, out, err = cli("stop", str(job["id"]))
    assert code == 0, err
    wait_until(lambda: jobs_json(cli)[0]["status"] != "running")
    (job,) = jobs_json(cli)
    assert job["status"] == "cancelled" and job["exit_code"] == 130
    assert "got SIGINT" in cli("logs", str(job["id"]))[1]
    # the child ignores SIGINT and outlives the job in its process group
    pgid = int((Path(job["log_path"]).parent / "pid").read_text())
    assert _group_alive(pgid)
    assert cli("kill", str(job["id"]))[0] == 2  # the job itself is over
    os.killpg(pgid, signal.SIGKILL)


def test_a_stopped_job_whose_end_is_recorded_before_stop_returns_is_cancelled(tmp_path, monkeypatch):
    """A worker may record a stopped job's end before `stop` is done with it (under load, the
    background worker did): the job is cancelled, not failed. Here that end is recorded right
    after the signal, inside `stop`."""
    from evopilot.core.config import Config
    from evopilot.core.engine import Engine
    from evopilot.core.jobs import launch

    real = launch.stop

    async def stop_then_recorded(host, job):
        sent = await real(host, job)
        if sent:  # the job ends of the signal, and a tick records that end at once
            exit_code = Path(job.job_dir) / "exit_code"
            for _ in range(200):
                if exit_code.exists():
                    break
                await asyncio.sleep(0.05)
            await engine.tick_host(job.host, dispatch_jobs=False)
        return sent

    async def main():
        nonlocal engine
        engine = await Engine.open(Config(), tmp_path / "home")
        try:
            job = await engine.submit("trap 'exit 130' INT; echo started; while :; do sleep 0.05; done")
            await engine.dispatch()
            pid = Path((await engine.job(job.id)).job_dir) / "pid"
            for _ in range(200):
                if pid.exists():
                    break
                await asyncio.sleep(0.05)
            monkeypatch.setattr(launch, "stop", stop_then_recorded)
            await engine.stop(job.id)
            return await engine.job(job.id)
        finally:
            await engine.close()

    engine = None
    job = asyncio.run(main())
    assert (job.status, job.exit_code) == ("cancelled", 130), job.error_message


def test_kill_takes_down_the_process_group_and_session(cli, make_project, tmp_path):
    marker = tmp_path / "grandchild"
    root = make_project({"benchmarks/stubborn.py": (
        "import signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"subprocess.Popen(['bash', '-c', 'trap \"\" TERM; while true; do touch {marker}; sleep 0.1; done'])\n"
        "print('[1/1] ignoring TERM', flush=True)\ntime.sleep(120)\n")})
    cfg = tmp_path / "c.toml"
    cfg.write_text("[engine]\nkill_grace = 0.5\n")
    cli("project", "add", root, "--config", cfg)
    cli("run", "proj", "stubborn.py", "--config", cfg)
    (job,) = jobs_json(cli, "--config", cfg)
    wait_until(lambda: marker.exists())
    pgid = int((Path(job["log_path"]).parent / "pid").read_text())
    code, out, err = cli("kill", str(job["id"]), "--config", cfg)
    assert code == 0, err
    (job,) = jobs_json(cli, "--config", cfg)
    assert job["status"] == "killed" and job["exit_code"] == 137
    assert _group_alive(pgid) is False
    sessions = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"],
                              capture_output=True, text=True).stdout
    assert job["tmux_session"] not in sessions


def test_a_full_disk_is_reported_as_such_and_the_database_survives(cli, make_project, home, tmp_path,
                                                                  mount):
    """The data directory fills up while a job runs: the job ends with its exit code and the
    reason "no space left", commands say so in one line, and all works again once space is back."""
    mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", at=home)
    go = tmp_path / "go"
    root = make_project({"benchmarks/fill.py": (
        f"import os, time\nprint('[1/2] waiting', flush=True)\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\n"
        "print('[2/2] ' + 'x' * 100000, flush=True)\n")})
    assert cli("project", "add", root)[0] == 0
    assert cli("run", "proj", "fill.py")[0] == 0
    (job,) = jobs_json(cli)
    log = Path(job["log_path"])
    wait_until(lambda: b"waiting" in log.read_bytes())
    filler = home / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], stderr=subprocess.DEVNULL)
    go.touch()
    wait_until(lambda: (log.parent / "exit_code").exists(), what="the exit code, written on a full disk")
    code, _, err = cli("jobs")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"no space left on {home}" in err
    filler.unlink()
    (job,) = jobs_json(cli)
    assert job["status"] == "failed" and job["exit_code"] not in (None, 0), job
    assert job["error_message"].startswith(f"no space left on {log.parent}: "), job["error_message"]
    with sqlite3.connect(home / "evopilot.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert cli("run", "proj", "fill.py", "--wait")[0] == 0  # space is back: all works


def _steps(home: Path, job_id: int) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "evopilot.db") as db:
        return db.execute("SELECT name, status FROM job_steps WHERE job_id = ? ORDER BY id",
                          (job_id,)).fetchall()


CHILD_THEN_SLEEP = (
    "import os, subprocess, sys, time\n"
    "subprocess.Popen(['bash', '-c', 'trap \"\" HUP; sleep 300'])\n"
    "print('[1/2] child started', flush=True)\n"
    "if sys.argv[1:] == ['die']:\n    os.kill(os.getpid(), 9)\n"
    "time.sleep(300)\n")


@pytest.mark.slow
def test_no_process_outlives_a_job_killed_by_a_signal_or_lost(cli, make_project, tmp_path, home):
    """The group leader dies of SIGKILL (its child would keep running), and a wrapper killed
    under a running command (the job is lost): either way the whole group is taken down."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[engine]\nkill_grace = 0.5\nlost_grace = 0.5\npoll_interval = 0.1\n")
    root = make_project({"benchmarks/leader.py": CHILD_THEN_SLEEP})
    cli("project", "add", root, "--config", cfg)
    assert cli("run", "proj", "leader.py", "--arg", "die", "--wait", "--config", cfg)[0] == 1
    (job,) = jobs_json(cli, "--config", cfg)
    assert job["status"] == "failed" and job["exit_code"] == 137
    pgid = int((Path(job["log_path"]).parent / "pid").read_text())
    assert _group_alive(pgid) is False
    assert _steps(home, job["id"])[-1] == ("reap process group", "ok")

    cli("run", "proj", "leader.py", "--config", cfg)
    job = max(jobs_json(cli, "--config", cfg), key=lambda j: j["id"])
    pid_file = Path(job["log_path"]).parent / "pid"
    wait_until(lambda: b"child started" in Path(job["log_path"]).read_bytes())
    pgid = int(pid_file.read_text())
    wrapper = subprocess.run(["tmux", "list-panes", "-t", job["tmux_session"], "-F", "#{pane_pid}"],
                             capture_output=True, text=True, check=True).stdout.split()
    os.kill(int(wrapper[0]), signal.SIGKILL)
    wait_until(lambda: max(jobs_json(cli, "--config", cfg), key=lambda j: j["id"])["status"] == "lost")
    assert _group_alive(pgid) is False
    assert _steps(home, job["id"])[-1] == ("reap process group", "ok")


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in the group: orphans may wait as zombies for a
    PID 1 that does not reap, and those are dead."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.mark.slow
def test_a_slot_group_caps_its_running_jobs_below_the_hosts_slots(make_project, home, tmp_path):
    """Jobs queued in a group of 2 run 2 at a time on a host with 4 slots, in queue order, while
    a job outside the group takes a free slot at once."""
    import asyncio

    from evopilot.core.config import parse_config
    from evopilot.core.engine import Engine

    spans = tmp_path / "spans"
    src = ("import sys, time\nt = time.time()\ntime.sleep(0.4)\n"
           f"open({str(spans)!r}, 'a').write(f'{{sys.argv[1]}} {{t}} {{time.time()}}\\n')\n")
    root = make_project({"benchmarks/a.py": src})

    async def main() -> tuple[list, list]:
        engine = await Engine.open(parse_config("[hosts.local]\nmax_parallel = 4\n"), home)
        try:
            await engine.add_project(str(root))
            jobs = [(await engine.submitter.run("proj", ["a.py"], args=[f"g{i}"], check=False,
                                                group=("g", 2)))[0] for i in range(5)]
            jobs += await engine.submitter.run("proj", ["a.py"], args=["free"], check=False)
            await engine.run_forever(until_done=[j.id for j in jobs])
            starts = [next(s["id"] for s in await engine.job_steps(j.id) if s["name"] == "start") for j in jobs[:5]]
            return [await engine.job(j.id) for j in jobs], starts
        finally:
            await engine.close()

    done, starts = asyncio.run(main())
    assert [j.status for j in done] == ["succeeded"] * 6
    runs = {name: (float(a), float(b)) for name, a, b in (line.split() for line in spans.read_text().splitlines())}
    group = sorted(runs[f"g{i}"] for i in range(5))
    most = max(sum(1 for a, b in group if a <= t < b) for t, _ in group)
    assert most == 2, "never more than 2 of the group at once, and 2 when 5 are waiting"
    # the engine's start records (one per job, in the order it claims them); not the start times
    # the wrappers write: two jobs started by one dispatch write theirs in either order
    assert starts == sorted(starts), "the group's jobs start in queue order"
    assert runs["free"][0] < group[2][0], "the job outside the group did not wait for the group"


@pytest.mark.slow
def test_each_end_wakes_the_worker_although_the_tmux_server_exits_with_its_last_session(home, tmp_path):
    """One slot and a poll interval of 30 s: the tmux server exits with each job's session, and
    the completion watcher must be back with the next job's, or every job would wait a poll."""
    import asyncio

    from evopilot.core.config import parse_config
    from evopilot.core.engine import Engine

    async def main() -> float:
        config = parse_config("[engine]\npoll_interval = 30\n[hosts.local]\nmax_parallel = 1\n")
        engine = await Engine.open(config, home)
        try:
            ids = [(await engine.submit("sleep 0.2", name="s", workdir=str(tmp_path))).id for _ in range(4)]
            t0 = time.monotonic()
            await engine.run_forever(until_done=ids)
            assert [(await engine.job(i)).status for i in ids] == ["succeeded"] * 4
            return time.monotonic() - t0
        finally:
            await engine.close()

    assert asyncio.run(main()) < 20, "the jobs ended without waiting for a poll"
