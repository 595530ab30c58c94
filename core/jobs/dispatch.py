"""Claim queued jobs for a host's free slots and start each in its own tmux session."""

from __future__ import annotations

import aiosqlite

from core.config import Config
from core.db import jobs as jobs_db
from core.hosts.base import Host
from core.hosts.tmux import session_name
from core.jobs import scripts
from core.models import Job, JobStatus, now_iso


def job_key(instance: str, job_id: int) -> str:
    """Directory name of a job on its host; the instance tag keeps databases apart."""
    return f"{instance}-{job_id}"


async def dispatch(
    db: aiosqlite.Connection, config: Config, host: Host, instance: str, claimer: str
) -> list[Job]:
    """Start queued jobs on ``host`` while it has free slots; returns the jobs that changed."""
    changed = []
    slots = config.host(host.name).slots(host.is_local)
    while (job := await jobs_db.claim_next(db, host.name, slots, claimer)) is not None:
        changed.append(await start(db, config, host, instance, job))
    return changed


async def start(db: aiosqlite.Connection, config: Config, host: Host, instance: str, job: Job) -> Job:
    job_dir = host.job_dir(job_key(instance, job.id))
    session = session_name(config.engine.session_prefix, instance, job.id)
    # Recorded before the session starts, so a crash in between leaves a job that reconcile finds.
    await jobs_db.update_job(
        db, job.id, job_dir=job_dir, tmux_session=session,
        results_path=f"{job_dir}/{scripts.RESULTS}",
        log_path=f"{job_dir}/{scripts.LOG}" if host.is_local else job.log_path,
    )
    wrapper = scripts.wrapper(
        job_id=job.id, job_dir=job_dir, workdir=job.workdir, command=job.command,
        env=config.host(host.name).env,
    )
    try:
        res = await host.run(scripts.start(job_dir=job_dir, session=session, wrapper_text=wrapper))
        error = None if res.ok else f"cannot start the job's tmux session: {res.error_text()}"
    except Exception as e:  # host unreachable: the job must not be left half-started
        error = f"cannot start the job on {host.name}: {e}"
    if error:
        await jobs_db.update_job(
            db, job.id, status=JobStatus.FAILED.value, error_message=error, finished_at=now_iso()
        )
    else:
        await jobs_db.add_step(db, job.id, "start", "tmux", "ok", session)
    return await jobs_db.get_job(db, job.id)
