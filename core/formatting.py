"""How jobs, durations, progress and metrics read as text: the one place for each format.

Pure functions over the models, used by the CLI and the TUI alike (a job's elapsed time reads
the same in ``evopilot jobs``, the jobs table and its detail line). "Now" is a parameter where
it matters, so a frozen clock gives frozen text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from itertools import combinations
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

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
    natural = [max(len(x) for x in col) for col in zip(*cells)]
    widths = natural[:]
    if width is not None:
        floor = [min(w, 4) for w in widths]  # the widest give way first, headers only last
        while sum(widths) + 2 * (len(widths) - 1) > width:
            i = max(range(len(widths)), key=lambda k: widths[k] - floor[k])
            if widths[i] <= floor[i]:
                break  # narrower than the headers: let the terminal wrap
            widths[i] -= 1
    if widths != natural:  # a column gave way: cut its values (none does in a pipe or a wide terminal)
        cells = [[cut(x, w) for x, w in zip(row, widths)] for row in cells]
    return ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in cells]


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


_ROW_READS = ("progress_current", "progress_total", "metrics", "metric_units", "error_message")


def jobs_row(j: Mapping[str, Any], now: datetime | None = None) -> list:
    """A row of `evopilot jobs` (``JOBS_HEADER``) from a job's public JSON and queue position,
    which the engine-free listing (``core.jobs.listing``) reads without the row models."""
    view = SimpleNamespace(**{k: j[k] for k in _ROW_READS})  # what progress() and outcome() read
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
    if job.slurm_id:
        bits.insert(3, f"slurm {job.slurm_id}")
    for extra in (progress(job), "" if job.exit_code is None else f"exit {job.exit_code}",
                  _labelled_outcome(job)):
        if extra:
            bits.append(extra)
    return "  ".join(bits)


def job_detail(job: Job, now: datetime | None = None) -> str:
    """The selected job under the jobs table: what it is and how it goes, then its outcome on a
    second line when there is one."""
    bits = [f"job {job.id}", job.name, f"on {job.host}", job.status.value]
    if job.slurm_id:
        bits.insert(3, f"Slurm job {job.slurm_id}")
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


def cluster(summary: dict | None) -> str:
    """A Slurm host's row detail: ``cluster: 3 idle, 1 down · jobs: 2 pending, 16 running``
    (its partition's nodes and evopilot's jobs there, as last seen), or what is wrong with
    Slurm's controller: ``cluster: slurmctld not answering (...) · jobs: 2 running``."""
    if not summary or (summary.get("nodes") is None and not summary.get("error")):
        return ""
    if summary.get("error"):
        nodes = summary["error"]
    else:
        nodes = ", ".join(f"{n} {state}" for state, n in sorted(summary["nodes"].items())) or "no nodes"
    jobs = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary["jobs"].items(), reverse=True))
    return f"cluster: {nodes}" + (f" · jobs: {jobs}" if jobs else "")


def cluster_line(name: str, summary: dict | None) -> str:
    """A Slurm host's line under the hosts table: ``c (Slurm, partition debug): cluster: 1
    idle · jobs: 2 pending, 3 running``."""
    where = f"Slurm, partition {summary['partition']}" if summary and summary.get("partition") else "Slurm"
    return f"{name} ({where}): " + (cluster(summary) or "cluster: not asked yet (connecting the host asks)")


