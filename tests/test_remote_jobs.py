"""Jobs on SSH hosts, end to end through the CLI against a real OpenSSH sshd on 127.0.0.1:
sync, uv environment setup, remote tmux, logs mirrored byte for byte, stop/kill, and faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import REPO, CmdlineWatch, evopilot_cmd, stop_process, wait_until

pytestmark = pytest.mark.slow

PYPROJECT = "[project]\nname = 'remote-proj'\nversion = '0.1.0'\nrequires-python = '>=3.10'\ndependencies = []\n"

TICKER = """
import json, os, sys, time
n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
sys.stdout.buffer.write(b"raw \\xff\\xfe bytes\\n")
for i in range(1, n + 1):
    print(f"[{i}/{n}] tick {i} " + "x" * 100, flush=True)
    time.sleep(delay)
json.dump({"ticks": n, "python": sys.version_info[1]}, open(os.environ["EVOPILOT_RESULTS"], "w"))
"""


def host_toml(name: str, server, **overrides) -> str:
    cfg = server.host_config(**overrides)
    lines = [f"[hosts.{name}]"]
    for key, value in cfg.model_dump(exclude_defaults=True).items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines.append(f"ssh_config = {json.dumps(server.ssh_config)}")  # never the developer's ~/.ssh/config
    return "\n".join(lines) + "\n"


@pytest.fixture
def remote(cli, make_project, sshd, tmp_path):
    """A project registered with a config that has the test sshd as host `h1`."""
    cfg = tmp_path / "evopilot.toml"
    cfg.write_text("[engine]\nremote_poll_interval = 0.3\npoll_interval = 0.1\nkill_grace = 1\n"
                   + host_toml("h1", sshd))
    root = make_project({"pyproject.toml": PYPROJECT, "benchmarks/tick.py": TICKER,
                         "benchmarks/forever.py": "import time\nprint('[1/2] up', flush=True)\ntime.sleep(300)\n"})

    def run(*args):
        return cli(*args, "--config", cfg)

    assert run("project", "add", root)[0] == 0
    run.cfg, run.root, run.server = cfg, root, sshd
    return run


def jobs(run) -> dict[str, dict]:
    code, out, err = run("jobs", "--json")
    assert code == 0, err
    return {j["benchmark"]: j for j in json.loads(out)}


def remote_log(server, job) -> bytes:
    """The job's log as the host has it (the sshd's base dir is on this machine)."""
    matches = list(Path(server.base_dir).glob(f"jobs/*-{job['id']}/log"))
    assert len(matches) == 1
    return matches[0].read_bytes()


def test_run_on_a_host_syncs_sets_up_and_mirrors_the_log(remote):
    code, out, err = remote("run", "proj", "tick.py", "--host", "h1", "--arg", "20", "--wait")
    assert code == 0, err + out
    js = jobs(remote)
    setup, job = js["setup proj"], js["tick.py"]
    assert setup["status"] == "succeeded" and setup["host"] == "h1"
    assert job["status"] == "succeeded" and job["host"] == "h1" and job["depends_on"] == setup["id"]
    assert (job["progress_current"], job["progress_total"]) == (20, 20)
    assert job["metrics"]["ticks"] == 20
    # its times are the ones its wrapper recorded on the host, read by the probe over SSH
    (job_dir,) = Path(remote.server.base_dir).glob(f"jobs/*-{job['id']}")
    for key in ("started_at", "finished_at"):
        recorded = float((job_dir / key).read_text())
        assert datetime.fromisoformat(job[key]).timestamp() == pytest.approx(recorded, abs=0.001)
    mirror = Path(job["log_path"])
    assert mirror.is_relative_to(Path(os.environ["EVOPILOT_HOME"]))
    assert mirror.read_bytes() == remote_log(remote.server, job)
    assert b"raw \xff\xfe bytes" in mirror.read_bytes()
    # the environment is current now: a second run needs no setup job
    assert remote("run", "proj", "tick.py", "--host", "h1", "--wait")[0] == 0
    code, out, _ = remote("jobs", "--json")
    assert sum(j["benchmark"] == "setup proj" for j in json.loads(out)) == 1


def test_host_env_reaches_a_remote_job_but_no_command_line(remote, tmp_path):
    canary = "tok-remote-51b2e0-canary"
    with open(remote.cfg, "a") as f:
        f.write(f'env = {{ EVP_TOKEN = "{canary}" }}\n')  # the last table is [hosts.h1]
    (remote.root / "benchmarks" / "env.py").write_text("import os\nprint('got', os.environ['EVP_TOKEN'])\n")
    assert remote("bench", "add", "proj", "benchmarks/env.py")[0] == 0
    with CmdlineWatch(canary, tmp_path) as watch:
        code, out, err = remote("run", "proj", "env.py", "--host", "h1", "--wait")
        assert code == 0, err + out
    assert watch.hits == []
    job = jobs(remote)["env.py"]
    assert f"got {canary}" in Path(job["log_path"]).read_text()
    (env,) = Path(remote.server.base_dir).glob(f"jobs/*-{job['id']}/env")
    assert env.stat().st_mode & 0o777 == 0o600


def test_a_project_without_pyproject_runs_without_uv_warnings(cli, make_project, sshd, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(host_toml("h1", sshd))
    root = make_project({"benchmarks/hi.py": "print('hello')\n"}, name="plain")
    assert cli("project", "add", root, "--config", cfg)[0] == 0
    code, out, err = cli("run", "plain", "hi.py", "--host", "h1", "--wait", "--config", cfg)
    assert code == 0, err + out
    job = [j for j in json.loads(cli("jobs", "--json", "--config", cfg)[1]) if j["benchmark"] == "hi.py"][0]
    assert Path(job["log_path"]).read_text() == "hello\n"


def test_sync_reports_then_sends(remote):
    code, out, err = remote("sync", "proj", "--host", "h1", "--dry-run")
    assert code == 0, err
    assert "3 modified file(s) (dry run" in out and "benchmarks/tick.py" in out
    code, out, _ = remote("sync", "proj", "--host", "h1")
    assert code == 0 and "synced to" in out
    assert remote("sync", "proj", "--host", "h1")[1].startswith("Up to date")
    (remote.root / "benchmarks" / "tick.py").write_text(TICKER + "\n# changed\n")
    code, out, _ = remote("sync", "proj", "--host", "h1", "--json")
    data = json.loads(out)
    assert data["status"] == "modified" and data["files"] == ["benchmarks/tick.py"]


def test_broken_environment_fails_setup_and_keeps_jobs_waiting(remote):
    (remote.root / "pyproject.toml").write_text(PYPROJECT.replace(">=3.10", ">=9.0"))
    code, out, err = remote("run", "proj", "tick.py", "--host", "h1", "--no-check", "--wait")
    assert code == 1, err  # --wait ends: the job cannot run until the setup is fixed
    assert "pending" in out and "retry" in out
    js = jobs(remote)
    assert js["setup proj"]["status"] == "failed"
    assert js["tick.py"]["status"] == "pending"
    assert f"retry {js['setup proj']['id']}" in js["tick.py"]["error_message"]
    assert "Python" in remote("logs", str(js["setup proj"]["id"]))[1]


def test_stop_and_kill_on_a_host(remote):
    remote("run", "proj", "forever.py", "tick.py", "--host", "h1", "--arg", "1000", "--arg", "0.2")
    worker = _worker(remote)
    try:
        wait_until(lambda: all(j["status"] == "running" and j["progress_current"] >= 1
                          for b, j in jobs(remote).items() if b != "setup proj"))
        js = jobs(remote)
        code, _, err = remote("kill", str(js["forever.py"]["id"]))
        assert code == 0, err
        code, _, err = remote("stop", str(js["tick.py"]["id"]))
        assert code == 0, err
        wait_until(lambda: jobs(remote)["tick.py"]["status"] != "running", timeout=30)
    finally:
        stop_process(worker)
    js = jobs(remote)
    assert js["forever.py"]["status"] == "killed"
    assert js["tick.py"]["status"] == "cancelled" and js["tick.py"]["exit_code"] == 130
    sessions = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], env=remote.server.tmux_env(),
                              capture_output=True, text=True).stdout
    assert js["forever.py"]["tmux_session"] not in sessions


def test_remote_tmux_server_killed_jobs_become_lost(remote):
    remote("run", "proj", "forever.py", "--host", "h1")
    worker = _worker(remote)
    try:
        # its first line: the session is up (a claimed job shows "running" while it starts)
        wait_until(lambda: jobs(remote)["forever.py"]["progress_current"] == 1)
        subprocess.run(["tmux", "kill-server"], env=remote.server.tmux_env(), check=True)
        t = time.monotonic()
        wait_until(lambda: jobs(remote)["forever.py"]["status"] == "lost", timeout=10)
        assert time.monotonic() - t < 2 * 0.3 + 2  # two remote ticks, plus a CLI start
    finally:
        stop_process(worker)
    assert "went away" in jobs(remote)["forever.py"]["error_message"]


def test_no_process_outlives_a_remote_job_killed_by_a_signal_or_lost(remote, home):
    from tests.test_jobs_local import CHILD_THEN_SLEEP, _group_alive, _steps

    remote.cfg.write_text(remote.cfg.read_text().replace("[engine]\n", "[engine]\nlost_grace = 0.5\n"))
    (remote.root / "benchmarks" / "leader.py").write_text(CHILD_THEN_SLEEP)
    assert remote("bench", "add", "proj", "benchmarks/leader.py")[0] == 0
    assert remote("run", "proj", "leader.py", "--host", "h1", "--arg", "die", "--wait")[0] == 1
    job = jobs(remote)["leader.py"]
    assert job["status"] == "failed" and job["exit_code"] == 137
    (job_dir,) = Path(remote.server.base_dir).glob(f"jobs/*-{job['id']}")
    assert _group_alive(int((job_dir / "pid").read_text())) is False
    assert _steps(home, job["id"])[-1] == ("reap process group", "ok")

    remote("run", "proj", "leader.py", "--host", "h1")
    worker = _worker(remote)
    try:
        wait_until(lambda: jobs(remote)["leader.py"]["progress_current"] == 1, timeout=60)
    finally:
        stop_process(worker)
    job = jobs(remote)["leader.py"]
    (job_dir,) = Path(remote.server.base_dir).glob(f"jobs/*-{job['id']}")
    pgid = int((job_dir / "pid").read_text())
    wrapper = subprocess.run(["tmux", "list-panes", "-t", job["tmux_session"], "-F", "#{pane_pid}"],
                             env=remote.server.tmux_env(), capture_output=True, text=True, check=True)
    os.kill(int(wrapper.stdout.split()[0]), signal.SIGKILL)
    wait_until(lambda: jobs(remote)["leader.py"]["status"] == "lost")
    assert _group_alive(pgid) is False
    assert _steps(home, job["id"])[-1] == ("reap process group", "ok")


def test_a_headless_worker_says_once_that_a_changed_host_key_blocks_the_reconnect(remote, tmp_path):
    remote("run", "proj", "forever.py", "--host", "h1")
    worker = _worker(remote)
    log = next(remote.cfg.parent.glob("worker-*.log"))
    try:
        wait_until(lambda: jobs(remote)["forever.py"]["status"] == "running", timeout=60)
        other = tmp_path / "other_host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        key = " ".join(Path(f"{other}.pub").read_text().split()[:2])
        Path(remote.server.known_hosts).write_text(f"[{remote.server.host}]:{remote.server.port} {key}\n")
        remote.server.drop_connections()
        wait_until(lambda: "CHANGED" in log.read_text(), what="the refusal printed by the worker")
        time.sleep(4)  # reconnect attempts after 0.5, 1 and 2 s: each refused again
    finally:
        stop_process(worker)
    lines = [l for l in log.read_text().splitlines() if "CHANGED" in l]
    assert len(lines) == 1, lines
    assert "ssh-keygen -R" in lines[0] and "ssh-keyscan" in lines[0]


def test_sshd_down_30s_while_jobs_run(remote):
    """The jobs keep running, evopilot reconnects by itself, the logs come through complete
    and no job starts twice."""
    code, _, err = remote("run", "proj", "tick.py", "--host", "h1", "--arg", "200", "--arg", "0.2")
    assert code == 0, err

    def h1_job():
        return next(j for j in json.loads(remote("jobs", "--json")[1])
                    if j["host"] == "h1" and j["kind"] == "benchmark")

    worker = _worker(remote)
    try:
        wait_until(lambda: jobs(remote)["tick.py"]["progress_current"] >= 5, timeout=60)
        remote.server.stop()
        remote.server.drop_connections()
        t = time.monotonic()
        # meanwhile, work on the local host goes on as usual
        code, out, err = remote("run", "proj", "tick.py", "--arg", "3", "--wait")
        assert code == 0, out + err
        assert time.monotonic() - t < 20, "a host that is down held up the local host"
        time.sleep(max(0.0, 30 - (time.monotonic() - t)))
        remote.server.start()
        wait_until(lambda: h1_job()["status"] == "succeeded", timeout=120)
    finally:
        stop_process(worker)
    job = h1_job()
    log = Path(job["log_path"]).read_bytes()
    assert log == remote_log(remote.server, job)
    ticks = [l for l in log.decode(errors="replace").splitlines() if l.startswith("[")]
    assert [t.split()[0] for t in ticks] == [f"[{i}/200]" for i in range(1, 201)]
    starts = list(Path(remote.server.base_dir).glob(f"jobs/*-{job['id']}/log"))
    assert len(starts) == 1


def test_kill_9_with_remote_jobs_then_restart(remote):
    remote("run", "proj", "tick.py", "--host", "h1", "--arg", "40", "--arg", "0.1")
    worker = _worker(remote)
    try:
        wait_until(lambda: jobs(remote)["tick.py"]["progress_current"] >= 3, timeout=60)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    time.sleep(5)  # the job finishes on the host while no evopilot runs
    js = jobs(remote)  # reconciles
    job = js["tick.py"]
    assert job["status"] == "succeeded" and (job["progress_current"], job["progress_total"]) == (40, 40)
    assert Path(job["log_path"]).read_bytes() == remote_log(remote.server, job)


@pytest.mark.parametrize("case", ["wrong_key", "unknown_host_key", "closed_port", "not_in_config"])
def test_connection_errors_are_one_line_exit_2(cli, make_project, sshd, tmp_path, case):
    kw = {}
    host = "h1"
    if case == "wrong_key":
        other = tmp_path / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        kw["identity_file"] = str(other)
    elif case == "unknown_host_key":
        empty = tmp_path / "known_hosts"
        empty.write_text("")
        kw["known_hosts"] = str(empty)
    elif case == "closed_port":
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            kw["port"] = s.getsockname()[1]
    else:
        host = "nowhere"
    cfg = tmp_path / "c.toml"
    cfg.write_text(host_toml("h1", sshd, **kw))
    root = make_project({"benchmarks/a.py": "print(1)\n"})
    cli("project", "add", root, "--config", cfg)
    code, out, err = cli("sync", "proj", "--host", host, "--config", cfg)
    assert code == 2, out + err
    assert err.count("\n") == 1 and "Traceback" not in err
    expect = {"wrong_key": "auth", "unknown_host_key": "ssh-keyscan", "closed_port": "refused",
              "not_in_config": "unknown host 'nowhere'"}[case]
    assert expect.lower() in err.lower(), err


def _worker(run) -> subprocess.Popen:
    log = open(run.cfg.parent / f"worker-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen(evopilot_cmd("worker", "--config", run.cfg), cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, env=os.environ.copy())


def test_preflight_refuses_a_helper_that_git_would_not_sync(remote):
    root = remote.root
    (root / "benchmarks" / "uses_secret.py").write_text("import local_secret\nprint('[1/1]')\n")
    (root / "local_secret.py").write_text("VALUE = 1\n")
    (root / ".gitignore").write_text("local_secret.py\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    assert remote("bench", "add", "proj", root / "benchmarks" / "uses_secret.py")[0] == 0
    code, _, err = remote("run", "proj", "uses_secret.py", "--host", "h1")
    assert code == 2 and "ignored by git so never synced" in err and "local_secret" in err
    assert remote("run", "proj", "uses_secret.py")[0] == 0  # locally it is there: fine


def test_timeout_retry_and_cancel_on_a_host(remote):
    code, _, err = remote("run", "proj", "forever.py", "--host", "h1", "--timeout", "2", "--wait")
    assert code == 1, err
    js = jobs(remote)
    assert js["forever.py"]["status"] == "failed" and js["forever.py"]["error_message"].startswith("timeout")
    remote("queue", "pause")
    code, out, _ = remote("retry", str(js["forever.py"]["id"]))
    assert code == 0
    retried = json.loads(remote("jobs", "--json", "--status", "queued")[1])
    assert [j["benchmark"] for j in retried] == ["forever.py"] and retried[0]["host"] == "h1"
    assert remote("cancel", str(retried[0]["id"]))[0] == 0
    remote("queue", "resume")
    assert json.loads(remote("jobs", "--json", "--status", "running")[1]) == []
