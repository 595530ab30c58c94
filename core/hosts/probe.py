"""What a host reports about job directories in one round trip, as scripts and their parsers.

A monitor tick asks each host two things: ``probe`` (each job's exit code, process group, log
size, hangup marker, the wrapper's own start and end times and whether its tmux session is
alive) and ``read_ranges`` (the new bytes of
logs and results files). Hosts send these scripts (``Host.probe``, ``Host.read_ranges``); the
local host answers the same questions by reading the files directly. Pure functions, quoted with
``core.quoting``.
"""

from __future__ import annotations

from dataclasses import dataclass

from evopilot.core.hosts.tmux import list_sessions
from evopilot.core.quoting import join, quote

# Files of a job directory that the probe reads (the job's wrapper writes them).
LOG, PID, EXIT_CODE = "log", "pid", "exit_code"
HANGUP = "hangup"  # present when the job's tmux session went away under it (SIGHUP)
NOSPACE = "nospace"  # present when the job's exit code could be written only in its reserved file
# Epoch seconds written by the wrapper when it starts and just before its exit code: a job's
# times are when it ran, not when some evopilot process noticed.
STARTED, FINISHED = "started_at", "finished_at"


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A job as a batch scheduler (Slurm, see ``core.hosts.slurm``) reports it."""

    job_id: str | None
    """Its id there, from the job directory; None: not submitted (yet)."""
    state: str | None
    """``PENDING``, ``RUNNING``, ``COMPLETED``...; None: the scheduler does not know the job."""
    reason: str = ""
    answered: bool = True
    """False: the scheduler could not be asked this tick (its state and reason say nothing)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """What a host says about one job in a monitor tick."""

    exit_code: int | None
    pgid: int | None
    log_size: int
    session_alive: bool
    hangup: bool = False
    nospace: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    log_exists: bool = False
    """The start script got as far as the job's session (it creates ``log`` right before)."""
    scheduled: Scheduled | None = None
    """What a batch scheduler (Slurm) says about the job; None on hosts without one."""

    @property
    def never_started(self) -> bool:
        """Nothing on the host shows that the job's start reached tmux: it cannot have run."""
        return (self.exit_code is None and self.pgid is None and not self.session_alive
                and not self.log_exists and self.started_at is None)


_SECTION = b"\0--evopilot--\n"


_SEP = "printf '\\0--evopilot--\\n'"
SMALL_FILES = (EXIT_CODE, PID, STARTED, FINISHED)


def probe(jobs: list[tuple[int, str, str]]) -> str:
    """One script reporting on every (job id, job dir, session) with three processes however
    many jobs: tmux's session list, then ``files`` (see there)."""
    return f"{list_sessions()}\n{_SEP}\n{files([d for _, d, _ in jobs])}"


def files(dirs: list[str], small: tuple[str, ...] = SMALL_FILES) -> str:
    """Two sections of a probe: ``find`` for the sizes of logs and markers, and ``grep`` for the
    contents of the ``small`` files (NUL after each file name)."""
    paths = [f"{d}/{name}" for d in dirs for name in small]
    return (
        f"find {join(dirs)} -maxdepth 1 \\( -name {LOG} -o -name {HANGUP} -o -name {NOSPACE} \\) "
        f"-printf '%h/%f\\t%s\\n' 2>/dev/null\n{_SEP}\n"
        f"grep -s -H -Z '' {join(paths)}\ntrue\n"
    )


def parse_probe(out: bytes, jobs: list[tuple[int, str, str]]) -> dict[int, Probe]:
    first, found = parse_files(out)
    sessions = set(first.decode("utf-8", "replace").splitlines())
    return {job_id: found.probe(d, session_alive=session in sessions) for job_id, d, session in jobs}


