"""The job loop: watch each host's running jobs, start queued ones in free slots, and run the
end handler of each job that ended (exactly once, see ``core.jobs.kinds``).

Hosts advance independently (a slow or unreachable host must not hold up the others): one tick
at a time per host, hosts ticked in parallel. A job's end wakes the loop at once through a
``tmux wait-for`` channel its wrapper signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

import aiosqlite

from evopilot.core.config import LOCAL, Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.events import EventBus
from evopilot.core.hosts.base import Host
from evopilot.core.hosts.registry import HostRegistry
from evopilot.core.jobs import scripts
from evopilot.core.jobs.dispatch import dispatch, done_channel
from evopilot.core.jobs.kinds import KindRegistry
from evopilot.core.jobs.monitor import Monitor
from evopilot.core.jobs.publish import publish_jobs
from evopilot.core.models import Job, JobStatus

WAKE_COALESCE = 0.005  # jobs ending within it share a tick; each turnover of a slot waits it


class Scheduler:
    def __init__(self, db: aiosqlite.Connection, config: Config, instance: str,
                 hosts: HostRegistry, kinds: KindRegistry, bus: EventBus) -> None:
        self.db, self.config, self.instance = db, config, instance
        self.hosts, self.kinds, self.bus = hosts, kinds, bus
        self.claimer = f"{socket.gethostname()}:{os.getpid()}"
        self._monitor = Monitor(db, config)
        self._tasks: set[asyncio.Task] = set()
        self._killing: set[int] = set()  # jobs past their timeout with a kill under way
        # One tick at a time per host (the loop's and a command's), hosts independently. The
        # database serializes its writes.
        self._host_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._wake = asyncio.Event()
        self._watchers: dict[str, asyncio.Task] = {}
        # sessions started per host, and an event for any start: a tmux server that exited with
        # its last session is back once a job starts, and its watcher with it
        self._starts: defaultdict[str, int] = defaultdict(int)
        self._started = asyncio.Event()
        self._next_remote_tick: dict[str, float] = {}
        self._busy_checks: list[Callable[[], Awaitable[bool]]] = []
        self._tick_hooks: list[Callable[[], Awaitable[None]]] = []

    def add_tick_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Housekeeping run after each tick of the loop (removing trees no job needs)."""
        self._tick_hooks.append(hook)

    def add_busy_check(self, check: Callable[[], Awaitable[bool]]) -> None:
        """Work of a subsystem that keeps ``run_forever(until_idle=True)`` going while no job
        runs (an experiment between evaluations)."""
        self._busy_checks.append(check)

    async def close(self) -> None:
        tasks = [*self._tasks, *self._watchers.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # their subprocesses are reaped

    # ---- one host --------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Bring every running job's row in line with its host: finished, lost, or log caught
        up; then handle the ends of jobs that finished."""
        for name in await jobs_db.hosts_with(self.db, [JobStatus.RUNNING.value]):
            await self.tick_host(name, dispatch_jobs=False)
        await self.handle_ends()

    async def dispatch(self) -> None:
        """Start queued jobs on every host with free slots; an unreachable host keeps its queue."""
        for name in await jobs_db.hosts_with(self.db, [JobStatus.QUEUED.value]):
            with self.hosts.unreachable_skipped(name):
                await self._dispatch_host(await self.hosts.get(name))

    async def _dispatch_host(self, host: Host) -> None:
        async with self._host_locks[host.name]:
            started = await dispatch(self.db, self.config, host, self.instance, self.claimer)
        if started:
            self._starts[host.name] += 1
            self._started.set()
        await publish_jobs(self.db, self.bus, [j.id for j in started],
                           {j.id: JobStatus.QUEUED for j in started})

    async def tick_host(self, name: str, *, dispatch_jobs: bool = True) -> None:
        """Monitor one host's running jobs, then fill its free slots.

        A host that cannot be reached is skipped: its jobs keep running there, and the next
        tick after it is back catches their logs up from the recorded offsets.
        """
        with self.hosts.unreachable_skipped(name):
            await self._tick_host(name, dispatch_jobs)

    async def _tick_host(self, name: str, dispatch_jobs: bool) -> None:
        host = await self.hosts.get(name)
        async with self._host_locks[name]:
            result = await self._monitor.tick(host)
        await publish_jobs(self.db, self.bus, result.changed, result.changed)
        for ev in result.logs:
            self.bus.emit(ev)
        for job in result.kills:
            if job.id not in self._killing:
                self._killing.add(job.id)
                self._spawn(self._kill_for_timeout(job))
        if result.backlog:  # a log is behind: the next tick of this host comes at once
            self._next_remote_tick.pop(name, None)
            self._wake.set()
        if dispatch_jobs and await jobs_db.meta(self.db, "queue_paused") != "1":
            await self._dispatch_host(host)

    async def _kill_for_timeout(self, job: Job) -> None:
        try:
            host = await self.hosts.get(job.host)
            await host.run(scripts.kill(job_dir=job.job_dir, session=job.tmux_session,
                                        grace=self.config.engine.kill_grace))
        finally:
            self._killing.discard(job.id)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- ends ------------------------------------------------------------------------------

    async def handle_ends(self) -> None:
        """Run the end handler of every ended job not handled yet, each exactly once: claiming
        the end and the handler's work commit together (see ``core.jobs.kinds``)."""
        await jobs_db.mark_ends_handled(self.db, self.kinds.names(with_handler=False))
        with_handlers = self.kinds.names(with_handler=True)
        if not with_handlers:
            return
        while jobs := await jobs_db.ended_unhandled(self.db, with_handlers):
            for job in jobs:
                events = []
                async with jobs_db.transaction(self.db):
                    if await jobs_db.claim_end(self.db, job.id):
                        events = list(await self.kinds.get(job.kind).on_end(self.db, job) or ())
                for ev in events:
                    self.bus.emit(ev)

    # ---- the loop --------------------------------------------------------------------------

    async def tick(self, *, watch: bool = False) -> None:
        """One pass over every host with running or queued jobs; ``watch`` also keeps a
        completion watcher open on each (for loops that tick repeatedly)."""
        hosts = set(await jobs_db.hosts_with(self.db, [JobStatus.RUNNING.value, JobStatus.QUEUED.value]))
        now = time.monotonic()
        due = []
        for name in sorted(hosts):
            if name != LOCAL:  # remote hosts are asked less often: every tick is a round trip
                if now < self._next_remote_tick.get(name, 0):
                    continue
                self._next_remote_tick[name] = now + self.config.engine.remote_poll_interval
            due.append(name)
        await asyncio.gather(*(self.tick_host(name) for name in due))  # hosts in parallel
        await self.handle_ends()
        for hook in self._tick_hooks:
            await hook()
        for name in due:
            host = self.hosts.known(name)
            if watch and host is not None and host.state == "connected":
                self._watch_completions(host)

    async def idle(self) -> bool:
        """Nothing running, nothing queued that could start, and no subsystem busy."""
        if await jobs_db.count_jobs(self.db, status=["running"]):
            return False
        for check in self._busy_checks:
            if await check():
                return False
        if await jobs_db.meta(self.db, "queue_paused") == "1":
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
                starts = self._starts[host.name]
                try:
                    res = await host.run(script)
                except Exception:
                    res = None
                if res is not None and res.ok:
                    self._wake.set()
                    continue
                # No tmux server (it exits with its last session), or the host is away: wait
                # until a job starts on it (the server is back), or the next poll.
                self._started.clear()
                if self._starts[host.name] == starts:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._started.wait(), self.config.engine.poll_interval)

        self._watchers[host.name] = asyncio.create_task(watch())
