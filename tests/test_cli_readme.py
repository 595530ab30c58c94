"""README's "Using it" runs as written after its first command (`demo`), line by line, with the
background worker on as for a user."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_until


def using_it_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Using it\n"):text.index("### Jobs\n")]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_readme_using_it_runs_as_written(monkeypatch):
    monkeypatch.delenv("EVOPILOT_BACKGROUND_WORKER")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def sh(line: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    assert sh("evopilot demo").returncode == 0
    commands = using_it_commands()
    assert commands[0] == ". .venv/bin/activate" and len(commands) > 20
    for line in commands[1:]:
        res = sh(line)
        expected = 1 if "--fail" in line else 0
        assert res.returncode == expected, f"{line}: {res.stdout}{res.stderr}"
        assert "Traceback" not in res.stderr, line
    sessions = lambda: subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True,
                                      text=True, env=env).stdout
    wait_until(lambda: "-worker-" not in sessions(), 60, "the background worker gone")
    statuses = {str(j["id"]): j["status"] for j in json.loads(sh("evopilot jobs --json").stdout)}
    # stop and kill made 7 and 8 cancelled and killed, which `clean` removed; the rest ended
    assert "7" not in statuses and "8" not in statuses and statuses["1"] == "succeeded", statuses
    assert all(s in ("succeeded", "failed", "cancelled") for s in statuses.values()), statuses
    assert list(statuses.values()).count("failed") == 1, statuses  # the --fail run
