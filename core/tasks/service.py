"""Tasks and coding-agent attempts as the CLI and the app see them (``engine.tasks``).

The API the Tasks tab uses (all async, all raise ``EvopilotError`` with a one-line message):

- ``board(project=None)`` -> list of task dicts (``id``, ``title``, ``status``, ``project``,
  ``description``, ``attempts``: each ``public_attempt``), kanban order; reconciles running
  jobs first (``reconcile=False`` for a cheap redraw).
- ``add(project, title, description=None, parent_attempt=None)`` -> TaskRow.
- ``move(task_id, status)`` -> TaskRow (todo, inprogress, inreview, done, cancelled).
- ``start(task_id, agent, host="local", ...)`` -> AttemptRow: worktree + branch, setup job,
  agent job (kind ``agent``, origin ``attempt``/id) queued and dispatched.
- ``attempt(attempt_id)`` -> dict: ``public_attempt`` plus ``sessions`` (with job ids), ``turns``
  (prompt, summary), ``costs`` per model, ``merges``, ``branch_problem``.
- ``session_job(attempt_id)`` -> Job of its latest agent session (the live log:
  ``engine.log_reader(job)`` / ``engine.follow_log(job)``), or None.
- ``followup(attempt_id, prompt)`` -> dict ``{"typed": bool, "job": id}``: typed into the live
  tty session, else a new session in the same worktree.
- ``attach_command(attempt_id, inside_tmux=...)`` -> AttachCommand of its live session.
- ``stop(attempt_id)`` -> AttemptRow: its running agent stopped (state ``stopped``).
- ``diff(attempt_id)`` -> async iterator of bytes chunks (git's output streamed, never whole:
  page it in the view); ``diff_stats`` are in ``public_attempt``.
- ``test(attempt_id)`` -> Job (the test command, again).
- ``merge(attempt_id)`` -> dict ``{"merged": bool, "commit", "conflicts": [files]}``.
- ``archive(attempt_id, force=False)`` -> AttemptRow (cleanup script, worktree removed; the
  branch and its commits stay).
- ``templates()`` / ``put_template(name, content)``: prompt snippets (seed 004's tags);
  ``scratch(kind, key)`` / ``put_scratch(kind, key, payload)``: drafts and UI preferences (JSON).
- ``attempt_jobs(attempt_id)`` -> ids of its jobs (setup, sessions, tests), oldest first.
- ``sweep(task_id, agents, ["NAME=V1,V2", ...], max_parallel=None, time_budget=None)`` -> SweepRow;
  ``sweep_status(sweep_id)`` -> dict with ``rows`` (one per attempt: agent, params, state,
  tests_passed, files_changed, lines_changed, tokens, dollars, seconds, ``champion`` bool) and
  ``champion`` (attempt id or None).

Changes reach the app as ``TaskEvent``s (``task_id``, ``attempt_id``) on the engine's bus, from
these calls and from the end handlers of the attempts' jobs (whichever process runs them: another
process's changes show as ``JobEvent``s of jobs whose ``origin_kind`` is ``"attempt"``, or by
polling ``board(reconcile=False)``); the live log of a session comes as ``LogEvent``s of its job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import aiosqlite

from evopilot.core import locations
from evopilot.core.config import LOCAL, Config, check_timeout
from evopilot.core.db import jobs as jobs_db
from evopilot.core.db import projects as projects_db
from evopilot.core.db import tasks as tasks_db
from evopilot.core.errors import EvopilotError
from evopilot.core.events import TaskEvent
from evopilot.core.hosts.registry import HostRegistry
from evopilot.core.hosts.sync import resolve_remote_dir
from evopilot.core.jobs import interactive
from evopilot.core.jobs.publish import publish_jobs
from evopilot.core.jobs.scheduler import Scheduler
from evopilot.core.jobs.submit import Submitter
from evopilot.core.models import TASK_STATUSES, AttemptRow, Job, JobStatus, SweepRow, TaskRow
from evopilot.core.quoting import quote
from evopilot.core.tasks import agents, kinds, remote, sweeps, worktrees
from evopilot.core.tasks.kinds import AGENT, ORIGIN, SETUP, TEST, TaskKinds

SETUP_PRIORITY = 10
CLEANUP_TIMEOUT = 600.0


def public_attempt(a: AttemptRow) -> dict:
    """An attempt as `task list --json` prints it (names are a public interface)."""
    return {
        "id": a.id, "task_id": a.task_id, "name": a.name, "agent": a.agent, "host": a.host,
        "branch": a.branch, "target_branch": a.target_branch, "worktree": a.worktree_path,
        "state": a.state, "archived": a.archived, "pinned": a.pinned, "params": a.params,
        "sweep_id": a.sweep_id, "tests_passed": a.tests_passed, "files_changed": a.files_changed,
        "lines_added": a.lines_added, "lines_removed": a.lines_removed, "lines_changed": a.lines_changed,
        "tokens_in": a.tokens_in, "tokens_out": a.tokens_out, "cost_usd": round(a.dollars, 6),
        "requests": a.requests, "agent_seconds": round(a.agent_seconds, 3), "agents_hash": a.agents_hash,
        "base_commit": a.base_commit, "head": a.branch_head, "stop_reason": a.stop_reason,
        "error_message": a.error_message, "created_at": a.created_at,
    }


def public_task(t: TaskRow, attempts: Sequence[AttemptRow]) -> dict:
    return {"id": t.id, "project": t.project, "title": t.title, "description": t.description,
            "status": t.status, "parent_attempt_id": t.parent_attempt_id,
            "attempts": [public_attempt(a) for a in attempts]}


class Tasks:
    def __init__(self, db: aiosqlite.Connection, config: Config, home: Path, submitter: Submitter,
                 scheduler: Scheduler, hosts: HostRegistry, task_kinds: TaskKinds) -> None:
        self.db, self.config, self.home = db, config, home
        self.submitter, self.scheduler, self.hosts, self.task_kinds = submitter, scheduler, hosts, task_kinds

    # ---- tasks -----------------------------------------------------------------------------

    async def add(self, project: str, title: str, description: str | None = None,
                  parent_attempt: int | None = None) -> TaskRow:
        if not title.strip():
            raise EvopilotError("a task needs a title")
        p = await projects_db.get_project(self.db, project)
        if parent_attempt is not None:
            await tasks_db.get_attempt(self.db, parent_attempt)
        async with jobs_db.transaction(self.db):
            task_id = await tasks_db.create_task(self.db, project_id=p.id, title=title.strip(),
                                                 description=description, parent_attempt_id=parent_attempt)
        self._changed(task_id)
        return await tasks_db.get_task(self.db, task_id)

    async def board(self, project: str | None = None, *, reconcile: bool = True) -> list[dict]:
        if reconcile:
            await self.reconcile()
        tasks = await tasks_db.list_tasks(self.db, project=project)
        by_task: dict[int, list[AttemptRow]] = {}
        for a in await tasks_db.attempts(self.db, task_ids=[t.id for t in tasks]):
            by_task.setdefault(a.task_id, []).append(a)
        return [public_task(t, by_task.get(t.id, [])) for t in tasks]

    def _changed(self, task_id: int, attempt_id: int | None = None) -> None:
        self.submitter.bus.emit(TaskEvent(task_id=task_id, attempt_id=attempt_id))

    async def reconcile(self) -> None:
        """Finished agents and tests recorded (their end handlers run), budgets enforced, then
        what they queued (tests) started, like `evopilot jobs` does for jobs: no worker needed."""
        await self.scheduler.reconcile()
        await self.task_kinds.tick()
        await self.scheduler.dispatch()

    async def move(self, task_id: int, status: str) -> TaskRow:
        if status not in TASK_STATUSES:
            raise EvopilotError(f"unknown task status {status!r}: one of {', '.join(TASK_STATUSES)}")
        await tasks_db.get_task(self.db, task_id)
        async with jobs_db.transaction(self.db):
            await tasks_db.update_task(self.db, task_id, status=status)
        self._changed(task_id)
        return await tasks_db.get_task(self.db, task_id)

    # ---- attempts --------------------------------------------------------------------------

    async def start(self, task_id: int, agent: str, host: str = LOCAL, *,
                    params: Mapping[str, str] | None = None, sweep_id: int | None = None,
                    group: tuple[str, int] | None = None, target_branch: str | None = None) -> AttemptRow:
        """A new attempt: a worktree on a new branch from the target branch, the setup script
        as a job, then the agent as a job with the task as its prompt."""
        params = dict(params or {})
        agent_cfg = self.config.agent(agent)
        agents.check_params(agent, agent_cfg, params)
        self.config.host(host)
        task = await tasks_db.get_task(self.db, task_id)
        project = await projects_db.get_project_by_id(self.db, task.project_id)
        settings = self.config.tasks.for_project(project.name)
        repo, prefix = await worktrees.toplevel_and_prefix(project.path)
        target = target_branch or settings.target_branch or await worktrees.current_branch(repo)
        base = await worktrees.branch_head(repo, target)
        if base is None:
            raise EvopilotError(f"target branch {target} does not exist in {repo}")
        branch = await self._free_branch(repo, project.id, task)
        async with jobs_db.transaction(self.db):
            attempt_id = await tasks_db.create_attempt(
                self.db, task_id=task.id, agent=agent, host=host, worktree_path="", branch=branch,
                target_branch=target, base_commit=base, branch_head=base, params=params, sweep_id=sweep_id,
                max_dollars=self.config.tasks.max_dollars, max_requests=self.config.tasks.max_requests,
                max_minutes=self.config.tasks.max_minutes, name=task.title[:80], agent_working_dir=prefix)
        path = self._worktree_dir(project.name) / f"{attempt_id}-{agents.slug(task.title)}"
        try:
            await worktrees.add(repo, path, branch, base)
        except EvopilotError as e:
            async with jobs_db.transaction(self.db):
                await tasks_db.update_attempt(self.db, attempt_id, state="failed", error_message=e.message)
            raise
        path = path.resolve()
        remote_dir = None
        if host != LOCAL:  # its agent works in a clone of the branch there (core/tasks/remote.py)
            h = await self.hosts.get(host)
            remote_dir = resolve_remote_dir(h, f"attempts/{self.submitter.instance}-{attempt_id}")
            try:
                await remote.place(h, repo, branch, remote_dir)
            except EvopilotError as e:
                async with jobs_db.transaction(self.db):
                    await tasks_db.update_attempt(self.db, attempt_id, worktree_path=str(path), state="failed",
                                                  error_message=e.message)
                raise
        setup_id = None
        prompt = task.title + (f"\n\n{task.description}" if task.description else "")
        async with jobs_db.transaction(self.db):
            await tasks_db.update_attempt(self.db, attempt_id, worktree_path=str(path), remote_dir=remote_dir,
                                          state="running", agents_hash=agents.agents_hash(path))
            a = await tasks_db.get_attempt(self.db, attempt_id)
            if settings.setup_script:
                setup_id = await self.submitter.new_job(
                    project_id=project.id, kind=SETUP, name=f"setup attempt {attempt_id}",
                    command=settings.setup_script, workdir=kinds.workdir(a), host=host, priority=SETUP_PRIORITY,
                    origin_kind=ORIGIN, origin_id=attempt_id)
                await tasks_db.update_attempt(self.db, attempt_id, setup_job_id=setup_id)
            job_id = await self._new_session(a, project.id, prompt, base, after=setup_id, group=group, followup=False)
            if task.status != "inprogress":
                await tasks_db.update_task(self.db, task.id, status="inprogress")
        self._changed(task.id, attempt_id)
        await publish_jobs(self.db, self.submitter.bus, [j for j in (setup_id, job_id) if j])
        await self.scheduler.dispatch()
        return await tasks_db.get_attempt(self.db, attempt_id)

    async def _free_branch(self, repo: str, project_id: int, task: TaskRow) -> str:
        for n in range(1000):
            name = agents.branch_name(task.id, task.title, n)
            if not await tasks_db.branch_taken(self.db, project_id, name) and \
                    await worktrees.branch_head(repo, name) is None:
                return name
        raise EvopilotError(f"no free branch name for task {task.id}")

    def _worktree_dir(self, project: str) -> Path:
        root = self.config.tasks.worktree_dir
        base = Path(root).expanduser() if root else self.home / "worktrees"
        return base / agents.slug(project)

    async def _new_session(self, a: AttemptRow, project_id: int, prompt: str, head: str | None, *,
                           after: int | None, group: tuple[str, int] | None, followup: bool) -> int:
        """Insert an agent session and its job (inside the caller's transaction)."""
        cfg = self.config.agent(a.agent)
        n = len(await tasks_db.sessions(self.db, a.id)) + 1
        workdir = kinds.workdir(a)
        if a.remote_dir:
            prompt_file = f"{a.remote_dir}.prompt-{n}.md"
            await remote.write_file(await self.hosts.get(a.host), prompt_file, prompt)
        else:
            prompt_file = str(locations.ensure_private_dir(self.home / "prompts") / f"attempt-{a.id}-{n}.md")
            Path(prompt_file).write_text(prompt, encoding="utf-8")
        command = agents.session_command(cfg, prompt=prompt, prompt_file=prompt_file, workdir=workdir,
                                         params=a.params, followup=followup)
        session_id = await tasks_db.create_session(self.db, attempt_id=a.id, agent=a.agent, tty=cfg.tty,
                                                   command=command, prompt=prompt, head_before=head)
        waiting = {"status": JobStatus.PENDING.value, "depends_on": after,
                   "error_message": f"waiting for the setup script (job {after})"} if after else {}
        slot_group, slot_limit = group or (None, None)
        job_id = await self.submitter.new_job(
            project_id=project_id, kind=AGENT, name=f"agent {a.agent} attempt {a.id}", command=command,
            workdir=workdir, host=a.host, priority=0, mode="tty" if cfg.tty else "batch",
            origin_kind=ORIGIN, origin_id=a.id, slot_group=slot_group, slot_limit=slot_limit, **waiting)
        await tasks_db.update_session(self.db, session_id, job_id=job_id)
        return job_id

    async def attempt(self, attempt_id: int) -> dict:
        a = await tasks_db.get_attempt(self.db, attempt_id)
        return {**public_attempt(a),
                "sessions": [s.model_dump() for s in await tasks_db.sessions(self.db, a.id)],
                "turns": await tasks_db.turns(self.db, a.id),
                "costs": await tasks_db.costs(self.db, a.id),
                "merges": await tasks_db.merges(self.db, a.id),
                "branch_problem": await self._branch_problem(a)}

    async def _branch_problem(self, a: AttemptRow) -> str | None:
        if a.state in ("starting", "running") or a.state == "merged":
            return None  # the agent moves it; a merged attempt is history
        repo = await self._repo(a)
        return worktrees.branch_problem(a.branch, a.branch_head, await worktrees.branch_head(repo, a.branch))

    async def _repo(self, a: AttemptRow) -> str:
        task = await tasks_db.get_task(self.db, a.task_id)
        project = await projects_db.get_project_by_id(self.db, task.project_id)
        return await worktrees.toplevel(project.path)

    async def session_job(self, attempt_id: int) -> Job | None:
        sessions = await tasks_db.sessions(self.db, attempt_id)
        for s in reversed(sessions):
            if s.job_id is not None:
                return await self._current(s.job_id)
        return None

    async def _current(self, job_id: int) -> Job:
        job = await jobs_db.get_job(self.db, job_id)
        if job.status == JobStatus.RUNNING:
            await self.scheduler.tick_host(job.host, dispatch_jobs=False)
            job = await jobs_db.get_job(self.db, job_id)
        return job

    async def followup(self, attempt_id: int, prompt: str) -> dict:
        """Type ``prompt`` into the attempt's live tty session; with none live, start a new
        session (the agent's ``followup`` command) in the same worktree."""
        if not prompt.strip():
            raise EvopilotError("an empty follow-up")
        a = await self._usable(attempt_id)
        job = await self.session_job(a.id)
        if job is not None and job.status == JobStatus.RUNNING and job.mode == "tty":
            await interactive.send(await self.hosts.get(job.host), job, prompt)
            session = await tasks_db.session_of_job(self.db, job.id)
            async with jobs_db.transaction(self.db):
                await tasks_db.add_turn(self.db, session.id, prompt)
            return {"typed": True, "job": job.id, "attempt": a.id}
        if job is not None and not job.status.finished:
            raise EvopilotError(f"attempt {a.id}'s agent (job {job.id}) is {job.status.value} and takes no "
                                "input: wait for it to end")
        await self._check_branch(a)
        task = await tasks_db.get_task(self.db, a.task_id)
        async with jobs_db.transaction(self.db):
            job_id = await self._new_session(a, task.project_id, prompt, a.branch_head, after=None, group=None,
                                             followup=True)
            await tasks_db.update_attempt(self.db, a.id, state="running", stop_reason=None, error_message=None)
            if task.status != "inprogress":
                await tasks_db.update_task(self.db, task.id, status="inprogress")
        self._changed(a.task_id, a.id)
        await publish_jobs(self.db, self.submitter.bus, [job_id])
        await self.scheduler.dispatch()
        return {"typed": False, "job": job_id, "attempt": a.id}

    async def stop(self, attempt_id: int) -> AttemptRow:
        """Stop the attempt's running agent (SIGTERM, then SIGKILL): it ends as ``stopped``, its
        work so far committed on its branch."""
        a = await tasks_db.get_attempt(self.db, attempt_id)
        job = await self.session_job(a.id)
        if job is None or job.status.finished:
            raise EvopilotError(f"attempt {a.id} has no agent running")
        async with jobs_db.transaction(self.db):
            await tasks_db.update_attempt(self.db, a.id, stop_reason="stopped by the user")
        if job.status == JobStatus.RUNNING:
            await self.task_kinds.kill(job.id)
        else:  # not started yet: it never will
            async with jobs_db.transaction(self.db):
                await jobs_db.transition(self.db, job.id, JobStatus.CANCELLED, [JobStatus.PENDING, JobStatus.QUEUED])
        await self.reconcile()
        return await tasks_db.get_attempt(self.db, a.id)

    async def _usable(self, attempt_id: int) -> AttemptRow:
        a = await tasks_db.get_attempt(self.db, attempt_id)
        if a.archived:
            raise EvopilotError(f"attempt {a.id} is archived (its worktree is gone)")
        if a.state == "merged":
            raise EvopilotError(f"attempt {a.id} is merged already")
        return a

    async def _check_branch(self, a: AttemptRow) -> None:
        if problem := await self._branch_problem(a):
            raise EvopilotError(f"attempt {a.id}: {problem}; evopilot does not overwrite it")

    async def attach_command(self, attempt_id: int, *, inside_tmux: bool) -> interactive.AttachCommand:
        job = await self.session_job(attempt_id)
        if job is None:
            raise EvopilotError(f"attempt {attempt_id} has no agent session")
        job = interactive.check_attachable(job)
        ssh = None if job.host == LOCAL else self.hosts.ssh_command_args(job.host)
        return interactive.attach_command(job.tmux_session, inside_tmux=inside_tmux, ssh=ssh)

    async def diff(self, attempt_id: int) -> AsyncIterator[bytes]:
        """The attempt's changes against its base: the worktree's (uncommitted work included)
        while it exists, else its branch's."""
        a = await tasks_db.get_attempt(self.db, attempt_id)
        wt = Path(a.worktree_path)
        if not a.archived and wt.is_dir():
            return worktrees.diff_chunks(wt, a.base_commit)
        repo = await self._repo(a)
        tip = await worktrees.branch_head(repo, a.branch)
        if tip is None:
            raise EvopilotError(f"attempt {a.id}: its worktree and its branch {a.branch} are gone")
        return worktrees.diff_chunks(repo, a.base_commit, tip)

    async def test(self, attempt_id: int) -> Job:
        a = await self._usable(attempt_id)
        task = await tasks_db.get_task(self.db, a.task_id)
        command = self.config.tasks.for_project(task.project or "").test_command
        if not command:
            raise EvopilotError(f"project {task.project} has no test command: set [tasks] test_command "
                                f"or [tasks.projects.{task.project}] test_command")
        job = await self.session_job(a.id)
        if job is not None and not job.status.finished:
            raise EvopilotError(f"attempt {a.id}'s agent is still {job.status.value}")
        async with jobs_db.transaction(self.db):
            job_id = await self.submitter.new_job(
                project_id=task.project_id, kind=TEST, name=f"test attempt {a.id}", command=command,
                workdir=kinds.workdir(a), host=a.host, priority=0, origin_kind=ORIGIN, origin_id=a.id)
            await tasks_db.update_attempt(self.db, a.id, test_job_id=job_id, tests_passed=None,
                                          state="testing" if a.state in ("ready", "testing") else a.state)
        self._changed(a.task_id, a.id)
        await publish_jobs(self.db, self.submitter.bus, [job_id])
        await self.scheduler.dispatch()
        return await jobs_db.get_job(self.db, job_id)

    async def merge(self, attempt_id: int) -> dict:
        """Merge the attempt's branch into its target branch (a merge commit). A conflict changes
        nothing: the target branch, the worktree and the attempt stay as they were."""
        a = await self._usable(attempt_id)
        if a.state in ("starting", "running", "testing"):
            raise EvopilotError(f"attempt {a.id} is {a.state}: merge it once it is ready")
        await self._check_branch(a)
        wt = Path(a.worktree_path)
        if wt.is_dir() and (dirty := await worktrees.uncommitted(wt)):
            raise EvopilotError(f"attempt {a.id} has uncommitted changes in {wt} ({', '.join(dirty[:5])}): "
                                "commit them (or send a follow-up) before merging")
        repo = await self._repo(a)
        task = await tasks_db.get_task(self.db, a.task_id)
        result = await worktrees.merge(repo, a.branch, a.target_branch,
                                       f"Merge {a.branch}: {task.title}\n\nevopilot attempt {a.id} ({a.agent})")
        if result.conflicts:
            return {"merged": False, "attempt": a.id, "target_branch": a.target_branch, "commit": None,
                    "conflicts": result.conflicts}
        async with jobs_db.transaction(self.db):
            await tasks_db.add_merge(self.db, attempt_id=a.id, kind="direct", target_branch=a.target_branch,
                                     merge_commit=result.commit)
            await tasks_db.update_attempt(self.db, a.id, state="merged")
            await tasks_db.update_task(self.db, task.id, status="done")
        self._changed(task.id, a.id)
        return {"merged": True, "attempt": a.id, "target_branch": a.target_branch, "commit": result.commit,
                "conflicts": []}

    async def archive(self, attempt_id: int, *, force: bool = False) -> AttemptRow:
        """Run the cleanup script, remove the worktree (never with uncommitted work unless
        ``force``) and mark the attempt archived; its branch and commits stay."""
        a = await tasks_db.get_attempt(self.db, attempt_id)
        if a.archived:
            return a
        job = await self.session_job(a.id)
        if job is not None and not job.status.finished:
            raise EvopilotError(f"attempt {a.id}'s agent (job {job.id}) is {job.status.value}: "
                                f"stop it first (`evopilot stop {job.id}`)")
        repo = await self._repo(a)
        wt = Path(a.worktree_path)
        if not a.worktree_path:  # its worktree was never made (the start failed)
            async with jobs_db.transaction(self.db):
                await tasks_db.update_attempt(self.db, a.id, archived=1)
            return await tasks_db.get_attempt(self.db, a.id)
        if wt.is_dir() and not force and (dirty := await worktrees.uncommitted(wt)):
            raise EvopilotError(f"attempt {a.id} has uncommitted work in {wt} ({', '.join(dirty[:5])}): "
                                "archive --force deletes it")
        task = await tasks_db.get_task(self.db, a.task_id)
        cleanup = self.config.tasks.for_project(task.project or "").cleanup_script
        if cleanup and wt.is_dir():  # where its jobs ran: on its host
            res = await (await self.hosts.get(a.host)).run(f"cd {quote(kinds.workdir(a))} && {cleanup}",
                                                           timeout=CLEANUP_TIMEOUT)
            if not res.ok and not force:
                raise EvopilotError(f"the cleanup script failed in {kinds.workdir(a)} on {a.host}: "
                                    f"{res.error_text()}; --force archives anyway")
        if a.remote_dir:
            await remote.remove(await self.hosts.get(a.host), a.remote_dir, force=force)
        await worktrees.remove(repo, wt, force=force)
        async with jobs_db.transaction(self.db):
            await tasks_db.update_attempt(self.db, a.id, archived=1)
        self._changed(a.task_id, a.id)
        return await tasks_db.get_attempt(self.db, a.id)

    # ---- sweeps ----------------------------------------------------------------------------

    async def sweep(self, task_id: int, agent_names: Sequence[str], param_texts: Sequence[str] = (),
                    *, max_parallel: int | None = None, time_budget: float | None = None) -> SweepRow:
        """One attempt per cell of the matrix (each agent with every combination of the
        parameters' values, ``param_texts`` as ``NAME=V1,V2``), at most ``max_parallel`` agents
        at once, all stopped once ``time_budget`` seconds have passed."""
        params = dict(sweeps.parse_param(p) for p in param_texts)
        if len(params) != len(param_texts):
            raise EvopilotError("--param: a parameter is given twice")
        if max_parallel is not None and max_parallel < 1:
            raise EvopilotError("--max-parallel must be 1 or more")
        check_timeout(time_budget, "--time-budget")
        cells = sweeps.expand(agent_names, params)
        for agent, cell in cells:
            agents.check_params(agent, self.config.agent(agent), cell)
        await tasks_db.get_task(self.db, task_id)
        limits = {k: v for k, v in (("max_dollars", self.config.tasks.max_dollars),
                                    ("max_requests", self.config.tasks.max_requests),
                                    ("max_minutes", self.config.tasks.max_minutes)) if v is not None}
        async with jobs_db.transaction(self.db):
            sweep_id = await tasks_db.create_sweep(
                self.db, task_id=task_id, matrix={"agents": list(agent_names), "params": {k: list(v) for k, v in params.items()}},
                limits=limits, max_parallel=max_parallel, time_budget_s=time_budget)
        group = (f"sweep-{sweep_id}", max_parallel) if max_parallel else None
        for agent, cell in cells:
            await self.start(task_id, agent, params=cell, sweep_id=sweep_id, group=group)
        return await tasks_db.get_sweep(self.db, sweep_id)

    async def sweep_status(self, sweep_id: int, *, reconcile: bool = True) -> dict:
        if reconcile:
            await self.reconcile()
        s = await tasks_db.get_sweep(self.db, sweep_id)
        rows = []
        for a in await tasks_db.attempts(self.db, sweep_id=s.id):
            rows.append({"attempt": a.id, "agent": a.agent, "params": a.params, "state": a.state,
                         "tests_passed": a.tests_passed, "files_changed": a.files_changed,
                         "lines_changed": a.lines_changed, "tokens": a.tokens_in + a.tokens_out,
                         "cost_usd": round(a.dollars, 6), "seconds": round(a.agent_seconds, 3),
                         "stop_reason": a.stop_reason, "error_message": a.error_message,
                         "champion": a.id == s.champion_attempt_id})
        return {"id": s.id, "task_id": s.task_id, "state": s.state, "matrix": s.matrix, "limits": s.limits,
                "max_parallel": s.max_parallel, "time_budget_s": s.time_budget_s,
                "champion": s.champion_attempt_id, "error_message": s.error_message,
                "started_at": s.started_at, "completed_at": s.completed_at, "rows": rows}

    # ---- templates (reusable prompt snippets) and scratch (drafts, UI preferences) -----------

    async def templates(self) -> dict[str, str]:
        return await tasks_db.templates(self.db)

    async def put_template(self, name: str, content: str) -> None:
        if not name.strip():
            raise EvopilotError("a template needs a name")
        async with jobs_db.transaction(self.db):
            await tasks_db.put_template(self.db, name.strip(), content)

    async def scratch(self, kind: str, key: str):
        """A draft or preference saved with ``put_scratch`` (None when there is none)."""
        return await tasks_db.get_scratch(self.db, kind, key)

    async def put_scratch(self, kind: str, key: str, payload) -> None:
        async with jobs_db.transaction(self.db):
            await tasks_db.put_scratch(self.db, kind, key, payload)

    async def attempt_jobs(self, attempt_id: int) -> list[int]:
        """Every job of the attempt (setup, sessions, tests), oldest first."""
        return await tasks_db.attempt_jobs(self.db, attempt_id)

