"""How jobs, durations, progress and metrics read as text: the one place for each format.

Pure functions over the models, used by the CLI and the TUI alike (a job's elapsed time reads
the same in ``evopilot jobs``, the jobs table and its detail line). "Now" is a parameter where
it matters, so a frozen clock gives frozen text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from evopilot.core.job_json import elapsed_seconds
from evopilot.core.status import JobStatus

if TYPE_CHECKING:  # the CLI formats without loading the row models (start-up time)
    from evopilot.core.models import Job
    from evopilot.core.hosts.doctor import Check

LINE_LIMIT = 200
"""A message shown on one line (an error, a host's last error) is cut to this many characters."""


def table(rows: list[list], header: list[str], width: int | None = None) -> list[str]:
    """Rows as lines of left-aligned columns under ``header`` (no lines when there are no rows).
    With ``width`` (a terminal's), the widest columns give way until the lines fit, their
    values cut with ``…`` (never silently)."""
    if not rows:
        return []
    cells = [[str(x) for x in row] for row in [header, *rows]]
    widths = [max(len(x) for x in col) for col in zip(*cells)]
    if width is not None:
        floor = [min(w, 4) for w in widths]  # the widest give way first, headers only last
        while sum(widths) + 2 * (len(widths) - 1) > width:
            i = max(range(len(widths)), key=lambda k: widths[k] - floor[k])
            if widths[i] <= floor[i]:
                break  # narrower than the headers: let the terminal wrap
            widths[i] -= 1
    return ["  ".join(cut(x, w).ljust(w) for x, w in zip(row, widths)).rstrip() for row in cells]


def duration(seconds: float | None) -> str:
    """``0:42``, ``12:05``, ``3:04:05``, ``2d03h04`` (days keep it short); "" for None."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h{m:02d}"
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def elapsed(job: Job, now: datetime | None = None) -> str:
    """How long the job ran (or has been running, as of ``now``)."""
    return duration(job.elapsed(now))


JOBS_HEADER = ["ID", "PROJECT", "BENCHMARK", "HOST", "STATUS", "POS", "PROGRESS", "EXIT", "ELAPSED",
               "METRICS / ERROR"]


def jobs_row(j: Mapping[str, Any], now: datetime | None = None) -> list:
    """A row of `evopilot jobs` (``JOBS_HEADER``) from a job's public JSON and queue position,
    which the engine-free listing (``core.jobs.listing``) reads without the row models."""
    view = SimpleNamespace(**j)  # what progress() and outcome() read, as attributes
    return [j["id"], j["project"] or "-", j["benchmark"], j["host"], j["status"],
            "" if j["position"] is None else j["position"], progress(view),
            "" if j["exit_code"] is None else j["exit_code"],
            duration(elapsed_seconds(j["started_at"], j["finished_at"], now)), outcome(view)]


def progress(job: Job) -> str:
    """``[12/50]``, as the job printed it; "" when it reported none."""
    return f"[{job.progress_current}/{job.progress_total}]" if job.progress_total else ""


def progress_bar(job: Job, bar: int) -> str:
    """``█████░░░░░ 12/50`` with a bar ``bar`` cells wide (readable without colour); ``…`` for
    a running job that reports no progress."""
    cur, total = job.progress_current, job.progress_total
    if not total:
        return "" if job.status != JobStatus.RUNNING else "…"
    frac = min(1.0, max(0.0, cur / total))
    filled = round(frac * bar)
    return "█" * filled + "░" * (bar - filled) + f" {cur}/{total}"


def metric(value: float, unit: str | None = None) -> str:
    """``12.5``, ``3.2 s``: a short number, then the unit the job gave."""
    return f"{value:g} {unit}" if unit else f"{value:g}"


def metrics(job: Job) -> str:
    """``objective=12.5 runtime=3.2 s`` (in the order the job reported them)."""
    return " ".join(f"{name}={metric(v, job.metric_units.get(name))}" for name, v in job.metrics.items())


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters; a cut one ends with ``…`` (never silently)."""
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"[:width]


def last_line(text: str | None) -> str:
    """The last non-blank line of a message (a traceback ends with the error), cut to
    ``LINE_LIMIT``."""
    lines = (text or "").strip().splitlines()
    return cut(lines[-1].strip(), LINE_LIMIT) if lines else ""


def outcome(job: Job) -> str:
    """What a job came to, in a few words: its metrics, else the last line of its error (or
    of why it waits)."""
    return metrics(job) or last_line(job.error_message)


def _labelled_outcome(job: Job) -> str:
    if job.metrics:
        return f"metrics: {metrics(job)}"
    reason = last_line(job.error_message)
    return f"error: {reason}" if reason and job.status.finished else reason


def job_line(job: Job) -> str:
    """A job on one line, as the CLI prints changes: ``job 3  bench.py  local  running  [4/9]``."""
    bits = [f"job {job.id}", job.name, job.host, job.status.value]
    for extra in (progress(job), "" if job.exit_code is None else f"exit {job.exit_code}",
                  _labelled_outcome(job)):
        if extra:
            bits.append(extra)
    return "  ".join(bits)


def job_detail(job: Job, now: datetime | None = None) -> str:
    """The selected job under the jobs table: what it is and how it goes, then its outcome on a
    second line when there is one."""
    bits = [f"job {job.id}", job.name, f"on {job.host}", job.status.value]
    if job.progress_total:
        bits.append(progress_bar(job, 10))
    took = elapsed(job, now)
    if took:
        bits.append(took)
    if job.exit_code is not None:
        bits.append(f"exit {job.exit_code}")
    if job.requested:
        bits.append(f"requested: {job.requested}")
    text = " · ".join(bits)
    more = _labelled_outcome(job)
    return f"{text}\n{more}" if more else text


def check_lines(checks: Iterable[Check]) -> list[str]:
    """``evopilot doctor``'s checks: ``ok``, ``FAIL`` or ``skip`` (not run after a fatal
    failure), the check and its detail, and the fix under a failed one."""
    lines = []
    for c in checks:
        word = "ok  " if c.ok else ("skip" if not c.ran else "FAIL")
        lines.append(f"{word}  {c.name}: {c.detail}")
        if c.fix and not c.ok:
            lines.append(f"      fix: {c.fix}")
    return lines


# ---- an island's archive as a grid (the Archive tab, `evolve archive`) ------------------------

RAMP = ".:-=+*#%@"
"""One character per level, worst to best: a grid reads without colour."""


@dataclass(frozen=True, slots=True)
class Cell:
    x: int
    y: int
    commit: str
    objective: float


@dataclass(frozen=True, slots=True)
class Axis:
    name: str
    bins: int
    lower: float
    upper: float

    def interval(self, i: int) -> tuple[float, float]:
        """The range of descriptor values of bin ``i``."""
        width = (self.upper - self.lower) / self.bins
        return self.lower + i * width, self.lower + (i + 1) * width


@dataclass
class Grid:
    """What the heatmap draws: ``x`` across, ``y`` up (None: a one-descriptor archive, one row)."""

    x: Axis
    y: Axis | None
    cells: dict[tuple[int, int], Cell]
    maximize: bool

    def __post_init__(self) -> None:
        values = [c.objective for c in self.cells.values()]
        self._range = (min(values), max(values)) if values else (0.0, 0.0)

    @property
    def width(self) -> int:
        return self.x.bins

    @property
    def height(self) -> int:
        return self.y.bins if self.y else 1

    def best(self) -> Cell | None:
        pick = max if self.maximize else min
        return pick(self.cells.values(), key=lambda c: c.objective, default=None)

    def level(self, objective: float) -> int:
        """0 (the worst objective shown) .. len(RAMP) - 1 (the best)."""
        lo, hi = self._range
        if hi == lo:
            return len(RAMP) - 1
        t = (objective - lo) / (hi - lo)
        return round((t if self.maximize else 1 - t) * (len(RAMP) - 1))


def axis_pairs(dims: int) -> list[tuple[int, int | None]]:
    """The descriptor pairs a grid of ``dims`` dimensions can be shown by (x, y)."""
    return [(0, None)] if dims == 1 else list(combinations(range(dims), 2))


def project(view: dict, pair: tuple[int, int | None]) -> Grid | None:
    """The grid of an island's cells (``Evolution.cells``) on the descriptors ``pair``: the
    best elite per 2-D cell. None while the island has no archive."""
    if view["bins"] is None:
        return None
    names, bins, lower, upper = view["descriptors"], view["bins"], view["lower"], view["upper"]
    ix, iy = pair
    x = Axis(names[ix], bins[ix], lower[ix], upper[ix])
    y = Axis(names[iy], bins[iy], lower[iy], upper[iy]) if iy is not None else None
    maximize = view["maximize"]
    cells: dict[tuple[int, int], Cell] = {}
    for c in view["cells"]:
        key = (c["index"][ix], c["index"][iy] if iy is not None else 0)
        held = cells.get(key)
        better = held is None or (c["objective"] > held.objective if maximize else c["objective"] < held.objective)
        if better:
            cells[key] = Cell(key[0], key[1], c["commit"], c["objective"])
    return Grid(x, y, cells, maximize)
