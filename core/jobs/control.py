"""What a user does to jobs already queued or running: stop, kill, cancel, reorder, pause."""

from __future__ import annotations

import asyncio

import aiosqlite

from evopilot.core.config import Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.errors import EvopilotError
from evopilot.core.events import EventBus, QueueEvent
from evopilot.core.hosts.registry import HostRegistry
from evopilot.core.jobs import launch
from evopilot.core.jobs.publish import publish_jobs
from evopilot.core.jobs.scheduler import Scheduler
from evopilot.core.models import Job, JobStatus


START_WAIT_TRIES, START_WAIT_STEP = 20, 0.1
"""How long `stop` waits for a just-started job's process group to exist (2 s)."""


class Control:
    def __init__(self, db: aiosqlite.Connection, config: Config, hosts: HostRegistry,
                 bus: EventBus, scheduler: Scheduler) -> None:
        self.db, self.config, self.hosts, self.bus, self.scheduler = db, config, hosts, bus, scheduler

    async def stop(self, job_id: int) -> Job:
        """SIGINT to the job's process group; it ends as cancelled unless it exits 0."""
        job = await self._running(job_id, "stop")
        host = await self.hosts.get(job.host)
        # recorded before the signal: a worker may see the job end before this returns, and
        # must then take it as stopped (cancelled), not failed
        async with jobs_db.transaction(self.db):
            await jobs_db.update_job(self.db, job_id, requested="stop")
        for _ in range(START_WAIT_TRIES):  # `run` then `stop` at once: its wrapper is still starting
            if await launch.stop(host, job):
                break
            await asyncio.sleep(START_WAIT_STEP)
        else:
            async with jobs_db.transaction(self.db):
                await jobs_db.update_job(self.db, job_id, requested=None)
            raise EvopilotError(f"job {job_id} has not started its process yet; try again")
        await self.scheduler.tick_host(job.host)
        return await jobs_db.get_job(self.db, job_id)

    async def kill(self, job_id: int) -> Job:
        """SIGTERM the whole process group, SIGKILL after the grace period, remove the session."""
        job = await self._running(job_id, "kill")
        async with jobs_db.transaction(self.db):
            await jobs_db.update_job(self.db, job_id, requested="kill")
        host = await self.hosts.get(job.host)
        await launch.kill(host, job, self.config.engine.kill_grace)
        await self.scheduler.tick_host(job.host)
        # No exit code could be recorded (the wrapper itself was gone): killed all the same.
        async with jobs_db.transaction(self.db):
            killed = await jobs_db.transition(self.db, job_id, JobStatus.KILLED, [JobStatus.RUNNING])
        if killed:
            await publish_jobs(self.db, self.bus, [job_id], {job_id: JobStatus.RUNNING})
        return await jobs_db.get_job(self.db, job_id)

    async def _running(self, job_id: int, verb: str) -> Job:
        job = await jobs_db.get_job(self.db, job_id)
        if job.status != JobStatus.RUNNING:
            hint = " (use cancel for a queued job)" if job.status in (JobStatus.QUEUED, JobStatus.PENDING) else ""
            raise EvopilotError(f"cannot {verb} job {job_id}: it is {job.status.value}{hint}")
        if not job.job_dir:
            raise EvopilotError(f"job {job_id} is still starting; try again")
        return job

    async def cancel(self, job_id: int) -> Job:
        async with jobs_db.transaction(self.db):
            cancelled = await jobs_db.transition(self.db, job_id, JobStatus.CANCELLED,
                                                 [JobStatus.QUEUED, JobStatus.PENDING])
        if not cancelled:
            job = await jobs_db.get_job(self.db, job_id)
            hint = " (use stop or kill)" if job.status == JobStatus.RUNNING else ""
            raise EvopilotError(f"cannot cancel job {job_id}: it is {job.status.value}{hint}")
        await publish_jobs(self.db, self.bus, [job_id])
        return await jobs_db.get_job(self.db, job_id)

    async def move(self, job_id: int, where: str) -> Job:
        if where not in ("front", "back", "up", "down"):
            raise EvopilotError(f"cannot move a job {where!r}: use front, back, up or down")
        async with jobs_db.transaction(self.db):
            await jobs_db.move_in_queue(self.db, job_id, where)
        await publish_jobs(self.db, self.bus, [job_id])
        return await jobs_db.get_job(self.db, job_id)

    async def queue_paused(self) -> bool:
        return await jobs_db.meta(self.db, "queue_paused") == "1"

    async def set_queue_paused(self, paused: bool) -> list[str]:
        """Pause or resume dispatch. On resume, start what fits on the hosts that need no
        connect (this machine, SSH hosts this process has connected): resuming never waits for
        a host to answer. Returns the SSH hosts whose queued jobs wait for a worker loop (none
        runs, and this process is not connected to them)."""
        async with jobs_db.transaction(self.db):
            await jobs_db.set_meta(self.db, "queue_paused", "1" if paused else "0")
        self.bus.emit(QueueEvent(paused=paused))
        if paused:
            return []
        return await self.scheduler.dispatch(connect=False)
