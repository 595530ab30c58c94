"""Warm evaluation slots: local evaluation jobs started by a long-lived Python of the project's
environment (``warm_runner.py``, in a tmux session of its own, one per environment) instead of a
tmux session, a bash wrapper and an interpreter each.

An evaluation is a job like any other (its row, directory, log, exit code, results, stop, kill,
timeout; it outlives the engine), and costs a line on the runner's FIFO and a fork. The job's
``tmux_session`` is the runner's, but the job is alive while its own wrapper process is (its pid
in ``wrapper_pid``, see ``core.hosts.local``): a wrapper that died without an exit code leaves
the job lost, as a vanished session does. The wrappers do not depend on the runner: a runner
that died leaves its jobs running to their end, and the next start finds no reader on the FIFO
and starts a new runner; when that fails, the job takes the normal path
(``launch.start_here``).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evopilot.core import environments
from evopilot.core.hosts.tmux import has_session_argv, new_session_argv
from evopilot.core.models import Job

RUNNER = str(Path(__file__).with_name("warm_runner.py"))
KIND = "evaluation"
START_WAIT = 5.0
"""Seconds a new runner has to open its FIFO (an interpreter start on a loaded machine)."""
_MARK = "-warm-"


@dataclass(frozen=True, slots=True)
class WarmStart:
    """How to start one job in its environment's runner."""

    python: str
    session: str
    """The runner's tmux session (the job's ``tmux_session``)."""
    fifo: str
    line: bytes


def runner_session(prefix: str, env_dir: str, stamp: str) -> str:
    """The runner of an environment's interpreter as it is now (``stamp``): an environment
    built again (another Python, say) gets a runner of its own."""
    return f"{prefix}{_MARK}{hashlib.sha1((env_dir + chr(0) + stamp).encode()).hexdigest()[:12]}"


def stamp(python: str) -> str | None:
    """What tells one build of an interpreter from the next; None when there is none."""
    try:
        st = os.stat(python)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}"


def is_runner(session: str | None) -> bool:
    """Whether a job's session is a runner's (shared by its jobs: never killed with one)."""
    return session is not None and _MARK in session


def plan(job: Job, *, job_dir: str, jobs_dir: str, prefix: str, host_env: dict[str, str],
         wake: str, stamp: Callable[[str], str | None] = stamp) -> WarmStart | None:
    """The warm start of ``job``, or None when it takes the normal path: not an evaluation,
    a terminal job, a command other than ``environments.run_command``'s, a host environment
    that sets interpreter options (``PYTHON*``: read by a new interpreter only), or no
    interpreter there (the normal path says so in the job's log)."""
    if job.kind != KIND or job.mode != "batch" or any(k.startswith("PYTHON") for k in host_env):
        return None
    parsed = environments.parse_run_command(job.command)
    if parsed is None:
        return None
    env_dir, roots, bench, args = parsed
    build = stamp(f"{env_dir}/bin/python")
    if build is None:
        return None
    session = runner_session(prefix, env_dir, build)
    line = json.dumps({"job_id": job.id, "job_dir": job_dir, "workdir": job.workdir, "env_dir": env_dir,
                       "roots": roots, "argv": [bench, *args], "env": host_env, "wake": wake}).encode() + b"\n"
    if len(line) > 4096:  # PIPE_BUF: a longer write may interleave with another engine's
        return None
    return WarmStart(f"{env_dir}/bin/python", session, f"{jobs_dir}/{session}.fifo", line)


async def send(w: WarmStart, tmux) -> bool:
    """Hand the job to its runner, starting the runner when none reads the FIFO; False when
    there is none to take it (the caller starts the job the normal way). ``tmux``: runs a tmux
    argv, returns (exit code, stderr)."""
    try:
        fd = _open(w.fifo)
    except OSError:
        return False
    if fd is None:
        try:
            os.mkfifo(w.fifo, 0o600)
        except FileExistsError:
            if not stat.S_ISFIFO(os.lstat(w.fifo).st_mode):
                return False
        except OSError:
            return False
        # a second engine starting it at the same time fails here: the session is the lock
        new = new_session_argv(w.session, [w.python, RUNNER, w.fifo])
        started, _ = await tmux(new)
        loop = asyncio.get_running_loop()
        end = loop.time() + START_WAIT
        try:
            while (fd := _open(w.fifo)) is None and loop.time() < end:
                if started != 0 and (await tmux(has_session_argv(w.session)))[0] != 0:
                    # the name was taken by a runner that has died since (tmux removes its
                    # session a moment after): ours, at once, not a cold start 5 s later
                    started, _ = await tmux(new)
                await asyncio.sleep(0.01)
        except OSError:
            return False
        if fd is None:
            return False
    try:
        return os.write(fd, w.line) == len(w.line)  # all or nothing: at most PIPE_BUF
    except OSError:
        return False
    finally:
        os.close(fd)


def _open(fifo: str) -> int | None:
    """The FIFO open for writing, or None when no runner reads it; OSError when the path is
    not a FIFO."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return None
        raise
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{fifo} is not a FIFO")
    return fd
