"""A project's copy and Python environment on a remote host.

Before a project's first job on a host its files are synced to
``<base>/projects/<name>-<id>`` and a setup job builds the environment there with uv (``uv sync``
from pyproject.toml, or a plain ``uv venv`` without one). Benchmark jobs wait for it as
``pending``; a marker in ``.venv`` records what the environment was built from, so an unchanged
project needs no setup the next time.

Jobs on a commit (``core.workspace``) share environments instead: one per environment key in
``<base>/envs/<name>-<key12>``, built with ``UV_PROJECT_ENVIRONMENT`` and without installing the
project (each commit's tree is put on ``PYTHONPATH``), so every commit with the same
pyproject.toml and uv.lock reuses it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from evopilot.core.config import HostConfig
from evopilot.core.hosts.base import Host
from evopilot.core.quoting import join, quote
from evopilot.core.models import Benchmark, Project

MARKER = ".venv/.evopilot-env"
SHARED_MARKER = ".evopilot-env"  # in a shared environment's directory
ENV_FILES = ("pyproject.toml", "uv.lock")
SETUP_PRIORITY = 1000  # a host's environment setup goes before the jobs that wait for it


def safe_name(project: Project) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", project.name)[:60]


def project_dir(host: Host, project: Project) -> str:
    return f"{host.base_dir}/projects/{safe_name(project)}-{project.id}"


def env_key(project: Project, files: dict[str, bytes | None] | None = None) -> str:
    """What the environment is built from: Python version, pyproject.toml and uv.lock (the
    working tree's, or ``files``: their contents at a commit, None when absent)."""
    h = hashlib.sha1(project.python_version.encode())
    for name in ENV_FILES:
        if files is None:
            p = Path(project.path) / name
            data = p.read_bytes() if p.is_file() else None
        else:
            data = files.get(name)
        h.update(b"-" if data is None else data)
    return h.hexdigest()


def local_python(project: Project, cfg: HostConfig) -> str:
    """The project's own .venv python when it has one, else the configured python."""
    venv_python = Path(project.path) / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else cfg.python


def shared_env_dir(host: Host, project: Project, key: str) -> str:
    return f"{host.base_dir}/envs/{safe_name(project)}-{key[:12]}"


def shared_setup_command(project: Project, cfg: HostConfig, env_dir: str, key: str,
                         has_pyproject: bool) -> str:
    """Build the shared environment ``env_dir`` from the tree the job runs in. The project
    itself is not installed: an environment must not pin one commit's code."""
    if has_pyproject:
        build = (f"export UV_PROJECT_ENVIRONMENT={quote(env_dir)}\n"
                 + join([cfg.uv_path, "sync", "--python", project.python_version, "--no-install-project"]))
    else:
        build = join([cfg.uv_path, "venv", "--python", project.python_version, env_dir])
    marker = quote(f"{env_dir}/{SHARED_MARKER}")
    return f"set -e\n{build}\nprintf '%s' {quote(key)} > {marker}\necho 'environment ready'"


def setup_command(project: Project, cfg: HostConfig, key: str) -> str:
    uv = cfg.uv_path
    if (Path(project.path) / "pyproject.toml").is_file():
        build = join([uv, "sync", "--python", project.python_version])
    else:
        build = join([uv, "venv", "--python", project.python_version, ".venv"])
    return f"set -e\n{build}\nprintf '%s' {quote(key)} > {MARKER}\necho 'environment ready'"


def check_script(remote_dir: str) -> str:
    return f"cat {quote(remote_dir + '/' + MARKER)} 2>/dev/null || true"


def bench_command(cfg: HostConfig, project: Project, bench: Benchmark,
                  args: list[str] | tuple[str, ...]) -> str:
    # Without pyproject.toml there is nothing to sync, and uv warns that --no-sync has no effect
    # at the top of every job's log.
    no_sync = ["--no-sync"] if (Path(project.path) / "pyproject.toml").is_file() else []
    return join([cfg.uv_path, "run", *no_sync, "python", bench.path, *args])
