"""What a host reports about job directories in one round trip, as scripts and their parsers.

A monitor tick asks each host two things: ``probe`` (each job's exit code, process group, log
size, hangup marker, the wrapper's own start and end times and whether its tmux session is
alive; and the host's load: CPU load, memory, GPUs where ``nvidia-smi`` exists) and ``read_ranges`` (the new bytes of
logs and results files). Hosts send these scripts (``Host.probe``, ``Host.read_ranges``); the
local host answers the same questions by reading the files directly. Pure functions, quoted with
``core.quoting``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from evopilot.core.hosts.tmux import list_sessions
from evopilot.core.quoting import join, quote

# Files of a job directory that the probe reads (the job's wrapper writes them; the job itself
# writes ``results.json``, if at all, before its exit).
LOG, PID, EXIT_CODE, RESULTS = "log", "pid", "exit_code", "results.json"
HANGUP = "hangup"  # present when the job's tmux session went away under it (SIGHUP)
NOSPACE = "nospace"  # present when the job's exit code could be written only in its reserved file
# The pid of a warm slot's wrapper (core/jobs/warm_runner.py), which has no session of its own:
# while it lives, the job is alive.
WARM_WRAPPER = "wrapper_pid"
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
    results_exists: bool = False
    """The job wrote its ``results.json`` (seen after its exit code: a job that has one and
    wrote results has them there)."""
    scheduled: Scheduled | None = None
    """What a batch scheduler (Slurm) says about the job; None on hosts without one."""

    @property
    def wrapper_never_began(self) -> bool:
        """No session, and no trace of the wrapper (its pid, its start time, its exit code)."""
        return (self.exit_code is None and self.pgid is None and not self.session_alive
                and self.started_at is None)

    @property
    def never_started(self) -> bool:
        """Nothing on the host shows that the job's start reached tmux: it cannot have run."""
        return self.wrapper_never_began and not self.log_exists


_SECTION = b"\0--evopilot--\n"

NVIDIA_SMI = "nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits"
LOAD_SCRIPT = (
    # bash builtins reading /proc (a probe per host per second: each process counts); the CPU
    # count is the shell's allowed CPUs, as ``nproc`` counts them
    "{ read -r l _ && echo \"$l\"; } 2>/dev/null </proc/loadavg\n"
    "n=0; while read -r k v; do [ \"$k\" = Cpus_allowed_list: ] || continue\n"
    "  for r in ${v//,/ }; do n=$((n + ${r#*-} - ${r%-*} + 1)); done; done 2>/dev/null </proc/self/status\n"
    "[ $n -gt 0 ] && echo $n || nproc 2>/dev/null || echo 0\n"
    "while read -r k v _; do case $k in MemTotal:|MemAvailable:) echo \"$k $v\" ;; esac; done 2>/dev/null </proc/meminfo\n"
    f"if command -v nvidia-smi >/dev/null 2>&1; then timeout 5 {NVIDIA_SMI} 2>/dev/null; fi\n"
)
"""The host's load, the probe's last section (the same round trip)."""


@dataclass(frozen=True, slots=True)
class Gpu:
    util: float
    """Percent busy."""
    mem_used: float
    mem_total: float
    """MiB."""


@dataclass(frozen=True, slots=True)
class Load:
    """A host's load when it was last probed."""

    cpu: float | None
    """1-minute load average."""
    cpus: int | None
    mem_total: int | None
    mem_available: int | None
    """kB, from /proc/meminfo."""
    gpus: tuple[Gpu, ...] = ()


def parse_load(text: str) -> Load | None:
    """The load section's lines: load average, CPU count, two meminfo lines, then one CSV line
    per GPU. None when the host said nothing (no /proc: another OS)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    cpu = cpus = total = avail = None
    gpus = []
    for i, line in enumerate(lines):
        if line.startswith("MemTotal:"):
            total = _int_or_none(line.split()[1])
        elif line.startswith("MemAvailable:"):
            avail = _int_or_none(line.split()[1])
        elif "," in line:
            parts = [p.strip() for p in line.split(",")]
            try:
                gpus.append(Gpu(float(parts[0]), float(parts[1]), float(parts[2])))
            except (ValueError, IndexError):
                pass  # "[N/A]" on some boards
        elif i == 0:
            cpu = epoch_or_none(line)
        elif i == 1:
            cpus = _int_or_none(line) or None
    return Load(cpu, cpus, total, avail, tuple(gpus))


def local_load() -> Load:
    """This machine's load, read directly (a process only for ``nvidia-smi``, where it exists).
    Blocking: call it in a thread."""
    try:
        cpu: float | None = os.getloadavg()[0]
    except OSError:
        cpu = None
    try:
        with open("/proc/meminfo") as f:
            text = f.read()
    except OSError:
        text = ""
    meminfo = "\n".join(line for line in text.splitlines() if line.startswith(("MemTotal:", "MemAvailable:")))
    gpus = ""
    if shutil.which("nvidia-smi"):
        try:
            gpus = subprocess.run(NVIDIA_SMI.split(), capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            gpus = ""
    base = parse_load(f"{cpu if cpu is not None else ''}\n{os.cpu_count() or 0}\n{meminfo}\n{gpus}")
    return base or Load(None, None, None, None)


def load_dict(load: Load | None) -> dict | None:
    """A load as the hosts' rows give it (``evopilot hosts --json``): memory used in percent."""
    if load is None:
        return None
    mem = (None if not load.mem_total or load.mem_available is None
           else round(100 * (1 - load.mem_available / load.mem_total), 1))
    return {"cpu_load": load.cpu, "cpus": load.cpus, "mem_used_pct": mem,
            "mem_total_kb": load.mem_total,
            "gpus": [{"util_pct": g.util, "mem_used_mib": g.mem_used, "mem_total_mib": g.mem_total}
                     for g in load.gpus]}


