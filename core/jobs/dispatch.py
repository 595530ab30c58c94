"""Claim queued jobs for a host's free slots and start each in its own tmux session."""

from __future__ import annotations

import os

import aiosqlite

from evopilot.core.config import Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.hosts.tmux import session_name
from evopilot.core.jobs import launch, scripts, wake, warm
from evopilot.core.models import Job, JobStatus, now_iso


def job_key(instance: str, job_id: int) -> str:
    """Directory name of a job on its host; the instance tag keeps databases apart."""
    return f"{instance}-{job_id}"


def done_channel(config: Config, instance: str, host: str) -> str:
    """The tmux wait-for channel a job's wrapper signals when it ends. One per host name:
    several names may reach one machine (one tmux server), and a job's end must wake only
    its own host's watcher (else each end costs a tick of every name)."""
    return f"{config.engine.session_prefix}-{instance}-{host}-done"


async def dispatch(
    db: aiosqlite.Connection, config: Config, host: Host, instance: str, claimer: str
) -> list[Job]:
    """Claim queued jobs for ``host``'s free slots and start them all with one script.

    Returns the claimed jobs as they were when claimed (read them again for their state now).
    """
    slots = config.host(host.name).slots(host.is_local)
    claimed = []
    while (job := await jobs_db.claim_next(db, host.name, slots, claimer)) is not None:
        claimed.append(job)
    if not claimed:
        return []
    specs = []
    async with jobs_db.transaction(db):
        for job in list(claimed):
            if job.mode == "tty" and not host.in_tmux:
                claimed.remove(job)
                await jobs_db.update_job(
                    db, job.id, status=JobStatus.FAILED.value, finished_at=now_iso(),
                    error_message=f"a tty job needs a terminal: {host.name} runs jobs under Slurm, without one")
                continue
            specs.append(await _prepare(db, config, host, instance, job))
    if not specs:
        return claimed
    recorded = {s.job_id: s.warm.session if s.warm is not None else s.session for s in specs}
    try:
        started = await launch.start(host, specs)
    except EvopilotError:
        # The host is away. Starting is idempotent (the job directory and session tell), so
        # the jobs go back to the queue and the next dispatch sends the same start again.
        async with jobs_db.transaction(db):
            for job in claimed:
                await jobs_db.update_job(db, job.id, status=JobStatus.QUEUED.value,
                                         started_at=None, claimed_by=None)
        raise
    async with jobs_db.transaction(db):
        for job in claimed:
            s = started[job.id]
            if s.ok:
                await jobs_db.add_step(db, job.id, "start", "tmux" if host.in_tmux else "sbatch",
                                       "ok", s.detail)
                if warm.is_runner(recorded[job.id]) and s.detail != recorded[job.id]:  # not warm after all
                    await jobs_db.update_job(db, job.id, tmux_session=s.detail)
                if s.slurm_id:
                    await jobs_db.update_job(db, job.id, slurm_id=s.slurm_id)
            else:
                await jobs_db.update_job(
                    db, job.id, status=JobStatus.FAILED.value, finished_at=now_iso(),
                    error_message=f"cannot start the job on {host.name}: {s.detail}",
                )
    return claimed


async def _prepare(db: aiosqlite.Connection, config: Config, host: Host, instance: str, job: Job) -> scripts.StartSpec:
    """Record where the job lives before its session starts, so a crash in between leaves a job
    that reconcile can find."""
    job_dir = host.job_dir(job_key(instance, job.id))
    session = session_name(config.engine.session_prefix, instance, job.id)  # Slurm: the job name
    w = (warm.plan(job, job_dir=job_dir, jobs_dir=os.path.dirname(job_dir), prefix=config.engine.session_prefix,
                   host_env=config.host(host.name).env, wake=wake.fifo_path(host, instance))
         if host.is_local and host.in_tmux else None)
    wrapper = scripts.wrapper(
        job_id=job.id, job_dir=job_dir, workdir=job.workdir, command=job.command,
        done_channel=done_channel(config, instance, host.name) if host.in_tmux else "",
        done_fifo=wake.fifo_path(host, instance) if host.is_local and host.in_tmux else "",
        mode=job.mode, pane=host.in_tmux,
    )
    await jobs_db.update_job(
        db, job.id, job_dir=job_dir,
        tmux_session=(w.session if w is not None else session) if host.in_tmux else None,
        results_path=f"{job_dir}/{scripts.RESULTS}",
        log_path=f"{job_dir}/{scripts.LOG}" if host.is_local else job.log_path,
    )
    return scripts.StartSpec(job.id, job_dir, session, wrapper,
                             scripts.env_file(config.host(host.name).env), job.timeout_s, w)
