"""The job loop: watch each host's running jobs, start queued ones in free slots, and run the
end handler of each job that ended (exactly once, see ``core.jobs.kinds``).

Hosts advance independently (a slow or unreachable host must not hold up the others): one tick
at a time per host; in the loop each host's tick is a task of its own, and commands visit hosts
in parallel. A job's end wakes the loop at once: its wrapper writes to a FIFO (local jobs, see
``core.jobs.wake``) and signals a ``tmux wait-for`` channel. A running loop beats in the
database; while one does, commands leave the SSH hosts to it instead of connecting to each.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

import aiosqlite

from evopilot.core.config import LOCAL, Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.events import EventBus
from evopilot.core.hosts.base import IDLE_EVERY, Host
from evopilot.core.hosts.registry import HostRegistry
from evopilot.core.jobs import launch, scripts, wake
from evopilot.core.jobs.dispatch import dispatch, done_channel
from evopilot.core.jobs.kinds import KindRegistry
from evopilot.core.jobs.listing import beat_fresh
from evopilot.core.jobs.monitor import Monitor
from evopilot.core.jobs.publish import publish_jobs
from evopilot.core.jobs.reap import reap
from evopilot.core.models import Job, JobStatus
from evopilot.core.waits import wait_set

WORKER_BEAT = "worker_beat"
BEAT_EVERY = 1.0
"""Seconds between a loop's heartbeats in the database."""
HOUSEKEEPING_EVERY = 0.5
"""Seconds between the tick hooks' runs (a round comes per job's end)."""
BEAT_STALE = 10.0
"""A beat older than this is a loop gone (a loop that ends withdraws its beat; one killed on
this machine is seen gone at once, see ``listing.beat_fresh``). Far above ``BEAT_EVERY``: on
a busy machine a live loop's beat was seen 7 s late (2 cores, load 20,
bench/hosts_faults.py), and a live loop taken for dead sends every command to connect to
every host itself."""