_SEP = "printf '\\0--evopilot--\\n'"
SMALL_FILES = (EXIT_CODE, PID, STARTED, FINISHED)


# Whether the job in directory $1 runs on under its wrapper, as ``core.hosts.local`` tells it:
# its group leader (``pid``) is alive, not a zombie, and a child of the job's ``run.sh``. Bash
# builtins reading /proc; false where they cannot tell (then tmux is asked).
_WRAPPED = r"""wrapped() {
  local pg= st a x
  { IFS= read -r pg && [ -n "$pg" ] && IFS= read -r st <"/proc/$pg/stat"; } 2>/dev/null <"$1/pid" || return 1
  st=${st##*) }; set -- "$1" $st
  case $2 in Z|X) return 1 ;; esac
  mapfile -d '' a 2>/dev/null <"/proc/$3/cmdline" || return 1
  for x in "${a[@]}"; do [ "$x" = "$1/run.sh" ] && return 0; done
  return 1
}
"""


def probe(jobs: list[tuple[int, str, str]]) -> str:
    """One script reporting on every (job id, job dir, session): the sessions, then ``files``
    (see there), then the host's load. A job whose command runs on under its wrapper has its
    session (read from /proc by bash itself); tmux's session list is asked only when some job
    without an exit code is not so: most probes find every job running and start no ``tmux``
    (the script costs its shell and one ``find``, however many jobs)."""
    # an exit code being written is empty (not yet an exit code): its session is asked for
    checks = "".join(f"[ -s {quote(d)}/{EXIT_CODE} ] || {{ wrapped {quote(d)} && echo {quote(session)} || u=1; }}\n"
                     for _, d, session in jobs)
    sessions = f"{_WRAPPED}u=\n{checks}[ -z \"$u\" ] || {list_sessions()}\n"
    return f"{sessions}{_SEP}\n{files([d for _, d, _ in jobs])}{_SEP}\n{LOAD_SCRIPT}true\n"


def files(dirs: list[str], small: tuple[str, ...] = SMALL_FILES) -> str:
    """Two sections of a probe: the contents of the ``small`` files (read by bash itself, NUL
    after each file name), then ``find`` for the sizes of logs, markers and results files. In
    this order: a results file is written before the exit code, so one read with the exit
    code is listed."""
    paths = [f"{d}/{name}" for d in dirs for name in small]
    return (
        f"for f in {join(paths)}; do v=\n"
        f"  {{ IFS= read -r v || [ -n \"$v\" ]; }} 2>/dev/null <\"$f\" && printf '%s\\0%s\\n' \"$f\" \"$v\"\n"
        f"done\n{_SEP}\n"
        f"find {join(dirs)} -maxdepth 1 \\( -name {LOG} -o -name {HANGUP} -o -name {NOSPACE} -o -name {RESULTS} \\) "
        f"-printf '%h/%f\\t%s\\n' 2>/dev/null\ntrue\n"
    )


def parse_probe_load(out: bytes) -> Load | None:
    """The host's load from a probe's output (its last section)."""
    sections = out.split(_SECTION)
    return parse_load(sections[3].decode("utf-8", "replace")) if len(sections) > 3 else None


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
            results_exists=f"{d}/{RESULTS}" in sizes,
            **more,
        )


def parse_files(out: bytes) -> tuple[bytes, Files]:
    """A probe's first section (raw), and the two sections ``files`` printed after it."""
    sections = out.split(_SECTION)
    sections += [b""] * (3 - len(sections))
    sizes: dict[str, int] = {}
    for line in sections[2].decode("utf-8", "surrogateescape").splitlines():
        path, _, size = line.rpartition("\t")
        sizes[path] = _int_or_none(size) or 0
    contents: dict[str, str] = {}
    for line in sections[1].decode("utf-8", "surrogateescape").splitlines():
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


def copy_from(path: str, offset: int) -> str:
    """Shell text printing ``path`` from ``offset`` to its end (nothing when it is shorter or
    missing), one process: see ``SshHost.copy_from``."""
    return f"exec tail -c +{int(offset) + 1} {quote(path)} 2>/dev/null\n"


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


def parse_read_ranges(out: bytes, count: int) -> list[memoryview]:
    """The ranges in ``read_ranges``'s output, as views of it: a catch-up's range is 16 MiB,
    and a copy of it cost more than its decryption."""
    result: list[memoryview] = []
    view = memoryview(out)
    pos = 0
    for _ in range(count):
        nl = out.find(b"\n", pos)
        if nl < 0:
            result.append(memoryview(b""))
            continue
        n = int(out[pos:nl] or b"0")
        chunk = view[nl + 1 : nl + 1 + n]
        result.append(chunk)
        pos = nl + 1 + len(chunk)
    return result
