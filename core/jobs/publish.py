"""Publishing job changes: read each changed job once and put a ``JobEvent`` on the bus."""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from evopilot.core.db import jobs as jobs_db
from evopilot.core.events import EventBus, JobEvent
from evopilot.core.models import JobStatus


async def publish_jobs(db: aiosqlite.Connection, bus: EventBus, ids: Iterable[int],
                       previous: dict[int, JobStatus] | None = None) -> None:
    if not bus.listening("job"):  # nobody listening: skip reading the rows
        return
    for job_id in ids:
        job = await jobs_db.get_job(db, job_id)
        bus.emit(JobEvent(job=job, previous=(previous or {}).get(job_id)))
