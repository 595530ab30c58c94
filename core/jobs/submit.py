"""Putting jobs in the queue: benchmarks of a project, arbitrary commands, retries.

A benchmark first needs the project's environment (``core.environments``: a setup job, which
the benchmarks wait for as ``pending``, when it is not current), and on a remote host the
project's files there (synced). Queueing ends by
asking the scheduler to start what fits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiosqlite

from evopilot.core import locations
from evopilot.core.config import LOCAL, Config, check_timeout
from evopilot.core.db import jobs as jobs_db
from evopilot.core.db import projects as projects_db
from evopilot.core.errors import EvopilotError
from evopilot.core.events import EventBus
from evopilot.core.hosts.registry import HostRegistry
from evopilot.core import environments
from evopilot.core.importroots import has_src, import_roots
from evopilot.core.jobs.kinds import KindRegistry
from evopilot.core.jobs.publish import publish_jobs
from evopilot.core.models import FINISHED, Job, JobStatus, Project
from evopilot.core.projects import Projects
from evopilot.core.workspace import Workspaces

class Submitter:
    def __init__(self, db: aiosqlite.Connection, config: Config, home: Path, instance: str,
                 hosts: HostRegistry, projects: Projects, kinds: KindRegistry, bus: EventBus,
                 dispatch: Callable[[], Awaitable[None]]) -> None:
        self.db, self.config, self.home, self.instance = db, config, home, instance
        self.hosts, self.projects, self.kinds, self.bus = hosts, projects, kinds, bus
        self.dispatch = dispatch
        """Start what fits in the hosts' free slots (the scheduler's)."""
        self.workspaces = Workspaces(
            db, config, home, instance, host=hosts.get, connected_host=hosts.connected,
            new_job=self._new_job, emit_jobs=lambda ids: publish_jobs(db, bus, ids))

    async def run(
        self, project_name: str, benches: Sequence[str], *, host: str = LOCAL, priority: int = 0,
        timeout: float | None = None, args: Sequence[str] = (), check: bool = True,
        kind: str = "benchmark", origin: tuple[str, int] | None = None, tty: bool = False,
        commit: str | None = None, group: tuple[str, int] | None = None,
    ) -> list[Job]:
        """Queue one job per benchmark, then start what fits in the host's free slots.

        With ``check``, the benchmarks' dependencies are analysed first (see
        ``Projects.preflight``). ``kind`` and ``origin`` let a subsystem queue benchmark-shaped
        jobs of its own kind (an evaluation owned by an evolution iteration). With ``tty``, each
        runs on its tmux pane's terminal (see ``core.jobs.interactive``). ``commit`` (a branch,
        tag or sha): run on that commit's files (``core.workspace``) instead of the working tree.
        ``group`` (name, limit): at most ``limit`` jobs of that group run at once, over all hosts.
        """
        self.config.host(host)
        if self.kinds.get(kind).workspace != "project":
            raise ValueError(f"jobs of kind {kind!r} run in a given workdir: queue them with submit()")
        check_timeout(timeout, "--timeout")
        project = await projects_db.get_project(self.db, project_name)
        resolved = [await self.projects.resolve_benchmark(project, b) for b in benches]
        warnings: list[str] = []

        async def preflight(root: Path | None = None) -> None:
            warnings.extend(await self.projects.preflight(project, resolved, host, root))

        placed = None if commit is None else await self.workspaces.prepare(
            project, [b.path for b in resolved], host, commit, check=preflight if check else None)
        if check and not placed:
            await preflight()
        if placed:
            workdir, setup_id = placed.workdir, placed.setup_id
        elif host == LOCAL:
            workdir, setup_id = await self._prepare_local(project)
        else:
            workdir, setup_id = await self._prepare_remote(project, host)
        roots = import_roots(workdir, has_src(Path(project.path)))
        origin_kind, origin_id = origin or (None, None)
        slot_group, slot_limit = group or (None, None)
        ids = []
        async with jobs_db.transaction(self.db):
            for b in resolved:
                command = (placed.command(b.path, args) if placed else environments.run_command(
                    environments.working_env(workdir), roots, b.path, args))
                job_id = await self._new_job(
                    project_id=project.id, kind=kind, name=b.name,
                    benchmark_path=b.path, args=list(args), workdir=workdir, host=host,
                    command=command, priority=priority, timeout_s=timeout,
                    commit_sha=placed.sha if placed else None,
                    origin_kind=origin_kind, origin_id=origin_id, slot_group=slot_group, slot_limit=slot_limit,
                    mode="tty" if tty else self.kinds.get(kind).mode, **_waiting_for(setup_id),
                )
                ids.append(job_id)
                for warning in warnings:  # shown by `run` and in the job's steps
                    await jobs_db.add_step(self.db, job_id, "preflight", "check", "warning", warning)
        if placed:  # the jobs hold their tree now (if inserting failed, the claim just expires)
            await placed.done(ids)
        await publish_jobs(self.db, self.bus, ids)
        await self.dispatch()
        return [await jobs_db.get_job(self.db, i) for i in ids]

    async def submit(self, command: str, *, name: str = "command", workdir: str | None = None,
                     host: str = LOCAL, priority: int = 0, timeout: float | None = None,
                     kind: str = "command", origin: tuple[str, int] | None = None,
                     tty: bool = False) -> Job:
        """Queue an arbitrary shell command as a job (of ``kind``, owned by ``origin``; ``tty``:
        on its pane's terminal, else the kind's mode)."""
        self.config.host(host)
        check_timeout(timeout, "a job's timeout")
        if self.kinds.get(kind).workspace != "workdir":
            raise ValueError(f"jobs of kind {kind!r} run in their project's files: queue them with run()")
        origin_kind, origin_id = origin or (None, None)
        async with jobs_db.transaction(self.db):
            job_id = await self._new_job(
                project_id=None, kind=self.kinds.get(kind).name, name=name, command=command,
                workdir=workdir or str(Path.cwd()), host=host, priority=priority, timeout_s=timeout,
                mode="tty" if tty else self.kinds.get(kind).mode, origin_kind=origin_kind, origin_id=origin_id,
            )
        await publish_jobs(self.db, self.bus, [job_id])
        return await jobs_db.get_job(self.db, job_id)

    async def retry(self, job_id: int) -> Job:
        """A new job with the same inputs (project, benchmark, arguments, host, priority)."""
        old = await jobs_db.get_job(self.db, job_id)
        if old.status not in FINISHED:
            raise EvopilotError(f"cannot retry job {job_id}: it is {old.status.value}")
        placed = None
        if old.commit_sha and old.benchmark_path:  # its tree may be gone: place it again
            if old.project is None:
                raise EvopilotError(f"cannot retry job {job_id}: its project was removed")
            placed = await self.workspaces.prepare(
                await projects_db.get_project(self.db, old.project), [old.benchmark_path],
                old.host, old.commit_sha)
        async with jobs_db.transaction(self.db):
            new_id = await self._new_job(
                project_id=old.project_id, kind=old.kind, name=old.name,
                benchmark_path=old.benchmark_path, args=old.args,
                command=placed.command(old.benchmark_path, old.args) if placed else old.command,
                workdir=placed.workdir if placed else old.workdir, host=old.host,
                priority=old.priority, timeout_s=old.timeout_s, retry_of=old.id, mode=old.mode,
                commit_sha=old.commit_sha, origin_kind=old.origin_kind, origin_id=old.origin_id,
                slot_group=old.slot_group, slot_limit=old.slot_limit,
                **_waiting_for(placed and placed.setup_id),
            )
            await jobs_db.redirect_dependents(self.db, old.id, new_id)
        if placed:
            await placed.done([new_id])
        await publish_jobs(self.db, self.bus, [new_id])
        await self.dispatch()
        return await jobs_db.get_job(self.db, new_id)

    async def new_job(self, **fields) -> int:
        """Insert a job row (jobs_db.insert_job's fields) inside the caller's transaction: for a
        subsystem whose jobs need what ``submit`` does not take (``depends_on``, a slot group) or
        that queues one from an end handler. The caller publishes it and dispatches."""
        return await self._new_job(**fields)

    async def _new_job(self, **fields) -> int:
        """Insert a job; a remote one gets the path of its log's local copy."""
        job_id = await jobs_db.insert_job(self.db, **fields)
        if fields["host"] != LOCAL:
            mirror = locations.logs_dir(self.home) / f"{self.instance}-{job_id}.log"
            await jobs_db.update_job(self.db, job_id, log_path=str(mirror))
        return job_id

    async def _prepare_local(self, project: Project) -> tuple[str, int | None]:
        """Queue a setup job for the project's .venv unless it is current (one read of the
        marker and the two files it was built from: cheap for every run)."""
        if environments.local_marker(project) == environments.env_key(project):
            return project.path, None
        waiting_for = await jobs_db.active_setup_job(self.db, project.id, LOCAL)
        if waiting_for:
            return project.path, waiting_for
        cfg = self.config.host(LOCAL)
        await environments.check_python(cfg.uv_path, project.python_version)
        return project.path, await self._queue_setup(
            project, LOCAL, project.path, environments.setup_command(project, cfg, None))

    async def _prepare_remote(self, project: Project, host_name: str) -> tuple[str, int | None]:
        """Sync the project to the host; queue a setup job unless its environment is current.

        Returns the project's directory there and the setup job the benchmarks must wait for.
        """
        from evopilot.core.hosts.sync import sync

        host = await self.hosts.get(host_name)
        remote = environments.project_dir(host, project)
        await sync(Path(project.path), host, remote)
        key = environments.env_key(project)
        have = (await host.run(environments.check_script(remote))).stdout.decode(errors="replace").strip()
        if have == key:
            return remote, None
        waiting_for = await jobs_db.active_setup_job(self.db, project.id, host_name)
        if waiting_for:
            return remote, waiting_for
        return remote, await self._queue_setup(
            project, host_name, remote, environments.setup_command(project, self.config.host(host_name), key))

    async def _queue_setup(self, project: Project, host: str, workdir: str, command: str) -> int:
        async with jobs_db.transaction(self.db):
            setup_id = await self._new_job(
                project_id=project.id, kind="setup", name=f"setup {project.name}", command=command,
                workdir=workdir, host=host, priority=environments.SETUP_PRIORITY,
            )
        await publish_jobs(self.db, self.bus, [setup_id])
        return setup_id


def _waiting_for(setup_id: int | None) -> dict:
    """A new job's fields: pending on its host's environment setup, or queued."""
    if not setup_id:
        return {"status": JobStatus.QUEUED.value}
    return {"status": JobStatus.PENDING.value, "depends_on": setup_id,
            "error_message": f"waiting for environment setup (job {setup_id})"}
