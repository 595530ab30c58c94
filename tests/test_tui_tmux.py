"""The real `evopilot` (``python -m tui.cli``) in a real tmux session: keys go in with
``tmux send-keys``, the screen comes out with ``tmux capture-pane -p``.

Runs with NO_COLOR=1 and the mouse unused: everything asserted is text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.test_tasks import agent, repo  # noqa: F401 - repo: the fixture (a git repository)

pytestmark = pytest.mark.slow

SESSION = "evp-ui-test"


def tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check)


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION).stdout


def wait_screen(predicate, timeout: float = 30.0, what: str = "text") -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen()
        if predicate(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; screen was:\n{text}")


def keys(*k: str) -> None:
    tmux("send-keys", "-t", SESSION, *k)


def quit_app() -> None:
    keys("q")
    deadline = time.monotonic() + 15
    while tmux("has-session", "-t", SESSION, check=False).returncode == 0:
        assert time.monotonic() < deadline, "the app did not quit on q"
        time.sleep(0.1)


def test_real_app_in_tmux(cli, make_project):
    root = make_project({"benchmarks/bench_a.py": "print('[1/1] done')\n"}, name="tmuxproj")
    code, out, err = cli("project", "add", str(root))
    assert code == 0, err
    code, out, err = cli("task", "add", "tmuxproj", "Write docs")
    assert code == 0, err

    env = {k: os.environ[k] for k in ("EVOPILOT_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TMUX_TMPDIR")}
    env_args = [a for k, v in {**env, "NO_COLOR": "1", "TERM": "xterm-256color"}.items() for a in ("-e", f"{k}={v}")]
    command = f"cd {REPO} && exec {sys.executable} -m tui.cli"
    tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40", *env_args, command)
    try:
        text = wait_screen(lambda s: "tmuxproj" in s and "Projects" in s, what="the project list")
        for tab in ("Projects", "Tasks", "Jobs", "Archive", "Hosts"):
            assert tab in text
        assert "[ ] benchmarks/bench_a.py" in text

        keys("3")
        wait_screen(lambda s: "no jobs: queue benchmarks" in s and "status: all" in s, what="the Jobs tab")
        keys("2")  # the board, the selected task marked without colour
        wait_screen(lambda s: "todo 1" in s and "▶1 Write docs" in s and "no attempts: s starts one" in s,
                    what="the Tasks tab")
        keys(">")
        wait_screen(lambda s: "in progress 1" in s and "todo 0" in s, what="the task moved right")
        keys("4")
        wait_screen(lambda s: "no experiments: `evopilot evolve start FILE`" in s, what="the Archive tab")
        keys("5")
        text = wait_screen(lambda s: "HOST" in s and "connected" in s and "FREE" in s, what="the Hosts tab")
        assert "local" in text and "SLOTS" in text
        keys("?")
        wait_screen(lambda s: "jobs.kill" in s and "projects.add" in s, what="the help screen")
        keys("Escape")
        wait_screen(lambda s: "jobs.kill" not in s, what="the help screen to close")

        # Queue the benchmark from the Projects tab and see it finish in the Jobs tab.
        keys("1")
        wait_screen(lambda s: "r runs on host: local" in s, what="the Projects tab")
        keys("Down")
        keys("r")
        wait_screen(lambda s: "Timeout in seconds" in s, what="the run dialog")
        keys("Enter")
        wait_screen(lambda s: "Timeout in seconds" not in s, what="the run dialog to close")
        keys("3")
        wait_screen(lambda s: "succeeded" in s and "1/1" in s, what="the job to succeed")

        quit_app()
    finally:
        tmux("kill-session", "-t", SESSION, check=False)


def test_tasks_tab_attaches_to_an_agent_and_comes_back(cli, repo, tmp_path, monkeypatch):
    """`a` on an attempt outside tmux: the app suspends, `tmux attach` shows the agent's
    terminal, C-b d detaches and the app is back (all on a real terminal, NO_COLOR)."""
    config = tmp_path / "config.toml"
    config.write_text(f"[agents.chat]\ncommand = {json.dumps(agent('--write', 'notes.txt', '--interactive'))}\n"
                      "tty = true\n")
    monkeypatch.setenv("EVOPILOT_CONFIG", str(config))
    for args in (("project", "add", repo, "--name", "proj"), ("task", "add", "proj", "Chat"),
                 ("task", "start", "1", "--agent", "chat")):
        code, out, err = cli(*args)
        assert code == 0, err

    names = ("EVOPILOT_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TMUX_TMPDIR", "EVOPILOT_CONFIG")
    env = {**{k: os.environ[k] for k in names}, "NO_COLOR": "1", "TERM": "xterm-256color"}
    env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    # TMUX unset in the app's shell: it attaches on its own terminal (not switch-client)
    command = f"cd {REPO} && unset TMUX && exec {sys.executable} -m tui.cli"
    tmux("new-session", "-d", "-s", SESSION, "-x", "100", "-y", "30", *env_args, command)
    try:
        wait_screen(lambda s: "agent chat attempt 1" in s, what="the app on its Jobs tab (there is work)")
        keys("2")
        wait_screen(lambda s: "chat · running" in s and "▶1 Chat" in s, what="the attempt running")
        keys("a")
        wait_screen(lambda s: "ready for input" in s and "in progress" not in s, what="the agent's terminal")
        keys("C-b", "d")
        wait_screen(lambda s: "chat · running" in s and "in progress 1" in s, what="the app back")
        keys("f")
        wait_screen(lambda s: "Follow-up for attempt 1" in s, what="the follow-up dialog")
        keys("-l", "done")
        keys("Enter")
        wait_screen(lambda s: "tests not run" in s and "chat · ready" in s, what="the session's end")
        quit_app()
    finally:
        tmux("kill-session", "-t", SESSION, check=False)
