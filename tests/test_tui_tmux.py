"""The real `evopilot` (``python -m tui.cli``) in a real tmux session: keys go in with
``tmux send-keys``, the screen comes out with ``tmux capture-pane -p``.

Runs with NO_COLOR=1 and the mouse unused: everything asserted is text.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

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


def test_real_app_in_tmux(cli, make_project):
    root = make_project({"benchmarks/bench_a.py": "print('[1/1] done')\n"}, name="tmuxproj")
    code, out, err = cli("project", "add", str(root))
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
        keys("2")
        wait_screen(lambda s: "No tasks." in s, what="the Tasks tab")
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

        keys("q")
        deadline = time.monotonic() + 15
        while tmux("has-session", "-t", SESSION, check=False).returncode == 0:
            assert time.monotonic() < deadline, "the app did not quit on q"
            time.sleep(0.1)
    finally:
        tmux("kill-session", "-t", SESSION, check=False)