async def worker_alive(db: aiosqlite.Connection, config: Config) -> bool:
    """Whether a worker loop (any process) has beaten recently enough to be ticking every host
    on its own schedule: a command then leaves the SSH hosts to it."""
    return beat_fresh(await jobs_db.meta(db, WORKER_BEAT),
                      max(BEAT_STALE, 2 * config.engine.poll_interval + 1))


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
        # sessions started per host, and an event per host for a start there: a tmux server that
        # exited with its last session is back once a job starts, and its watcher with it
        self._starts: defaultdict[str, int] = defaultdict(int)
        self._started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._next_remote_tick: dict[str, float] = {}
        self._next_idle: dict[str, float] = {}
        self._busy_checks: list[Callable[[], Awaitable[bool]]] = []
        self._tick_hooks: list[Callable[[], Awaitable[None]]] = []
        self._housekeeping: asyncio.Task | None = None  # the tick hooks' run, beside the loop
        self._housekeeping_due = 0.0  # monotonic time from which the next run may start
        self._runs: dict[str, asyncio.Task] | None = None  # the loop's host passes, while it runs
        self._beating: asyncio.Task | None = None

    def add_tick_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Housekeeping run after each tick of the loop (removing trees no job needs)."""
        self._tick_hooks.append(hook)

    def add_busy_check(self, check: Callable[[], Awaitable[bool]]) -> None:
        """Work of a subsystem that keeps ``run_forever(until_idle=True)`` going while no job
        runs (an experiment between evaluations)."""
        self._busy_checks.append(check)

    async def close(self) -> None:
        tasks = [*self._tasks, *self._watchers.values(), *([self._housekeeping] if self._housekeeping else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # their subprocesses are reaped

    # ---- one host --------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Bring every running job's row in line with its host: finished, lost, or log caught
        up; then handle the ends of jobs that finished. Hosts in parallel; SSH hosts that a
        live worker keeps fresh are left to it (no connect per command)."""
        looped = await self._loop_alive()
        names = await self._command_hosts([JobStatus.RUNNING.value], looped)
        await asyncio.gather(*(self.tick_host(n, dispatch_jobs=False) for n in names))
        if names or not looped:  # else the loop handles them (a write here would queue behind it)
            await self.handle_ends()
        # the reaps and kills it began finish before a short-lived command (`jobs`) exits
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def dispatch(self, *, connect: bool = True) -> list[str]:
        """Start queued jobs on every host with free slots, hosts in parallel; an unreachable
        host keeps its queue. SSH hosts that a live worker ticks are left to it. Without
        ``connect``, only hosts that need no connect now are visited; returns the SSH hosts
        left with queued jobs and no loop to start them."""
        if self._runs is not None:  # this process's loop: its hosts' ticks (and starts) come now
            self._next_remote_tick.clear()
            self._wake.set()
        looped = await self._loop_alive()
        names = await self._command_hosts([JobStatus.QUEUED.value], looped)
        left = [] if connect else [n for n in names if n != LOCAL and self.hosts.connected(n) is None]
        await asyncio.gather(*(self._dispatch_named(n) for n in names if n not in left))
        return left

    async def _dispatch_named(self, name: str) -> None:
        with self.hosts.unreachable_skipped(name):
            await self._dispatch_host(await self.hosts.get(name))

    async def _loop_alive(self) -> bool:
        """Whether a worker loop (this process's or another's) is running: it visits every host
        on its own schedule."""
        return self._runs is not None or await worker_alive(self.db, self.config)

    async def _command_hosts(self, statuses: list[str], looped: bool) -> list[str]:
        """The hosts with jobs in ``statuses`` that a command should visit itself: all of them,
        but only the local one (no connection needed) while a loop is alive."""
        names = await jobs_db.hosts_with(self.db, statuses)
        return [n for n in names if n == LOCAL] if looped else names

    async def _dispatch_host(self, host: Host) -> None:
        async with self._host_locks[host.name]:
            started = await dispatch(self.db, self.config, host, self.instance, self.claimer)
        if started:
            self._starts[host.name] += 1
            self._started[host.name].set()
        await publish_jobs(self.db, self.bus, [j.id for j in started],
                           {j.id: JobStatus.QUEUED for j in started})

    async def tick_host(self, name: str, *, dispatch_jobs: bool = True) -> bool:
        """Monitor one host's running jobs, then fill its free slots; True when the loop
        should come back at once (a log is behind, or a job changed).

        A host that cannot be reached is skipped: its jobs keep running there, and the next
        tick after it is back catches their logs up from the recorded offsets.
        """
        with self.hosts.unreachable_skipped(name):
            return await self._tick_host(name, dispatch_jobs)
        return False

    async def _tick_host(self, name: str, dispatch_jobs: bool) -> bool:
        host = await self.hosts.get(name)
        async with self._host_locks[name]:
            result = await self._monitor.tick(host)
        if not result.probed:
            await host.refresh()
        await publish_jobs(self.db, self.bus, result.changed, result.changed)
        for ev in result.logs:
            self.bus.emit(ev)
        for job in result.kills:
            if job.id not in self._killing:
                self._killing.add(job.id)
                self._spawn(self._kill_for_timeout(job))
        for job in result.reaps:
            self._spawn(reap(self.db, self.config, host, job))
        if result.backlog:  # a log is behind: the next tick of this host comes at once
            self._next_remote_tick.pop(name, None)
        if dispatch_jobs and await jobs_db.meta(self.db, "queue_paused") != "1":
            await self._dispatch_host(host)
        return result.backlog or bool(result.changed)

    async def _kill_for_timeout(self, job: Job) -> None:
        try:
            host = await self.hosts.get(job.host)
            await launch.kill(host, job, self.config.engine.kill_grace)
        finally:
            self._killing.discard(job.id)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a loop that ends when nothing is left to do looks again

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

    async def _active_hosts(self) -> set[str]:
        return set(await jobs_db.hosts_with(self.db, [JobStatus.RUNNING.value, JobStatus.QUEUED.value]))

    def _idle_due(self, active: set[str]) -> list[str]:
        """Hosts with no job of evopilot's, due for a look (their ticks do only that,
        ``Host.refresh``, every ``IDLE_EVERY`` seconds): Slurm clusters for their nodes, SSH
        hosts already connected for their load (an idle host is not connected for it)."""
        now = time.monotonic()
        due = []
        for name in self.config.host_names():
            if name in active or name == LOCAL:
                continue
            if self.config.host(name).kind == "slurm" or self.hosts.connected(name) is not None:
                if now >= self._next_idle.get(name, 0):
                    self._next_idle[name] = now + IDLE_EVERY
                    due.append(name)
        return due

    def _due(self, hosts: Iterable[str]) -> list[str]:
        """The hosts whose next tick is due (remote hosts are asked less often: every tick is a
        round trip). A host whose pass is still under way keeps its due time: a tick asked for
        meanwhile (its completion watcher saw a job end, after the pass's probe) comes when the
        pass ends (see ``_host_pass``), not a poll interval later."""
        now = time.monotonic()
        due = []
        busy = {n for n, t in (self._runs or {}).items() if not t.done()}
        for name in sorted(hosts):
            if name != LOCAL:
                if now < self._next_remote_tick.get(name, 0) or name in busy:
                    continue
                self._next_remote_tick[name] = now + self.config.engine.remote_poll_interval
            due.append(name)
        return due

    async def _host_pass(self, name: str) -> None:
        """One host's tick in the loop, then a completion watcher kept open on it."""
        again = await self.tick_host(name)
        host = self.hosts.known(name)
        if host is not None and host.state == "connected":
            self._watch_completions(host)
        # last, so that the round this wakes finds this pass ended
        if again or self._next_remote_tick.get(name, math.inf) <= time.monotonic():
            self._wake.set()

    async def _after_passes(self) -> None:
        await self.handle_ends()
        # Housekeeping (removing trees: SQL and a thread's rmtree) runs beside the loop, one run
        # at a time: a job that ends meanwhile starts the next round at once, not after it. A
        # failed run is raised here, on the next round.
        # With jobs ending every few ms (evolution), a run per round would cost more than the
        # rounds: one per ``HOUSEKEEPING_EVERY`` at most, and one owed is made before the loop
        # returns.
        done = self._housekeeping
        if done is not None and not done.done():
            return
        self._housekeeping = None
        if self._tick_hooks and time.monotonic() >= self._housekeeping_due:
            self._housekeeping_due = time.monotonic() + HOUSEKEEPING_EVERY
            self._housekeeping = asyncio.create_task(self._run_hooks())
        if done is not None and not done.cancelled() and done.exception() is not None:
            raise done.exception()

    async def _run_hooks(self) -> None:
        for hook in self._tick_hooks:
            await hook()

    async def _housekeeping_owed(self) -> None:
        """Before the loop returns: one more run (the last rounds may have skipped theirs)."""
        if self._housekeeping is not None:
            await asyncio.gather(self._housekeeping, return_exceptions=True)
            self._housekeeping = None
        self._housekeeping_due = 0.0
        await self._run_hooks()

    def _start_passes(self, due: list[str]) -> None:
        """The loop's ticks: each host's pass is a task of its own, so a host that is slow to
        connect or answer holds up no other host; a host is not ticked again before its last
        pass has ended. A failed pass is raised here, on the loop's next round."""
        assert self._runs is not None
        failed = None
        for name, task in list(self._runs.items()):
            if task.done():
                del self._runs[name]
                if not task.cancelled() and task.exception() is not None and failed is None:
                    failed = task.exception()
        for name in due:
            if name not in self._runs:
                self._runs[name] = asyncio.create_task(self._host_pass(name))
        if failed is not None:
            raise failed

    async def _local_pass_done(self) -> None:
        """Wait for the local host's pass (it never waits on a network): the loop's own reads
        and writes then do not interleave with it, as before hosts ran on their own."""
        local = (self._runs or {}).get(LOCAL)
        if local is not None:
            await asyncio.wait([local])

    def _unreachable(self) -> dict[str, str]:
        """Hosts whose last connect attempt failed, with their error."""
        out = {}
        for name in self.config.host_names():
            host = self.hosts.known(name)
            if host is not None and host.unreachable:
                out[name] = host.last_error or "unreachable"
        return out

    async def idle(self) -> bool:
        """Nothing running, nothing queued that could start, and no subsystem busy. Jobs that
        only an unreachable host could run or report on cannot make progress: they do not
        count (``stalled`` lists them)."""
        skip = set(self._unreachable())
        if set(await jobs_db.hosts_with(self.db, [JobStatus.RUNNING.value])) - skip:
            return False
        for check in self._busy_checks:
            if await check():
                return False
        if await jobs_db.meta(self.db, "queue_paused") == "1":
            return True
        return not set(await jobs_db.hosts_with(self.db, [JobStatus.QUEUED.value])) - skip

    async def stalled(self) -> list[tuple[Job, str]]:
        """Running or queued jobs on hosts that cannot be reached now, with the host's error."""
        out = []
        for name, error in self._unreachable().items():
            for job in await jobs_db.list_jobs(self.db, host=name, with_metrics=False, status=[
                    JobStatus.RUNNING.value, JobStatus.QUEUED.value]):
                out.append((job, error))
        return out

    async def run_forever(
        self, *, until_idle: bool = False, until_done: Iterable[int] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """The worker loop: tick every ``poll_interval`` seconds, at once when a job ends.

        Each host advances on its own (see ``_start_passes``). ``until_idle`` stops when no job
        can make progress (nothing running or startable, except on unreachable hosts);
        ``until_done`` when those jobs have all finished. With ``on_error``, a failing tick is
        reported there and the loop goes on (a long-lived worker or app must survive, say, a
        locked database).
        """
        waiting = list(until_done or ())
        # What the process holds as its first loop starts (modules, config, the app's screens)
        # stays for its life: leave it out of collections, which then walk only what came
        # after (a full one walked ~100k objects, 70-120 ms, holding up every job's start)
        if not gc.get_freeze_count():
            gc.freeze()
        # idle hosts only for a loop that stays (the app, a worker): a command's loop does not
        # connect to a login node it has no job on
        stays = not until_idle and until_done is None
        self._runs = {}
        try:
            while True:
                try:
                    self._wake.clear()  # what wakes us from here on asks for another round
                    active = await self._active_hosts()
                    self._start_passes(self._due(active) + (self._idle_due(active) if stays else []))
                    await self._local_pass_done()
                    await self._after_passes()
                    self._keep_beating()
                    if (until_idle and not self._tasks and not self._passes_in_flight()
                            and await self.idle()):
                        # take the beat back first, then look once more: a command that
                        # queued work meanwhile saw no loop (and starts a worker) or is
                        # seen here (see core/jobs/background.py)
                        await self._stop_beating()
                        await self._beat(stop=True)
                        if await self.idle():
                            await self._housekeeping_owed()
                            return
                    if (waiting and not self._tasks
                            and not await jobs_db.count_unfinished(self.db, waiting)):
                        # a pass of their hosts that recorded their ends may still have their
                        # clean-up to start (a reap): it is waited for, or it would be
                        # cancelled at return; other hosts' passes are not (slow to connect)
                        passes = self._passes_in_flight(await jobs_db.hosts_of(self.db, waiting))
                        if passes:
                            await asyncio.wait(passes)
                            continue
                        await self._housekeeping_owed()
                        return
                except Exception as e:
                    if on_error is None:
                        raise
                    on_error(e)
                await self.wait_for_work(self.config.engine.poll_interval)
        finally:
            runs, self._runs = self._runs, None
            for t in runs.values():
                t.cancel()
            await asyncio.gather(*runs.values(), return_exceptions=True)
            if self._housekeeping is not None:  # finished, not cut short: a sweep marks trees first
                await asyncio.gather(self._housekeeping, return_exceptions=True)
                self._housekeeping = None
            await self._stop_beating()
            with contextlib.suppress(Exception):  # best effort: an old beat expires by itself
                await self._beat(stop=True)

    def _passes_in_flight(self, hosts: set[str] | None = None) -> list[asyncio.Task]:
        """The passes under way on hosts (of ``hosts``) that can be reached (an unreachable
        host's connect attempt may take its whole timeout: it holds up nothing)."""
        skip = self._unreachable()
        return [t for n, t in (self._runs or {}).items()
                if not t.done() and n not in skip and (hosts is None or n in hosts)]

    def _keep_beating(self) -> None:
        """Beat from a task of its own, every ``BEAT_EVERY`` seconds: a round of the loop can
        take seconds with many hosts busy (each await waits its turn on a crowded event loop),
        and a late beat would send every command to connect to every host itself. A failed
        beat is raised here, on the loop's next round, and beating starts again."""
        task = self._beating
        if task is not None and not task.done():
            return
        self._beating = asyncio.create_task(self._beat_forever())
        if task is not None and not task.cancelled() and task.exception() is not None:
            raise task.exception()

    async def _beat_forever(self) -> None:
        while True:
            await self._beat()
            await asyncio.sleep(BEAT_EVERY)

    async def _stop_beating(self) -> None:
        task, self._beating = self._beating, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _beat(self, *, stop: bool = False) -> None:
        """Tell commands of other processes that this loop keeps every host fresh (see
        ``worker_alive``); on stop, withdraw it if it is ours."""
        mine = f"{self.claimer} "
        async with jobs_db.transaction(self.db):
            if stop:
                if (await jobs_db.meta(self.db, WORKER_BEAT) or "").startswith(mine):
                    await jobs_db.delete_meta(self.db, WORKER_BEAT)
            else:
                await jobs_db.set_meta(self.db, WORKER_BEAT, f"{mine}{time.time()}")

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, less if a job ends meanwhile or a tick asked for
        the next one at once (a log behind). The request is cleared by the tick that serves
        it, not here: one made during the last tick must not be lost."""
        if await wait_set(self._wake, timeout):
            # one pass of the event loop first: wakes already due (jobs that ended together)
            # join this tick instead of making one each
            await asyncio.sleep(0)

    def _watch_completions(self, host: Host) -> None:
        """Keep a ``tmux wait-for`` open on ``host`` (the FIFO on the local host) that wakes the
        loop when a job ends."""
        if host.name in self._watchers or not host.in_tmux:  # Slurm: its ticks see ends
            return
        if host.is_local:
            self._watchers[host.name] = asyncio.create_task(
                wake.watch(wake.fifo_path(host, self.instance), self._wake.set))
            return
        script = scripts.wait_done(done_channel(self.config, self.instance, host.name))

        async def watch() -> None:
            seen = 0  # starts there whose ends a tick has looked for since
            while True:
                starts = self._starts[host.name]
                try:
                    res = await host.run(script)
                except Exception:
                    res = None
                # A job ended there (the wait returned), or no tmux server runs there (it
                # failed: "no server running", "server exited unexpectedly"): either way a job
                # may have ended unseen (one that ended before this wait began signalled a
                # server that then exited with its last session), so tick that host now.
                self._next_remote_tick[host.name] = 0  # due now
                self._wake.set()
                if res is not None and res.ok:
                    continue
                if starts != seen:
                    # the first failure since a start may have come before that job's session
                    # existed: wait again once it does, rather than for the next start
                    seen = starts
                    await asyncio.sleep(0.2)
                    continue
                # No tmux server (it exits with its last session), or the host is away: wait
                # until a job starts on it (the server is back), or the next remote poll (a
                # start by another process; faster would gain nothing over the host's ticks).
                started = self._started[host.name]
                started.clear()
                if self._starts[host.name] == starts:
                    await wait_set(started, self.config.engine.remote_poll_interval)

        self._watchers[host.name] = asyncio.create_task(watch())
