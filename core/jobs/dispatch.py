"""Claim queued jobs for a host's free slots and start each in its own tmux session."""

from __future__ import annotations

import asyncio
import os

import aiosqlite

from evopilot.core.config import Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.hosts.probe import EXIT_CODE
from evopilot.core.hosts.tmux import session_name
from evopilot.core.jobs import scripts, wake
from evopilot.core.models import Job, JobStatus, now_iso


def job_key(instance: str, job_id: int) -> str:
    """Directory name of a job on its host; the instance tag keeps databases apart."""
    return f"{instance}-{job_id}"


def done_channel(config: Config, instance: str) -> str:
    """The tmux wait-for channel a job's wrapper signals when it ends."""
    return f"{config.engine.session_prefix}-{instance}-done"


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
        for job in claimed:
            specs.append(await _prepare(db, config, host, instance, job))
    try:
        if host.is_local:
            started, error = await start_here(specs)
        else:
            res = await host.run(scripts.start(specs), stdin=scripts.start_stdin(specs))
            started, error = scripts.parse_start(res.stdout), res.error_text()
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
            if started.get(job.id):
                await jobs_db.add_step(db, job.id, "start", "tmux", "ok", job.tmux_session)
            else:
                await jobs_db.update_job(
                    db, job.id, status=JobStatus.FAILED.value, finished_at=now_iso(),
                    error_message=f"cannot start the job on {host.name}: {error}",
                )
    return claimed


async def _prepare(db: aiosqlite.Connection, config: Config, host: Host, instance: str, job: Job) -> scripts.StartSpec:
    """Record where the job lives before its session starts, so a crash in between leaves a job
    that reconcile can find."""
    job_dir = host.job_dir(job_key(instance, job.id))
    session = session_name(config.engine.session_prefix, instance, job.id)
    await jobs_db.update_job(
        db, job.id, job_dir=job_dir, tmux_session=session,
        results_path=f"{job_dir}/{scripts.RESULTS}",
        log_path=f"{job_dir}/{scripts.LOG}" if host.is_local else job.log_path,
    )
    wrapper = scripts.wrapper(
        job_id=job.id, job_dir=job_dir, workdir=job.workdir, command=job.command,
        done_channel=done_channel(config, instance),
        done_fifo=wake.fifo_path(host, instance) if host.is_local else "", mode=job.mode,
    )
    return scripts.StartSpec(job.id, job_dir, session, wrapper, scripts.env_file(config.host(host.name).env))


async def start_here(specs: list[scripts.StartSpec]) -> tuple[dict[int, bool], str]:
    """``scripts.start`` done by this process for jobs on this machine: the same files (mode
    0600 in 0700 directories), the same idempotence and the same retries of ``new-session``,
    without a bash and its mkdir per dispatch (every evolution candidate is a job). The session
    runs the wrapper without a shell in between."""
    started, error = {}, ""
    for s in specs:
        d = s.job_dir
        if os.path.exists(f"{d}/{EXIT_CODE}"):
            started[s.job_id] = True
            continue
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            _write(f"{d}/{scripts.ENV}", s.env.encode(), truncate=True)
            if not os.path.exists(f"{d}/{scripts.WRAPPER}"):
                _write(f"{d}/{scripts.WRAPPER}", s.wrapper.encode(), truncate=True)
            _write(f"{d}/{scripts.LOG}", b"", truncate=False)
        except OSError as e:
            started[s.job_id], error = False, f"{d}: {e.strerror}"
            continue
        new = ["tmux", "new-session", "-d", "-s", s.session, "-x", "200", "-y", "50",
               "--", "bash", f"{d}/{scripts.WRAPPER}"]
        ok, err = False, b""
        for pause in (0.0, 0.05, 0.2):  # tmux exiting after its last session: try again
            await asyncio.sleep(pause)
            code, err = await _tmux(new)
            if code == 0 or (await _tmux(["tmux", "has-session", "-t", f"={s.session}"]))[0] == 0:
                ok = True
                break
        started[s.job_id] = ok
        if not ok:
            error = err.decode("utf-8", "replace").strip().splitlines()[-1:][0] if err.strip() else "tmux failed"
    return started, error


def _write(path: str, data: bytes, *, truncate: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
        f.write(data)


async def _tmux(argv: list[str]) -> tuple[int, bytes]:
    # umask 077: a tmux server this starts passes it on to the wrappers (their files are private)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, umask=0o077)
    except FileNotFoundError:
        return 127, b"tmux is not installed"
    _, err = await proc.communicate()
    return proc.returncode or 0, err
