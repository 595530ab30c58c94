"""Every test gets a private tmux server, data directory and config directory.

tmux runs on a socket under a fresh ``TMUX_TMPDIR``, so a test never sees or kills anyone
else's sessions; the server is killed when the test ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest_plugins = [f"tests.{m}" for m in ("sshd", "slurm") if (Path(__file__).parent / f"{m}.py").exists()]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def private_env(monkeypatch, tmp_path):
    tmux_dir = tempfile.mkdtemp(prefix="evp-tmux-")  # short: unix socket paths are limited
    monkeypatch.setenv("TMUX_TMPDIR", tmux_dir)
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.setenv("EVOPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("EVOPILOT_CONFIG", raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # No test nor any process it starts sees COLUMNS or LINES: the CLI would fit its tables to
    # them, and Textual takes them over a terminal's real size (an app in a 120x40 tmux pane drew
    # 80x24). pytest-xdist's workers start with COLUMNS=80 and LINES=24; in a run without xdist
    # they are only in the C environment, where GNU readline (imported by pytest's capture
    # plugin) puts them when it finds no terminal, and where os.environ does not see them: set
    # first, so that deleting them unsets them there too.
    for name in ("COLUMNS", "LINES"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    # no background worker unless a test asks for one (tests/test_cli_worker.py): most tests
    # queue jobs and then run the worker they mean to observe
    monkeypatch.setenv("EVOPILOT_BACKGROUND_WORKER", "0")
    yield
    subprocess.run(["tmux", "kill-server"], env={**os.environ, "TMUX_TMPDIR": tmux_dir},
                   stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    shutil.rmtree(tmux_dir, ignore_errors=True)


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from evopilot.tui.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def evopilot_cmd(*args: str) -> list[str]:
    """argv for the real `evopilot` in a subprocess."""
    return [sys.executable, "-m", "evopilot", *[str(a) for a in args]]


@pytest.fixture
def make_project(tmp_path):
    """Write a project with the given benchmark sources: {relative path: source}."""

    def make(files: dict[str, str], name: str = "proj") -> Path:
        root = tmp_path / name
        for rel, src in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(src)
        root.mkdir(exist_ok=True)
        return root

    return make


def prebuilt_env(root: Path) -> Path:
    """Build a project's .venv with the command its first local run's setup job would run (real
    uv, the default Python version), for a test about something else than that job."""
    from evopilot.core import environments
    from evopilot.core.config import HostConfig
    from evopilot.core.models import Project

    project = Project(id=0, name="p", path=str(root), created_at="", updated_at="",
                      python_version=f"{sys.version_info[0]}.{sys.version_info[1]}")
    subprocess.run(["bash", "-c", environments.setup_command(project, HostConfig(), None)], cwd=root,
                   check=True, capture_output=True)
    return root


@pytest.fixture
def ready_project(make_project):
    """``make_project`` with the project's environment already built (no setup job)."""
    return lambda files, name="proj": prebuilt_env(make_project(files, name))


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM a process (a worker) and wait for it; SIGKILL it if it does not end in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(cond, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``cond`` until it is true; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout:g}s")


_SCAN_CMDLINES = """
import glob, os, sys
needle, stop, ready = os.environ['EVP_SCAN_NEEDLE'].encode(), sys.argv[1], sys.argv[2]
hits = set()
while True:
    last = os.path.exists(stop)
    for path in glob.glob('/proc/[0-9]*/cmdline'):
        try:
            with open(path, 'rb') as f:
                if needle in f.read():
                    hits.add(path)
        except OSError:
            pass
    if not os.path.exists(ready):
        open(ready, 'w').close()
    if last:
        break
print('\\n'.join(sorted(hits)))
"""


class CmdlineWatch:
    """Scan every process's argv (/proc/*/cmdline, readable by every user) for ``needle`` in a
    separate process, as fast as it can, until stopped: ``hits`` are the processes that had it."""

    def __init__(self, needle: str, tmp: Path) -> None:
        self.needle, self.stop_file, self.ready = needle, tmp / "scan-stop", tmp / "scan-ready"
        self.hits: list[str] = []

    def __enter__(self) -> CmdlineWatch:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SCAN_CMDLINES, str(self.stop_file), str(self.ready)],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "EVP_SCAN_NEEDLE": self.needle})
        wait_until(self.ready.exists, what="the first scan of /proc")
        return self

    def __exit__(self, *exc) -> None:
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=30)
        self.hits = out.split()


@pytest.fixture
def mount():
    """Mount filesystems for a test (a read-only bind, a small tmpfs standing in for a full
    disk), unmounted when it ends. Needs root, as on the CI machine: fails, never skips."""
    mounted: list[Path] = []

    def run(*args: str, at: Path) -> Path:
        at.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(at)], check=True)
        mounted.append(at)
        return at

    yield run
    for at in reversed(mounted):
        subprocess.run(["umount", "-l", str(at)], check=False)
