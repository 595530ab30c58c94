"""The same interpreter and import path locally and on SSH hosts: a job runs in the project's
own uv environment (never evopilot's interpreter), with exactly the import roots the dependency
analysis resolves from, so `deps` and the job agree on every host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evopilot.core import environments
from evopilot.core.config import HostConfig
from evopilot.core.importroots import import_roots
from evopilot.core.models import Project
from tests.test_remote_jobs import host_toml

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"  # the one Python surely installed here
PYPROJECT = "[project]\nname = 'envproj'\nversion = '0.1.0'\nrequires-python = '>=3.10'\ndependencies = []\n"

# Prints where it runs from (one JSON line) and uses a module at the root and one under src/.
PROBE = """
import json, os, sys
from mylib import square
from srcpkg import cube
try:
    import evopilot
    leak = evopilot.__file__
except ImportError:
    leak = None
print("PROBE " + json.dumps({"prefix": sys.prefix, "base": sys.base_prefix, "leak": leak,
                             "version": "%d.%d" % sys.version_info[:2], "path": sys.path}), flush=True)
json.dump({"square": square(3), "cube": cube(2)}, open(os.environ["EVOPILOT_RESULTS"], "w"))
"""
FILES = {
    "pyproject.toml": PYPROJECT,
    "benchmarks/probe.py": PROBE,
    "benchmarks/broken.py": "from mylib import square\nfrom notinstalled import thing\n",
    "mylib/__init__.py": "def square(x):\n    return x * x\n",
    "src/srcpkg/__init__.py": "def cube(x):\n    return x ** 3\n",
}


# ---- pure parts -------------------------------------------------------------------------------


def test_run_command_puts_the_roots_first_and_the_environment_on_path():
    cmd = environments.run_command("/e nv", import_roots("/t/it's", True), "bench/a b.py", ["--x", "$HOME"])
    assert cmd.endswith("'/e nv/bin/python' 'bench/a b.py' --x '$HOME'")
    show = """sh -c 'printf "%s|" "$PYTHONPATH" "$VIRTUAL_ENV" "${PATH%%:*}" "$@"' sh"""
    out = subprocess.run(["bash", "-c", cmd.replace("'/e nv/bin/python'", show)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": "/old"})
    assert out.stdout == "/t/it's:/t/it's/src:/old|/e nv|/e nv/bin|bench/a b.py|--x|$HOME|"
    assert environments.run_command("/e", import_roots("/t", False), "b.py", []).startswith(
        "PYTHONPATH=/t${PYTHONPATH")


@pytest.mark.parametrize("files", [{}, {"pyproject.toml": "[project]\n"},
                                   {"pyproject.toml": "[project]\n", "uv.lock": "version = 1\n"}])
def test_key_script_computes_env_key(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    project = Project(id=1, name="p", path=str(tmp_path), python_version="3.12", created_at="", updated_at="")
    out = subprocess.run(["bash", "-c", environments.key_script("3.12")], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == environments.env_key(project)


def test_local_setup_never_downloads_a_python(tmp_path):
    project = Project(id=1, name="p", path=str(tmp_path), python_version="3.12", created_at="", updated_at="")
    local = environments.setup_command(project, HostConfig(), None)
    remote = environments.setup_command(project, HostConfig(), "k")
    assert "export UV_PYTHON_DOWNLOADS=never" in local and "unset VIRTUAL_ENV" in local
    assert "UV_PYTHON_DOWNLOADS" not in remote and "printf '%s' k >" in remote


# ---- end to end -------------------------------------------------------------------------------


def probe_of(run, job_id: int) -> dict:
    code, out, err = run("logs", str(job_id))
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("PROBE "))
    return json.loads(line[len("PROBE "):])


def jobs(run) -> list[dict]:
    code, out, err = run("jobs", "--json")
    assert code == 0, err
    return sorted(json.loads(out), key=lambda j: j["id"])


@pytest.fixture
def env_project(cli, make_project, tmp_path):
    root = make_project(FILES, name="envproj")
    code, _, err = cli("project", "add", root, "--python", PY)
    assert code == 0, err
    return root


def test_local_job_runs_in_the_projects_environment_not_evopilots(cli, env_project):
    assert Path(sys.prefix) != env_project / ".venv"  # the test runs evopilot from its own venv
    code, out, err = cli("run", "envproj", "probe.py", "--wait")
    assert code == 0, err + out
    setup, job = jobs(cli)
    assert setup["kind"] == "setup" and setup["status"] == "succeeded" and setup["host"] == "local"
    assert job["status"] == "succeeded" and job["depends_on"] == setup["id"]
    assert job["metrics"] == {"square": 9, "cube": 8}
    p = probe_of(cli, job["id"])
    assert Path(p["prefix"]) == env_project / ".venv"
    assert p["leak"] is None, "evopilot's own package is importable from the job"
    assert p["version"] == PY and Path(p["base"]) != Path(sys.prefix)
    assert p["path"][1:3] == [str(env_project), str(env_project / "src")]  # after the script's dir
    # unchanged pyproject.toml and uv.lock: the environment is reused, no second setup
    assert cli("run", "envproj", "probe.py", "--wait")[0] == 0
    assert [j["kind"] for j in jobs(cli)] == ["setup", "benchmark", "benchmark"]
    # a changed pyproject.toml: built again before the next job
    (env_project / "pyproject.toml").write_text(PYPROJECT + "\n# changed\n")
    assert cli("run", "envproj", "probe.py", "--wait")[0] == 0
    kinds = [(j["kind"], j["status"]) for j in jobs(cli)]
    assert kinds[3:] == [("setup", "succeeded"), ("benchmark", "succeeded")]


def test_local_job_without_pyproject_gets_a_uv_venv(cli, make_project):
    files = {k: v for k, v in FILES.items() if k not in ("pyproject.toml", "benchmarks/broken.py")}
    root = make_project(files, name="bare")
    assert cli("project", "add", root, "--python", PY)[0] == 0
    code, out, err = cli("run", "bare", "probe.py", "--wait")
    assert code == 0, err + out
    p = probe_of(cli, jobs(cli)[-1]["id"])
    assert Path(p["prefix"]) == root / ".venv" and p["leak"] is None
    assert (root / ".venv" / "pyvenv.cfg").is_file() and not (root / "uv.lock").exists()


def test_a_python_that_is_not_installed_is_refused_in_one_line(cli, make_project):
    root = make_project({"benchmarks/b.py": "print('hi')\n"}, name="old")
    assert cli("project", "add", root, "--python", "3.2")[0] == 0
    code, out, err = cli("run", "old", "b.py")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "Python 3.2 is not installed on this machine" in err
    assert jobs(cli) == []


def test_local_commit_job_runs_in_a_shared_uv_environment(cli, env_project, home):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(env_project)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    code, out, err = cli("run", "envproj", "probe.py", "--commit", "HEAD", "--wait")
    assert code == 0, err + out
    setup, job = jobs(cli)
    assert setup["kind"] == "setup" and job["status"] == "succeeded"
    p = probe_of(cli, job["id"])
    assert Path(p["prefix"]).parent.name == "envs" and p["leak"] is None
    tree = p["path"][1]
    assert Path(tree).is_relative_to(home) and p["path"][2] == tree + "/src"
    assert not (env_project / ".venv").exists(), "a commit job built the working tree's environment"


@pytest.mark.slow
def test_same_project_same_outcome_locally_and_on_an_ssh_host(cli, env_project, sshd, tmp_path):
    cfg = tmp_path / "evopilot.toml"
    cfg.write_text("[engine]\nremote_poll_interval = 0.3\npoll_interval = 0.1\n" + host_toml("h1", sshd))

    def run(*args):
        return cli(*args, "--config", cfg)

    outcomes = {}
    for host in ("local", "h1"):
        # deps refuses the broken benchmark, and so does run, on both hosts; the good one runs
        code, out, err = run("run", "envproj", "broken.py", "--host", host)
        assert code == 2 and "notinstalled" in err, (host, err)
        code, out, err = run("run", "envproj", "probe.py", "--host", host, "--wait")
        assert code == 0, (host, err + out)
        job = [j for j in jobs(run) if j["host"] == host and j["kind"] == "benchmark"][-1]
        probe = probe_of(run, job["id"])
        outcomes[host] = (job["status"], job["metrics"], probe, probe["path"][1])
    assert run("deps", "envproj", "broken.py")[0] != 0
    assert run("deps", "envproj", "probe.py")[0] == 0
    (ls, lm, lp, lw), (rs, rm, rp, rw) = outcomes["local"], outcomes["h1"]
    assert ls == rs == "succeeded" and lm == rm == {"square": 9, "cube": 8}
    assert lp["leak"] is None and rp["leak"] is None
    assert Path(lp["prefix"]) == Path(lw) / ".venv" and Path(rp["prefix"]) == Path(rw) / ".venv"
    assert lw == str(env_project) and rw.startswith(sshd.base_dir) and lp["version"] == rp["version"] == PY
    assert lp["path"][2] == lw + "/src" and rp["path"][2] == rw + "/src"


def test_run_does_not_wait_for_a_setup_that_cannot_start(cli, env_project):
    """With the queue paused the setup cannot start: `run` returns at once, the benchmark
    pending on it; a worker then builds the environment first and runs the benchmark."""
    assert cli("queue", "pause")[0] == 0
    code, out, err = cli("run", "envproj", "probe.py")
    assert code == 0, err
    assert "pending (waiting for environment setup (job 1))" in out
    assert cli("queue", "resume")[0] == 0
    assert cli("worker", "--until-idle")[0] == 0
    assert [(j["kind"], j["status"]) for j in jobs(cli)] == [("setup", "succeeded"), ("benchmark", "succeeded")]


def test_a_failed_local_setup_keeps_the_jobs_waiting_with_the_reason(cli, env_project):
    (env_project / "pyproject.toml").write_text(PYPROJECT.replace(">=3.10", ">=9.0"))
    code, out, err = cli("run", "envproj", "probe.py")
    assert code == 1, err
    assert "pending" in out and "retry 1" in out
    setup, job = jobs(cli)
    assert setup["status"] == "failed" and job["status"] == "pending"
