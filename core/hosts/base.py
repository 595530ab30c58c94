"""The interface every host implements: run a shell script, read byte ranges of files."""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from evopilot.core.config import HostConfig
from evopilot.core.hosts import probe as probe_scripts
from evopilot.core.quoting import quote


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def error_text(self) -> str:
        """The last line of stderr (or stdout), for a one-line error message."""
        for stream in (self.stderr, self.stdout):
            lines = stream.decode("utf-8", "replace").strip().splitlines()
            if lines:
                return lines[-1].strip()
        return f"exit status {self.exit_status}"


IDLE_EVERY = 30.0
"""Seconds between looks at a host no tick asks about its jobs (its load; a Slurm cluster's
nodes): what the Hosts tab shows of an idle host, cheaply."""

MAX_INLINE_SCRIPT = 100_000
"""Scripts longer than this (bytes) go over stdin: Linux caps one argument at 128 KiB."""


def env_file(env: dict[str, str]) -> str:
    """A host's ``env`` as shell text: quoted export lines (sourced by a job's wrapper, and
    evaluated before Slurm's commands)."""
    return "".join(f"export {k}={quote(v)}\n" for k, v in env.items())


def stdin_script(length: int, prefix: str = "") -> str:
    """A ``bash -c`` script that reads the real script (``length`` bytes) from stdin ahead of the
    script's own stdin, into a temporary file, and runs it (after ``prefix``, e.g. a timeout)."""
    return ('f=$(mktemp) || exit 125\n'
            f'dd bs={length} count=1 iflag=fullblock status=none of="$f" || '
            '{ rm -f "$f"; exit 125; }\n'
            f'{prefix}bash "$f"; rc=$?; rm -f "$f"; exit $rc\n')


class HostState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


class Host(ABC):
    """A place where jobs run. Subclasses: ``LocalHost``, ``SshHost``, and the Slurm hosts of
    ``core.hosts.slurm`` (either of them with jobs started and ended through Slurm: see
    ``core.jobs.launch``)."""

    is_local: bool = False
    in_tmux: bool = True
    """Jobs run in tmux sessions here (False: under a batch scheduler, with no terminal)."""

    def __init__(self, name: str, config: HostConfig) -> None:
        self.name = name
        self.config = config
        self.state = HostState.DISCONNECTED
        self.last_error: str | None = None
        self.base_dir: str = ""
        """Absolute base directory on the host, set by ``connect``."""
        self.load: probe_scripts.Load | None = None
        """The host's load at its last probe (a tick with running jobs, or ``refresh``)."""
        self.load_at: float | None = None
        """``time.monotonic()`` of that probe."""

    @abstractmethod
    async def connect(self) -> None:
        """Make the host usable (open the connection, resolve ``base_dir``)."""

    async def ensure_connected(self) -> None:
        """Connect if not connected, as automatic retries do (an SSH host: with backoff)."""
        if self.state != HostState.CONNECTED:
            await self.connect()

    @property
    def unreachable(self) -> bool:
        """Whether the last attempt to reach the host failed (nothing known runs there now)."""
        return False

    @abstractmethod
    async def run(
        self, script: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run ``script`` with bash on the host and return its exit status and output."""

    async def close(self) -> None:
        self.state = HostState.DISCONNECTED

    async def refresh(self, *, force: bool = False) -> None:
        """On a tick with no job to probe (and when a user connects the host), what the host
        shows of itself when not looked at for ``IDLE_EVERY`` seconds: its load, in a round
        trip of its own (a probe with jobs reads it in the probe's). This machine's load is read
        directly; a Slurm cluster shows its nodes (``core.hosts.slurm``)."""
        if self.is_local or not (force or self.load_at is None or time.monotonic() - self.load_at > IDLE_EVERY):
            return
        res = await self.run(probe_scripts.LOAD_SCRIPT)
        self._loaded(probe_scripts.parse_load(res.stdout.decode("utf-8", "replace")))

    def _loaded(self, load: probe_scripts.Load | None) -> None:
        self.load, self.load_at = load, time.monotonic()

    async def probe(self, jobs: list[tuple[int, str, str]]) -> dict[int, probe_scripts.Probe]:
        """What each (job id, job dir, session) looks like now: one round trip for all."""
        res = await self.run(probe_scripts.probe(jobs))
        self._loaded(probe_scripts.parse_probe_load(res.stdout))
        return probe_scripts.parse_probe(res.stdout, jobs)

    async def read_ranges(self, requests: list[tuple[str, int, int]]) -> list[bytes | memoryview]:
        """For each (path, offset, limit), up to ``limit`` bytes of the file from ``offset``
        (views of one answer over SSH).

        One round trip for all of them; a missing file gives b"".
        """
        if not requests:
            return []
        res = await self.run(probe_scripts.read_ranges(requests))
        return probe_scripts.parse_read_ranges(res.stdout, len(requests))

    def job_dir(self, job_key: str) -> str:
        return f"{self.base_dir}/jobs/{job_key}"
