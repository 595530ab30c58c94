"""The background worker: queued jobs start although no evopilot process is open.

When a command leaves work queued or running (``run``, ``retry``, ``queue resume``, ``logs
-f`` on a queued job) and no worker loop is alive for the database, ``ensure`` starts
``evopilot worker --until-idle --background`` in a detached tmux session of its own; it exits
when nothing is left to do. ``[engine] background_worker = false`` (or
``EVOPILOT_BACKGROUND_WORKER=0``, as the test suite sets) turns this off.

Exactly one per database, whatever races:

- starting one is claimed in the database (meta ``background_worker`` = ``starting SESSION
  TIME``) in the same transaction that checks no loop beats and no background worker holds
  the lock, so of two racing commands one starts it and the other sees the claim;
- the worker holds an exclusive ``flock`` on ``worker.lock`` in the data directory while its
  loop runs (released by the kernel if it dies), and replaces the claim with ``running
  SESSION PID``. A second worker that finds the lock taken exits at once.

A worker that is leaving takes its heartbeat back and releases the lock first, then looks
for queued work once more (``Scheduler.run_forever`` and ``serve``): a command that queued
work meanwhile either saw no worker (and started one) or is served by this one.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from evopilot.core.config import Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.tmux import ends_with_command
from evopilot.core.jobs.scheduler import WORKER_BEAT, worker_alive
from evopilot.core.quoting import join, quote

META = "background_worker"
LOCK_FILE = "worker.lock"
LOG_FILE = "worker.log"
STARTING_GRACE = 20.0
"""Seconds a claim to start a worker holds before its worker has taken the lock (a failed
start does not block the next for longer)."""
ENV_OFF = "EVOPILOT_BACKGROUND_WORKER"
PASSED_ENV = ("PATH", "HOME", "TMUX_TMPDIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "EVOPILOT_CONFIG",
              "VIRTUAL_ENV", "PYTHONPATH")
"""The environment the worker gets from the command that starts it, not from the tmux
server (which may have been started long ago, elsewhere)."""


def enabled(config: Config) -> bool:
    return config.engine.background_worker and os.environ.get(ENV_OFF, "1") != "0"


@dataclass(frozen=True)
class WorkerState:
    """What ``evopilot queue`` and ``hosts`` say about the workers of a database."""

    loop_alive: bool
    """Some loop beats (the background worker, `evopilot worker`, the app)."""
    loop_owner: str | None
    """``host:pid`` of the process whose loop beat last."""
    background: str | None
    """``starting`` or ``running``, or None when there is no background worker."""
    session: str | None
    pid: int | None

    def public(self) -> dict:
        return {"alive": self.loop_alive, "owner": self.loop_owner,
                "background": self.background, "session": self.session, "pid": self.pid}


class WorkerLock:
    """The exclusive lock a background worker holds while its loop runs."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock (a background worker's loop runs)."""
        if self._fd is not None:
            return False
        if not self.acquire():
            return True
        self.release()
        return False


def session_name(prefix: str, instance: str) -> str:
    # unique per start: the session of a worker that is just exiting may still be there
    return f"{prefix}-{instance}-worker-{os.getpid()}-{int(time.time() * 1000) % 100000}"


def command(home: Path, config_file: str | None, log: Path) -> str:
    """The shell text the worker's tmux session runs (pure, see tests/test_cli_worker.py)."""
    env = ["env"]
    for name in PASSED_ENV:  # env takes its -u options before the assignments
        env += [] if name in os.environ else ["-u", name]
    env += [f"{name}={os.environ[name]}" for name in PASSED_ENV if name in os.environ]
    argv = [sys.executable, "-m", "evopilot", "worker", "--until-idle", "--background",
            "--home", str(home)]
    if config_file:
        argv += ["--config", str(Path(config_file).expanduser().resolve())]
    return f"{join([*env, *argv])} >> {quote(log)} 2>&1"


async def work_ids(db: aiosqlite.Connection) -> set[int]:
    """The jobs a worker has to look after: running ones (their ends, timeouts and the jobs
    waiting on them) and queued ones unless the queue is paused."""
    paused = await jobs_db.meta(db, "queue_paused") == "1"
    return await jobs_db.ids_with(db, ["running"] if paused else ["running", "queued"])


async def has_work(db: aiosqlite.Connection) -> bool:
    return bool(await work_ids(db))


async def ensure(db: aiosqlite.Connection, config: Config, home: Path, instance: str,
                 config_file: str | None) -> str | None:
    """Start a background worker if jobs are queued or running and no worker is alive; the
    tmux session started, or None."""
    if not enabled(config) or not await has_work(db):
        return None
    lock = WorkerLock(home)
    session = session_name(config.engine.session_prefix, instance)
    async with jobs_db.transaction(db):
        if await worker_alive(db, config) or lock.held_elsewhere():
            return None
        state = (await jobs_db.meta(db, META) or "").split()
        if state[:1] == ["starting"] and time.time() - float(state[-1]) < STARTING_GRACE:
            return None  # another command is starting one
        await jobs_db.set_meta(db, META, f"starting {session} {time.time()}")
    cwd = os.getcwd() if os.path.isdir(os.getcwd()) else str(home)  # ./evopilot.toml is read there
    argv = ["tmux", "new-session", "-d", "-s", session, "-c", cwd,
            command(home, config_file, home / LOG_FILE), *ends_with_command(session)]
    res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        async with jobs_db.transaction(db):
            await jobs_db.delete_meta(db, META)
        raise EvopilotError(f"could not start a background worker: {res.stderr.strip() or res.returncode}")
    return session


async def take(db: aiosqlite.Connection, lock: WorkerLock) -> bool:
    """The starting worker takes the lock and turns the claim into ``running`` (keeping the
    session name the claim gave); False when another background worker has it."""
    if not lock.acquire():
        return False
    async with jobs_db.transaction(db):
        parts = (await jobs_db.meta(db, META) or "").split()
        session = parts[1] if len(parts) > 2 else "-"
        await jobs_db.set_meta(db, META, f"running {session} {os.getpid()} {time.time()}")
    return True


async def leave(db: aiosqlite.Connection, lock: WorkerLock) -> None:
    """The worker's loop has ended: withdraw its state, then release the lock."""
    async with jobs_db.transaction(db):
        if (await jobs_db.meta(db, META) or "").split()[2:3] == [str(os.getpid())]:
            await jobs_db.delete_meta(db, META)
    lock.release()


async def state(db: aiosqlite.Connection, config: Config, home: Path) -> WorkerState:
    beat = await jobs_db.meta(db, WORKER_BEAT)
    alive = await worker_alive(db, config)
    parts = (await jobs_db.meta(db, META) or "").split()
    background = session = pid = None
    if parts[:1] == ["running"] and WorkerLock(home).held_elsewhere():
        background, session, pid = "running", parts[1], int(parts[2])
    elif parts[:1] == ["starting"] and time.time() - float(parts[-1]) < STARTING_GRACE:
        background, session = "starting", parts[1]
    return WorkerState(alive, beat.rsplit(" ", 1)[0] if alive and beat else None, background, session, pid)
