"""Job kinds: what the engine needs to know about a job beyond its command.

A kind says where its jobs' files come from (``workspace``), how the wrapper runs them
(``mode``), and what happens when one of them ends (``on_end``). The engine knows the built-in
kinds; the evolution and task packages register theirs (``evaluation``, ``agent``) when the
engine wires them, and react to their jobs only through ``on_end``: the engine never imports
them, and they never import each other.

``on_end`` runs exactly once per job, across crashes: the scheduler claims the job's end
(``end_handled`` 0 -> 1) and calls the handler inside the same transaction, so a process killed
mid-handler leaves the job unclaimed for the next process that reconciles it. A handler must
therefore do its work through the connection it is given (or be idempotent), and may return
events to publish once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import aiosqlite

from evopilot.core.errors import EvopilotError
from evopilot.core.events import Event
from evopilot.core.models import Job

Workspace = Literal["workdir", "project"]
"""workdir: the job runs in the directory its row names (setup, command); project: in its
project's files on its host, the working tree or, when the job has a commit, that commit's."""

EndHandler = Callable[[aiosqlite.Connection, Job], Awaitable[Iterable[Event] | None]]


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    workspace: Workspace = "workdir"
    mode: Literal["batch", "tty"] = "batch"
    """The default wrapper mode of its jobs (a job may ask for tty, e.g. ``run --tty``)."""
    on_end: EndHandler | None = None


BUILTIN = (
    JobKind("benchmark", workspace="project"),
    JobKind("setup"),
    JobKind("command"),
)


class KindRegistry:
    def __init__(self, kinds: Iterable[JobKind] = BUILTIN) -> None:
        self._kinds: dict[str, JobKind] = {}
        for k in kinds:
            self.register(k)

    def register(self, kind: JobKind) -> None:
        if kind.name in self._kinds and self._kinds[kind.name] != kind:
            raise ValueError(f"job kind {kind.name!r} is registered twice")
        self._kinds[kind.name] = kind

    def get(self, name: str) -> JobKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise EvopilotError(f"unknown job kind {name!r}") from None

    def names(self, *, with_handler: bool) -> list[str]:
        """The kinds that have (or have not) an end handler."""
        return sorted(n for n, k in self._kinds.items() if (k.on_end is not None) == with_handler)
