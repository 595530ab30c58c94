"""Job statuses: a module of their own, without pydantic, so the CLI can parse its arguments
and list jobs (``core.jobs.listing``) without loading the row models."""

from __future__ import annotations

import enum

from evopilot.core.errors import EvopilotError


class JobStatus(enum.StrEnum):
    PENDING = "pending"  # waiting on something other than a slot (e.g. its host's setup)
    QUEUED = "queued"  # ready; starts when its host has a free slot
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # cancelled while queued, or stopped (SIGINT) while running
    KILLED = "killed"
    LOST = "lost"  # the tmux session vanished without an exit code

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.KILLED, JobStatus.LOST}
)

TASK_STATUSES: tuple[str, ...] = ("todo", "inprogress", "inreview", "done", "cancelled")
"""A task's column (``models.TaskStatus`` spells the same as a type)."""


def check_status(s: str) -> str:
    """A status name given on the command line, or a one-line error listing them."""
    try:
        return JobStatus(s).value
    except ValueError:
        raise EvopilotError(f"unknown status {s!r}: one of {', '.join(x.value for x in JobStatus)}") from None
