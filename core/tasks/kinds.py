"""The job kinds of attempts and how an attempt reacts to their ends; the tick that enforces
budgets and sweeps' time budgets.

- ``attempt_setup``: the project's setup script in a new worktree. A failure fails the attempt
  and cancels its agent job (which waits on it).
- ``agent``: one agent session (tty when the agent's config says so). Its end records the head
  after it (committing what the agent left uncommitted, so the attempt's branch holds all of its
  work), the diff stats against the base, the session's usage as cost entries, queues the test
  command as an ``attempt_test`` job, and moves the task to ``inreview``.
- ``attempt_test``: the test command in the worktree; its end records ``tests_passed``.

Every end handler runs exactly once, inside the scheduler's transaction (core/jobs/kinds.py):
they write through the connection they are given and never open a transaction. Agents keep
running when evopilot exits: their jobs are tmux sessions the next process reconciles, and only
an ended job changes its attempt, so a restart never marks a live attempt failed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite

from evopilot.core.config import Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.db import tasks as tasks_db
from evopilot.core.errors import EvopilotError
from evopilot.core.events import Event, JobEvent, TaskEvent
from evopilot.core.hosts.base import Host
from evopilot.core.jobs.kinds import JobKind
from evopilot.core.jobs.monitor import tail
from evopilot.core.models import AttemptRow, Job, JobStatus, now_iso, parse_iso
from evopilot.core.tasks import agents, remote, sweeps, worktrees
from evopilot.core.usage import Usage

ORIGIN = "attempt"
AGENT, SETUP, TEST = "agent", "attempt_setup", "attempt_test"
LOG_TAIL = 256 * 1024
"""Bytes of a session's log read for its usage report and summary."""
LIVE = ("starting", "running", "testing")


