"""Interactive (tty) jobs: a real program that prompts, reads a line from its terminal, answers
and exits, run as a job through the CLI, locally and on the test sshd; `send` types into it,
`attach` shows its session on a real terminal (a tmux pane), and the TUI does both.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from evopilot.core.config import HostConfig
from evopilot.core.hosts.ssh import ssh_command_args
from evopilot.core.jobs.interactive import attach_command
from evopilot.tui.app import EvopilotApp
from evopilot.tui.screens.dialogs import SendDialog
from tests.conftest import REPO, evopilot_cmd, stop_process, wait_until
from tests.test_remote_jobs import PYPROJECT, _worker, host_toml
from tests.test_tui import SIZE, fast_config, job_row, started, static_text, until

ASK = """
import sys
name = input("name? ")
print(f"hello {name}!", flush=True)
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def job(run, job_id: int) -> dict:
    code, out, err = run("jobs", "--json")  # reconciles
    assert code == 0, err
    return next(j for j in json.loads(out) if j["id"] == job_id)


def start(run, *args: str) -> dict:
    code, out, err = run("run", "proj", "ask.py", "--tty", "--json", *args)
    assert code == 0, err
    (j,) = json.loads(out)
    return j


def wait_prompt(run, j: dict, timeout: float = 30.0) -> None:
    """Until the job is running and its prompt is in its log (for a remote job, the mirror)."""
    def prompted() -> bool:
        now = job(run, j["id"])
        return now["status"] == "running" and b"name? " in _read(now["log_path"])

    wait_until(prompted, timeout=timeout, what=f"the prompt of job {j['id']}")


def wait_end(run, j: dict, timeout: float = 30.0) -> dict:
    wait_until(lambda: job(run, j["id"])["status"] != "running", timeout=timeout,
               what=f"job {j['id']} to end")
    return job(run, j["id"])


def _read(path: str | None) -> bytes:
    try:
        return Path(path).read_bytes() if path else b""
    except FileNotFoundError:
        return b""


def tmux(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check, env=env)


def clients(session: str, env: dict | None = None) -> list[str]:
    res = tmux("list-clients", "-t", f"={session}", "-F", "#{client_tty}", env=env, check=False)
    return res.stdout.split()


def terminal(name: str, command: str) -> None:
    """A real terminal for ``command``: a pane of a tmux session on this test's server, outside
    tmux as far as the command knows ($TMUX unset), with the test's environment."""
    keep = ("EVOPILOT_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TMUX_TMPDIR", "PATH")
    env_args = [a for k in keep for a in ("-e", f"{k}={os.environ[k]}")]
    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", *env_args,
         f"cd {shlex.quote(str(REPO))} && exec env -u TMUX {command}")


@pytest.fixture
def proj(cli, make_project):
    root = make_project({"benchmarks/ask.py": ASK,
                         "benchmarks/forever.py": "import time\nprint('up', flush=True)\ntime.sleep(300)\n"})
    assert cli("project", "add", root)[0] == 0
    return root


def test_send_a_line_to_interactive_jobs(cli, proj):
    failing, ok = start(cli, "--arg", "3"), start(cli)
    assert failing["mode"] == "tty" and failing["status"] == "running"
    for j in (failing, ok):
        wait_prompt(cli, j)  # waiting for a line from its terminal
    line = "-x it's $HOME \\ \"q\""  # no shell, option or key name may change it
    code, out, err = cli("send", failing["id"], "--", line)
    assert (code, out) == (0, f"job {failing['id']}: sent a line\n"), err
    code, _, err = cli("send", ok["id"], "bob")
    assert code == 0, err

    done = wait_end(cli, failing)
    assert done["status"] == "failed" and done["exit_code"] == 3 and done["mode"] == "tty"
    log = Path(done["log_path"]).read_bytes()
    # the terminal's transcript: the prompt, the typed line echoed, the answer (CRLF: a tty)
    assert log == f"name? {line}\r\nhello {line}!\r\n".encode()
    assert (Path(done["log_path"]).parent / "exit_code").read_text() == "3\n"
    assert f"hello {line}!" in done["error_message"]

    done = wait_end(cli, ok)
    assert done["status"] == "succeeded" and done["exit_code"] == 0
    assert Path(done["log_path"]).read_bytes() == b"name? bob\r\nhello bob!\r\n"


