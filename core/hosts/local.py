"""The local machine as a host: scripts run with bash, files are read directly."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

from evopilot.core.config import HostConfig
from evopilot.core.hosts.base import MAX_INLINE_SCRIPT, CommandResult, Host, HostState, stdin_script
from evopilot.core.hosts.probe import (
    EXIT_CODE, FINISHED, HANGUP, LOG, NOSPACE, PID, RESULTS, STARTED, WARM_WRAPPER, Probe,
    epoch_or_none,
)
from evopilot.core.hosts.tmux import LIST_SESSIONS
from evopilot.core.locations import ensure_private_dir


INLINE_READ = 256 * 1024
"""Bytes of job files read on the event loop itself; more are read in a thread."""


class LocalHost(Host):
    is_local = True

    def __init__(self, name: str, config: HostConfig, default_base: Path) -> None:
        super().__init__(name, config)
        base = Path(config.base_dir).expanduser() if config.base_dir else default_base
        self.base_dir = str(base.resolve())

    async def connect(self) -> None:
        ensure_private_dir(Path(self.base_dir))
        ensure_private_dir(Path(self.base_dir) / "jobs")
        self.state = HostState.CONNECTED

    async def run(
        self, script: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        body = script.encode("utf-8", "surrogateescape")
        if len(body) > MAX_INLINE_SCRIPT:  # too long for one argument: it goes ahead of stdin
            script, stdin = stdin_script(len(body)), body + (stdin or b"")
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C meant for evopilot must not hit host scripts
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate(stdin)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return CommandResult(124, b"", f"timed out after {timeout}s".encode())
        except asyncio.CancelledError:
            proc.kill()  # a cancelled caller must not leave the script running
            await proc.wait()
            raise
        return CommandResult(proc.returncode or 0, out, err)

    async def _exec(self, argv: list[str]) -> bytes:
        """A program's stdout, run without a shell (its errors and exit status ignored)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        except FileNotFoundError:
            return b""
        try:
            out, _ = await proc.communicate()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        return out

    async def read_ranges(self, requests: list[tuple[str, int, int]]) -> list[bytes]:
        if not requests:
            return []
        if sum(min(n, max(0, _size(p) - off)) for p, off, n in requests) <= INLINE_READ:
            # a few bytes (a job's end: its last lines and results.json): a thread's round
            # trip would cost more than the reads, and delay the next job's start
            return [read_range(p, off, n) for p, off, n in requests]
        # megabytes per tick when a job floods its log: off the event loop the UI shares
        return await asyncio.to_thread(lambda: [read_range(p, off, n) for p, off, n in requests])

    async def probe(self, jobs: list[tuple[int, str, str]]) -> dict[int, Probe]:
        # Same answers as the script, read directly. Whether the session is alive matters only
        # for a job without an exit code, and one whose command still runs under its wrapper is
        # running: only for the others does a tick fork `tmux list-sessions` (between a job's
        # end and the next job's start, it is the probe's whole cost).
        probes = {job_id: _files(d) for job_id, d, _ in jobs}
        running = {i for i, p in probes.items() if p.exit_code is None}
        dirs = {i: d for i, d, _ in jobs}
        # a warm slot's job lives as long as its wrapper (not the slot's session)
        warm = {i: _warm_alive(dirs[i]) for i in running if os.path.exists(f"{dirs[i]}/{WARM_WRAPPER}")}
        alive = {i for i in running if warm.get(i) or (i not in warm and _wrapped(probes[i].pgid, dirs[i]))}
        unsure = {i: session for i, _, session in jobs if i in running and i not in alive and i not in warm}
        if unsure:
            sessions = set((await self._exec(LIST_SESSIONS)).decode("utf-8", "replace").split())
            alive |= {i for i, session in unsure.items() if session in sessions}
        # Gone now, so its wrapper had written all it writes (exit code, log, results) before:
        # read again, or a job that ended since the first read would be taken as vanished. The
        # script asks in the other order, sessions first.
        probes.update({i: _files(dirs[i]) for i in running - alive})
        return {i: dataclasses.replace(p, session_alive=True) if i in alive else p
                for i, p in probes.items()}


def _files(d: str) -> Probe:
    """What job directory ``d`` holds now (the probe's ``files`` sections, read directly)."""
    return Probe(
        exit_code=_read_int(f"{d}/{EXIT_CODE}"),
        pgid=_read_int(f"{d}/{PID}"),
        log_size=_size(f"{d}/{LOG}"),
        session_alive=False,
        hangup=os.path.exists(f"{d}/{HANGUP}"),
        nospace=os.path.exists(f"{d}/{NOSPACE}"),
        started_at=epoch_or_none(_read(f"{d}/{STARTED}")),
        finished_at=epoch_or_none(_read(f"{d}/{FINISHED}")),
        log_exists=os.path.exists(f"{d}/{LOG}"),
        results_exists=os.path.exists(f"{d}/{RESULTS}"),  # after the exit code, see Probe
    )


def read_range(path: str, offset: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of a file from ``offset``; b"" past its end or when it is missing."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return b""
    try:
        return os.pread(fd, limit, offset)
    finally:
        os.close(fd)


def _wrapped(pgid: int | None, job_dir: str) -> bool:
    """Whether the job's command (its group's leader) runs under its wrapper: not gone, not a
    zombie, and its parent is the job's ``run.sh`` (a wrapper killed under it leaves an orphan,
    and the job is then lost). False where /proc cannot tell: the caller then asks tmux."""
    fields = _live_stat(pgid)
    parent = _cmdline(fields[1]) if fields and len(fields) > 1 else None
    return parent is not None and f"{job_dir}/run.sh".encode() in parent


def _warm_alive(job_dir: str) -> bool:
    """Whether the warm slot's wrapper of the job in ``job_dir`` runs: its pid is a live
    process of ``warm_runner.py`` (not a zombie, not a reused pid)."""
    pid = _read_int(f"{job_dir}/{WARM_WRAPPER}")
    cmdline = _cmdline(pid) if _live_stat(pid) else None
    return cmdline is not None and b"warm_runner.py" in cmdline


def _live_stat(pid: int | None) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent, ...) of a
    process that is neither gone nor a zombie; None otherwise."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return fields if fields and fields[0] not in (b"Z", b"X") else None


def _cmdline(pid: int | bytes) -> bytes | None:
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return f.read()
    except (OSError, ValueError):
        return None


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(64).decode("ascii", "replace")
    except OSError:
        return ""


def _read_int(path: str) -> int | None:
    try:
        return int(_read(path).strip())
    except ValueError:
        return None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
