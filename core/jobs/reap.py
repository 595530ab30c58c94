"""Take down what is left of a job that did not end by its own clean exit.

A job whose group leader died of a signal, whose wrapper vanished (lost), or that was killed or
timed out can leave processes of its group running: a benchmark's child, or the whole command
when only the wrapper died. They hold the host's cores and licences with no job to show for
it, so the group gets TERM, then KILL after ``kill_grace``, and the job a step saying so.
"""

from __future__ import annotations

import aiosqlite

from evopilot.core.config import Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.jobs import launch
from evopilot.core.models import Job, JobStatus

STEP = "reap process group"


def needs_reap(status: str, exit_code: int | None, requested: str | None) -> bool:
    """Whether a job that just ended with ``status`` may have left processes behind."""
    if status in (JobStatus.LOST.value, JobStatus.KILLED.value):
        return True
    return status == JobStatus.FAILED.value and (requested == "timeout" or (exit_code or 0) > 128)


async def reap(db: aiosqlite.Connection, config: Config, host: Host, job: Job) -> None:
    grace = config.engine.kill_grace
    try:
        res = await launch.kill(host, job, grace)
        status, detail = ("ok" if res.ok else "failed"), f"TERM, then KILL after {grace:g}s"
        if not res.ok:
            detail += f": {res.error_text()}"
    except EvopilotError as e:  # the host is away; the processes stay until a person looks
        status, detail = "failed", str(e)
    async with jobs_db.transaction(db):
        await jobs_db.add_step(db, job.id, STEP, "signal", status, detail)
