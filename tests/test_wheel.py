"""The package as a new user installs it: a wheel built from this checkout, installed into a
fresh virtualenv outside it, with nothing of the checkout on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_wheel_installs_and_runs_the_demo_elsewhere(tmp_path):
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(["uv", "build", "--wheel", "--out-dir", str(dist), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = dist.glob("evopilot-*.whl")
    subprocess.run(["uv", "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True)
    subprocess.run(["uv", "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)],
                   check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)

    # installed under one name: a user's own `core` or `tui` package cannot collide with ours
    names = run(str(venv / "bin" / "python"), "-c",
                "import importlib.util as u, evopilot.core.engine, evopilot.tui.cli\n"
                "import evopilot.core.evolution.mutators.llm, evopilot.core.evolution.mutators.params\n"
                "print(u.find_spec('core'), u.find_spec('tui'), evopilot.core.engine.__file__)")
    assert names.returncode == 0, names.stderr
    assert names.stdout.startswith("None None ") and str(venv) in names.stdout

    demo = run(str(venv / "bin" / "evopilot"), "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert demo.stdout.count("succeeded") >= 2
    jobs = run(str(venv / "bin" / "python"), "-m", "evopilot", "jobs", "--json")
    # its two benchmarks, and the setup job that built the example's environment (in its copy)
    assert jobs.returncode == 0 and jobs.stdout.count('"status": "succeeded"') == 3
    assert not list((venv / "lib").glob("python*/site-packages/evopilot/examples/solver/.venv"))

    init = run(str(venv / "bin" / "evopilot"), "init")
    assert init.returncode == 0, init.stderr
    written = Path(os.environ["XDG_CONFIG_HOME"]) / "evopilot" / "config.toml"
    assert written.read_text() == (REPO / "config.example.toml").read_text()
