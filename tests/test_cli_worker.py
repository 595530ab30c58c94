"""The background worker: `run` without --wait gets its jobs started by a worker of its own in
a tmux session, exactly one per database however many commands race, gone when idle."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from evopilot.core.jobs import background
from tests.conftest import REPO, evopilot_cmd, wait_until


@pytest.fixture
def auto(monkeypatch):
    """The background worker on, as for a user (the suite turns it off elsewhere)."""
    monkeypatch.delenv("EVOPILOT_BACKGROUND_WORKER")


def worker_sessions() -> list[str]:
    out = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True).stdout
    return [s for s in out.split() if "-worker-" in s]


def jobs(cli) -> list[dict]:
    return json.loads(cli("jobs", "--json")[1])


def test_the_command_is_quoted_and_carries_home_config_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOPILOT_CONFIG", "/a b/c.toml")
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    cmd = background.command(tmp_path / "h o", "rel.toml", tmp_path / "w.log")
    assert "'EVOPILOT_CONFIG=/a b/c.toml'" in cmd and "-u VIRTUAL_ENV" in cmd
    assert f"-m evopilot worker --until-idle --background --home '{tmp_path}/h o'" in cmd
    assert f"--config {Path('rel.toml').resolve()}" in cmd and cmd.endswith(f" >> {tmp_path}/w.log 2>&1")


def test_run_without_wait_gets_its_job_done_by_a_background_worker(cli, make_project, auto, home):
    cli("project", "add", make_project({"benchmarks/a.py": "import time\ntime.sleep(1)\nprint('done')\n"}))
    code, out, err = cli("run", "proj", "a.py")
    assert code == 0 and "started a background worker (tmux session " in err
    queue = json.loads(cli("queue", "--json")[1])
    assert queue["paused"] is False and queue["worker"]["background"] in ("starting", "running")
    assert queue["worker"]["session"] in worker_sessions()
    _, text, _ = cli("hosts")
    assert "worker: background worker" in text
    (local,) = json.loads(cli("hosts", "--json")[1])
    assert local["name"] == "local" and local["worker"]["session"] == queue["worker"]["session"]
    assert local["worker"]["background"] in ("starting", "running")
    # nothing of ours polls meanwhile: the worker sees the job through and leaves when idle
    wait_until(lambda: not worker_sessions(), 60, "the idle worker gone")
    log = (home / background.LOG_FILE).read_text()
    assert "job 1  a.py  local  succeeded  exit 0\n" in log and log.endswith("idle, leaving\n"), log
    assert jobs(cli)[0]["status"] == "succeeded"
    queue = json.loads(cli("queue", "--json")[1])
    assert queue["worker"] == {"alive": False, "owner": None, "background": None, "session": None, "pid": None}
    # the next run starts a new one
    code, _, err = cli("retry", "1")
    assert code == 0 and "started a background worker" in err
    wait_until(lambda: [j["status"] for j in jobs(cli)] == ["succeeded", "succeeded"], 60, "the retry done")


def test_racing_runs_start_exactly_one_worker(cli, make_project, auto, home):
    cli("project", "add", make_project({"benchmarks/a.py": "import time\ntime.sleep(2)\n"}))
    runs = [subprocess.Popen(evopilot_cmd("run", "proj", "a.py"), cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errs = [r.communicate(timeout=60)[1] for r in runs]
    assert all(r.returncode == 0 for r in runs), errs
    assert sum("started a background worker" in e for e in errs) == 1, errs
    assert len(worker_sessions()) == 1
    wait_until(lambda: all(j["status"] == "succeeded" for j in jobs(cli)), 60, "all four jobs done")
    wait_until(lambda: not worker_sessions(), 30, "the idle worker gone")
    log = (home / background.LOG_FILE).read_text()
    assert log.count("idle, leaving") == 1 and "another" not in log, log  # one worker, never two


def test_a_second_background_worker_leaves_at_once(cli, make_project, home):
    cli("project", "add", make_project({"benchmarks/a.py": "import time\ntime.sleep(1)\n"}))
    cli("run", "proj", "a.py")  # the suite's default: no background worker was started
    lock = background.WorkerLock(home)
    assert lock.acquire()
    try:
        res = subprocess.run(evopilot_cmd("worker", "--background"), cwd=REPO, capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 0 and "another background worker runs, leaving" in res.stdout
        assert background.WorkerLock(home).held_elsewhere()
    finally:
        lock.release()
    assert not background.WorkerLock(home).held_elsewhere()
    res = subprocess.run(evopilot_cmd("worker", "--background"), cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "idle, leaving" in res.stdout
    assert jobs(cli)[0]["status"] == "succeeded"


def test_the_config_key_turns_it_off(cli, make_project, auto, tmp_path):
    cfg = tmp_path / "off.toml"
    cfg.write_text("[engine]\nbackground_worker = false\n")
    cli("project", "add", make_project({"benchmarks/a.py": ""}), "--config", cfg)
    code, _, err = cli("run", "proj", "a.py", "--config", cfg)
    assert code == 0 and err == "" and not worker_sessions()
    assert "worker: none" in cli("queue", "--config", cfg)[1]


def test_queue_shows_jobs_in_start_order_with_positions(cli, make_project):
    cli("project", "add", make_project({f"benchmarks/{n}.py": "" for n in "abc"}))
    cli("queue", "pause")
    cli("run", "proj", "a.py", "b.py")
    cli("run", "proj", "c.py", "--priority", "5")
    assert cli("queue", "back", "3") == (0, "job 3: moved back, now #3 in the queue\n", "")
    assert cli("queue", "front", "2") == (0, "job 2: moved front, now #1 in the queue\n", "")
    queue = json.loads(cli("queue", "--json")[1])
    assert queue["paused"] is True
    assert [(j["position"], j["id"]) for j in queue["jobs"]] == [(1, 2), (2, 1), (3, 3)]
    code, text, _ = cli("queue")
    lines = text.splitlines()
    assert lines[0].startswith("queue: paused") and lines[1].startswith("worker: none")
    assert [line.split()[:2] for line in lines[3:]] == [["1", "2"], ["2", "1"], ["3", "3"]]
    assert [j["position"] for j in json.loads(cli("jobs", "--json")[1])] == [2, 1, 3]
    assert [j["id"] for j in json.loads(cli("jobs", "--json", "--limit", "2")[1])] == [2, 3]
    _, text, _ = cli("jobs", "--limit", "1")
    assert text.splitlines()[0].split()[:6] == ["ID", "PROJECT", "BENCHMARK", "HOST", "STATUS", "POS"]
    assert text.splitlines()[1].split()[:6] == ["3", "proj", "c.py", "local", "queued", "3"]
    cli("queue", "resume")
    assert cli("worker", "--until-idle")[0] == 0
    assert json.loads(cli("queue", "--json")[1])["jobs"] == [] and cli("queue")[1].endswith("no queued jobs\n")