@pytest.mark.slow
def test_stop_kill_and_timeout_of_interactive_jobs(cli, proj):
    stopped, killed = start(cli), start(cli)
    for j in (stopped, killed):
        wait_prompt(cli, j)
    assert cli("stop", stopped["id"])[0] == 0
    assert cli("kill", killed["id"])[0] == 0
    done = wait_end(cli, stopped)
    assert done["status"] == "cancelled" and done["exit_code"] == 130
    assert b"KeyboardInterrupt" in Path(done["log_path"]).read_bytes()
    done = job(cli, killed["id"])
    assert done["status"] == "killed" and done["exit_code"] == 143

    code, out, err = cli("run", "proj", "ask.py", "--tty", "--timeout", "1", "--wait")
    assert code == 1, out + err
    (timed_out,) = [j for j in json.loads(cli("jobs", "--json")[1]) if j["id"] > killed["id"]]
    assert timed_out["status"] == "failed" and timed_out["error_message"] == "timeout: killed after 1s"
    assert Path(timed_out["log_path"]).read_bytes().startswith(b"name? ")
    sessions = tmux("list-sessions", "-F", "#{session_name}", check=False).stdout.split()
    assert not {stopped["tmux_session"], killed["tmux_session"]} & set(sessions)


def test_a_command_that_ends_at_once_and_ctrl_z(cli, proj):
    """The exit code of a command that ends before the wrapper could ``fg`` it is kept, and a
    Ctrl-Z typed in the pane does not stop the job (it would end the wrapper's wait)."""
    (proj / "benchmarks" / "quick.py").write_text("raise SystemExit(7)\n")
    assert cli("bench", "add", "proj", proj / "benchmarks" / "quick.py")[0] == 0
    code, out, err = cli("run", "proj", "quick.py", "--tty", "--wait", "--json")
    assert code == 1, err
    (quick,) = [j for j in json.loads(cli("jobs", "--json")[1]) if j["benchmark"] == "quick.py"]
    assert quick["status"] == "failed" and quick["exit_code"] == 7

    j = start(cli)
    wait_prompt(cli, j)
    tmux("send-keys", "-t", f"={j['tmux_session']}:", "C-z")
    assert cli("send", j["id"], "still here")[0] == 0
    done = wait_end(cli, j)
    assert done["status"] == "succeeded"
    assert b"hello \x1astill here!" in Path(done["log_path"]).read_bytes()  # ^Z was a key


def test_send_is_refused_for_batch_finished_and_unknown_jobs(cli, proj):
    code, out, err = cli("run", "proj", "forever.py", "--json")
    (batch,) = json.loads(out)
    assert batch["mode"] == "batch"
    code, out, err = cli("send", batch["id"], "hello")
    assert (code, out) == (2, "")
    assert err == f"evopilot: error: job {batch['id']} is not interactive (run it with --tty)\n"
    batch = job(cli, batch["id"])
    code, out, _ = cli("attach", batch["id"], "--print")  # attaching to watch it is fine
    assert (code, out) == (0, f"tmux attach-session -t ={batch['tmux_session']}\n")

    tty = start(cli)
    wait_prompt(cli, tty)
    assert cli("send", tty["id"], "x")[0] == 0
    wait_end(cli, tty)
    for command in ("send", "attach"):
        code, _, err = cli(command, tty["id"], *(["again"] if command == "send" else []))
        assert code == 2
        assert err == (f"evopilot: error: job {tty['id']} is succeeded: its session is gone "
                       f"(see `evopilot logs {tty['id']}`)\n")
    assert cli("send", "999", "x")[1:] == ("", "evopilot: error: no job 999\n")