class TaskKinds:
    """The end handlers and the tick, bound to what they need from the engine: the config, a
    way to insert jobs (``Submitter.new_job``), to kill one (``Control.kill``) and to reach a
    host (``HostRegistry.get``)."""

    def __init__(self, db: aiosqlite.Connection, config: Config, new_job: Callable[..., Awaitable[int]],
                 kill: Callable[[int], Awaitable[Job]], host: Callable[[str], Awaitable[Host]]) -> None:
        self.db, self.config, self.new_job, self.kill, self.host = db, config, new_job, kill, host

    def kinds(self) -> tuple[JobKind, ...]:
        return (JobKind(AGENT, on_end=self.on_agent_end), JobKind(SETUP, on_end=self.on_setup_end),
                JobKind(TEST, on_end=self.on_test_end))

    # ---- ends ------------------------------------------------------------------------------

    async def on_setup_end(self, db: aiosqlite.Connection, job: Job) -> list:
        attempt = await _owner(db, job)
        if attempt is None or attempt.setup_job_id != job.id:
            return []
        if job.status == JobStatus.SUCCEEDED:
            await tasks_db.update_attempt(db, attempt.id, setup_completed_at=now_iso())
            return []
        reason = f"setup script {_outcome(job)}"
        await tasks_db.update_attempt(db, attempt.id, state="failed", error_message=reason)
        events: list[Event] = [TaskEvent(task_id=attempt.task_id, attempt_id=attempt.id)]
        for s in await tasks_db.sessions(db, attempt.id):
            if s.job_id and await jobs_db.transition(db, s.job_id, JobStatus.CANCELLED, [JobStatus.PENDING]):
                await jobs_db.update_job(db, s.job_id, error_message=f"not started: {reason}")
                events.append(JobEvent(job=await jobs_db.get_job(db, s.job_id), previous=JobStatus.PENDING))
        return events

    async def on_agent_end(self, db: aiosqlite.Connection, job: Job) -> list:
        attempt = await _owner(db, job)
        session = await tasks_db.session_of_job(db, job.id)
        if attempt is None or session is None:
            return []
        text = tail(job.log_path, LOG_TAIL).decode("utf-8", "replace")
        agent_cfg = self.config.agents.get(session.agent)
        for u in agents.session_usage(agent_cfg, session.agent, text) if agent_cfg else []:
            await _add_cost(db, attempt.id, session.id, job.id, u)
        if line := agents.summary(text):
            await tasks_db.set_last_summary(db, session.id, line)
        fields: dict = {"agent_seconds": attempt.agent_seconds + (job.elapsed() or 0.0)}
        # a job that never started (its setup failed, its sweep ran out of time) did no work:
        # what is in the worktree then is not the agent's
        head_after = await self._record_work(attempt, session.id, fields) if job.started_at else None
        await tasks_db.update_session(db, session.id, ended_at=now_iso(), head_after=head_after)
        events: list[Event] = [TaskEvent(task_id=attempt.task_id, attempt_id=attempt.id)]
        if attempt.state == "failed":  # its setup failed: the agent never ran
            pass
        elif attempt.stop_reason:
            fields["state"] = "stopped"
        elif job.status != JobStatus.SUCCEEDED:
            fields.update(state="failed", error_message=f"agent {_outcome(job)}")
        elif "error_message" in fields:  # its work could not be recorded (said why)
            fields["state"] = "failed"
        elif test_id := await self._queue_test(db, attempt):
            fields.update(state="testing", test_job_id=test_id, tests_passed=None)
            events.append(JobEvent(job=await jobs_db.get_job(db, test_id)))
        else:
            fields["state"] = "ready"
        await tasks_db.update_attempt(db, attempt.id, **fields)
        task = await tasks_db.get_task(db, attempt.task_id)
        if task.status in ("todo", "inprogress"):
            await tasks_db.update_task(db, task.id, status="inreview")
        await self._settle_sweep(db, attempt)
        return events

    async def _record_work(self, attempt: AttemptRow, session_id: int, fields: dict) -> str | None:
        """Commit what the agent left in the worktree (on a remote host: bring its commits back
        first), then its head and diff stats into ``fields``; the head (None when the worktree
        is gone)."""
        wt = Path(attempt.worktree_path)
        if not wt.is_dir():
            return None
        message = f"evopilot: work of attempt {attempt.id}, session {session_id}"
        try:
            if attempt.remote_dir:
                await remote.bring_back(await self.host(attempt.host), attempt.remote_dir,
                                        attempt.branch_head or attempt.base_commit, wt, message)
            if (on := await worktrees.branch_of(wt)) != attempt.branch:
                fields["error_message"] = (f"the agent left its worktree on {on or 'a detached HEAD'}, not on "
                                           f"{attempt.branch}: its work there is not recorded")
                return None
            await worktrees.commit_all(wt, message)
            head = await worktrees.head(wt)
            stats = await worktrees.diff_stats(wt, attempt.base_commit, head)
        except EvopilotError as e:  # a host away, a git lock left behind: said, never retried forever
            fields["error_message"] = f"cannot record the agent's work: {e.message}"
            return None
        fields.update(branch_head=head, files_changed=stats.files, lines_added=stats.added,
                      lines_removed=stats.removed)
        return head

    async def _queue_test(self, db: aiosqlite.Connection, attempt: AttemptRow) -> int | None:
        task = await tasks_db.get_task(db, attempt.task_id)
        command = self.config.tasks.for_project(task.project or "").test_command
        if not command:
            return None
        return await self.new_job(
            project_id=task.project_id, kind=TEST, name=f"test attempt {attempt.id}", command=command,
            workdir=workdir(attempt), host=attempt.host, priority=0, mode="batch",
            origin_kind=ORIGIN, origin_id=attempt.id)

    async def on_test_end(self, db: aiosqlite.Connection, job: Job) -> list:
        attempt = await _owner(db, job)
        if attempt is None or attempt.test_job_id != job.id:
            return []  # a test run superseded by a later one
        fields: dict = {"tests_passed": job.status == JobStatus.SUCCEEDED}
        if attempt.state == "testing":
            fields["state"] = "ready"
        await tasks_db.update_attempt(db, attempt.id, **fields)
        await self._settle_sweep(db, attempt)
        return [TaskEvent(task_id=attempt.task_id, attempt_id=attempt.id)]

    async def _settle_sweep(self, db: aiosqlite.Connection, attempt: AttemptRow) -> None:
        """A sweep whose attempts have all settled gets its champion."""
        if attempt.sweep_id is None:
            return
        sweep = await tasks_db.get_sweep(db, attempt.sweep_id)
        runs = await tasks_db.attempts(db, sweep_id=sweep.id)
        if sweep.state != "running" or any(a.state in LIVE for a in runs):
            return
        winner = sweeps.champion([sweeps.result_of(a) for a in runs])
        await tasks_db.update_sweep(
            db, sweep.id, state="stopped" if sweep.error_message else "done", champion_attempt_id=winner,
            completed_at=now_iso(),
            error_message=sweep.error_message or (None if winner else "no attempt passed its tests with changes"))

    # ---- the tick: budgets -----------------------------------------------------------------

    async def tick(self) -> None:
        """Stop agents past their attempt's budget, and sweeps past their time budget."""
        if not await tasks_db.any_live_attempt(self.db):
            return
        doomed: list[int] = []  # jobs to kill, their attempts' reasons recorded first
        for attempt in await tasks_db.attempts(self.db, states=["running"]):
            job = await self._live_job(attempt.id)
            if job is not None and not attempt.stop_reason and (why := self._over_budget(attempt, job)):
                doomed.append(job.id)
                async with jobs_db.transaction(self.db):
                    await tasks_db.update_attempt(self.db, attempt.id, stop_reason=why)
        for sweep in await tasks_db.running_sweeps(self.db):
            started = parse_iso(sweep.started_at)
            if not sweep.time_budget_s or time.time() - started.timestamp() < sweep.time_budget_s:
                continue
            why = f"the sweep's time budget of {sweep.time_budget_s:g} s ran out"
            async with jobs_db.transaction(self.db):
                await tasks_db.update_sweep(self.db, sweep.id, error_message=why)
                for a in await tasks_db.attempts(self.db, sweep_id=sweep.id, states=["starting", "running"]):
                    await tasks_db.update_attempt(self.db, a.id, stop_reason=why)
                    for s in await tasks_db.sessions(self.db, a.id):  # not started yet: never will
                        if s.job_id and await jobs_db.transition(self.db, s.job_id, JobStatus.CANCELLED,
                                                                 [JobStatus.PENDING, JobStatus.QUEUED]):
                            await jobs_db.update_job(self.db, s.job_id, error_message=why)
            for a in await tasks_db.attempts(self.db, sweep_id=sweep.id, states=["running"]):
                if (job := await self._live_job(a.id)) is not None:
                    doomed.append(job.id)
        for job_id in doomed:
            with contextlib.suppress(EvopilotError):  # it ended meanwhile
                await self.kill(job_id)

    async def _live_job(self, attempt_id: int) -> Job | None:
        sessions = await tasks_db.sessions(self.db, attempt_id)
        if not sessions or sessions[-1].job_id is None:
            return None
        job = await jobs_db.get_job(self.db, sessions[-1].job_id)
        return job if job.status == JobStatus.RUNNING else None

    def _over_budget(self, attempt: AttemptRow, job: Job) -> str | None:
        minutes = attempt.agent_seconds / 60 + (job.elapsed() or 0.0) / 60
        if attempt.max_minutes is not None and minutes >= attempt.max_minutes:
            return f"budget: {minutes:.1f} of {attempt.max_minutes:g} minutes used"
        if attempt.max_dollars is None and attempt.max_requests is None:
            return None
        session_agent = self.config.agents.get(attempt.agent)
        live = agents.session_usage(session_agent, attempt.agent,
                                    tail(job.log_path, LOG_TAIL).decode("utf-8", "replace")) if session_agent else []
        dollars = attempt.dollars + sum(u.dollars for u in live)
        requests = attempt.requests + sum(u.requests for u in live)
        if attempt.max_dollars is not None and dollars >= attempt.max_dollars:
            return f"budget: ${dollars:.2f} of ${attempt.max_dollars:.2f} spent"
        if attempt.max_requests is not None and requests >= attempt.max_requests:
            return f"budget: {requests} of {attempt.max_requests} requests made"
        return None