def host_load(load: dict | None) -> tuple[str, str, str]:
    """(CPU, memory, GPUs) of a host row's load: ``1.2/8``, ``43%``, ``87% 10.2/24G`` (each
    GPU), "-" where unknown."""
    if not load:
        return "-", "-", "-"
    cpu = "-" if load["cpu_load"] is None else f"{load['cpu_load']:.1f}" + (
        f"/{load['cpus']}" if load["cpus"] else "")
    mem = "-" if load["mem_used_pct"] is None else f"{load['mem_used_pct']:.0f}%"
    gpus = " ".join(f"{g['util_pct']:.0f}% {g['mem_used_mib'] / 1024:.1f}/{g['mem_total_mib'] / 1024:.0f}G"
                    for g in load["gpus"]) or "-"
    return cpu, mem, gpus


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """``▁▃█▅``: one cell per value, its height between the smallest and the largest."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((v - lo) / (hi - lo) * top) if hi > lo else top // 2] for v in values)


def direction(job: Job, name: str) -> str:
    higher = job.metric_higher_is_better.get(name)
    return "" if higher is None else "higher is better" if higher else "lower is better"


def job_full_detail(job: Job, now: datetime | None = None,
                    history: dict[str, list[tuple[int, float]]] | None = None) -> list[str]:
    """Everything about a job, one fact a line (the Jobs tab's detail view): what ran where, when,
    how it ended, its metrics with unit and direction (and, with ``history``, each metric over
    the benchmark's runs as a sparkline), and the job it retried or waits for."""
    def at(stamp: str | None) -> str:
        return stamp.replace("T", " ")[:19] if stamp else "-"

    lines = [f"job {job.id} · {job.name} · {job.kind} · {job.status.value}",
             f"command   {job.command}",
             f"args      {' '.join(job.args) if job.args else '-'}",
             f"host      {job.host}" + (f" · priority {job.priority}" if job.priority else "")
             + (f" · timeout {duration(job.timeout_s)}" if job.timeout_s else ""),
             f"workdir   {job.workdir}",
             f"job dir   {job.job_dir or '-'}",
             f"tmux      {job.tmux_session or '-'}",
             f"times     queued {at(job.created_at)} · started {at(job.started_at)} · "
             f"finished {at(job.finished_at)}" + (f" · took {elapsed(job, now)}" if job.started_at else ""),
             f"exit      {'-' if job.exit_code is None else job.exit_code}"
             + (f" · requested: {job.requested}" if job.requested else "")]
    if job.commit_sha:
        lines.append(f"commit    {job.commit_sha}")
    if job.retry_of:
        lines.append(f"retry of  job {job.retry_of}")
    if job.depends_on:
        lines.append(f"waits for job {job.depends_on}")
    if job.error_message:
        lines.append("error     " + job.error_message.strip().replace("\n", "\n          "))
    if job.metrics:
        lines.append("metrics")
        for name, value in job.metrics.items():
            line = f"  {name} = {metric(value, job.metric_units.get(name))}"
            if d := direction(job, name):
                line += f" ({d})"
            runs = (history or {}).get(name, [])
            if len(runs) > 1:
                values = [v for _, v in runs]
                line += f"  {sparkline(values)}  last {len(runs)} runs, {min(values):g}..{max(values):g}"
            lines.append(line)
    return lines


# NamedTuples, not dataclasses: importing dataclasses (and inspect with it) cost ~8 ms of every
# `evopilot jobs`, which loads this module to print its table
class ComparedMetric(NamedTuple):
    name: str
    unit: str
    direction: str
    values: list[float | None]
    """One per job, in the jobs' order; None: the job has no such metric."""
    best: set[int]
    """Indexes of the best values (by the metric's direction; none when it is unknown)."""


def compare_metrics(jobs: list[Job]) -> list[ComparedMetric]:
    """Every metric of ``jobs``, side by side, with the best of each by its direction (the
    first job that gives a direction or unit decides it)."""
    names = list(dict.fromkeys(name for job in jobs for name in job.metrics))
    out = []
    for name in names:
        values = [job.metrics.get(name) for job in jobs]
        higher = next((j.metric_higher_is_better[name] for j in jobs if name in j.metric_higher_is_better), None)
        unit = next((j.metric_units[name] for j in jobs if name in j.metric_units), "")
        present = [v for v in values if v is not None]
        best: set[int] = set()
        if higher is not None and len(present) > 1:
            top = max(present) if higher else min(present)
            best = {i for i, v in enumerate(values) if v == top}
        out.append(ComparedMetric(name, unit, "" if higher is None else "higher" if higher else "lower",
                                  values, best))
    return out


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


class Cell(NamedTuple):
    x: int
    y: int
    commit: str
    objective: float


class Axis(NamedTuple):
    name: str
    bins: int
    lower: float
    upper: float

    def interval(self, i: int) -> tuple[float, float]:
        """The range of descriptor values of bin ``i``."""
        width = (self.upper - self.lower) / self.bins
        return self.lower + i * width, self.lower + (i + 1) * width


class Grid:
    """What the heatmap draws: ``x`` across, ``y`` up (None: a one-descriptor archive, one row)."""

    def __init__(self, x: Axis, y: Axis | None, cells: dict[tuple[int, int], Cell], maximize: bool) -> None:
        self.x, self.y, self.cells, self.maximize = x, y, cells, maximize
        values = [c.objective for c in cells.values()]
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