def test_attach_command_builder():
    local = attach_command("evp-0-12", inside_tmux=False)
    assert local.argv == ["tmux", "attach-session", "-t", "=evp-0-12"] and local.takes_terminal
    inside = attach_command("evp-0-12", inside_tmux=True)
    assert inside.argv == ["tmux", "switch-client", "-t", "=evp-0-12"] and not inside.takes_terminal

    cfg = HostConfig(hostname="gpu.example.org", port=2222, user="me", identity_file="/keys/id x",
                     known_hosts="/k h/known_hosts")
    ssh = ssh_command_args("gpu1", cfg, ssh_config=[])
    for inside_tmux in (False, True):  # a remote session is attached over ssh even inside tmux
        remote = attach_command("evp-0-12 x;y", inside_tmux=inside_tmux, ssh=ssh)
        assert remote.takes_terminal
        assert remote.argv[:-2] == [*ssh[:-1], "-t"] and remote.argv[-2] == "me@gpu.example.org"
        # the remote command is one word for the remote shell: the session name stays one word
        assert shlex.split(remote.argv[-1]) == ["tmux", "attach-session", "-t", "=evp-0-12 x;y"]
        assert shlex.split(remote.command) == remote.argv
    flags = " ".join(ssh)
    assert "-p 2222" in flags and "-i /keys/id x" in flags and "-F /dev/null" in flags
    assert '-o UserKnownHostsFile="/k h/known_hosts" -o StrictHostKeyChecking=yes' in flags


def test_attach_on_a_real_terminal(cli, proj, monkeypatch):
    j = start(cli)
    wait_prompt(cli, j)
    code, out, _ = cli("attach", j["id"], "--print")
    assert out == f"tmux attach-session -t ={j['tmux_session']}\n"
    monkeypatch.setenv("TMUX", "/tmp/some-socket,1,0")
    assert cli("attach", j["id"], "--print")[1] == f"tmux switch-client -t ={j['tmux_session']}\n"
    monkeypatch.delenv("TMUX")

    # `evopilot attach` replaces itself with tmux attach: what is typed on its terminal reaches
    # the job, and it returns when the job's session ends.
    terminal("watcher", shlex.join(evopilot_cmd("attach", j["id"])))
    wait_until(lambda: len(clients(j["tmux_session"])) == 1, what="a client on the job's session")
    tmux("send-keys", "-t", "=watcher:", "-l", "typed by hand")
    tmux("send-keys", "-t", "=watcher:", "Enter")
    done = wait_end(cli, j)
    assert done["status"] == "succeeded"
    assert Path(done["log_path"]).read_bytes() == b"name? typed by hand\r\nhello typed by hand!\r\n"
    wait_until(lambda: tmux("has-session", "-t", "=watcher", check=False).returncode != 0,
               what="attach to return when the session ends")


@pytest.mark.slow
def test_interactive_jobs_on_an_ssh_host(cli, make_project, sshd, tmp_path):
    cfg = tmp_path / "evopilot.toml"
    cfg.write_text("[engine]\nremote_poll_interval = 0.3\npoll_interval = 0.1\n" + host_toml("h1", sshd))
    root = make_project({"pyproject.toml": PYPROJECT, "benchmarks/ask.py": ASK})

    def run(*args):
        return cli(*args, "--config", cfg)

    run.cfg = cfg
    assert run("project", "add", root)[0] == 0
    by_send, by_hand = start(run, "--host", "h1", "--arg", "5"), start(run, "--host", "h1")
    worker = _worker(run)  # starts them once the host's environment is set up
    try:
        _remote_flow(run, sshd, by_send, by_hand)
    finally:
        stop_process(worker)