async def _owner(db: aiosqlite.Connection, job: Job) -> AttemptRow | None:
    if job.origin_kind != ORIGIN or job.origin_id is None:
        return None
    try:
        return await tasks_db.get_attempt(db, job.origin_id)
    except EvopilotError:
        return None  # the attempt was deleted with its task


def workdir(a: AttemptRow) -> str:
    """Where the attempt's jobs run: its project's folder in its clone on an SSH host, else in
    its local worktree."""
    top = a.remote_dir or a.worktree_path
    return f"{top}/{a.agent_working_dir.rstrip('/')}" if a.agent_working_dir else top


def _outcome(job: Job) -> str:
    """``job 7 failed with exit code 3``, or with the job's error when it has no exit code."""
    if job.exit_code is not None:
        return f"job {job.id} {job.status.value} with exit code {job.exit_code}"
    return f"job {job.id} {job.status.value}: {(job.error_message or 'no exit code').strip().splitlines()[-1]}"


async def _add_cost(db: aiosqlite.Connection, attempt_id: int, session_id: int, job_id: int, u: Usage) -> None:
    await tasks_db.add_cost(db, attempt_id=attempt_id, session_id=session_id, job_id=job_id,
                            provider=u.provider, model=u.model, tokens_in=u.tokens_in,
                            tokens_out=u.tokens_out, cost_usd=u.dollars, requests=u.requests)
