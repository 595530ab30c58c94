"""Publishing job changes: read each changed job once and put a ``JobEvent`` on the bus; and
the changes other processes commit (``ExternalChanges``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import aiosqlite

from evopilot.core.db import jobs as jobs_db
from evopilot.core.events import EventBus, JobEvent, QueueEvent, StoreEvent
from evopilot.core.models import JobStatus


async def publish_jobs(db: aiosqlite.Connection, bus: EventBus, ids: Iterable[int],
                       previous: dict[int, JobStatus] | None = None) -> None:
    if not bus.listening("job"):  # nobody listening: skip reading the rows
        return
    for job_id in ids:
        job = await jobs_db.get_job(db, job_id)
        bus.emit(JobEvent(job=job, previous=(previous or {}).get(job_id)))


class ExternalChanges:
    """What other processes (the CLI, another worker) commit to the database, as events on the
    bus: the jobs they changed, the queue's state, and projects changed or jobs removed.

    ``changed()`` is one ``PRAGMA data_version`` (no table is read while nobody else writes);
    only then are the jobs changed in the last ``WINDOW`` seconds read (by index). The window
    covers a write committed a while after its row's ``updated_at`` was stamped; rows already
    published with the same stamp are not published again.
    """

    WINDOW = 10.0

    def __init__(self, db: aiosqlite.Connection, bus: EventBus) -> None:
        self.db, self.bus = db, bus
        self._version: int | None = None
        self._seen: dict[int, str] = {}
        self._paused: bool | None = None
        self._store: tuple[tuple, int] | None = None

    async def changed(self) -> bool:
        """Whether another connection committed since the last call (False on the first)."""
        version = await jobs_db.data_version(self.db)
        changed = self._version is not None and version != self._version
        if self._version is None:
            self._store = await jobs_db.store_signature(self.db)
        self._version = version
        return changed

    async def publish(self) -> bool:
        """Put other processes' changes on the bus; False (and nothing read) if there are none."""
        if not await self.changed():
            return False
        since = (datetime.now(UTC) - timedelta(seconds=self.WINDOW)).isoformat(timespec="milliseconds")
        jobs = await jobs_db.updated_since(self.db, since)
        seen, self._seen = self._seen, {j.id: j.updated_at for j in jobs}
        for job in jobs:
            if seen.get(job.id) != job.updated_at:
                self.bus.emit(JobEvent(job=job))
        paused = await jobs_db.meta(self.db, "queue_paused") == "1"
        if paused != self._paused:
            self._paused = paused
            self.bus.emit(QueueEvent(paused=paused))
        store, before = await jobs_db.store_signature(self.db), self._store
        self._store = store
        if before is not None and store != before:
            new = sum(1 for job in jobs if job.id not in seen and job.created_at >= since)
            removed = store[1] < before[1] + new  # fewer jobs than before plus the new ones
            if store[0] != before[0] or removed:
                self.bus.emit(StoreEvent(projects=store[0] != before[0], jobs_removed=removed))
        return True