def _remote_flow(run, sshd, by_send, by_hand) -> None:
    for j in (by_send, by_hand):
        wait_prompt(run, j, timeout=90)
    session = job(run, by_hand["id"])["tmux_session"]  # given when it started

    assert run("send", by_send["id"], "over ssh")[0] == 0
    done = wait_end(run, by_send)
    assert done["status"] == "failed" and done["exit_code"] == 5
    mirror = Path(done["log_path"]).read_bytes()
    assert mirror == b"name? over ssh\r\nhello over ssh!\r\n"
    assert list(Path(sshd.base_dir).glob(f"jobs/*-{done['id']}/log"))[0].read_bytes() == mirror

    # attach runs ssh -t with the host's settings; typed keys go over it to the remote job
    code, out, err = run("attach", by_hand["id"], "--json")
    assert code == 0, err
    argv = json.loads(out)["argv"]
    assert argv[0] == "ssh" and "-t" in argv and str(sshd.port) in argv
    assert argv[-1] == f"tmux attach-session -t ={session}"
    terminal("remote-watcher", json.loads(out)["command"])
    wait_until(lambda: len(clients(session, sshd.tmux_env())) == 1,
               what="a client on the remote job's session")
    tmux("send-keys", "-t", "=remote-watcher:", "-l", "by hand")
    tmux("send-keys", "-t", "=remote-watcher:", "Enter")
    done = wait_end(run, by_hand)
    assert done["status"] == "succeeded"
    assert Path(done["log_path"]).read_bytes() == b"name? by hand\r\nhello by hand!\r\n"


@pytest.mark.slow
async def test_tui_send_dialog(proj, home):
    app = EvopilotApp(fast_config(), home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        (batch,) = await app.call(app.engine.run, "proj", ["forever.py"])
        (tty,) = await app.call(app.engine.run, "proj", ["ask.py"], tty=True)
        await pilot.press("3")
        table = app.jobs.table
        await until(pilot, lambda: "running" in job_row(app, tty.id) and "running" in job_row(app, batch.id),
                    what="both jobs running")

        def select(job_id: int) -> None:
            table.move_cursor(next(i for i, j in enumerate(table.rows) if j.id == job_id))

        select(batch.id)
        await until(pilot, lambda: app.jobs.selected and app.jobs.selected.id == batch.id, what="selection")
        await pilot.press("i")
        await until(pilot, lambda: any("is not interactive" in n.message for n in app._notifications),
                    what="the refusal")
        assert not isinstance(app.screen, SendDialog)

        select(tty.id)
        await until(pilot, lambda: app.jobs.selected and app.jobs.selected.id == tty.id, what="selection")
        await until(pilot, lambda: any("name? " in r for r in app.jobs.log_view.visible_text()),
                    what="the prompt in the log view")
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, SendDialog), what="the send dialog")
        await pilot.press(*"tui")
        await pilot.press("enter")
        await until(pilot, lambda: "succeeded" in job_row(app, tty.id), what="the job to answer and end")
        assert not isinstance(app.screen, SendDialog)
        await until(pilot, lambda: any("hello tui!" in r for r in app.jobs.log_view.visible_text()),
                    what="the answer in the log view")
        assert "exit 0" in static_text(app, "#job-detail")


@pytest.mark.slow
def test_tui_attach_suspends_the_app_until_the_session_ends(cli, proj):
    j = start(cli)
    wait_prompt(cli, j)
    terminal("app", f"NO_COLOR=1 TERM=xterm-256color {shlex.quote(sys.executable)} -m evopilot")

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", "=app:").stdout

    wait_until(lambda: "ask.py" in screen() and "running" in screen(), what="the app on the Jobs tab")
    tmux("send-keys", "-t", "=app:", "a")
    wait_until(lambda: len(clients(j["tmux_session"])) == 1, what="the app's terminal attached to the job")
    wait_until(lambda: "name?" in screen(), what="the job's pane in the app's terminal")
    tmux("send-keys", "-t", "=app:", "-l", "from the app")
    tmux("send-keys", "-t", "=app:", "Enter")
    wait_until(lambda: "succeeded" in screen() and "Attach" in screen(), what="the app back, the job done")
    assert Path(job(cli, j["id"])["log_path"]).read_bytes() == b"name? from the app\r\nhello from the app!\r\n"

