"""The one facade the TUI and the CLI talk to.

It owns the database connection, the hosts and the job loop, and publishes typed events
(``core.models.Event``) to subscribers. Everything here is async and runs in the caller's event
loop; nothing blocks it for long (subprocesses and SSH are awaited, SQLite runs in aiosqlite's
thread).
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from contextlib import contextmanager
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from typing import TYPE_CHECKING

import aiosqlite

from evopilot.core import locations
from evopilot.core.config import LOCAL, Config
from evopilot.core.db import connect as db_connect
from evopilot.core.db import jobs as jobs_db
from evopilot.core.db import projects as projects_db
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.hosts.local import LocalHost
from evopilot.core.hosts.tmux import join
from evopilot.core.jobs import environments, scripts
from evopilot.core.jobs.dispatch import dispatch, done_channel
from evopilot.core.jobs.monitor import Monitor
from evopilot.core.models import (
    FINISHED, Benchmark, Event, HostEvent, Job, JobEvent, JobStatus, Project, QueueEvent,
)
from evopilot.core.workspace import Workspaces

if TYPE_CHECKING:
    from evopilot.core.analysis import DependencyAnalysis

WAKE_COALESCE = 0.02


class Engine:
    def __init__(self, config: Config, home: Path, db: aiosqlite.Connection, instance: str) -> None:
        self.config = config
        self.home = home
        self.db = db
        self.instance = instance
        self.claimer = f"{socket.gethostname()}:{os.getpid()}"
        self._hosts: dict[str, Host] = {}
        self._monitor = Monitor(db, config)
        self._subscribers: list[asyncio.Queue[Event]] = []
        self._tasks: set[asyncio.Task] = set()
        self._killing: set[int] = set()  # jobs past their timeout with a kill under way
        # One tick at a time per host (the loop's and a command's), hosts independently: a slow
        # or unreachable host must not hold up the others. The database serializes its writes.
        self._host_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._wake = asyncio.Event()
        self._watchers: dict[str, asyncio.Task] = {}
        self._next_remote_tick: dict[str, float] = {}
        self.workspaces = Workspaces(
            db, config, home, instance, host=self.host, new_job=self._new_job,
            emit_jobs=self._emit_jobs, connected_host=self._connected_host)

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, config: Config, home: Path) -> "Engine":
        locations.ensure_private_dir(home)
        locations.ensure_private_dir(locations.logs_dir(home))
        db = await db_connect.connect(locations.db_path(home))
        instance = await jobs_db.meta(db, "instance")
        return cls(config, home, db, instance or "0")

    async def close(self) -> None:
        tasks = [*self._tasks, *self._watchers.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # their subprocesses are reaped
        for h in self._hosts.values():
            await h.close()
        await self.db.close()

    async def __aenter__(self) -> "Engine":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- events ----------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event]) -> None:
        self._subscribers.remove(q)

    def _emit(self, event: Event) -> None:
        for q in self._subscribers:
            q.put_nowait(event)

    async def _emit_jobs(self, ids: Iterable[int], previous: dict[int, JobStatus] | None = None) -> None:
        if not self._subscribers:  # nobody listening: skip reading the rows
            return
        for job_id in ids:
            job = await jobs_db.get_job(self.db, job_id)
            self._emit(JobEvent(job=job, previous=(previous or {}).get(job_id)))

    # ---- hosts -----------------------------------------------------------------------------

    async def host(self, name: str) -> Host:
        if name not in self._hosts:
            cfg = self.config.host(name)  # raises for an unknown host
            if name == LOCAL:
                host: Host = LocalHost(name, cfg, locations.local_base(self.home))
            else:
                host = self._ssh_host(name, cfg)
                host.on_state_change = lambda h: self._emit(
                    HostEvent(host=h.name, state=h.state, last_error=h.last_error))
            self._hosts[name] = host
        host = self._hosts[name]
        if host.is_local and host.state != "connected":
            await host.connect()
            self._emit(HostEvent(host=name, state=host.state, last_error=host.last_error))
        elif not host.base_dir:
            # An SSH host connects here until it first succeeds (that resolves its base
            # directory); after that its commands reconnect by themselves, with backoff.
            await host.connect()
        return host

    @staticmethod
    def _ssh_host(name: str, cfg) -> Host:
        from evopilot.core.hosts.ssh import SshHost  # asyncssh only when a remote host is used

        ssh_config = None if cfg.ssh_config is None else [cfg.ssh_config] if cfg.ssh_config else []
        return SshHost(name, cfg, ssh_config=ssh_config)

    def _connected_host(self, name: str) -> Host | None:
        host = self._hosts.get(name)
        return host if host is not None and host.state == "connected" else None

    def host_states(self) -> dict[str, tuple[str, str | None]]:
        """Connection state and last error of every configured host (not connecting any)."""
        out = {}
        for name in self.config.host_names():
            h = self._hosts.get(name)
            if h:
                out[name] = (h.state.value, h.last_error)
            else:  # the local host needs no connection; SSH hosts connect on first use
                out[name] = ("connected" if name == LOCAL else "disconnected", None)
        return out

    async def hosts(self) -> list[dict]:
        """Each host with its state, running jobs, free slots and last error."""
        running = await jobs_db.running_per_host(self.db)
        out = []
        for name, (state, error) in self.host_states().items():
            slots = self.config.host(name).slots(name == LOCAL)
            out.append({"name": name, "state": state, "running": running.get(name, 0),
                        "slots": slots, "free_slots": max(0, slots - running.get(name, 0)),
                        "last_error": error})
        return out

    async def connect_host(self, name: str) -> dict:
        """Connect (or reconnect) a host now; returns its row as ``hosts()`` gives it."""
        host = self._hosts.get(name)
        if host is not None and hasattr(host, "reconnect"):
            await host.reconnect()
        else:
            await self.host(name)
        return next(h for h in await self.hosts() if h["name"] == name)

    async def doctor(self, name: str) -> list:
        from evopilot.core.hosts.doctor import doctor

        def factory(n, cfg):
            return LocalHost(n, cfg, locations.local_base(self.home)) if n == LOCAL else self._ssh_host(n, cfg)

        return await doctor(name, self.config.host(name), factory)

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

    # ---- projects and benchmarks -----------------------------------------------------------

    async def add_project(self, path: str | Path, name: str | None = None, python: str | None = None) -> tuple[Project, list[Benchmark]]:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise EvopilotError(f"{path}: not a directory")
        root = root.resolve()
        name = name or root.name
        _check_name(name, "project name")
        python = python or self.config.projects.default_python or f"{sys.version_info[0]}.{sys.version_info[1]}"
        if not _valid_python_version(python):
            raise EvopilotError(f"--python {python!r}: expected a version like 3.12")
        async with jobs_db.transaction(self.db):
            project = await projects_db.add_project(self.db, name, str(root), python)
            found = sorted({p for g in self.config.projects.benchmark_globs for p in root.glob(g) if p.is_file()})
            benches = [
                await projects_db.add_benchmark(self.db, project.id, p.name, p.relative_to(root).as_posix())
                for p in found
            ]
        return project, benches

    async def list_projects(self) -> list[Project]:
        return await projects_db.list_projects(self.db)

    async def project(self, name: str) -> Project:
        return await projects_db.get_project(self.db, name)

    async def remove_project(self, name: str) -> None:
        project = await projects_db.get_project(self.db, name)
        await projects_db.remove_project(self.db, project.id)

    async def add_benchmarks(self, project_name: str, files: Sequence[str]) -> list[Benchmark]:
        project = await projects_db.get_project(self.db, project_name)
        root = Path(project.path)
        rels = []
        for f in files:
            p = Path(f).expanduser()
            p = (p if p.is_absolute() else Path.cwd() / p)
            if not p.exists() and (root / f).exists():
                p = root / f  # a path given relative to the project
            p = p.resolve()
            if not p.is_relative_to(root):
                raise EvopilotError(f"{f}: outside the project directory {root}")
            if not p.is_file():
                raise EvopilotError(f"{f}: no such file")
            rels.append(p.relative_to(root).as_posix())
        async with jobs_db.transaction(self.db):
            return [await projects_db.add_benchmark(self.db, project.id, Path(r).name, r) for r in rels]

    async def list_benchmarks(self, project_name: str | None = None) -> list[Benchmark]:
        pid = (await projects_db.get_project(self.db, project_name)).id if project_name else None
        return await projects_db.list_benchmarks(self.db, pid)

    async def resolve_benchmark(self, project: Project, ref: str) -> Benchmark:
        """A benchmark by its path in the project, or by its file name when that is unique."""
        benches = await projects_db.list_benchmarks(self.db, project.id)
        for b in benches:
            if b.path == ref:
                return b
        named = [b for b in benches if b.name == ref]
        if len(named) == 1:
            return named[0]
        if named:
            raise EvopilotError(f"{ref!r} is ambiguous in {project.name}: " + ", ".join(b.path for b in named))
        raise EvopilotError(f"no benchmark {ref!r} in project {project.name} (see `evopilot bench list {project.name}`)")

    # ---- jobs ------------------------------------------------------------------------------

    # ---- dependency analysis ---------------------------------------------------------------

    async def deps(self, project_name: str, bench_ref: str) -> "DependencyAnalysis":
        """Local import tree and external packages of a benchmark (cached by file content)."""
        project = await projects_db.get_project(self.db, project_name)
        bench = await self.resolve_benchmark(project, bench_ref)
        return await self._analyze(project, bench)

    async def _analyze(self, project: Project, bench: Benchmark, root: Path | None = None) -> "DependencyAnalysis":
        from evopilot.core.analysis import analyze  # tree-sitter only when analysing

        return await asyncio.to_thread(
            analyze, root or Path(project.path), Path(bench.path), cache_dir=locations.deps_cache_dir(self.home)
        )

    async def fix_deps(self, project_name: str, bench_ref: str) -> list[str]:
        """Declare the benchmark's undeclared packages with `uv add`; returns what was added."""
        from evopilot.core.analysis import fix

        project = await projects_db.get_project(self.db, project_name)
        analysis = await self.deps(project_name, bench_ref)
        return await asyncio.to_thread(fix, Path(project.path), analysis, self.config.host(LOCAL).uv_path)

    async def preflight(self, project: Project, benches: Sequence[Benchmark], host: str = LOCAL,
                        root: Path | None = None) -> None:
        """Refuse to queue benchmarks that import missing local files or undeclared packages;
        for a remote host, also local files that sync would not send (ignored by git).
        ``root``: check these files (a commit's tree) instead of the working tree."""
        problems, fixes = [], set()
        synced = None
        if host != LOCAL and root is None:
            from evopilot.core.hosts.sync import list_files

            synced = set(await list_files(Path(project.path)))
        for b in benches:
            a = await self._analyze(project, b, root)
            missing = [f"{d.module_name} ({d.file_path})" for d in a.missing_local()]
            if synced is not None:
                missing += [f"{d.module_name} ({d.file_path}, ignored by git so never synced)"
                            for d in a.local if d.exists and not d.optional and d.file_path not in synced]
            undeclared = [p.distribution for p in a.undeclared()]
            if missing:
                problems.append(f"{b.path} imports missing local modules: {', '.join(missing)}")
            if undeclared:
                problems.append(f"{b.path} imports packages not in pyproject.toml: {', '.join(undeclared)}")
                fixes.add(f"evopilot deps {project.name} {b.path} --fix")
        if problems:
            hint = f"; fix with `{'`, `'.join(sorted(fixes))}`" if fixes else ""
            raise EvopilotError("; ".join(problems) + hint + " (or run with --no-check)")

    # ---- jobs ------------------------------------------------------------------------------

    async def run(
        self, project_name: str, benches: Sequence[str], *, host: str = LOCAL, priority: int = 0,
        timeout: float | None = None, args: Sequence[str] = (), check: bool = True,
        commit: str | None = None,
    ) -> list[Job]:
        """Queue one job per benchmark, then start what fits in the host's free slots.

        With ``check``, the benchmarks' dependencies are analysed first (see ``preflight``).
        ``commit`` (a branch, tag or sha): run on that commit's files (``core.workspace``)
        instead of the working tree.
        """
        self.config.host(host)
        if timeout is not None and timeout <= 0:
            raise EvopilotError("--timeout must be a positive number of seconds")
        project = await projects_db.get_project(self.db, project_name)
        resolved = [await self.resolve_benchmark(project, b) for b in benches]
        placed = None if commit is None else await self.workspaces.prepare(
            project, [b.path for b in resolved], host, commit,
            check=(lambda root: self.preflight(project, resolved, host, root)) if check else None)
        if check and not placed:
            await self.preflight(project, resolved, host)
        if placed:
            workdir, setup_id = placed.workdir, placed.setup_id
        elif host == LOCAL:
            workdir, setup_id = project.path, None
        else:
            workdir, setup_id = await self._prepare_remote(project, host)
        cfg = self.config.host(host)
        ids = []
        async with jobs_db.transaction(self.db):
            for b in resolved:
                command = (placed.command(b.path, args) if placed
                           else self._bench_command(project, b, args) if host == LOCAL
                           else environments.bench_command(cfg, b, args))
                job_id = await self._new_job(
                    project_id=project.id, kind="benchmark", name=b.name,
                    benchmark_path=b.path, args=list(args), workdir=workdir, host=host,
                    commit_sha=placed.sha if placed else None,
                    command=command, priority=priority, timeout_s=timeout, **_waiting_for(setup_id),
                )
                ids.append(job_id)
        if placed:  # the jobs hold their tree now (if inserting failed, the claim just expires)
            await placed.done(ids)
        await self._emit_jobs(ids)
        await self.dispatch()
        return [await jobs_db.get_job(self.db, i) for i in ids]

    async def _new_job(self, **fields) -> int:
        """Insert a job; a remote one gets the path of its log's local copy."""
        job_id = await jobs_db.insert_job(self.db, **fields)
        if fields["host"] != LOCAL:
            mirror = locations.logs_dir(self.home) / f"{self.instance}-{job_id}.log"
            await jobs_db.update_job(self.db, job_id, log_path=str(mirror))
        return job_id

    async def _prepare_remote(self, project: Project, host_name: str) -> tuple[str, int | None]:
        """Sync the project to the host; queue a setup job unless its environment is current.

        Returns the project's directory there and the setup job the benchmarks must wait for.
        """
        from evopilot.core.hosts.sync import sync

        host = await self.host(host_name)
        remote = environments.project_dir(host, project)
        await sync(Path(project.path), host, remote)
        key = environments.env_key(project)
        have = (await host.run(environments.check_script(remote))).stdout.decode(errors="replace").strip()
        if have == key:
            return remote, None
        waiting_for = await jobs_db.active_setup_job(self.db, project.id, host_name)
        if waiting_for:
            return remote, waiting_for
        setup_id = await self._new_job(
            project_id=project.id, kind="setup", name=f"setup {project.name}",
            command=environments.setup_command(project, self.config.host(host_name), key),
            workdir=remote, host=host_name, priority=environments.SETUP_PRIORITY,
        )
        await self._emit_jobs([setup_id])
        return remote, setup_id

    async def submit(self, command: str, *, name: str = "command", workdir: str | None = None,
                     host: str = LOCAL, priority: int = 0, timeout: float | None = None) -> Job:
        """Queue an arbitrary shell command as a job (used by setup steps and benchmarks)."""
        self.config.host(host)
        job_id = await self._new_job(
            project_id=None, kind="command", name=name, command=command,
            workdir=workdir or str(Path.cwd()), host=host, priority=priority, timeout_s=timeout,
        )
        await self._emit_jobs([job_id])
        return await jobs_db.get_job(self.db, job_id)

    def _bench_command(self, project: Project, bench: Benchmark, args: Sequence[str]) -> str:
        return join([environments.local_python(project, self.config.host(LOCAL)), bench.path, *args])

    async def jobs(self, *, status: Iterable[str] | None = None, project: str | None = None,
                   host: str | None = None, limit: int | None = None, offset: int = 0,
                   newest_first: bool = False, reconcile: bool = True) -> list[Job]:
        if status:
            status = [_check_status(s) for s in status]
        if reconcile:
            await self.reconcile()
        return await jobs_db.list_jobs(self.db, status=status, project=project, host=host,
                                       limit=limit, offset=offset, newest_first=newest_first)

    async def count_jobs(self, **filters) -> int:
        return await jobs_db.count_jobs(self.db, **filters)

    async def job(self, job_id: int) -> Job:
        return await jobs_db.get_job(self.db, job_id)

    async def job_steps(self, job_id: int) -> list[dict]:
        return await jobs_db.steps(self.db, job_id)

    async def stop(self, job_id: int) -> Job:
        """SIGINT to the job's process group; it ends as cancelled unless it exits 0."""
        job = await self._running(job_id, "stop")
        host = await self.host(job.host)
        res = await host.run(scripts.signal(job_dir=job.job_dir, sig="INT"))
        if not res.ok:
            raise EvopilotError(f"job {job_id} has not started its process yet; try again")
        await jobs_db.update_job(self.db, job_id, requested="stop")
        await self.tick_host(job.host)
        return await jobs_db.get_job(self.db, job_id)

    async def kill(self, job_id: int) -> Job:
        """SIGTERM the whole process group, SIGKILL after the grace period, remove the session."""
        job = await self._running(job_id, "kill")
        await jobs_db.update_job(self.db, job_id, requested="kill")
        host = await self.host(job.host)
        await host.run(scripts.kill(job_dir=job.job_dir, session=job.tmux_session,
                                    grace=self.config.engine.kill_grace))
        await self.tick_host(job.host)
        # No exit code could be recorded (the wrapper itself was gone): killed all the same.
        if await jobs_db.transition(self.db, job_id, JobStatus.KILLED, [JobStatus.RUNNING]):
            await self._emit_jobs([job_id], {job_id: JobStatus.RUNNING})
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
        if not await jobs_db.transition(self.db, job_id, JobStatus.CANCELLED,
                                        [JobStatus.QUEUED, JobStatus.PENDING]):
            job = await jobs_db.get_job(self.db, job_id)
            hint = " (use stop or kill)" if job.status == JobStatus.RUNNING else ""
            raise EvopilotError(f"cannot cancel job {job_id}: it is {job.status.value}{hint}")
        await self._emit_jobs([job_id])
        return await jobs_db.get_job(self.db, job_id)

    async def retry(self, job_id: int) -> Job:
        """A new job with the same inputs (project, benchmark, arguments, host, priority)."""
        old = await jobs_db.get_job(self.db, job_id)
        if old.status not in FINISHED:
            raise EvopilotError(f"cannot retry job {job_id}: it is {old.status.value}")
        placed = None
        if old.commit_sha and old.kind == "benchmark":  # its tree may be gone: place it again
            if old.project is None:
                raise EvopilotError(f"cannot retry job {job_id}: its project was removed")
            placed = await self.workspaces.prepare(
                await projects_db.get_project(self.db, old.project), [old.benchmark_path],
                old.host, old.commit_sha)
        new_id = await self._new_job(
            project_id=old.project_id, kind=old.kind, name=old.name,
            benchmark_path=old.benchmark_path, args=old.args,
            command=placed.command(old.benchmark_path, old.args) if placed else old.command,
            workdir=placed.workdir if placed else old.workdir, host=old.host,
            priority=old.priority, timeout_s=old.timeout_s, retry_of=old.id,
            commit_sha=old.commit_sha, **_waiting_for(placed and placed.setup_id),
        )
        if placed:
            await placed.done([new_id])
        await jobs_db.redirect_dependents(self.db, old.id, new_id)
        await self._emit_jobs([new_id])
        await self.dispatch()
        return await jobs_db.get_job(self.db, new_id)

    async def move(self, job_id: int, where: str) -> Job:
        if where not in ("front", "back", "up", "down"):
            raise EvopilotError(f"cannot move a job {where!r}: use front, back, up or down")
        async with jobs_db.transaction(self.db):
            await jobs_db.move_in_queue(self.db, job_id, where)
        await self._emit_jobs([job_id])
        return await jobs_db.get_job(self.db, job_id)

    async def queue_paused(self) -> bool:
        return await jobs_db.meta(self.db, "queue_paused") == "1"

    async def set_queue_paused(self, paused: bool) -> None:
        await jobs_db.set_meta(self.db, "queue_paused", "1" if paused else "0")
        self._emit(QueueEvent(paused=paused))
        if not paused:
            await self.dispatch()

    # ---- the loop --------------------------------------------------------------------------

    async def _active_hosts(self, *statuses: str) -> list[str]:
        return await jobs_db.hosts_with(self.db, statuses)

    async def reconcile(self) -> None:
        """Bring every running job's row in line with its host: finished, lost, or log caught up."""
        for name in await self._active_hosts(JobStatus.RUNNING.value):
            await self.tick_host(name, dispatch_jobs=False)

    async def dispatch(self) -> None:
        """Start queued jobs on every host with free slots; an unreachable host keeps its queue."""
        for name in await self._active_hosts(JobStatus.QUEUED.value):
            with self._unreachable_skipped(name):
                await self._dispatch_host(await self.host(name))

    async def _dispatch_host(self, host: Host) -> None:
        async with self._host_locks[host.name]:
            started = await dispatch(self.db, self.config, host, self.instance, self.claimer)
        await self._emit_jobs([j.id for j in started], {j.id: JobStatus.QUEUED for j in started})

    @contextmanager
    def _unreachable_skipped(self, name: str):
        """An SSH host that cannot be reached is skipped (its last error kept): its jobs keep
        running there and are caught up once it is back. Local errors are real errors."""
        try:
            yield
        except EvopilotError as e:
            if name == LOCAL or name not in self._hosts:
                raise
            self._hosts[name].last_error = str(e)

    async def tick_host(self, name: str, *, dispatch_jobs: bool = True) -> None:
        """Monitor one host's running jobs, then fill its free slots.

        A host that cannot be reached is skipped: its jobs keep running there, and the next
        tick after it is back catches their logs up from the recorded offsets.
        """
        with self._unreachable_skipped(name):
            await self._tick_host(name, dispatch_jobs)

    async def _tick_host(self, name: str, dispatch_jobs: bool) -> None:
        host = await self.host(name)
        async with self._host_locks[name]:
            result = await self._monitor.tick(host)
        await self._emit_jobs(result.changed, result.changed)
        for ev in result.logs:
            self._emit(ev)
        for job in result.kills:
            if job.id not in self._killing:
                self._killing.add(job.id)
                self._spawn(self._kill_for_timeout(job))
        if result.backlog:  # a log is behind: the next tick of this host comes at once
            self._next_remote_tick.pop(name, None)
            self._wake.set()
        if dispatch_jobs and not await self.queue_paused():
            await self._dispatch_host(host)

    async def _kill_for_timeout(self, job: Job) -> None:
        try:
            host = await self.host(job.host)
            await host.run(scripts.kill(job_dir=job.job_dir, session=job.tmux_session,
                                        grace=self.config.engine.kill_grace))
        finally:
            self._killing.discard(job.id)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def tick(self, *, watch: bool = False) -> None:
        """One pass over every host with running or queued jobs; ``watch`` also keeps a
        completion watcher open on each (for loops that tick repeatedly)."""
        hosts = set(await self._active_hosts(JobStatus.RUNNING.value, JobStatus.QUEUED.value))
        now = time.monotonic()
        due = []
        for name in sorted(hosts):
            if name != LOCAL:  # remote hosts are asked less often: every tick is a round trip
                if now < self._next_remote_tick.get(name, 0):
                    continue
                self._next_remote_tick[name] = now + self.config.engine.remote_poll_interval
            due.append(name)
        await asyncio.gather(*(self.tick_host(name) for name in due))  # hosts in parallel
        await self.workspaces.sweep()  # trees of commits no job needs any more
        for name in due:
            if watch and name in self._hosts and self._hosts[name].state == "connected":
                self._watch_completions(self._hosts[name])

    async def idle(self) -> bool:
        """Nothing running, and nothing queued that could start."""
        if await jobs_db.count_jobs(self.db, status=["running"]):
            return False
        if await self.queue_paused():
            return True
        return not await jobs_db.count_jobs(self.db, status=["queued"])

    async def run_forever(
        self, *, until_idle: bool = False, until_done: Iterable[int] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """The worker loop: tick every ``poll_interval`` seconds, at once when a job ends.

        ``until_idle`` stops when nothing is running or startable; ``until_done`` when those
        jobs have all finished. With ``on_error``, a failing tick is reported there and the
        loop goes on (a long-lived worker or app must survive, say, a locked database).
        """
        waiting = list(until_done or ())
        while True:
            try:
                await self.tick(watch=True)
                if until_idle and await self.idle() and not self._tasks:
                    return
                if waiting and not await jobs_db.count_unfinished(self.db, waiting):
                    return
            except Exception as e:
                if on_error is None:
                    raise
                on_error(e)
            await self.wait_for_work(self.config.engine.poll_interval)

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, less if a job ends meanwhile."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
            await asyncio.sleep(WAKE_COALESCE)  # jobs that end together: one tick for all
        except TimeoutError:
            pass

    def _watch_completions(self, host: Host) -> None:
        """Keep a ``tmux wait-for`` open on ``host`` that wakes the loop when a job ends."""
        if host.name in self._watchers:
            return
        script = scripts.wait_done(done_channel(self.config, self.instance))

        async def watch() -> None:
            while True:
                try:
                    res = await host.run(script)
                except Exception:
                    res = None
                if res is not None and res.ok:
                    self._wake.set()
                else:  # no tmux server yet, or the host is away: try again later
                    await asyncio.sleep(self.config.engine.poll_interval)

        self._watchers[host.name] = asyncio.create_task(watch())


def _waiting_for(setup_id: int | None) -> dict:
    """A new job's fields: pending on its host's environment setup, or queued."""
    if not setup_id:
        return {"status": JobStatus.QUEUED.value}
    return {"status": JobStatus.PENDING.value, "depends_on": setup_id,
            "error_message": f"waiting for environment setup (job {setup_id})"}


def _check_name(name: str, what: str) -> None:
    if not name or "/" in name or "\n" in name or name.startswith("-") or len(name) > 200:
        raise EvopilotError(f"invalid {what} {name!r}: no '/', newline or leading '-', at most 200 characters")


def _valid_python_version(v: str) -> bool:
    parts = v.split(".")
    return 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts)


def _check_status(s: str) -> str:
    try:
        return JobStatus(s).value
    except ValueError:
        raise EvopilotError(f"unknown status {s!r}: one of {', '.join(x.value for x in JobStatus)}") from None
