"""The local machine as a host: scripts run with bash, files are read directly."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from evopilot.core.config import HostConfig
from evopilot.core.hosts.base import CommandResult, Host, HostState
from evopilot.core.hosts.probe import EXIT_CODE, HANGUP, LOG, PID, Probe
from evopilot.core.hosts.tmux import LIST_SESSIONS
from evopilot.core.locations import ensure_private_dir


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
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C meant for evopilot must not hit host scripts
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
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
        # megabytes per tick when a job floods its log: off the event loop the UI shares
        return await asyncio.to_thread(lambda: [_read_range(p, off, n) for p, off, n in requests])

    async def probe(self, jobs: list[tuple[int, str, str]]) -> dict[int, Probe]:
        # Same answers as the script, read directly: a tick forks only `tmux list-sessions`.
        sessions = set((await self._exec(LIST_SESSIONS)).decode("utf-8", "replace").split())
        return {
            job_id: Probe(
                exit_code=_read_int(f"{d}/{EXIT_CODE}"),
                pgid=_read_int(f"{d}/{PID}"),
                log_size=_size(f"{d}/{LOG}"),
                session_alive=session in sessions,
                hangup=os.path.exists(f"{d}/{HANGUP}"),
            )
            for job_id, d, session in jobs
        }


def _read_range(path: str, offset: int, limit: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return b""
    try:
        return os.pread(fd, limit, offset)
    finally:
        os.close(fd)


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read(64).strip())
    except (OSError, ValueError):
        return None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
