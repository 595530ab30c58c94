"""A project's Python environment, on any host: built by uv with the project's Python version,
never the interpreter evopilot itself runs on.

A job on the project's working tree runs in its ``.venv``: locally in the project's directory,
on an SSH host in the project's synced copy ``<base>/projects/<name>-<id>``. A setup job builds
it with uv (``uv sync`` from pyproject.toml, or a plain ``uv venv`` without one) and the
benchmarks wait for it as ``pending``; a marker in ``.venv`` records what it was built from
(``env_key``), so an unchanged project needs no setup the next time, and checking that costs a
read of three small files locally, one command on an SSH host.

Jobs on a commit (``core.workspace``) share environments instead: one per environment key in
``<base>/envs/<name>-<key12>``, built with ``UV_PROJECT_ENVIRONMENT`` and without installing the
project (each commit's tree is put on ``PYTHONPATH``), so every commit with the same
pyproject.toml and uv.lock reuses it.

Every benchmark runs as ``run_command`` builds it: the environment's python, its ``bin`` first on
``PATH`` (as ``uv run`` does), and the project's import roots (``core.importroots``) first on
``PYTHONPATH``. On this machine uv may only use installed Pythons (``UV_PYTHON_DOWNLOADS=never``):
a version that is not installed is refused with one line before anything is queued.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from evopilot.core.config import HostConfig
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.quoting import join, quote, split
from evopilot.core.models import Project

MARKER = ".venv/.evopilot-env"
SHARED_MARKER = ".evopilot-env"  # in a shared environment's directory
ENV_FILES = ("pyproject.toml", "uv.lock")
SETUP_PRIORITY = 1000  # a host's environment setup goes before the jobs that wait for it
PYTHON_FIND_TIMEOUT = 30.0


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


def key_script(python_version: str) -> str:
    """Shell printing ``env_key`` of the files in the current directory as they are when it
    runs: a local setup's ``uv sync`` may have just written uv.lock into the project."""
    return ("{ printf '%s' " + quote(python_version)
            + "; cat pyproject.toml 2>/dev/null || printf -; cat uv.lock 2>/dev/null || printf -; }"
            " | sha1sum | cut -d' ' -f1")


def local_marker(project: Project) -> str | None:
    """What the project's local ``.venv`` was built from, or None."""
    try:
        return (Path(project.path) / MARKER).read_text()
    except OSError:
        return None


def working_env(workdir: str) -> str:
    """The environment of jobs on the project's files at ``workdir``."""
    return f"{workdir}/.venv"


def shared_env_dir(host: Host, project: Project, key: str) -> str:
    return f"{host.base_dir}/envs/{safe_name(project)}-{key[:12]}"


def shared_setup_command(project: Project, cfg: HostConfig, env_dir: str, key: str,
                         has_pyproject: bool, *, local: bool) -> str:
    """Build the shared environment ``env_dir`` from the tree the job runs in. The project
    itself is not installed: an environment must not pin one commit's code."""
    if has_pyproject:
        build = (f"export UV_PROJECT_ENVIRONMENT={quote(env_dir)}\n"
                 + join([cfg.uv_path, "sync", "--python", project.python_version, "--no-install-project"]))
    else:
        build = join([cfg.uv_path, "venv", "--python", project.python_version, env_dir])
    marker = quote(f"{env_dir}/{SHARED_MARKER}")
    return f"{_preamble(local)}{build}\nprintf '%s' {quote(key)} > {marker}\necho 'environment ready'"


def setup_command(project: Project, cfg: HostConfig, key: str | None) -> str:
    """Build the project's ``.venv`` in the job's directory; ``key`` None (on this machine): the
    marker gets the key of the files as the build left them."""
    uv = cfg.uv_path
    if (Path(project.path) / "pyproject.toml").is_file():
        build = join([uv, "sync", "--python", project.python_version])
    else:
        build = join([uv, "venv", "--python", project.python_version, ".venv"])
    value = quote(key) if key is not None else f'"$({key_script(project.python_version)})"'
    return f"{_preamble(key is None)}{build}\nprintf '%s' {value} > {MARKER}\necho 'environment ready'"


def _preamble(local: bool) -> str:
    # The environment is the project's, never one that happens to be active where evopilot runs;
    # and on this machine uv must not try to download a Python (no network: it would hang or fail late).
    extra = "unset VIRTUAL_ENV\nexport UV_PYTHON_DOWNLOADS=never\n" if local else ""
    return f"set -e\n{extra}"


def check_script(remote_dir: str) -> str:
    return f"cat {quote(remote_dir + '/' + MARKER)} 2>/dev/null || true"


def run_command(env_dir: str, roots: Sequence[str], bench_path: str, args: Sequence[str]) -> str:
    """Run a benchmark with the environment's python, the environment's ``bin`` first on PATH
    (a benchmark that starts ``python`` gets the same one, as under ``uv run``) and the import
    roots first on PYTHONPATH (a host's own PYTHONPATH, if any, after them)."""
    path = ":".join(roots)
    return (f"PYTHONPATH={quote(path)}${{PYTHONPATH:+:$PYTHONPATH}} VIRTUAL_ENV={quote(env_dir)} "
            f"PATH={quote(env_dir + '/bin')}:\"$PATH\" " + join([f"{env_dir}/bin/python", bench_path, *args]))


_RUN = re.compile(r'PYTHONPATH=(.*?)\$\{PYTHONPATH:\+:\$PYTHONPATH\} VIRTUAL_ENV=(.*?) PATH=(.*?):"\$PATH" (.*)', re.S)


@functools.lru_cache(maxsize=64)
def parse_run_command(command: str) -> tuple[str, list[str], str, list[str]] | None:
    """``run_command``'s arguments (environment, import roots, benchmark, its arguments) back
    from its text; None for any other command. Only a command that ``run_command`` rebuilds
    exactly from them is taken, so nothing of it is lost (a warm evaluation slot runs the
    benchmark from these: ``core.jobs.warm``). Cached (every evaluation's start asks): the
    lists are shared, not to be changed."""
    m = _RUN.fullmatch(command)
    if m is None:
        return None
    try:
        path, env_dir, words = split(m[1]), split(m[2]), split(m[4])
    except ValueError:
        return None
    if len(path) != 1 or len(env_dir) != 1 or len(words) < 2:
        return None
    roots, env_dir = path[0].split(":"), env_dir[0]
    if words[0] != f"{env_dir}/bin/python" or run_command(env_dir, roots, words[1], words[2:]) != command:
        return None
    return env_dir, roots, words[1], words[2:]


async def check_python(uv_path: str, version: str) -> None:
    """Refuse a Python version uv cannot find installed on this machine (it may not download one)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            uv_path, "python", "find", "--no-python-downloads", version,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        raise EvopilotError(f"cannot run uv ({uv_path}): {e.strerror}; set hosts.local.uv_path") from None
    try:
        async with asyncio.timeout(PYTHON_FIND_TIMEOUT):
            code = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        code = None
    if code != 0:
        raise EvopilotError(
            f"Python {version} is not installed on this machine (uv will not download one): install "
            f"it, or use a version `{uv_path} python list --only-installed` shows")
