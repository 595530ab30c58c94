"""What the core tells its watchers (the app, `run --wait`, `worker`): typed events on a bus.

Each subscriber gets its own bounded queue, so a watcher that stops reading (a frozen UI, a
paused pipe) cannot grow the engine's memory: past ``maxsize`` the oldest event is dropped and
the queue's ``dropped`` count says so (a watcher that sees it re-reads what it shows).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel

from evopilot.core.models import Job, JobStatus

DEFAULT_QUEUE_SIZE = 10_000


class JobEvent(BaseModel):
    """A job changed state (or progress); carries the job as it is now."""

    type: Literal["job"] = "job"
    job: Job
    previous: JobStatus | None = None


class LogEvent(BaseModel):
    """New bytes arrived in a job's log (coalesced per tick)."""

    type: Literal["log"] = "log"
    job_id: int
    log_path: str
    size: int


class HostEvent(BaseModel):
    type: Literal["host"] = "host"
    host: str
    state: str
    last_error: str | None = None


class QueueEvent(BaseModel):
    type: Literal["queue"] = "queue"
    paused: bool


class StoreEvent(BaseModel):
    """Another process changed what is stored beyond single jobs' rows: projects or their
    benchmarks, or jobs removed (``ExternalChanges``)."""

    type: Literal["store"] = "store"
    projects: bool = False
    jobs_removed: bool = False


class EvolutionEvent(BaseModel):
    """An experiment's run moved on (an iteration applied, a mutation started or ended)."""

    type: Literal["evolution"] = "evolution"
    experiment_id: int
    applied: int
    mutating: int
    best: float | None = None
    coverage: float = 0.0


class IterationEvent(BaseModel):
    """An evaluation's end was recorded on its iteration (by the evaluation kind's end handler):
    what the experiment's loop waits for."""

    type: Literal["iteration"] = "iteration"
    experiment_id: int
    number: int
    status: str


class TaskEvent(BaseModel):
    """A task or one of its attempts changed (added, moved, started, ended, tested, merged,
    archived): the Tasks tab re-reads that task."""

    type: Literal["task"] = "task"
    task_id: int
    attempt_id: int | None = None


Event = EvolutionEvent | IterationEvent | JobEvent | LogEvent | HostEvent | QueueEvent | TaskEvent | StoreEvent


class Subscription(asyncio.Queue):
    """A subscriber's queue of events; ``dropped`` counts events lost to overflow. ``types``:
    the event types it gets (None: all)."""

    dropped: int = 0
    types: frozenset[str] | None = None


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []

    def subscribe(self, maxsize: int = DEFAULT_QUEUE_SIZE, types: tuple[str, ...] | None = None) -> Subscription:
        q = Subscription(maxsize)
        q.types = frozenset(types) if types is not None else None
        self._subscribers.append(q)
        return q

    def unsubscribe(self, q: Subscription) -> None:
        self._subscribers.remove(q)

    def listening(self, type: str) -> bool:
        """Whether a subscriber gets events of ``type`` (else a publisher can skip making them)."""
        return any(q.types is None or type in q.types for q in self._subscribers)

    def emit(self, event: Event) -> None:
        for q in self._subscribers:
            if q.types is not None and event.type not in q.types:
                continue
            if q.full():
                q.get_nowait()
                q.dropped += 1
            q.put_nowait(event)
