"""A project's copy and Python environment on a remote host.

Before a project's first job on a host its files are synced to
``<base>/projects/<name>-<id>`` and a setup job builds the environment there with uv (``uv sync``
from pyproject.toml, or a plain ``uv venv`` without one). Benchmark jobs wait for it as
``pending``; a marker in ``.venv`` records what the environment was built from, so an unchanged
project needs no setup the next time.
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


def project_dir(host: Host, project: Project) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", project.name)[:60]
    return f"{host.base_dir}/projects/{safe}-{project.id}"


def env_key(project: Project) -> str:
    """What the environment is built from: Python version, pyproject.toml and uv.lock."""
    h = hashlib.sha1(project.python_version.encode())
    for name in ("pyproject.toml", "uv.lock"):
        p = Path(project.path) / name
        h.update(p.read_bytes() if p.is_file() else b"-")
    return h.hexdigest()


def setup_command(project: Project, cfg: HostConfig, key: str) -> str:
    uv = cfg.uv_path
    if (Path(project.path) / "pyproject.toml").is_file():
        build = join([uv, "sync", "--python", project.python_version])
    else:
        build = join([uv, "venv", "--python", project.python_version, ".venv"])
    return f"set -e\n{build}\nprintf '%s' {quote(key)} > {MARKER}\necho 'environment ready'"


def check_script(remote_dir: str) -> str:
    return f"cat {quote(remote_dir + '/' + MARKER)} 2>/dev/null || true"


def bench_command(cfg: HostConfig, bench: Benchmark, args: list[str] | tuple[str, ...]) -> str:
    return join([cfg.uv_path, "run", "--no-sync", "python", bench.path, *args])
