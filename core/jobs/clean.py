"""`evopilot clean`: remove finished jobs (their rows, job directories and log copies).

Only finished jobs whose end has been handled are touched (an evaluation's end still to be
recorded keeps its job); never a queued or running one. A job directory on a host that cannot
be reached now is left, and so is its row, to be cleaned another time.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite

from evopilot.core import locations
from evopilot.core.config import LOCAL
from evopilot.core.db import jobs as jobs_db
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.registry import HostRegistry
from evopilot.core.models import FINISHED, Job, JobStatus
from evopilot.core.quoting import join

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise EvopilotError(f"--older-than {text!r}: expected a number and a unit (s, m, h, d, w), like 7d")
    return float(m[1]) * _UNITS[m[2]]


def parse_statuses(values: list[str] | None) -> list[str]:
    """Finished statuses from ``succeeded,failed`` (repeatable); all finished ones by default."""
    names = [s.strip() for v in values or [] for s in v.split(",") if s.strip()]
    finished = sorted(s.value for s in FINISHED)
    for name in names:
        if name not in finished:
            what = "not a status" if name not in {s.value for s in JobStatus} else "not finished"
            raise EvopilotError(f"--status {name}: {what}; clean removes only {', '.join(finished)} jobs")
    return names or finished


@dataclass
class CleanReport:
    jobs: list[int] = field(default_factory=list)
    directories: int = 0
    logs: int = 0
    bytes: int = 0
    """Bytes freed on this machine (a remote job directory's size is not asked for)."""
    kept: dict[int, str] = field(default_factory=dict)
    """Jobs left in place, with why."""

    def public(self) -> dict:
        return {"jobs": self.jobs, "directories": self.directories, "logs": self.logs,
                "bytes": self.bytes, "kept": [{"id": i, "reason": r} for i, r in self.kept.items()]}


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


async def clean(db: aiosqlite.Connection, hosts: HostRegistry, home: Path, *,
                older_than: float | None, statuses: list[str]) -> CleanReport:
    report = CleanReport()
    cutoff = (datetime.now(UTC) - timedelta(seconds=older_than)).isoformat() if older_than else None
    candidates = [j for j in await jobs_db.list_jobs(db, status=statuses, with_metrics=False)
                  if j.end_handled and j.status.finished and (cutoff is None or (j.finished_at or "") < cutoff)]
    for job in candidates:
        try:
            await _remove_files(job, hosts, home, report)
        except (EvopilotError, OSError) as e:  # an unknown or unreachable host
            report.kept[job.id] = str(e)
            continue
        report.jobs.append(job.id)
    async with jobs_db.transaction(db):
        await jobs_db.delete_finished(db, report.jobs)
    return report


async def _remove_files(job: Job, hosts: HostRegistry, home: Path, report: CleanReport) -> None:
    if job.job_dir:
        if job.host == LOCAL:
            path = Path(job.job_dir)
            if path.is_dir():
                report.bytes += _size(path)
                shutil.rmtree(path, ignore_errors=True)
                report.directories += 1
        else:
            host = await hosts.get(job.host)
            res = await host.run(join(["rm", "-rf", "--", job.job_dir]))
            if not res.ok:
                raise EvopilotError(f"cannot remove {job.job_dir} on {job.host}: {res.error_text()}")
            report.directories += 1
    # a remote job's log copy lives in the data directory (a local job's log is in its dir)
    if job.log_path and Path(job.log_path).parent == locations.logs_dir(home):
        log = Path(job.log_path)
        if log.exists():
            report.bytes += log.stat().st_size
            log.unlink()
            report.logs += 1
