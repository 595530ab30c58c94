"""How jobs, durations, progress and metrics read as text: the one place for each format.

Pure functions over the models, used by the CLI and the TUI alike (a job's elapsed time reads
the same in ``evopilot jobs``, the jobs table and its detail line). "Now" is a parameter where
it matters, so a frozen clock gives frozen text.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from evopilot.core.models import Job, JobStatus

if TYPE_CHECKING:
    from evopilot.core.hosts.doctor import Check

LINE_LIMIT = 200
"""A message shown on one line (an error, a host's last error) is cut to this many characters."""


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


def last_line(text: str | None) -> str:
    """The last non-blank line of a message (a traceback ends with the error), cut to
    ``LINE_LIMIT``."""
    lines = (text or "").strip().splitlines()
    return lines[-1].strip()[:LINE_LIMIT] if lines else ""


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