@dataclass(frozen=True, slots=True)
class Files:
    """What ``files`` printed: sizes of logs and markers, contents of the small files."""

    sizes: dict[str, int]
    contents: dict[str, str]

    def probe(self, d: str, **more) -> Probe:
        """The ``Probe`` of job directory ``d`` (``more``: its other fields)."""
        text, sizes = self.contents.get, self.sizes
        return Probe(
            exit_code=_int_or_none(text(f"{d}/{EXIT_CODE}", "")),
            pgid=_int_or_none(text(f"{d}/{PID}", "")),
            log_size=sizes.get(f"{d}/{LOG}", 0),
            hangup=f"{d}/{HANGUP}" in sizes,
            nospace=f"{d}/{NOSPACE}" in sizes,
            started_at=epoch_or_none(text(f"{d}/{STARTED}", "")),
            finished_at=epoch_or_none(text(f"{d}/{FINISHED}", "")),
            log_exists=f"{d}/{LOG}" in sizes,
            **more,
        )


def parse_files(out: bytes) -> tuple[bytes, Files]:
    """A probe's first section (raw), and the two sections ``files`` printed after it."""
    sections = out.split(_SECTION)
    sections += [b""] * (3 - len(sections))
    sizes: dict[str, int] = {}
    for line in sections[1].decode("utf-8", "surrogateescape").splitlines():
        path, _, size = line.rpartition("\t")
        sizes[path] = _int_or_none(size) or 0
    contents: dict[str, str] = {}
    for line in sections[2].decode("utf-8", "surrogateescape").splitlines():
        path, _, value = line.partition("\0")
        contents[path] = value
    return sections[0], Files(sizes, contents)


def epoch_or_none(s: str) -> float | None:
    """A wrapper's time stamp; bash's ``EPOCHREALTIME`` uses the locale's decimal mark."""
    try:
        return float(s.strip().replace(",", "."))
    except ValueError:
        return None


def _int_or_none(s: str) -> int | None:
    try:
        return int(s.strip())
    except ValueError:
        return None


FEW_RANGES = 4
_READ_RANGES_PY = (
    "import sys\n"
    "a, out = sys.argv[1:], sys.stdout.buffer\n"
    "for i in range(0, len(a), 3):\n"
    "    try:\n"
    "        with open(a[i], 'rb') as f:\n"
    "            f.seek(int(a[i + 1])); d = f.read(int(a[i + 2]))\n"
    "    except OSError:\n"
    "        d = b''\n"
    "    out.write(b'%d\\n' % len(d)); out.write(d)\n"
)


def read_ranges(requests: list[tuple[str, int, int]]) -> str:
    """Print, for each (path, offset, limit), a length line then that many bytes of the file.

    For many files one python3 process reads them all when the host has it (the shell loop
    costs several processes per file: ~800 for 200 jobs); for a few, the shell loop is cheaper
    than starting Python, and it is the fallback.
    """
    words = [str(w) for path, offset, limit in requests for w in (path, int(offset), int(limit))]
    parts = []
    for path, offset, limit in requests:
        p = quote(path)
        parts.append(
            f"  s=$(stat -c %s {p} 2>/dev/null || echo 0); n=$((s - {int(offset)}))\n"
            f"  [ $n -lt 0 ] && n=0; [ $n -gt {int(limit)} ] && n={int(limit)}\n"
            f"  printf '%d\\n' $n\n"
            f"  [ $n -gt 0 ] && tail -c +{int(offset) + 1} {p} | head -c $n\n"
        )
    if len(requests) <= FEW_RANGES:
        return "".join(parts) + "true\n"
    return (
        f"if command -v python3 >/dev/null 2>&1; then\n"
        f"  python3 -c {quote(_READ_RANGES_PY)} {join(words)}\n"
        f"else\n{''.join(parts)}fi\ntrue\n"
    )


def parse_read_ranges(out: bytes, count: int) -> list[bytes]:
    result: list[bytes] = []
    pos = 0
    for _ in range(count):
        nl = out.find(b"\n", pos)
        if nl < 0:
            result.append(b"")
            continue
        n = int(out[pos:nl] or b"0")
        chunk = out[nl + 1 : nl + 1 + n]
        result.append(chunk)
        pos = nl + 1 + len(chunk)
    return result
