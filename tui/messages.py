"""The typed messages the app posts to every tab pane.

The app turns each frame's batch of engine events into these (``from_events``) and posts them
to every ``Pane``; a pane handles the ones it cares about with ``on_<message>`` handlers
(``on_jobs_changed``, ``on_log_grew``, ...) and ignores the rest. The app never names a pane,
so a new tab is a new pane, not an edit of the app.

They do not bubble, and one instance goes to every pane: a handler reads it, never changes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.message import Message

from evopilot.core.events import (
    Event, EvolutionEvent, HostEvent, JobEvent, LogEvent, QueueEvent, StoreEvent, TaskEvent,
)
from evopilot.core.models import Job


class JobsChanged(Message, bubble=False):
    """Jobs changed (status, progress, metrics); the latest state of each, once per frame."""

    def __init__(self, jobs: list[Job], status_changed: bool) -> None:
        super().__init__()
        self.jobs = jobs
        self.status_changed = status_changed
        """Some job entered or left a status (running counts per host may differ)."""


class LogGrew(Message, bubble=False):
    """A job's log has new bytes."""

    def __init__(self, event: LogEvent) -> None:
        super().__init__()
        self.job_id = event.job_id
        self.log_path = event.log_path
        self.size = event.size


class HostChanged(Message, bubble=False):
    """A host connected, disconnected or failed."""

    def __init__(self, event: HostEvent) -> None:
        super().__init__()
        self.host = event.host
        self.state = event.state
        self.last_error = event.last_error


class QueueChanged(Message, bubble=False):
    """The queue was paused or resumed (by this app or another evopilot process)."""

    def __init__(self, paused: bool) -> None:
        super().__init__()
        self.paused = paused


class StoreChanged(Message, bubble=False):
    """Another process changed projects (or their benchmarks), or removed jobs."""

    def __init__(self, event: StoreEvent) -> None:
        super().__init__()
        self.projects = event.projects
        self.jobs_removed = event.jobs_removed


class EvolutionChanged(Message, bubble=False):
    """An experiment's loop in this process moved on (an iteration applied, a mutation started
    or ended); once per frame and experiment."""

    def __init__(self, event: EvolutionEvent) -> None:
        super().__init__()
        self.experiment_id = event.experiment_id


class TasksChanged(Message, bubble=False):
    """Tasks or their attempts changed (added, moved, started, ended, tested, merged, archived);
    once per frame."""

    def __init__(self, task_ids: set[int], attempt_ids: set[int]) -> None:
        super().__init__()
        self.task_ids = task_ids
        self.attempt_ids = attempt_ids


class TabShown(Message, bubble=False):
    """The pane's tab was activated (after the first load)."""


def from_events(events: Iterable[Event]) -> list[Message]:
    """One frame's engine events as pane messages: the latest state of each job in one
    ``JobsChanged``, the latest growth of each log and step of each experiment, the tasks changed, hosts and
    queue changes in order."""
    jobs: dict[int, Job] = {}
    logs: dict[int, LogEvent] = {}
    runs: dict[int, EvolutionEvent] = {}
    status_changed = False
    task_ids: set[int] = set()
    attempt_ids: set[int] = set()
    others: list[Message] = []
    for ev in events:
        if isinstance(ev, JobEvent):
            jobs[ev.job.id] = ev.job
            status_changed |= ev.previous != ev.job.status
        elif isinstance(ev, LogEvent):
            logs[ev.job_id] = ev
        elif isinstance(ev, HostEvent):
            others.append(HostChanged(ev))
        elif isinstance(ev, QueueEvent):
            others.append(QueueChanged(ev.paused))
        elif isinstance(ev, StoreEvent):
            others.append(StoreChanged(ev))
        elif isinstance(ev, EvolutionEvent):
            runs[ev.experiment_id] = ev
        elif isinstance(ev, TaskEvent):
            task_ids.add(ev.task_id)
            if ev.attempt_id is not None:
                attempt_ids.add(ev.attempt_id)
    out: list[Message] = others
    if jobs:
        out.append(JobsChanged(list(jobs.values()), status_changed))
    out += [LogGrew(ev) for ev in logs.values()]
    out += [EvolutionChanged(ev) for ev in runs.values()]
    if task_ids:
        out.append(TasksChanged(task_ids, attempt_ids))
    return out
