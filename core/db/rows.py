"""SQL shared by the async store (``core.db.jobs``) and the synchronous listing that
`evopilot jobs --json` reads without the engine (``core.jobs.listing``): pure, no driver."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SELECT_JOBS = ("SELECT jobs.*, projects.name AS project FROM jobs "
               "LEFT JOIN projects ON projects.id = jobs.project_id")
QUEUE_POSITIONS = ("SELECT id FROM jobs WHERE status IN ('queued', 'pending') "
                   "ORDER BY priority DESC, seq, id")
"""Queued and pending jobs in the order they start (``claim_next``'s and ``move_in_queue``'s)."""


TEXT_FIELDS = ("projects.name", "jobs.name", "jobs.host", "jobs.status", "jobs.error_message")
"""What ``text=`` looks in (case-insensitive, anywhere in the value)."""


def filters(status: Iterable[str] | None, project: str | None, host: str | None,
            text: str | None = None) -> tuple[str, list]:
    where, params = [], []
    if text:
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(" + " OR ".join(f"{f} LIKE ? ESCAPE '\\'" for f in TEXT_FIELDS) + ")")
        params += [like] * len(TEXT_FIELDS)
    if status:
        status = list(status)
        where.append(f"jobs.status IN ({','.join('?' for _ in status)})")
        params += status
    if project:
        where.append("projects.name = ?")
        params.append(project)
    if host:
        where.append("jobs.host = ?")
        params.append(host)
    return (" WHERE " + " AND ".join(where) if where else ""), params


def metrics_query(job_ids: list[int]) -> str:
    return (f"SELECT job_id, name, value, unit, higher_is_better FROM metrics "
            f"WHERE job_id IN ({','.join('?' for _ in job_ids)}) ORDER BY id")


def fill_metrics(rows: Iterable[Any], into: Mapping[int, tuple[dict, dict, dict]]) -> None:
    """Put each metric row into its job's (values, units, directions) dicts."""
    for job_id, name, value, unit, higher in rows:
        values, units, directions = into[job_id]
        values[name] = value
        if unit:
            units[name] = unit
        if higher is not None:
            directions[name] = bool(higher)
