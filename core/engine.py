"""The one facade the TUI and the CLI talk to.

It opens the database and wires the services, each with one job:

- ``Projects`` (core/projects.py): projects, benchmarks, the dependency check;
- ``Submitter`` (core/jobs/submit.py): queueing benchmarks, commands and retries;
- ``Control`` (core/jobs/control.py): stop, kill, cancel, reorder, pause;
- ``Scheduler`` (core/jobs/scheduler.py): the loop that monitors, dispatches and runs the
  end handlers of job kinds (core/jobs/kinds.py);
- ``HostRegistry`` (core/hosts/registry.py): the hosts and their connections;
- ``EventBus`` (core/events.py): typed events to subscribers, on bounded queues;
- ``Evolution`` (core/evolution/service.py): experiments, whose evaluations are jobs of the
  ``evaluation`` kind;
- ``Tasks`` (core/tasks/service.py): tasks and coding-agent attempts, whose agent sessions,
  setup scripts and tests are jobs of the ``agent``, ``attempt_setup`` and ``attempt_test`` kinds.

The methods below only delegate; subsystems (evolution, tasks) use the services, register
their job kinds on ``kinds`` and never reach into each other. Everything here is async and runs
in the caller's event loop; nothing blocks it for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from evopilot.core import locations
from evopilot.core.config import LOCAL, Config
from evopilot.core.db import connect as db_connect
from evopilot.core.db import evolution as evo_db
from evopilot.core.db import jobs as jobs_db
from evopilot.core.db import projects as projects_db
from evopilot.core.errors import EvopilotError
from evopilot.core.events import EventBus, Subscription
from evopilot.core.hosts.base import Host
from evopilot.core.evolution.evaluation import EVALUATION, MUTATION
from evopilot.core.hosts.registry import HostRegistry
from evopilot.core import environments
from evopilot.core.jobs import background, interactive
from evopilot.core.jobs.control import Control
from evopilot.core.jobs.kinds import KindRegistry
from evopilot.core.jobs.publish import ExternalChanges
from evopilot.core.jobs.scheduler import Scheduler
from evopilot.core.jobs.submit import Submitter
from evopilot.core.models import Job, JobStatus
from evopilot.core.projects import Projects
from evopilot.core.status import check_status
from evopilot.core.tasks.kinds import TaskKinds
from evopilot.core.waits import wait_set

if TYPE_CHECKING:
    from evopilot.core.jobs.logread import LogReader


ADOPT_POLL = 2.0


class Engine:
    def __init__(self, config: Config, home: Path, db: aiosqlite.Connection, instance: str) -> None:
        self.config = config
        self.home = home
        self.db = db
        self.instance = instance
        self.bus = EventBus()
        self.kinds = KindRegistry()
        self.hosts_registry = HostRegistry(config, home, self.bus)
        self.projects = Projects(db, config, home)
        self.scheduler = Scheduler(db, config, instance, self.hosts_registry, self.kinds, self.bus)
        self.submitter = Submitter(db, config, home, instance, self.hosts_registry, self.projects,
                                   self.kinds, self.bus, self.scheduler.dispatch)
        self.control = Control(db, config, self.hosts_registry, self.bus, self.scheduler)
        self.workspaces = self.submitter.workspaces
        self.scheduler.add_tick_hook(self.workspaces.sweep)  # trees of commits no job needs any more
        # an experiment between evaluations keeps `worker --until-idle` going
        self.scheduler.add_busy_check(lambda: evo_db.any_running_experiment(db))
        for kind in (EVALUATION, MUTATION):  # every process handles evaluation ends, loop or not
            self.kinds.register(kind)
        self._task_kinds = TaskKinds(db, config, self.submitter.new_job, self.control.kill, self.hosts_registry.get)
        for kind in self._task_kinds.kinds():  # agent sessions, setup scripts and tests of attempts
            self.kinds.register(kind)
        self.scheduler.add_tick_hook(self._task_kinds.tick)  # budgets of agents and sweeps
        self._evolution = None
        self._tasks = None
        self._external = ExternalChanges(db, self.bus)

    @property
    def evolution(self):
        """Code evolution (core/evolution/service.py), loaded on first use: numpy and the
        archive are not needed by most commands."""
        if self._evolution is None:
            from evopilot.core.evolution.service import Evolution

            self._evolution = Evolution(self.db, self.submitter, self.bus)
        return self._evolution

    @property
    def tasks(self):
        """Tasks and coding-agent attempts (core/tasks/service.py, its docstring lists the API)."""
        if self._tasks is None:
            from evopilot.core.tasks.service import Tasks

            self._tasks = Tasks(self.db, self.config, self.home, self.submitter, self.scheduler,
                                self.hosts_registry, self._task_kinds)
        return self._tasks

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, config: Config, home: Path) -> "Engine":
        locations.ensure_private_dir(home)
        locations.ensure_private_dir(locations.logs_dir(home))
        db = await db_connect.connect(locations.db_path(home))
        instance = await jobs_db.meta(db, "instance")
        return cls(config, home, db, instance or "0")

    def database_error(self, e: Exception) -> EvopilotError:
        """The one-line error for a database failure (corrupted, disk full, read-only)."""
        return db_connect.database_error(locations.db_path(self.home), e)

    async def close(self) -> None:
        await self.scheduler.close()
        await self.workspaces.close()
        await self.hosts_registry.close()
        await self.db.close()

    async def __aenter__(self) -> "Engine":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- events ----------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        return self.bus.subscribe()

    def unsubscribe(self, q: Subscription) -> None:
        self.bus.unsubscribe(q)

    async def changed(self) -> bool:
        """Whether another process (the CLI, another worker) committed to the database since
        the last call: one ``PRAGMA data_version``, no table read."""
        return await self._external.changed()

    async def publish_changes(self) -> bool:
        """If another process committed since the last call, put the jobs it changed and the
        queue's state on the bus as events; False when nothing changed."""
        return await self._external.publish()

    async def has_experiments(self) -> bool:
        """Whether any experiment exists (cheap: no evolution code is loaded to answer; the
        Archive tab asks it until there is one)."""
        return await evo_db.any_experiment(self.db)

    async def adopt_experiments(self, stop: asyncio.Event) -> None:
        """Run detached or orphaned experiments until ``stop`` (the worker's and the app's
        share of evolution); the evolution code is loaded once the first experiment exists."""
        while not await evo_db.any_experiment(self.db):
            if await wait_set(stop, ADOPT_POLL):
                return
        await self.evolution.adopt(stop)

    # ---- hosts -----------------------------------------------------------------------------

    async def host(self, name: str) -> Host:
        return await self.hosts_registry.get(name)

    async def hosts(self) -> list[dict]:
        """Each host with its state, running jobs, free slots, last error and load (CPU load,
        memory, GPUs: the local one read now, an SSH host's from its monitor's last probe)."""
        from evopilot.core.hosts.probe import local_load

        await self.hosts_registry.ask_local_clusters()
        return self.hosts_registry.rows(await jobs_db.running_per_host(self.db),
                                        await asyncio.to_thread(local_load))

    async def connect_host(self, name: str) -> dict:
        """Connect (or reconnect) a host now; returns its row as ``hosts()`` gives it."""
        await self.hosts_registry.reconnect(name)
        return next(h for h in await self.hosts() if h["name"] == name)

    async def doctor(self, name: str) -> list:
        return await self.hosts_registry.doctor(name)

    async def sync(self, project_name: str, host_name: str, *, dry_run: bool = False):
        """Send the project's files to its directory on the host; returns (status, report)."""
        from evopilot.core.hosts.sync import sync, sync_status

        if host_name == LOCAL:
            raise EvopilotError("the local host runs projects in place: nothing to sync")
        project = await projects_db.get_project(self.db, project_name)
        host = await self.host(host_name)
        remote = environments.project_dir(host, project)
        status = await sync_status(Path(project.path), host, remote)
        report = await sync(Path(project.path), host, remote, dry_run=dry_run)
        return status, report

    # ---- projects, benchmarks, dependencies ------------------------------------------------

    async def add_project(self, path, name=None, python=None, *, force=False):
        return await self.projects.add(path, name, python, force=force)

    async def list_projects(self):
        return await self.projects.list()

    async def project(self, name: str):
        return await self.projects.get(name)

    async def remove_project(self, name: str) -> None:
        await self.projects.remove(name)

    async def add_benchmarks(self, project_name, files):
        return await self.projects.add_benchmarks(project_name, files)

    async def remove_benchmark(self, project_name: str, ref: str):
        """Remove a benchmark from its project (its jobs are kept); returns it."""
        return await self.projects.remove_benchmark(project_name, ref)

    async def list_benchmarks(self, project_name=None):
        return await self.projects.benchmarks(project_name)

    async def deps(self, project_name: str, bench_ref: str):
        return await self.projects.deps(project_name, bench_ref)

    async def deps_tree(self, project_name: str, bench_ref: str) -> list[str]:
        """``deps`` as the text lines of its tree (what ``evopilot deps`` prints)."""
        from evopilot.core.analysis import render_tree

        return render_tree(await self.deps(project_name, bench_ref))

    async def fix_deps(self, project_name: str, bench_ref: str) -> list[str]:
        return await self.projects.fix_deps(project_name, bench_ref)

    # ---- jobs ------------------------------------------------------------------------------

    async def run(self, project_name, benches, **options) -> list[Job]:
        """Queue one job per benchmark (see ``Submitter.run`` for the options)."""
        return await self.submitter.run(project_name, benches, **options)

    async def submit(self, command: str, **options) -> Job:
        return await self.submitter.submit(command, **options)

    async def retry(self, job_id: int) -> Job:
        return await self.submitter.retry(job_id)

    async def jobs(self, *, status=None, project=None, host=None, limit=None, offset=0,
                   newest_first=False, reconcile=True, text=None, sort=None) -> list[Job]:
        """Jobs by filters; ``text``: in project, benchmark, host, status or error; ``sort``:
        a column of ``jobs_db.SORTS``."""
        if status:
            status = [check_status(s) for s in status]
        if project:
            await self.projects.get(project)  # an unknown name is an error, not an empty list
        if sort is not None and sort not in jobs_db.SORTS:
            raise EvopilotError(f"unknown sort {sort!r}: one of {', '.join(jobs_db.SORTS)}")
        if reconcile:
            await self.scheduler.reconcile()
        return await jobs_db.list_jobs(self.db, status=status, project=project, host=host,
                                       limit=limit, offset=offset, newest_first=newest_first,
                                       text=text, sort=sort)

    async def count_jobs(self, **filters) -> int:
        return await jobs_db.count_jobs(self.db, **filters)

    async def job(self, job_id: int) -> Job:
        return await jobs_db.get_job(self.db, job_id)

    async def metric_history(self, job_id: int, runs: int = 40) -> dict[str, list[tuple[int, float]]]:
        """Each metric of the last ``runs`` runs of the job's benchmark up to this job, oldest
        first: name -> [(job id, value)] (for a sparkline)."""
        return await jobs_db.metric_history(self.db, await jobs_db.get_job(self.db, job_id), runs)

    async def job_steps(self, job_id: int) -> list[dict]:
        return await jobs_db.steps(self.db, job_id)

    def log_reader(self, job: Job) -> "LogReader":
        """The reader of a job's log (for a remote job, its local mirror)."""
        from evopilot.core.jobs import logread  # numpy (its line index) only for logs

        if not job.log_path:
            raise EvopilotError(f"job {job.id} has no log yet (it is {job.status.value})")
        return logread.LogReader(job.log_path)

    def follow_log(self, job: Job, offset: int = 0) -> AsyncIterator[bytes]:
        """A job's log from ``offset`` as it grows, until the job has finished; a running job's
        host is asked for its latest bytes every poll interval."""
        from evopilot.core.jobs import logread

        reader = self.log_reader(job)

        async def running() -> bool:
            nonlocal job
            if job.status == JobStatus.RUNNING:
                await self.tick_host(job.host, dispatch_jobs=False)
            job = await jobs_db.get_job(self.db, job.id)
            return not job.status.finished

        return logread.follow(reader, offset, running=running, interval=self.config.engine.poll_interval)

    async def clean(self, *, older_than: str | None = None, statuses: list[str] | None = None):
        """Remove finished jobs (rows, job directories, log copies): see core/jobs/clean.py."""
        from evopilot.core.jobs import clean

        age = clean.parse_age(older_than) if older_than else None
        return await clean.clean(self.db, self.hosts_registry, self.home, older_than=age,
                                 statuses=clean.parse_statuses(statuses))

    async def stop(self, job_id: int) -> Job:
        return await self.control.stop(job_id)

    async def kill(self, job_id: int) -> Job:
        return await self.control.kill(job_id)

    # ---- interactive jobs (core/jobs/interactive.py) ---------------------------------------

    async def interactive_job(self, job_id: int) -> Job:
        """The job if a line can be typed into it now (a running tty job); else an error."""
        return interactive.check_interactive(await self._current(job_id))

    async def send(self, job_id: int, text: str) -> Job:
        """Type ``text`` and Enter into a running tty job's terminal."""
        job = await self.interactive_job(job_id)
        await interactive.send(await self.host(job.host), job, text)
        return job

    async def attach_command(self, job_id: int, *, inside_tmux: bool) -> interactive.AttachCommand:
        """The command that shows a running job's tmux session on this terminal."""
        job = interactive.check_attachable(await self._current(job_id))
        ssh = None if job.host == LOCAL else self.hosts_registry.ssh_command_args(job.host)
        return interactive.attach_command(job.tmux_session, inside_tmux=inside_tmux, ssh=ssh)

    async def _current(self, job_id: int) -> Job:
        """The job as its host has it now: a running one may have ended meanwhile."""
        job = await jobs_db.get_job(self.db, job_id)
        if job.status == JobStatus.RUNNING:
            await self.tick_host(job.host, dispatch_jobs=False)
            job = await jobs_db.get_job(self.db, job_id)
        return job

    async def cancel(self, job_id: int) -> Job:
        return await self.control.cancel(job_id)

    async def move(self, job_id: int, where: str) -> Job:
        return await self.control.move(job_id, where)

    async def queue_paused(self) -> bool:
        return await self.control.queue_paused()

    async def set_queue_paused(self, paused: bool) -> list[str]:
        return await self.control.set_queue_paused(paused)

    async def queue(self) -> list[Job]:
        """Queued and pending jobs in the order they will start."""
        return await jobs_db.queue_order(self.db)

    async def queue_positions(self) -> dict[int, int]:
        """Each queued or pending job's place in the queue, from 1."""
        return await jobs_db.queue_positions(self.db)

    # ---- the background worker (core/jobs/background.py) -----------------------------------

    async def ensure_worker(self, config_file: str | None = None) -> str | None:
        """Start a background worker if jobs are queued or running and no worker is alive;
        its tmux session, or None."""
        return await background.ensure(self.db, self.config, self.home, self.instance, config_file)

    async def worker_state(self) -> background.WorkerState:
        return await background.state(self.db, self.config, self.home)

    async def serve_in_background(self, on_error=None) -> bool:
        """The background worker's life: hold the lock, run until idle, let go, and go on if
        work came meanwhile; False at once if another background worker holds the lock."""
        lock = background.WorkerLock(self.home)
        served = False
        while await background.take(self.db, lock):
            served = True
            try:
                await self.run_forever(until_idle=True, on_error=on_error)
                stuck = await background.work_ids(self.db)  # only unreachable hosts could move these
            finally:
                await background.leave(self.db, lock)
            if not await background.work_ids(self.db) - stuck:
                break  # else a command queued work while we were leaving: serve it
        return served

    # ---- the loop --------------------------------------------------------------------------

    async def dispatch(self) -> None:
        await self.scheduler.dispatch()

    async def tick_host(self, name: str, *, dispatch_jobs: bool = True) -> None:
        await self.scheduler.tick_host(name, dispatch_jobs=dispatch_jobs)

    async def stalled(self) -> list[tuple[Job, str]]:
        """Running or queued jobs on hosts that cannot be reached now, with the host's error."""
        return await self.scheduler.stalled()

    async def run_forever(self, **options) -> None:
        """The worker loop (see ``Scheduler.run_forever``)."""
        await self.scheduler.run_forever(**options)

